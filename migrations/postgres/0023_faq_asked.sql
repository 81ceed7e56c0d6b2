-- As in SQLite's 0023: how often each FAQ entry answered a buyer, per
-- language the buyer wrote in: one upsert per answered message.
-- Translations prepared ahead take the most-asked entries, and the
-- languages buyers write most, first.
CREATE TABLE faq_asked (
    tenant_id     TEXT NOT NULL REFERENCES tenants(id),
    entry_id      TEXT NOT NULL,
    lang          TEXT NOT NULL,
    asked         BIGINT NOT NULL,
    last_asked_at TEXT NOT NULL,
    PRIMARY KEY (tenant_id, entry_id, lang)
);
