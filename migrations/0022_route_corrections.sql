-- Route corrections: an agent says a buyer message should have gone to a
-- person ("person"), or that the AI could have answered it ("auto"). They
-- are the tenant's labelled exemplars like intent corrections, trained,
-- measured, promoted or refused and rolled back in the same head versions.
-- kind: what the exemplar teaches; for a route, `label` is `person` or
-- `auto`, `previous_label` the action kedai took (send, draft, handoff)
-- and `route_intent` the intent kedai read, which an `auto` route is bound
-- to.
ALTER TABLE learned_exemplars ADD COLUMN kind TEXT NOT NULL DEFAULT 'intent'
    CHECK (kind IN ('intent', 'route'));
ALTER TABLE learned_exemplars ADD COLUMN route_intent TEXT;
