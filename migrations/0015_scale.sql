-- Replica coordination (PostgreSQL's 0015 adds the `timers` table). One
-- server owns a SQLite database, so its timers need no claims: nothing to
-- change here; the file keeps both stores' migration numbers in step.
SELECT 1;
