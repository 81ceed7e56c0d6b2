-- The knowledge base: the seller's FAQ entries, policy documents, products
-- and shipping rules. The store is the source of truth; search indexes are
-- derived from these rows and rebuilt from them.

-- The live version of every entry. `body` is the entry as JSON in the kb
-- folder format (docs/kb-format.md).
CREATE TABLE kb_entries (
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    kind        TEXT NOT NULL CHECK (kind IN ('faq','policy','product','shipping')),
    entry_id    TEXT NOT NULL,
    lang        TEXT NOT NULL,
    body        TEXT NOT NULL,
    version     BIGINT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (tenant_id, kind, entry_id)
);

-- Every version of every entry, deletions included (body NULL). Append-only.
CREATE TABLE kb_versions (
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    kind        TEXT NOT NULL,
    entry_id    TEXT NOT NULL,
    version     BIGINT NOT NULL,
    body        TEXT,
    actor       TEXT NOT NULL,
    at          TEXT NOT NULL,
    PRIMARY KEY (tenant_id, kind, entry_id, version)
);
CREATE TRIGGER kb_versions_no_update BEFORE UPDATE OR DELETE ON kb_versions
    FOR EACH ROW EXECUTE FUNCTION kedai_append_only();
CREATE TRIGGER kb_versions_no_truncate BEFORE TRUNCATE ON kb_versions
    FOR EACH STATEMENT EXECUTE FUNCTION kedai_append_only();

-- A counter per tenant, bumped by every change to its knowledge base; a
-- search index records the revision it was built from, so a stale one is
-- recognised by comparing two numbers.
CREATE TABLE kb_revisions (
    tenant_id   TEXT PRIMARY KEY REFERENCES tenants(id),
    revision    BIGINT NOT NULL
);
