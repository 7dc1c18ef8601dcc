-- 0003 limits: size caps on what enqueue accepts, changed with pgq.configure.

ALTER TABLE pgq.settings
    ADD COLUMN max_payload_bytes integer NOT NULL DEFAULT 1048576 CHECK (max_payload_bytes > 0),
    ADD COLUMN max_headers_bytes integer NOT NULL DEFAULT 65536 CHECK (max_headers_bytes > 0);

-- pgq.configure gains the two settings as arguments (sql/api/monitoring.sql creates the new one).
DROP FUNCTION IF EXISTS pgq.configure(interval, interval);

INSERT INTO pgq.migrations (version, name) VALUES (3, 'limits');
