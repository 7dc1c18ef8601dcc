-- 0007 worker connections: each worker reports how many connections it holds (pgq.workers),
-- so a fleet's connection budget can be read from the database. pgq.register_worker gains a
-- trailing `connections` argument with a default: callers of the six-argument form (workers
-- of earlier releases) resolve to the new function unchanged, once the old one is gone.
ALTER TABLE pgq.worker_registry ADD COLUMN connections integer;

DROP FUNCTION IF EXISTS pgq.register_worker(text, text[], integer, text, integer, text);
-- The view gains the column next to `concurrency` (sql/api/monitoring.sql creates it again).
DROP VIEW IF EXISTS pgq.workers;

INSERT INTO pgq.migrations (version, name) VALUES (7, 'worker_connections');
