-- Reports: agents' edits of the tags kedai puts on conversations, as in
-- SQLite's 0011. The tags kedai derives are computed from the stored
-- records when a report runs; only a person's additions and removals are
-- kept, one row per conversation and tag, the latest edit winning.
CREATE TABLE conversation_tags (
    tenant_id        TEXT NOT NULL REFERENCES tenants(id),
    conversation_id  TEXT NOT NULL REFERENCES conversations(id),
    tag              TEXT NOT NULL,
    -- 1: the tag is on the conversation; 0: a person took it off.
    present          BIGINT NOT NULL CHECK (present IN (0, 1)),
    edited_by        TEXT NOT NULL,
    edited_at        TEXT NOT NULL,
    PRIMARY KEY (conversation_id, tag)
);
CREATE INDEX conversation_tags_tenant ON conversation_tags(tenant_id, conversation_id);
