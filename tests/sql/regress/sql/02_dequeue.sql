-- dequeue: priority then FIFO, only due jobs, paused entrypoints, concurrency limits, batch
-- size, attempts, leases, bad input.
\set VERBOSITY terse
SELECT pgq_test.start();
SELECT pgq.set_entrypoint('a', jitter => 0);
SELECT pgq.set_entrypoint('b', jitter => 0);

-- Nothing queued: no rows.
SELECT count(*) FROM pgq.dequeue('{a}', 10);

-- Highest priority first, FIFO within a priority.
SELECT count(*) FROM pgq.enqueue_many(ARRAY['a', 'a', 'a', 'a', 'a', 'a'],
                                      ARRAY['{"n": 1}', '{"n": 2}', '{"n": 3}', '{"n": 4}',
                                            '{"n": 5}', '{"n": 6}']::jsonb[],
                                      priorities => ARRAY[0, 5, 0, 5, -1, 9]);
INSERT INTO pgq_test.held SELECT * FROM pgq.dequeue('{a}') RETURNING id, priority, payload;
INSERT INTO pgq_test.held SELECT * FROM pgq.dequeue('{a}') RETURNING id, priority, payload;
INSERT INTO pgq_test.held SELECT * FROM pgq.dequeue('{a}') RETURNING id, priority, payload;
INSERT INTO pgq_test.held SELECT * FROM pgq.dequeue('{a}') RETURNING id, priority, payload;
INSERT INTO pgq_test.held SELECT * FROM pgq.dequeue('{a}') RETURNING id, priority, payload;
INSERT INTO pgq_test.held SELECT * FROM pgq.dequeue('{a}') RETURNING id, priority, payload;
SELECT count(*) AS nothing_left FROM pgq.dequeue('{a}', 10);

-- Every column of a claimed row; the lease is pgq.now() + lease_duration (30 s by default).
SELECT pgq_test.reset();
SELECT pgq.enqueue('a', '{"x": 1}', priority => 3, headers => '{"h": "v"}', max_attempts => 4);
SELECT pgq.enqueue('a');
SELECT id, entrypoint, payload, headers, priority, attempt, max_attempts,
       lease_token IS NOT NULL AS has_token, lease_expires_at, enqueued_at
FROM pgq.dequeue('{a}', 5, 'w1') ORDER BY id;
SELECT id, state, attempt, worker_id, started_at, lease_expires_at, timeout_at
FROM pgq.jobs ORDER BY id;
-- Each claim gets its own token.
SELECT count(DISTINCT lease_token) AS tokens FROM pgq.jobs;

-- Rows come back in id order, not in claim order (the lowest priority first here).
-- NOTE: reported to the lead; the claim itself follows priority (see above).
SELECT pgq_test.reset();
SELECT pgq.enqueue('a', priority => 0), pgq.enqueue('a', priority => 5), pgq.enqueue('a', priority => 9);
SELECT id, priority FROM pgq.dequeue('{a}', 3);

-- batch_size: at most that many; several entrypoints merge by priority, then id.
SELECT pgq_test.reset();
SELECT count(*) FROM pgq.enqueue_many(ARRAY['a', 'b', 'a', 'b', 'a', 'b'], NULL,
                                      priorities => ARRAY[1, 2, 1, 0, 3, 2]);
INSERT INTO pgq_test.held SELECT * FROM pgq.dequeue('{a,b}', 4)
RETURNING id, entrypoint, priority;
INSERT INTO pgq_test.held SELECT * FROM pgq.dequeue('{a,b}', 4)
RETURNING id, entrypoint, priority;
-- Only the named entrypoints; an unknown entrypoint just has nothing.
SELECT pgq.enqueue('c');
SELECT count(*) FROM pgq.dequeue('{a,b,unknown}', 10);

-- Only due jobs: scheduled ones are claimed once the clock reaches run_at.
SELECT pgq_test.reset();
SELECT pgq.enqueue('a', '{"when": "+10s"}', run_at => '2030-01-01 00:00:10+00');
SELECT pgq.enqueue('a', '{"when": "+5s"}', priority => -5, run_at => '2030-01-01 00:00:05+00');
SELECT count(*) AS due_now FROM pgq.dequeue('{a}', 10);
SELECT pgq_test.advance('5 seconds');
INSERT INTO pgq_test.held SELECT * FROM pgq.dequeue('{a}', 10) RETURNING id, payload, lease_expires_at;
SELECT pgq_test.advance('5 seconds');
INSERT INTO pgq_test.held SELECT * FROM pgq.dequeue('{a}', 10) RETURNING id, payload, lease_expires_at;

-- Paused entrypoints are skipped (others in the same call are not); unpausing resumes.
SELECT pgq_test.reset();
SET pgq.now = '2030-01-01 00:00:00+00';
SELECT pgq.enqueue('a', '{"n": 1}'), pgq.enqueue('b', '{"n": 2}');
SELECT pgq.set_entrypoint('a', paused => true);
SELECT id, entrypoint FROM pgq.dequeue('{a,b}', 10);
SELECT count(*) AS from_paused FROM pgq.dequeue('{a}', 10);
SELECT pgq.set_entrypoint('a', paused => false);
SELECT id, entrypoint FROM pgq.dequeue('{a}', 10);

-- Concurrency limit: never more running jobs than the limit, whatever the batch size.
SELECT pgq_test.reset();
SELECT pgq.set_entrypoint('lim', concurrency_limit => 2, jitter => 0);
SELECT count(*) FROM pgq.enqueue_many(array_fill('lim'::text, ARRAY[5]), NULL);
INSERT INTO pgq_test.held SELECT * FROM pgq.dequeue('{lim}', 5) RETURNING id;
SELECT count(*) AS over_limit FROM pgq.dequeue('{lim}', 5);
-- A finished job frees a slot.
SELECT pgq.complete(1, pgq_test.token(1));
INSERT INTO pgq_test.held SELECT * FROM pgq.dequeue('{lim}', 5) RETURNING id;
SELECT count(*) AS over_limit FROM pgq.dequeue('{lim}', 5);
-- The limit binds one entrypoint only; others in the same call fill the batch.
SELECT pgq.enqueue('a');
SELECT id, entrypoint FROM pgq.dequeue('{a,lim}', 5);
-- Raising the limit (or 0 = unlimited) lets more run.
SELECT pgq.set_entrypoint('lim', concurrency_limit => 3);
SELECT id FROM pgq.dequeue('{lim}', 5);
SELECT pgq.set_entrypoint('lim', concurrency_limit => 0);
SELECT id FROM pgq.dequeue('{lim}', 5);
SELECT count(*) AS running FROM pgq.jobs WHERE entrypoint = 'lim' AND state = 'running';

-- Attempts count claims: a failed try comes back with attempt + 1; max_attempts is the
-- job's own or else the policy's.
SELECT pgq_test.reset();
SELECT pgq.set_entrypoint('a', max_attempts => 3, backoff_base => '0');
SELECT pgq.enqueue('a'), pgq.enqueue('a', max_attempts => 7);
INSERT INTO pgq_test.held SELECT * FROM pgq.dequeue('{a}', 5) RETURNING id, attempt, max_attempts;
SELECT pgq.fail(1, pgq_test.token(1), 'e1'), pgq.fail(2, pgq_test.token(2), 'e1');
INSERT INTO pgq_test.held SELECT * FROM pgq.dequeue('{a}', 5) RETURNING id, attempt, max_attempts;

-- Lease expiry: lease_duration, capped by the entrypoint's timeout; no cap when timeout is 0.
SELECT pgq_test.reset();
SELECT pgq.set_entrypoint('t', timeout => '1 minute');
SELECT pgq.set_entrypoint('n', timeout => '0');
SELECT pgq.enqueue('t'), pgq.enqueue('t'), pgq.enqueue('n');
SELECT id, lease_expires_at FROM pgq.dequeue('{t}', 1, lease_duration => '20 seconds');
SELECT id, lease_expires_at FROM pgq.dequeue('{t}', 1, lease_duration => '10 minutes');
SELECT id, lease_expires_at FROM pgq.dequeue('{n}', 1, lease_duration => '10 minutes');
SELECT id, lease_expires_at, timeout_at FROM pgq.jobs ORDER BY id;

-- dequeue reaps expired leases first: the job is claimed again, attempt 2, new token.
SELECT pgq_test.reset();
SELECT pgq.set_entrypoint('a', backoff_base => '0', jitter => 0);
SELECT pgq.enqueue('a');
INSERT INTO pgq_test.held SELECT * FROM pgq.dequeue('{a}', 1, 'w1') RETURNING id, attempt;
SELECT count(*) AS lease_still_valid FROM pgq.dequeue('{a}', 1, 'w2');
SELECT pgq_test.advance('30 seconds');
INSERT INTO pgq_test.held SELECT * FROM pgq.dequeue('{a}', 1, 'w2') RETURNING id, attempt;
SELECT pgq_test.token(1, 1) <> pgq_test.token(1, 2) AS new_token;
SELECT id, worker_id, attempt, error FROM pgq_test.jobs;

-- Bad input raises a clear error and changes nothing (not even the reaping it starts with).
SELECT pgq_test.advance('1 hour');
SELECT count(*) AS expired FROM pgq.jobs WHERE lease_expires_at <= pgq.now();
SELECT pgq_test.digest() AS before \gset
SELECT * FROM pgq.dequeue(NULL);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT * FROM pgq.dequeue('{}');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT * FROM pgq.dequeue(ARRAY['a', NULL]);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT * FROM pgq.dequeue(ARRAY['']);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT * FROM pgq.dequeue('{a}', 0);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT * FROM pgq.dequeue('{a}', -1);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT * FROM pgq.dequeue('{a}', NULL);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT * FROM pgq.dequeue('{a}', 10001);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT * FROM pgq.dequeue('{a}', 2147483647);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT * FROM pgq.dequeue('{a}', 1, lease_duration => '0');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT * FROM pgq.dequeue('{a}', 1, lease_duration => '-5 seconds');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT * FROM pgq.dequeue('{a}', 1, lease_duration => NULL);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq_test.digest() = :'before' AS unchanged;
-- A limited entrypoint can only be claimed under READ COMMITTED (the count must see commits).
SELECT pgq.set_entrypoint('lim', concurrency_limit => 1);
SELECT pgq_test.digest() AS before \gset
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT * FROM pgq.dequeue('{lim}');
ROLLBACK;
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq_test.digest() = :'before' AS unchanged;
