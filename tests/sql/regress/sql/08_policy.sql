-- set_entrypoint: upsert, NULL keeps the current value, 0 = unlimited / no timeout, validation.
\set VERBOSITY terse
SELECT pgq_test.start();

CREATE VIEW pgq_test.policy AS
SELECT name, concurrency_limit AS lim, max_attempts AS attempts, timeout, backoff_base AS base,
       backoff_factor AS factor, backoff_max AS max, jitter, paused, updated_at
FROM pgq.entrypoints;

-- A new name gets the defaults for what is not given.
SELECT pgq.set_entrypoint('p');
SELECT pgq.set_entrypoint('q', concurrency_limit => 3, max_attempts => 9, timeout => '1 minute',
                          backoff_base => '2 seconds', backoff_factor => 1.5,
                          backoff_max => '10 minutes', jitter => 0.25, paused => true);
SELECT * FROM pgq_test.policy ORDER BY name;
-- NULL (or an omitted argument) keeps the current value; the rest is updated.
SELECT pgq_test.advance('1 minute');
SELECT pgq.set_entrypoint('q', max_attempts => 2);
SELECT pgq.set_entrypoint('q', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
SELECT * FROM pgq_test.policy WHERE name = 'q';
-- concurrency_limit 0 means unlimited, timeout 0 means none (both stored as NULL).
SELECT pgq.set_entrypoint('q', concurrency_limit => 0, timeout => '0');
SELECT name, lim, timeout FROM pgq_test.policy WHERE name = 'q';
-- The boundaries are accepted: factor 1, jitter 0 and 1, base 0, max 0, max_attempts 1.
SELECT pgq.set_entrypoint('q', backoff_factor => 1, jitter => 0, backoff_base => '0',
                          backoff_max => '0', max_attempts => 1, paused => false);
SELECT pgq.set_entrypoint('q', jitter => 1);
SELECT * FROM pgq_test.policy WHERE name = 'q';

-- Invalid values raise a clear error and change nothing (nor create the entrypoint).
SELECT pgq_test.digest() AS before \gset
SELECT pgq.set_entrypoint(NULL);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq.set_entrypoint('');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq.set_entrypoint(' ');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq.set_entrypoint('q', concurrency_limit => -1);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq.set_entrypoint('q', max_attempts => 0);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq.set_entrypoint('q', max_attempts => -3);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq.set_entrypoint('q', timeout => '-1 second');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq.set_entrypoint('q', backoff_base => '-1 second');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq.set_entrypoint('q', backoff_max => '-1 second');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq.set_entrypoint('q', backoff_factor => 0.5);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq.set_entrypoint('q', backoff_factor => 0);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq.set_entrypoint('q', jitter => 1.5);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq.set_entrypoint('q', jitter => -0.1);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq.set_entrypoint('brand_new', jitter => 2);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq_test.digest() = :'before' AS unchanged;

-- The policy is read at the time it matters: a job enqueued before a policy change obeys the
-- new max_attempts (its own max_attempts is unset).
SELECT pgq.set_entrypoint('r', max_attempts => 5, backoff_base => '0', jitter => 0);
SELECT pgq.enqueue('r');
SELECT pgq.set_entrypoint('r', max_attempts => 1);
INSERT INTO pgq_test.held SELECT * FROM pgq.dequeue('{r}') RETURNING id, attempt, max_attempts;
SELECT pgq.fail(1, pgq_test.token(1), 'no more tries');

DROP VIEW pgq_test.policy;
