-- The job queue's ordering, its give-up hook, and separate delivery ids for
-- inbound and outbound messages.

-- Every job about a message names its conversation and the message's place
-- in it (the platform's sent_at, then arrival), so that a conversation's
-- jobs run one at a time and its buyer messages in order.
ALTER TABLE jobs ADD COLUMN conversation_id TEXT REFERENCES conversations(id);
ALTER TABLE jobs ADD COLUMN order_at TEXT;
ALTER TABLE jobs ADD COLUMN order_seq BIGINT;
-- Set when a job has failed for good (why: 'failed', 'lease_expired' when
-- its last attempt never finished, 'too_old' when a buyer message waited too
-- long); the queue then runs the handler's give-up hook (a handoff to a
-- human) before the job rests as dead. last_error says what happened.
ALTER TABLE jobs ADD COLUMN give_up TEXT
    CHECK (give_up IS NULL OR give_up IN ('failed', 'lease_expired', 'too_old'));

UPDATE jobs SET (conversation_id, order_at, order_seq) =
    (SELECT m.conversation_id, m.sent_at, m.seq FROM messages m
     WHERE m.id = (jobs.payload::jsonb ->> 'message_id'));

-- Leases taken before this version may hold two jobs of one conversation;
-- give them back (the attempt not counted) so the index below holds.
UPDATE jobs SET state = 'queued', lease_owner = NULL, lease_until = NULL,
    attempts = GREATEST(attempts - 1, 0)
WHERE state = 'leased';

-- Buyer messages left undecided by earlier versions: jobs dead-lettered
-- without a handoff are handed off now, and jobs completed without a
-- decision (no models at the time) run again; messages that have waited
-- too long by then are handed to a human rather than answered.
UPDATE jobs SET state = 'queued', give_up = 'lease_expired', run_at = created_at,
    last_error = COALESCE(last_error, 'dead-lettered without a handoff by an earlier version')
WHERE state = 'dead' AND kind = 'inbound_message'
  AND NOT EXISTS (SELECT 1 FROM decisions d
                  WHERE d.message_id = (jobs.payload::jsonb ->> 'message_id'));
UPDATE jobs SET state = 'queued', attempts = 0, run_at = created_at
WHERE state = 'done' AND kind = 'inbound_message'
  AND NOT EXISTS (SELECT 1 FROM decisions d
                  WHERE d.message_id = (jobs.payload::jsonb ->> 'message_id'));

-- At most one leased job per conversation, enforced by the database itself
-- (on PostgreSQL too: a second concurrent lease fails instead of running).
CREATE UNIQUE INDEX jobs_one_leased_per_conversation ON jobs(conversation_id)
    WHERE state = 'leased';
CREATE INDEX jobs_conversation ON jobs(conversation_id, state, kind);
-- The lease's searches walk due jobs of a kind in run_at order.
CREATE INDEX jobs_due ON jobs(kind, state, run_at);

-- An inbound message and a reply may carry the same external id (they come
-- from different sequences); each direction is its own namespace. Notes
-- share the outbound one.
DROP INDEX messages_delivery;
CREATE UNIQUE INDEX messages_inbound_delivery ON messages(shop_id, external_id)
    WHERE external_id IS NOT NULL AND direction = 'inbound';
CREATE UNIQUE INDEX messages_outbound_delivery ON messages(shop_id, external_id)
    WHERE external_id IS NOT NULL AND direction != 'inbound';
