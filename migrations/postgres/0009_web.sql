-- The agent workbench: people who log in, their shop access and sessions,
-- approvals of binding requests and the owner's limits for them. (Who
-- holds a conversation is the conversation's custody and assignee.)

CREATE TABLE users (
    id             TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL REFERENCES tenants(id),
    -- Lower-cased; one account per address across the server, so a login
    -- needs no tenant name.
    email          TEXT NOT NULL UNIQUE,
    display_name   TEXT NOT NULL,
    role           TEXT NOT NULL CHECK (role IN ('admin','agent','readonly')),
    -- argon2id PHC string; the password itself is never stored.
    password_hash  TEXT NOT NULL,
    -- The language the agent reads and writes (BCP 47).
    language       TEXT NOT NULL DEFAULT 'en',
    -- TRUE: every shop of the tenant; FALSE: only the shops in user_shops.
    all_shops      BOOLEAN NOT NULL DEFAULT TRUE,
    created_at     TEXT NOT NULL,
    disabled_at    TEXT
);
CREATE INDEX users_tenant ON users(tenant_id);

CREATE TABLE user_shops (
    user_id  TEXT NOT NULL REFERENCES users(id),
    shop_id  TEXT NOT NULL REFERENCES shops(id),
    PRIMARY KEY (user_id, shop_id)
);

CREATE TABLE web_sessions (
    -- sha256 of the cookie value; the value itself is never stored.
    id_hash       TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users(id),
    tenant_id     TEXT NOT NULL REFERENCES tenants(id),
    -- Echoed by every form of this session (synchroniser token).
    csrf_token    TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    expires_at    TEXT NOT NULL
);
CREATE INDEX web_sessions_user ON web_sessions(user_id);

-- The most an agent may approve per kind, set by an admin. No row: the
-- kind cannot be approved with an amount.
CREATE TABLE approval_limits (
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    kind        TEXT NOT NULL CHECK (kind IN ('refund','partial_refund','discount','cancellation','compensation')),
    max_cents   BIGINT NOT NULL CHECK (max_cents >= 0),
    updated_at  TEXT NOT NULL,
    updated_by  TEXT NOT NULL,
    PRIMARY KEY (tenant_id, kind)
);

-- A human's answer to a buyer's binding request; the buyer's reply is the
-- message written with it, in one transaction.
CREATE TABLE approvals (
    id                TEXT PRIMARY KEY,
    tenant_id         TEXT NOT NULL REFERENCES tenants(id),
    conversation_id   TEXT NOT NULL REFERENCES conversations(id),
    -- The buyer message that asked, when the request was detected.
    message_id        TEXT REFERENCES messages(id),
    kind              TEXT NOT NULL CHECK (kind IN ('refund','partial_refund','discount','cancellation','compensation')),
    outcome           TEXT NOT NULL CHECK (outcome IN ('approved','declined')),
    amount_cents      BIGINT CHECK (amount_cents IS NULL OR amount_cents >= 0),
    currency          TEXT,
    order_number      TEXT,
    decided_by        TEXT NOT NULL REFERENCES users(id),
    reply_message_id  TEXT NOT NULL REFERENCES messages(id),
    created_at        TEXT NOT NULL
);
CREATE INDEX approvals_conversation ON approvals(conversation_id, created_at);
CREATE UNIQUE INDEX approvals_message ON approvals(message_id) WHERE message_id IS NOT NULL;
