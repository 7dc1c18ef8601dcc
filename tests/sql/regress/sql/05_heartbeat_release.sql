-- heartbeat (extends held leases, never past the timeout; returns the ids no longer held) and
-- release (graceful shutdown: back to queued, attempt not counted).
\set VERBOSITY terse
SELECT pgq_test.start();
SELECT pgq.set_entrypoint('a', timeout => '2 minutes', backoff_base => '0', jitter => 0);

SELECT count(*) FROM pgq.enqueue_many(array_fill('a'::text, ARRAY[4]), NULL);
INSERT INTO pgq_test.held SELECT * FROM pgq.dequeue('{a}', 3, 'w1') RETURNING id, lease_expires_at;

-- Held leases are extended to now + lease_duration; nothing is returned.
SELECT pgq_test.advance('20 seconds');
SELECT count(*) AS not_held
FROM pgq.heartbeat(ARRAY[1, 2], ARRAY[pgq_test.token(1), pgq_test.token(2)]);
SELECT count(*) AS not_held
FROM pgq.heartbeat(ARRAY[3], ARRAY[pgq_test.token(3)], '50 seconds');
SELECT id, lease_expires_at, timeout_at FROM pgq.jobs WHERE state = 'running' ORDER BY id;

-- Never past the entrypoint's timeout (2 minutes after the claim).
SELECT count(*) AS not_held
FROM pgq.heartbeat(ARRAY[1], ARRAY[pgq_test.token(1)], '1 hour');
SELECT id, lease_expires_at, timeout_at FROM pgq.jobs WHERE id = 1;

-- The ids the caller does not hold come back, once each: wrong token, a queued job, an unknown
-- job, a cancel-requested job. Job 2 is listed with a wrong token and with its own: still held.
SELECT pgq.cancel(3);
SELECT * FROM pgq.heartbeat(ARRAY[2, 2, 4, 999, 3, 2],
                            ARRAY[gen_random_uuid(), pgq_test.token(2), gen_random_uuid(),
                                  gen_random_uuid(), pgq_test.token(3), pgq_test.token(2)])
              AS not_held ORDER BY 1;
SELECT id, lease_expires_at, cancel_requested FROM pgq.jobs WHERE state = 'running' ORDER BY id;
-- A finished job is not held either.
SELECT pgq.complete(2, pgq_test.token(2));
SELECT * FROM pgq.heartbeat(ARRAY[2], ARRAY[pgq_test.token(2)]) AS not_held;

-- Once the timeout has passed, the claim is over: the heartbeat records the timeout itself, as
-- the reaper would, and the reaper finds nothing left of it.
SELECT pgq_test.advance('100 seconds');
SELECT * FROM pgq.heartbeat(ARRAY[1], ARRAY[pgq_test.token(1)], '1 hour') AS not_held;
SELECT id, lease_expires_at FROM pgq.jobs WHERE id = 1;
-- A job that was reaped and claimed again is not held by the first token.
SELECT pgq.reap();
INSERT INTO pgq_test.held SELECT * FROM pgq.dequeue('{a}', 1, 'w2') RETURNING id, attempt;
SELECT * FROM pgq.heartbeat(ARRAY[1], ARRAY[pgq_test.token(1, 1)]) AS not_held;
SELECT count(*) AS not_held FROM pgq.heartbeat(ARRAY[1], ARRAY[pgq_test.token(1, 2)]);
-- No ids: nothing.
SELECT count(*) AS not_held FROM pgq.heartbeat('{}', '{}');

-- Bad input raises and changes nothing.
SELECT pgq_test.digest() AS before \gset
SELECT * FROM pgq.heartbeat(ARRAY[1, 2], ARRAY[pgq_test.token(1)]);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT * FROM pgq.heartbeat(ARRAY[1], NULL);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT * FROM pgq.heartbeat(ARRAY[1], ARRAY[pgq_test.token(1)], '0');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT * FROM pgq.heartbeat(ARRAY[1], ARRAY[pgq_test.token(1)], '-1 second');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT * FROM pgq.heartbeat(ARRAY[1], ARRAY[pgq_test.token(1)], NULL);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq_test.digest() = :'before' AS unchanged;

-- release: held jobs go back to queued, runnable now, the attempt not counted, lease cleared.
SELECT pgq_test.reset();
SET pgq.now = '2030-01-01 00:00:00+00';
SELECT count(*) FROM pgq.enqueue_many(array_fill('a'::text, ARRAY[4]), NULL,
                                      run_ats => ARRAY['2029-01-01', NULL, NULL, NULL]::timestamptz[]);
INSERT INTO pgq_test.held SELECT * FROM pgq.dequeue('{a}', 4, 'w1') RETURNING id, attempt;
SELECT pgq_test.advance('10 seconds');
SELECT pgq.cancel(4);
SELECT pgq.release(ARRAY[1, 2, 3, 4],
                   ARRAY[pgq_test.token(1), pgq_test.token(2), gen_random_uuid(), pgq_test.token(4)])
       AS released;
SELECT id, state, attempt, run_at, leased, lease_expires_at, worker_id, error
FROM pgq_test.jobs ORDER BY id;
SELECT id, started_at FROM pgq.jobs ORDER BY id;
-- The released jobs are claimed again with the same attempt number.
INSERT INTO pgq_test.held SELECT * FROM pgq.dequeue('{a}', 4, 'w2') RETURNING id, attempt;
-- A stale token releases nothing and changes nothing.
SELECT pgq_test.digest() AS before \gset
SELECT pgq.release(ARRAY[1, 2], ARRAY[pgq_test.token(1, 1), gen_random_uuid()]) AS released;
SELECT pgq.release('{}', '{}') AS released;
SELECT pgq.release(ARRAY[1], ARRAY[pgq_test.token(1), pgq_test.token(2)]);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq.release(ARRAY[1], NULL);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq_test.digest() = :'before' AS unchanged;
