-- Trust in every reply: where each shop sells and its own policy, who holds a
-- conversation, which decision set its layer, and the seller's answers in
-- other languages (machine translations that passed verification, and those
-- a person approved or wrote).

-- A shop's market (ISO 3166-1 country, ISO 4217 currency, ISO 639 language).
ALTER TABLE shops ADD COLUMN country TEXT;
ALTER TABLE shops ADD COLUMN currency TEXT;
ALTER TABLE shops ADD COLUMN language TEXT;
-- JSON object of [policy.defaults] keys this shop overrides; '{}' for none.
ALTER TABLE shops ADD COLUMN policy TEXT NOT NULL DEFAULT '{}';

-- Who answers the conversation now: the AI, or a person (who then holds it
-- until they give it back). `assignee` names the person, when one is chosen.
ALTER TABLE conversations ADD COLUMN custody TEXT NOT NULL DEFAULT 'ai'
    CHECK (custody IN ('ai', 'human'));
ALTER TABLE conversations ADD COLUMN assignee TEXT;
-- The `seq` of the inbound message whose decision set `layer` and `status`;
-- a decision on an older message never overwrites a newer one's.
ALTER TABLE conversations ADD COLUMN decided_seq BIGINT;

CREATE TABLE kb_translations (
    tenant_id     TEXT NOT NULL REFERENCES tenants(id),
    kind          TEXT NOT NULL,
    entry_id      TEXT NOT NULL,
    -- sha256 of the source text: an edited entry has a new source, and
    -- translations of the old one are never used for it.
    source_hash   TEXT NOT NULL,
    lang          TEXT NOT NULL,
    source_text   TEXT NOT NULL,
    text          TEXT NOT NULL,
    -- verified: a machine translation that passed verification;
    -- unverified: one that did not, waiting for a person;
    -- approved: approved (possibly edited) or written by a person;
    -- rejected: a person said no.
    status        TEXT NOT NULL
        CHECK (status IN ('verified', 'unverified', 'approved', 'rejected')),
    model         TEXT,
    -- JSON record of the checks the machine translation passed or failed.
    verification  TEXT NOT NULL DEFAULT '{}',
    created_at    TEXT NOT NULL,
    reviewed_by   TEXT,
    reviewed_at   TEXT,
    PRIMARY KEY (tenant_id, kind, entry_id, source_hash, lang)
);
CREATE INDEX kb_translations_status ON kb_translations(tenant_id, status, created_at);

-- What a decision's follow-up added (the message in the agents' language,
-- the AI summary), kept beside the trace rather than patched into it: the
-- trace is written once, when the decision is made.
ALTER TABLE decisions ADD COLUMN follow_up TEXT;
