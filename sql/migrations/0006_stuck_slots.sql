-- 0006 stuck slots: a worker reports how many of its slots are held by handlers that outlived
-- their job (a plain `def` handler cannot be interrupted), so pgq.workers can show it unhealthy.
ALTER TABLE pgq.worker_registry ADD COLUMN stuck_slots integer NOT NULL DEFAULT 0;
-- worker_heartbeat gains an argument (sql/api/monitoring.sql creates it).
DROP FUNCTION IF EXISTS pgq.worker_heartbeat(text);

INSERT INTO pgq.migrations (version, name) VALUES (6, 'stuck_slots');
