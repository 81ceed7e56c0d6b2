-- Suggested FAQ entries, per tenant: a knowledge gap (buyers' questions
-- the knowledge base could not answer, grouped by meaning) that a person
-- answered becomes a suggestion with the buyers' questions as variants
-- and the person's reply as the answer. Nothing reaches the knowledge
-- base until a person accepts it; a dismissed or accepted suggestion is
-- never suggested again for the same answer.
CREATE TABLE faq_suggestions (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL REFERENCES tenants(id),
    -- sha256 of the answer with its whitespace collapsed: one suggestion
    -- per answer a person gave.
    answer_key      TEXT NOT NULL,
    -- JSON array of the buyers' questions, the gap's central one first.
    questions       TEXT NOT NULL,
    answer          TEXT NOT NULL,
    -- The language most of the buyers asked in.
    lang            TEXT NOT NULL,
    -- How many buyer messages asked it, and in which conversations (JSON).
    asked           INTEGER NOT NULL,
    conversations   TEXT NOT NULL,
    -- pending: waiting for a person; accepted: entry_id is the FAQ entry
    -- made from it; dismissed: nothing was added.
    status          TEXT NOT NULL
        CHECK (status IN ('pending', 'accepted', 'dismissed')),
    entry_id        TEXT,
    decided_by      TEXT,
    decided_at      TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    UNIQUE (tenant_id, answer_key)
);
CREATE INDEX faq_suggestions_tenant ON faq_suggestions(tenant_id, status, asked);
