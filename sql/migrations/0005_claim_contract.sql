-- 0005 claim contract: a size cap on results, and the function signatures that changed when a
-- claim that is over got one rule (sql/api creates the new ones; the old ones go).

ALTER TABLE pgq.settings
    ADD COLUMN max_result_bytes integer NOT NULL DEFAULT 1048576 CHECK (max_result_bytes > 0);

-- pgq.configure gains max_result_bytes.
DROP FUNCTION IF EXISTS pgq.configure(interval, interval, integer, integer);
-- complete_many returns the ids it completed (an integer count before).
DROP FUNCTION IF EXISTS pgq.complete_many(bigint[], uuid[], jsonb[]);
-- Internal: retries after a lost worker are spread (a fourth argument).
DROP FUNCTION IF EXISTS pgq._settle_failures(bigint[], text[], boolean[]);

INSERT INTO pgq.migrations (version, name) VALUES (5, 'claim_contract');
