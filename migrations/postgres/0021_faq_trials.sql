-- As in SQLite's 0021: a suggested FAQ entry is measured before it goes live: the tenant's
-- confirmed history is searched with and without the entry, and the
-- comparison (which past questions would now find it, which answers
-- would change) is kept with the suggestion, as JSON, whether it was
-- added or refused.
ALTER TABLE faq_suggestions ADD COLUMN trial TEXT;
