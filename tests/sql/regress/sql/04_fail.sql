-- fail / fail_many: retry after backoff (base * factor^(attempt-1), capped), dead letter after
-- max_attempts or for a non-retryable error, fencing, bad input.
\set VERBOSITY terse
SELECT pgq_test.start();

-- The backoff rule itself (jitter 0): base 1 s, factor 2, cap 10 s.
SELECT n AS attempt, pgq._backoff(n, '1 second', 2, '10 seconds', 0) AS delay
FROM generate_series(0, 6) AS n;
-- Factor 1 is a constant delay; factor 3 with a 1 minute cap.
SELECT n AS attempt, pgq._backoff(n, '5 seconds', 1, '1 hour', 0) AS constant,
       pgq._backoff(n, '2 seconds', 3, '1 minute', 0) AS factor_3
FROM generate_series(1, 5) AS n;
-- A huge attempt number is still capped, not an overflow.
SELECT pgq._backoff(1000000, '1 second', 10, '1 day', 0) AS capped;
-- Jitter j keeps the delay within base * [1 - j, 1 + j] and does vary.
SELECT min(d) >= interval '5 seconds' AS low_ok, max(d) <= interval '15 seconds' AS high_ok,
       count(DISTINCT d) > 1 AS varies
FROM (SELECT pgq._backoff(1, '10 seconds', 2, '1 hour', 0.5) AS d FROM generate_series(1, 200)) AS s;

-- The retry path through fail(): base 1 s, factor 2, cap 5 s, 5 attempts.
SELECT pgq.set_entrypoint('a', max_attempts => 5, backoff_base => '1 second', backoff_factor => 2,
                          backoff_max => '5 seconds', jitter => 0);
SELECT pgq.enqueue('a', '{"n": 1}');
-- Each try: claim at the current time, fail, show the retry; then move the clock to run_at.
INSERT INTO pgq_test.held SELECT * FROM pgq.dequeue('{a}') RETURNING id, attempt;
SELECT pgq.fail(1, pgq_test.token(1), 'error 1') AS outcome;
SELECT state, attempt, run_at - pgq.now() AS delay, leased, error, worker_id FROM pgq_test.jobs;
SELECT count(*) AS claimable_before_run_at FROM pgq.dequeue('{a}');
SELECT pgq_test.advance('1 second');
INSERT INTO pgq_test.held SELECT * FROM pgq.dequeue('{a}') RETURNING id, attempt;
SELECT pgq.fail(1, pgq_test.token(1), 'error 2') AS outcome;
SELECT state, attempt, run_at - pgq.now() AS delay, error FROM pgq_test.jobs;
SELECT pgq_test.advance('2 seconds');
INSERT INTO pgq_test.held SELECT * FROM pgq.dequeue('{a}') RETURNING id, attempt;
SELECT pgq.fail(1, pgq_test.token(1), 'error 3') AS outcome;
SELECT state, attempt, run_at - pgq.now() AS delay, error FROM pgq_test.jobs;
SELECT pgq_test.advance('4 seconds');
INSERT INTO pgq_test.held SELECT * FROM pgq.dequeue('{a}') RETURNING id, attempt;
SELECT pgq.fail(1, pgq_test.token(1), 'error 4') AS outcome;
SELECT state, attempt, run_at - pgq.now() AS delay, error FROM pgq_test.jobs;
SELECT pgq_test.advance('5 seconds');
-- The last attempt: dead letter, with the last error.
INSERT INTO pgq_test.held SELECT * FROM pgq.dequeue('{a}') RETURNING id, attempt, max_attempts;
SELECT pgq.fail(1, pgq_test.token(1), 'error 5') AS outcome;
SELECT id, state, attempt, max_attempts, worker_id, finished_at, error, payload
FROM pgq.job_history;
SELECT count(*) AS live FROM pgq.jobs;

-- The job's own max_attempts wins over the policy's.
SELECT pgq_test.reset();
SET pgq.now = '2030-01-01 00:00:00+00';
SELECT pgq.set_entrypoint('a', max_attempts => 5, backoff_base => '0', jitter => 0);
SELECT pgq.enqueue('a', max_attempts => 1);
INSERT INTO pgq_test.held SELECT * FROM pgq.dequeue('{a}') RETURNING id, attempt, max_attempts;
SELECT pgq.fail(1, pgq_test.token(1), 'once') AS outcome;
-- A non-retryable error dead-letters at once, attempts left or not.
SELECT pgq.enqueue('a');
INSERT INTO pgq_test.held SELECT * FROM pgq.dequeue('{a}') RETURNING id, attempt, max_attempts;
SELECT pgq.fail(2, pgq_test.token(2), 'bad payload', retryable => false) AS outcome;
-- backoff_base 0: the retry is queued and claimable at once; a NULL error is recorded as such.
SELECT pgq.enqueue('a');
INSERT INTO pgq_test.held SELECT * FROM pgq.dequeue('{a}') RETURNING id, attempt;
SELECT pgq.fail(3, pgq_test.token(3), NULL) AS outcome;
SELECT id, state, run_at = pgq.now() AS run_now, error FROM pgq_test.jobs WHERE id = 3;
INSERT INTO pgq_test.held SELECT * FROM pgq.dequeue('{a}') RETURNING id, attempt;
-- retryable NULL means true.
SELECT pgq.fail(3, pgq_test.token(3), 'x', NULL) AS outcome;
SELECT id, state, attempt, error FROM pgq_test.jobs ORDER BY id;

-- Fencing: a stale or wrong token answers 'stale' and changes nothing.
SELECT pgq_test.digest() AS before \gset
SELECT pgq.fail(3, pgq_test.token(3), 'stale') AS requeued_job;
SELECT pgq.fail(3, gen_random_uuid(), 'wrong') AS wrong_token;
SELECT pgq.fail(3, NULL, 'null token') AS null_token;
SELECT pgq.fail(1, pgq_test.token(1), 'finished') AS finished_job;
SELECT pgq.fail(999, gen_random_uuid(), 'unknown') AS unknown_job;
SELECT pgq.fail(NULL, NULL, NULL) AS all_null;
SELECT pgq_test.digest() = :'before' AS unchanged;

-- fail_many: one row per job the caller holds, with its outcome; others are skipped.
SELECT pgq_test.reset();
SELECT pgq.set_entrypoint('a', max_attempts => 2, backoff_base => '10 seconds', jitter => 0);
SELECT count(*) FROM pgq.enqueue_many(array_fill('a'::text, ARRAY[5]), NULL,
                                      max_attempts => ARRAY[NULL, NULL, 1, NULL, NULL]);
INSERT INTO pgq_test.held SELECT * FROM pgq.dequeue('{a}', 4) RETURNING id, attempt, max_attempts;
SELECT * FROM pgq.fail_many(
    ARRAY[1, 2, 3, 4, 5, 999],
    ARRAY[pgq_test.token(1), pgq_test.token(2), pgq_test.token(3), gen_random_uuid(),
          gen_random_uuid(), gen_random_uuid()],
    ARRAY['retry me', 'fatal', 'last try', 'stale', 'queued job', 'unknown'],
    ARRAY[true, false, true, true, true, true])
ORDER BY job_id;
SELECT id, state, attempt, run_at - pgq.now() AS delay, error FROM pgq_test.jobs ORDER BY id;
-- retryable omitted: every error is retryable; empty arrays: no rows.
SELECT * FROM pgq.fail_many(ARRAY[4], ARRAY[pgq_test.token(4)], ARRAY['later']);
SELECT count(*) AS empty FROM pgq.fail_many('{}', '{}', '{}');

-- Mismatched lengths raise and change nothing.
SELECT pgq_test.digest() AS before \gset
SELECT * FROM pgq.fail_many(ARRAY[1, 2], ARRAY[gen_random_uuid()], ARRAY['e', 'e']);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT * FROM pgq.fail_many(ARRAY[1], ARRAY[gen_random_uuid()], ARRAY['e', 'e']);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT * FROM pgq.fail_many(ARRAY[1], ARRAY[gen_random_uuid()], NULL);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT * FROM pgq.fail_many(ARRAY[1], ARRAY[gen_random_uuid()], ARRAY['e'], ARRAY[true, false]);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq_test.digest() = :'before' AS unchanged;
