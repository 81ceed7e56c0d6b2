-- kedai's store. Timestamps are RFC 3339 UTC text with microseconds
-- ("2026-11-21T10:00:00.000000Z"), so they sort as text. Ids are UUIDv7 text.

CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL
);

CREATE TABLE api_tokens (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    label        TEXT NOT NULL,
    -- sha256 of the token; the token itself is shown once and never stored.
    token_hash   TEXT NOT NULL UNIQUE,
    prefix       TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    revoked_at   TEXT
);
CREATE INDEX api_tokens_tenant ON api_tokens(tenant_id);

CREATE TABLE shops (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    platform     TEXT NOT NULL CHECK (platform IN ('shopee','lazada','tiktok','web','generic')),
    shop_key     TEXT NOT NULL,
    name         TEXT NOT NULL,
    -- JSON object of platform credentials (partner keys, webhook secrets).
    credentials  TEXT NOT NULL DEFAULT '{}',
    created_at   TEXT NOT NULL,
    UNIQUE (tenant_id, shop_key)
);

CREATE TABLE buyers (
    id                 TEXT PRIMARY KEY,
    tenant_id          TEXT NOT NULL REFERENCES tenants(id),
    shop_id            TEXT NOT NULL REFERENCES shops(id),
    platform_buyer_id  TEXT NOT NULL,
    display_name       TEXT,
    language           TEXT,
    member_level       TEXT,
    is_vip             INTEGER NOT NULL DEFAULT 0,
    lifetime_value_cents INTEGER NOT NULL DEFAULT 0,
    currency           TEXT,
    created_at         TEXT NOT NULL,
    updated_at         TEXT NOT NULL,
    UNIQUE (shop_id, platform_buyer_id)
);

CREATE TABLE conversations (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL REFERENCES tenants(id),
    shop_id          TEXT NOT NULL REFERENCES shops(id),
    buyer_id         TEXT NOT NULL REFERENCES buyers(id),
    status           TEXT NOT NULL CHECK (status IN ('open','pending','resolved')),
    layer            INTEGER CHECK (layer IS NULL OR layer BETWEEN 1 AND 3),
    created_at       TEXT NOT NULL,
    last_message_at  TEXT NOT NULL,
    message_count    INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX conversations_list ON conversations(tenant_id, last_message_at DESC, id DESC);
CREATE INDEX conversations_buyer ON conversations(buyer_id, status);

CREATE TABLE messages (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL REFERENCES tenants(id),
    conversation_id  TEXT NOT NULL REFERENCES conversations(id),
    shop_id          TEXT NOT NULL REFERENCES shops(id),
    external_id      TEXT,
    direction        TEXT NOT NULL CHECK (direction IN ('inbound','outbound','note')),
    author           TEXT NOT NULL CHECK (author IN ('buyer','ai','agent','system')),
    author_name      TEXT,
    -- Validated, card-redacted text as written.
    text             TEXT NOT NULL,
    language         TEXT,
    translation      TEXT,
    sent_at          TEXT NOT NULL,
    received_at      TEXT NOT NULL,
    processed_at     TEXT,
    seq              INTEGER NOT NULL
);
-- A delivery is identified by (shop, external id): redeliveries are no-ops.
CREATE UNIQUE INDEX messages_delivery ON messages(shop_id, external_id) WHERE external_id IS NOT NULL;
CREATE INDEX messages_conversation ON messages(conversation_id, seq);

CREATE TABLE orders (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL REFERENCES tenants(id),
    shop_id          TEXT NOT NULL REFERENCES shops(id),
    buyer_id         TEXT REFERENCES buyers(id),
    order_number     TEXT NOT NULL,
    status           TEXT NOT NULL,
    currency         TEXT NOT NULL,
    total_cents      INTEGER NOT NULL,
    -- JSON array of {sku, name, quantity, unit_price_cents}.
    items            TEXT NOT NULL DEFAULT '[]',
    carrier          TEXT,
    tracking_number  TEXT,
    -- JSON array of {at, status, location}.
    tracking_events  TEXT NOT NULL DEFAULT '[]',
    placed_at        TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    UNIQUE (shop_id, order_number)
);
CREATE INDEX orders_buyer ON orders(buyer_id, placed_at DESC);

CREATE TABLE audit_log (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id    TEXT REFERENCES tenants(id),
    at           TEXT NOT NULL,
    actor        TEXT NOT NULL,
    action       TEXT NOT NULL,
    subject_type TEXT NOT NULL,
    subject_id   TEXT NOT NULL,
    details      TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_tenant ON audit_log(tenant_id, seq);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;

CREATE TABLE jobs (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT REFERENCES tenants(id),
    kind          TEXT NOT NULL,
    payload       TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('queued','leased','done','dead')),
    attempts      INTEGER NOT NULL DEFAULT 0,
    max_attempts  INTEGER NOT NULL,
    run_at        TEXT NOT NULL,
    lease_owner   TEXT,
    lease_until   TEXT,
    last_error    TEXT,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);
CREATE INDEX jobs_ready ON jobs(state, run_at);
