-- Channels: marketplace and web-chat adapters, the durable outbox, event
-- webhooks, reconciliation cursors and response deadlines.

-- What a message carries besides text: `kind` is `text` or the non-text
-- kind (image, sticker, video, product, order, voucher, other) and
-- `attachment` a JSON object of what it carries (a URL, a product or order
-- id). Non-text messages keep a readable description in `text`.
ALTER TABLE messages ADD COLUMN kind TEXT NOT NULL DEFAULT 'text';
ALTER TABLE messages ADD COLUMN attachment TEXT;
-- Conversations are read in the platforms' order: the sender's timestamp,
-- then arrival.
CREATE INDEX messages_conversation_time ON messages(conversation_id, sent_at, seq);

-- The platform's own id of a shop (Shopee shop_id, Lazada seller_id, TikTok
-- Shop shop_id), which pushes name; unique per platform across tenants.
CREATE TABLE channel_accounts (
    shop_id     TEXT PRIMARY KEY REFERENCES shops(id),
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    platform    TEXT NOT NULL,
    account_id  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    UNIQUE (platform, account_id)
);

-- The platform's conversation (Shopee conversation_id, Lazada session_id,
-- TikTok conversation_id, a widget session) and the buyer it is with.
CREATE TABLE channel_threads (
    shop_id            TEXT NOT NULL REFERENCES shops(id),
    thread_id          TEXT NOT NULL,
    platform_buyer_id  TEXT NOT NULL,
    updated_at         TEXT NOT NULL,
    PRIMARY KEY (shop_id, thread_id)
);
CREATE INDEX channel_threads_buyer ON channel_threads(shop_id, platform_buyer_id, updated_at);

-- Everything that leaves kedai: replies to a platform's send API (one row
-- per outbound message, sent in parts when it is longer than the platform
-- allows) and signed event webhooks. A row is written in the transaction of
-- what it delivers; `idempotency_key` makes a second enqueue a no-op.
CREATE TABLE outbox (
    id                  TEXT PRIMARY KEY,
    tenant_id           TEXT NOT NULL REFERENCES tenants(id),
    kind                TEXT NOT NULL CHECK (kind IN ('reply', 'event')),
    idempotency_key     TEXT NOT NULL UNIQUE,
    shop_id             TEXT REFERENCES shops(id),
    conversation_id     TEXT REFERENCES conversations(id),
    message_id          TEXT REFERENCES messages(id),
    endpoint_id         TEXT,
    -- Events: the JSON body to deliver. Replies: '{}' (the text is the
    -- message's).
    payload             TEXT NOT NULL,
    state               TEXT NOT NULL CHECK (state IN ('pending', 'sending', 'sent', 'dead')),
    -- Parts of a long reply already delivered.
    parts_sent          BIGINT NOT NULL DEFAULT 0,
    attempts            BIGINT NOT NULL DEFAULT 0,
    -- Set when an attempt may have reached the platform without kedai
    -- learning the outcome (a crash or a timeout mid-send): the start of
    -- that attempt. Before sending again, the platform's messages since
    -- then are checked for it.
    doubt_since         TEXT,
    next_attempt_at     TEXT NOT NULL,
    lease_owner         TEXT,
    lease_until         TEXT,
    attempt_started_at  TEXT,
    -- JSON array of the platform's ids for the parts sent.
    platform_ids        TEXT NOT NULL DEFAULT '[]',
    last_error          TEXT,
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL,
    sent_at             TEXT
);
CREATE INDEX outbox_due ON outbox(state, next_attempt_at);
CREATE INDEX outbox_conversation ON outbox(conversation_id, created_at);

-- Messages kedai sent, by the platform's id, so that when a platform
-- reports them back (a push, a reconciliation) they are recognised as ours.
CREATE TABLE channel_sent (
    shop_id              TEXT NOT NULL REFERENCES shops(id),
    platform_message_id  TEXT NOT NULL,
    outbox_id            TEXT NOT NULL REFERENCES outbox(id),
    PRIMARY KEY (shop_id, platform_message_id)
);

-- Reconciliation positions per shop (and per Shopee app for lost pushes).
CREATE TABLE channel_cursors (
    scope       TEXT NOT NULL,
    name        TEXT NOT NULL,
    value       TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (scope, name)
);

-- A tenant's integration endpoints for signed event webhooks.
CREATE TABLE event_endpoints (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    url         TEXT NOT NULL,
    -- The HMAC key, shown once when the endpoint is added.
    secret      TEXT NOT NULL,
    -- JSON array of event types; empty means all.
    events      TEXT NOT NULL DEFAULT '[]',
    created_at  TEXT NOT NULL,
    removed_at  TEXT
);
CREATE INDEX event_endpoints_tenant ON event_endpoints(tenant_id);

-- How far the event dispatcher has read the audit log (one row).
CREATE TABLE event_cursor (
    id         BIGINT PRIMARY KEY CHECK (id = 1),
    audit_seq  BIGINT NOT NULL
);
INSERT INTO event_cursor (id, audit_seq) VALUES (1, 0);

-- Web-chat widget visitors: a session per visitor, authenticated by a
-- secret of which only the sha256 is kept.
CREATE TABLE widget_sessions (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL REFERENCES tenants(id),
    shop_id       TEXT NOT NULL REFERENCES shops(id),
    secret_hash   TEXT NOT NULL,
    -- The name the visitor gave, if any.
    name          TEXT,
    created_at    TEXT NOT NULL,
    last_seen_at  TEXT NOT NULL
);

-- Buyer messages whose response deadline came near: flagged at risk, and
-- optionally acknowledged automatically.
CREATE TABLE response_deadlines (
    message_id       TEXT PRIMARY KEY REFERENCES messages(id),
    tenant_id        TEXT NOT NULL REFERENCES tenants(id),
    conversation_id  TEXT NOT NULL REFERENCES conversations(id),
    due_at           TEXT NOT NULL,
    flagged_at       TEXT,
    acknowledged_at  TEXT,
    answered_at      TEXT
);
CREATE INDEX response_deadlines_open ON response_deadlines(tenant_id, answered_at, due_at);
