-- Learning from people, per tenant. An agent's correction of the intent
-- kedai read in a buyer message becomes a labelled exemplar of that tenant
-- alone; the tenant's classifier heads are retrained from the shipped
-- exemplars plus the tenant's, measured against the tenant's confirmed
-- history and the shipped evaluation set, and kept as a version whether
-- promoted or refused, with the comparison that decided it.
CREATE TABLE learned_exemplars (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL REFERENCES tenants(id),
    -- The buyer message corrected; NULL once the buyer was erased.
    message_id      TEXT,
    text            TEXT NOT NULL,
    label           TEXT NOT NULL,
    -- The intent kedai had read, when it had decided on the message.
    previous_label  TEXT,
    -- pending: not measured yet; live: in the active heads; refused: its
    -- version made the tenant's figures worse; rolled_back: its version
    -- was rolled back.
    status          TEXT NOT NULL
        CHECK (status IN ('pending', 'live', 'refused', 'rolled_back')),
    version_id      TEXT,
    created_by      TEXT NOT NULL,
    created_at      TEXT NOT NULL
);
CREATE INDEX learned_exemplars_tenant ON learned_exemplars(tenant_id, created_at);

CREATE TABLE head_versions (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL REFERENCES tenants(id),
    -- 1, 2, 3 ... per tenant, for people.
    number          INTEGER NOT NULL,
    -- JSON array of the learned exemplar ids the heads were trained on.
    exemplar_ids    TEXT NOT NULL,
    -- JSON: the before/after figures and the verdict.
    comparison      TEXT NOT NULL,
    promoted        INTEGER NOT NULL CHECK (promoted IN (0, 1)),
    -- Why it was refused; NULL when promoted.
    reason          TEXT,
    -- 1 for the one version in use; none: the shared heads.
    active          INTEGER NOT NULL CHECK (active IN (0, 1)),
    created_by      TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    UNIQUE (tenant_id, number)
);
CREATE INDEX head_versions_active ON head_versions(active, tenant_id);
