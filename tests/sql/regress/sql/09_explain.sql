-- explain_job: one line for each reason a job is (not) running, and for finished jobs.
\set VERBOSITY terse
SELECT pgq_test.start();
SELECT pgq.set_entrypoint('a', max_attempts => 2, backoff_base => '1 minute', jitter => 0);
SELECT pgq.set_entrypoint('lim', concurrency_limit => 2, jitter => 0);
SELECT pgq.set_entrypoint('p', paused => true);

-- Unknown.
SELECT pgq.explain_job(999);
-- Ready, with the jobs ahead of it (higher priority, or same priority and older).
SELECT count(*) FROM pgq.enqueue_many(ARRAY['a', 'a', 'a', 'a'], NULL, priorities => ARRAY[0, 5, 0, 0]);
SELECT id, pgq.explain_job(id) FROM generate_series(1, 4) AS id;
-- Scheduled: not due until run_at.
SELECT pgq.enqueue('a', run_at => '2030-01-01 00:05:00+00');
SELECT pgq.explain_job(5);
-- Running: attempt, worker (or unnamed), lease end, a pending cancel.
INSERT INTO pgq_test.held SELECT * FROM pgq.dequeue('{a}', 1, 'worker-7') RETURNING id;
INSERT INTO pgq_test.held SELECT * FROM pgq.dequeue('{a}', 1) RETURNING id;
SELECT pgq.explain_job(2);
SELECT pgq.explain_job(1);
SELECT pgq.cancel(1);
SELECT pgq.explain_job(1);
-- Waiting for a retry after a failure.
SELECT pgq.fail(2, pgq_test.token(2), 'smtp down');
SELECT pgq.explain_job(2);
-- Paused entrypoint.
SELECT pgq.enqueue('p');
SELECT pgq.explain_job(6);
-- Concurrency limit reached, with the running jobs named.
SELECT count(*) FROM pgq.enqueue_many(ARRAY['lim', 'lim', 'lim'], NULL);
INSERT INTO pgq_test.held SELECT * FROM pgq.dequeue('{lim}', 3) RETURNING id;
SELECT pgq.explain_job(9);
-- Finished: succeeded, failed with its error, cancelled.
SELECT pgq.complete(7, pgq_test.token(7));
SELECT pgq.explain_job(7);
SELECT pgq.explain_job(9);
SELECT pgq_test.advance('1 minute');
INSERT INTO pgq_test.held SELECT * FROM pgq.dequeue('{a}', 1, 'worker-7') RETURNING id, attempt;
SELECT pgq.fail(2, pgq_test.token(2), 'smtp still down');
SELECT pgq.explain_job(2);
-- Job 1's lease ran out while its cancel was pending: that dequeue's reaper ended it as
-- cancelled (error 'timeout'); its holder's late completion is stale.
SELECT pgq.complete(1, pgq_test.token(1));
SELECT pgq.explain_job(1);
SELECT pgq.cancel(3);
SELECT pgq.explain_job(3);
SELECT pgq.explain_job(NULL);

-- version: the number of the last applied migration.
SELECT pgq.version() = (SELECT max(version)::text FROM pgq.migrations) AS version_matches,
       pgq.version() ~ '^[1-9][0-9]*$' AS is_a_number;
