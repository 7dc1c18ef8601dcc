-- 0004 internal names: the helpers only other pgq functions call are renamed with a leading
-- underscore (sql/api creates them under the new names); the old ones go.
DROP FUNCTION IF EXISTS pgq.check_batch(text, integer[]);
DROP FUNCTION IF EXISTS pgq.check_entrypoints(text[]);
DROP FUNCTION IF EXISTS pgq.lock_held(bigint[], uuid[]);
DROP FUNCTION IF EXISTS pgq.settle_failures(bigint[], text[], boolean[]);
DROP FUNCTION IF EXISTS pgq.backoff(integer, interval, numeric, interval, numeric);
DROP FUNCTION IF EXISTS pgq.record_install();

INSERT INTO pgq.migrations (version, name) VALUES (4, 'internal_names');
