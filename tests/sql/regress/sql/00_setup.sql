-- pgq-thin SQL regression suite: helpers shared by the other files.
--
-- Every file of this suite assumes the pgq schema is installed in the database it runs in
-- (tests/sql/run.sh and tests/test_sql_suites.py install it, then run pg_regress with
-- --use-existing). This file runs first and creates schema pgq_test with test-only helpers;
-- 99_cleanup drops it. Each file then starts with pgq_test.start(): the session settings and
-- the clock, then pgq_test.reset(), which empties the queue and restarts the job ids at 1, so ids
-- in the expected output are stable.
--
-- The clock is the setting pgq.now (every pgq function reads time only through pgq.now()).
\set VERBOSITY terse
SET client_min_messages = warning;
DROP SCHEMA IF EXISTS pgq_test CASCADE;
CREATE SCHEMA pgq_test;

-- The leases handed out by pgq.dequeue in this test, in claim order: tests insert the rows
-- dequeue returns (INSERT INTO pgq_test.held SELECT * FROM pgq.dequeue(...)).
CREATE TABLE pgq_test.held (LIKE pgq.claimed_job, claim serial);

-- Empties the queue (jobs, history, policies, held leases); ids start at 1 again.
CREATE FUNCTION pgq_test.reset() RETURNS void
LANGUAGE sql AS $$
    TRUNCATE pgq.jobs, pgq.job_history, pgq.entrypoints, pgq_test.held RESTART IDENTITY;
$$;

-- Starts a test file: the suite's session settings (quiet, UTC, ISO dates) and its clock at
-- 2030-01-01, then an empty queue.
CREATE FUNCTION pgq_test.start() RETURNS void
LANGUAGE sql AS $$
    SELECT set_config('client_min_messages', 'warning', false), set_config('timezone', 'UTC', false),
           set_config('datestyle', 'ISO, YMD', false), set_config('intervalstyle', 'postgres', false),
           set_config('pgq.now', '2030-01-01 00:00:00+00', false);
    SELECT pgq_test.reset();
$$;

-- The lease token of a job's latest claim, or of its n-th claim (1-based).
CREATE FUNCTION pgq_test.token(job_id bigint, nth integer DEFAULT NULL) RETURNS uuid
LANGUAGE sql STABLE AS $$
    SELECT h.lease_token FROM pgq_test.held AS h
    WHERE h.id = job_id
    ORDER BY CASE WHEN nth IS NULL THEN -h.claim END, h.claim
    OFFSET coalesce(nth - 1, 0) LIMIT 1
$$;

-- Moves the test clock forward; returns the new time.
CREATE FUNCTION pgq_test.advance(step interval) RETURNS timestamptz
LANGUAGE sql AS $$
    SELECT set_config('pgq.now', (pgq.now() + step)::text, false)::timestamptz
$$;

-- One md5 over every row of the queue's tables: equal before and after means "nothing changed".
CREATE FUNCTION pgq_test.digest() RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT md5(concat_ws('#',
        (SELECT string_agg(j::text, '|' ORDER BY j.id) FROM pgq.jobs AS j),
        (SELECT string_agg(h::text, '|' ORDER BY h.id) FROM pgq.job_history AS h),
        (SELECT string_agg(e::text, '|' ORDER BY e.name) FROM pgq.entrypoints AS e)))
$$;

-- Every job, live or finished, with the columns the tests look at.
CREATE VIEW pgq_test.jobs AS
SELECT j.id, j.entrypoint, j.state, j.priority, j.attempt, j.max_attempts, j.dedupe_key, j.run_at,
       j.lease_token IS NOT NULL AS leased, j.lease_expires_at, j.worker_id, j.cancel_requested,
       j.last_error AS error, NULL::jsonb AS result, j.payload, j.headers
FROM pgq.jobs AS j
UNION ALL
SELECT h.id, h.entrypoint, h.state, h.priority, h.attempt, h.max_attempts, h.dedupe_key, NULL,
       false, NULL, h.worker_id, NULL, h.error, h.result, h.payload, h.headers
FROM pgq.job_history AS h;

SELECT pgq.version() IS NOT NULL AS schema_installed;
