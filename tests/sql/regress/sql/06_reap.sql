-- reap: running jobs past their lease or timeout fail through the retry path (attempt counted,
-- backoff, dead letter) with 'timeout' when the lease ran to the timeout, else 'worker lost: <id>'
-- and a backoff spread over 0.5 to 1.5 times its length; a cancel-requested one ends cancelled.
\set VERBOSITY terse
SELECT pgq_test.start();
SELECT pgq.set_entrypoint('a', max_attempts => 2, backoff_base => '10 seconds', backoff_factor => 3,
                          timeout => '0', jitter => 0);
SELECT pgq.set_entrypoint('t', max_attempts => 5, backoff_base => '0', timeout => '20 seconds',
                          jitter => 0);

-- Nothing running: nothing reaped.
SELECT pgq.reap();

SELECT count(*) FROM pgq.enqueue_many(ARRAY['a', 'a', 'a', 't'], NULL);
INSERT INTO pgq_test.held SELECT * FROM pgq.dequeue('{a}', 1, 'w1', '10 seconds') RETURNING id, lease_expires_at;
INSERT INTO pgq_test.held SELECT * FROM pgq.dequeue('{a}', 1, 'w1', '40 seconds') RETURNING id, lease_expires_at;
INSERT INTO pgq_test.held SELECT * FROM pgq.dequeue('{a}', 1, 'w1', '1 hour') RETURNING id, lease_expires_at;
-- The lease of a job with a timeout is capped at the timeout; the reaper finds it there.
INSERT INTO pgq_test.held SELECT * FROM pgq.dequeue('{t}', 1, 'w1', '1 hour') RETURNING id, lease_expires_at;

-- Leases still valid: nothing reaped (a lease expires at lease_expires_at itself).
SELECT pgq_test.advance('9 seconds');
SELECT pgq.reap();
SELECT pgq_test.advance('1 second');
-- Job 1's lease expired: its worker is lost; retried after the spread backoff (attempt counted).
SELECT pgq.reap();
SELECT id, state, attempt,
       CASE WHEN leased THEN (run_at - pgq.now())::text
            ELSE (run_at - pgq.now() BETWEEN '5 seconds' AND '15 seconds')::text END AS delay,
       leased, error
FROM pgq_test.jobs ORDER BY id;
-- Job 4 ran into its 20 s timeout although it asked for a 1 hour lease. (15 s: past job 1's
-- spread backoff too, whatever its draw.)
SELECT pgq_test.advance('15 seconds');
SELECT pgq.reap();
SELECT id, state, attempt, error FROM pgq_test.jobs WHERE id = 4;
-- A reaped lease is stale: its holder can neither complete nor fail the job.
SELECT pgq_test.digest() AS before \gset
SELECT pgq.complete(1, pgq_test.token(1)) AS complete, pgq.fail(4, pgq_test.token(4), 'late') AS fail;
SELECT pgq_test.digest() = :'before' AS unchanged;

-- Job 1 is claimed again (attempt 2 = max_attempts); when that lease expires too, it is
-- dead-lettered as failed with 'timeout'.
INSERT INTO pgq_test.held SELECT * FROM pgq.dequeue('{a}', 1, 'w2', '5 seconds') RETURNING id, attempt;
SELECT pgq_test.advance('5 seconds');
SELECT pgq.reap();
SELECT id, state, attempt, worker_id, error, finished_at FROM pgq.job_history ORDER BY id;

-- A cancel-requested job whose lease expires ends as cancelled (no retry).
SELECT pgq.cancel(3);
SELECT pgq_test.advance('1 hour');
SELECT pgq.reap();
SELECT id, state, attempt, error FROM pgq_test.jobs ORDER BY id;

-- max_jobs bounds one call; the leases that expired first go first.
SELECT pgq_test.reset();
SET pgq.now = '2030-01-01 00:00:00+00';
SELECT pgq.set_entrypoint('a', backoff_base => '0', jitter => 0);
SELECT count(*) FROM pgq.enqueue_many(array_fill('a'::text, ARRAY[3]), NULL);
SELECT id FROM pgq.dequeue('{a}', 1, lease_duration => '30 seconds');
SELECT id FROM pgq.dequeue('{a}', 1, lease_duration => '10 seconds');
SELECT id FROM pgq.dequeue('{a}', 1, lease_duration => '20 seconds');
SELECT pgq_test.advance('1 minute');
SELECT pgq.reap(2);
SELECT id, state, attempt, error FROM pgq_test.jobs ORDER BY id;
SELECT pgq.reap(0);
SELECT pgq.reap();
SELECT pgq.reap();
-- A negative or NULL max_jobs is an error, and changes nothing.
SELECT pgq.reap(-1);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq.reap(NULL);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq.promote_due(-1);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
