-- What the reply pipeline decided for each inbound message, with the whole
-- trace (stage outputs, scores, route, reasons, sources, model ids,
-- timings). One decision per message: a job that runs twice finds it.
CREATE TABLE decisions (
    id                TEXT PRIMARY KEY,
    tenant_id         TEXT NOT NULL REFERENCES tenants(id),
    conversation_id   TEXT NOT NULL REFERENCES conversations(id),
    message_id        TEXT NOT NULL UNIQUE REFERENCES messages(id),
    layer             BIGINT NOT NULL CHECK (layer BETWEEN 1 AND 3),
    action            TEXT NOT NULL CHECK (action IN ('send','draft','handoff','observe')),
    -- The draft waiting for a human (layers 2 and 3, suggest mode).
    draft             TEXT,
    -- The message sent to the buyer, when one was.
    reply_message_id  TEXT REFERENCES messages(id),
    trace             TEXT NOT NULL,
    created_at        TEXT NOT NULL
);
CREATE INDEX decisions_conversation ON decisions(conversation_id, created_at);
