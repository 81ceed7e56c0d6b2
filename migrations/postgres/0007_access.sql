-- Access control: what a token may do, for how long, for which shop, and
-- when it was last used; credentials that belong to no tenant (the
-- operator's); credentials encrypted at rest.

-- Tokens made before scopes existed could do everything their tenant can,
-- so they become tenant administrators ('admin'): nothing that worked stops
-- working. Scopes are a space-separated list (auth::Scopes).
ALTER TABLE api_tokens ADD COLUMN scopes TEXT NOT NULL DEFAULT 'admin';
-- RFC 3339; NULL never expires.
ALTER TABLE api_tokens ADD COLUMN expires_at TEXT;
-- The one shop the token may act for; NULL for every shop of its tenant.
ALTER TABLE api_tokens ADD COLUMN shop_id TEXT REFERENCES shops(id);
-- Updated at most once a minute per token, so reads stay reads.
ALTER TABLE api_tokens ADD COLUMN last_used_at TEXT;

-- The server operator's credentials (retraining the shared classifiers,
-- readiness details, metrics): they belong to no tenant and reach no
-- tenant's data.
CREATE TABLE operator_tokens (
    id            TEXT PRIMARY KEY,
    label         TEXT NOT NULL,
    token_hash    TEXT NOT NULL UNIQUE,
    prefix        TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    expires_at    TEXT,
    revoked_at    TEXT,
    last_used_at  TEXT
);
