-- Periodic work done once per period across every replica: each timer's
-- row says when it is next due; a replica claims it by moving `due_at` one
-- period ahead in a single conditional upsert (src/store/postgres/timers.rs).
CREATE TABLE timers (
    name        TEXT PRIMARY KEY,
    due_at      TEXT NOT NULL,
    claimed_at  TEXT NOT NULL,
    claimed_by  TEXT NOT NULL
);
