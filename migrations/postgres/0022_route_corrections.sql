-- As in SQLite's 0022: route corrections (a message that should have gone
-- to a person, or that the AI could have answered) are the tenant's
-- learned exemplars too, of kind `route`: `label` is `person` or `auto`,
-- `previous_label` the action kedai took and `route_intent` the intent
-- kedai read, which an `auto` route is bound to.
ALTER TABLE learned_exemplars ADD COLUMN kind TEXT NOT NULL DEFAULT 'intent'
    CHECK (kind IN ('intent', 'route'));
ALTER TABLE learned_exemplars ADD COLUMN route_intent TEXT;
