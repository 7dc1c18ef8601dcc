-- cancel (waiting jobs end at once; running ones get a request) and retry (failed or cancelled
-- jobs come back, same id, fresh attempt budget).
\set VERBOSITY terse
SELECT pgq_test.start();
SELECT pgq.set_entrypoint('a', max_attempts => 2, backoff_base => '0', jitter => 0);

SELECT count(*) FROM pgq.enqueue_many(array_fill('a'::text, ARRAY[5]), NULL,
    run_ats => ARRAY[NULL, '2030-02-01', NULL, NULL, NULL]::timestamptz[],
    dedupe_keys => ARRAY['k1', NULL, NULL, NULL, NULL]);
INSERT INTO pgq_test.held SELECT * FROM pgq.dequeue('{a}', 1, 'w1') RETURNING id;
INSERT INTO pgq_test.held SELECT * FROM pgq.dequeue('{a}', 1, 'w1') RETURNING id;
SELECT id, state FROM pgq.jobs ORDER BY id;

-- A scheduled or queued job is cancelled at once.
SELECT pgq.cancel(2) AS scheduled, pgq.cancel(4) AS queued;
-- A running job gets a cancel request and keeps running until its holder reacts.
SELECT pgq.cancel(3) AS running;
SELECT id, state, cancel_requested, leased FROM pgq_test.jobs ORDER BY id;
-- Asking again is harmless.
SELECT pgq.cancel(3) AS running_again;
-- Finished or unknown jobs: false, nothing changed.
SELECT pgq_test.digest() AS before \gset
SELECT pgq.cancel(2) AS already_cancelled, pgq.cancel(999) AS unknown, pgq.cancel(NULL) AS null_id;
SELECT pgq_test.digest() = :'before' AS unchanged;
-- The holder learns it from heartbeat; completing ends the job as cancelled and answers false.
SELECT * FROM pgq.heartbeat(ARRAY[3], ARRAY[pgq_test.token(3)]) AS not_held;
SELECT pgq.complete(3, pgq_test.token(3), '{"partial": true}') AS completed;
SELECT id, state, attempt, error, result FROM pgq.job_history WHERE id = 3;
-- ... or fail() answers 'cancelled' (no retry).
SELECT pgq.cancel(1);
SELECT pgq.fail(1, pgq_test.token(1), 'stopped') AS outcome;
SELECT id, state, attempt, error, result FROM pgq.job_history ORDER BY id;
-- A completed job cannot be cancelled.
INSERT INTO pgq_test.held SELECT * FROM pgq.dequeue('{a}', 1, 'w1') RETURNING id;
SELECT pgq.complete(5, pgq_test.token(5));
SELECT pgq.cancel(5) AS succeeded;

-- retry: a failed job comes back queued, runnable now, same id, attempt 0, last error kept.
SELECT pgq_test.reset();
SET pgq.now = '2030-01-01 00:00:00+00';
SELECT pgq.enqueue('a', '{"n": 1}', priority => 7, dedupe_key => 'k1', max_attempts => 1);
INSERT INTO pgq_test.held SELECT * FROM pgq.dequeue('{a}', 1, 'w1') RETURNING id, attempt;
SELECT pgq.fail(1, pgq_test.token(1), 'broken');
SELECT pgq_test.advance('1 hour');
SELECT pgq.retry(1);
SELECT id, state, priority, attempt, max_attempts, dedupe_key, run_at, leased, error, payload
FROM pgq_test.jobs;
SELECT count(*) AS history_rows FROM pgq.job_history;
-- Its attempt budget is fresh: it runs (attempt 1 again) and can fail again.
INSERT INTO pgq_test.held SELECT * FROM pgq.dequeue('{a}', 1, 'w2') RETURNING id, attempt, max_attempts;
SELECT pgq.fail(1, pgq_test.token(1), 'still broken');
SELECT id, state, attempt, error FROM pgq_test.jobs;
-- A cancelled job can be retried too.
SELECT pgq.enqueue('a') AS id2;
SELECT pgq.cancel(2);
SELECT pgq.retry(2);
SELECT id, state, attempt FROM pgq_test.jobs WHERE id = 2;

-- What cannot be retried raises, and nothing changes.
INSERT INTO pgq_test.held SELECT * FROM pgq.dequeue('{a}', 1) RETURNING id;
SELECT pgq.complete(2, pgq_test.token(2)) AS completed;
SELECT pgq.enqueue('a') AS id3;
SELECT pgq_test.digest() AS before \gset
SELECT pgq.retry(2);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq.retry(3);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq_test.digest() = :'before' AS unchanged;
INSERT INTO pgq_test.held SELECT * FROM pgq.dequeue('{a}', 1) RETURNING id;
SELECT pgq_test.digest() AS before \gset
SELECT pgq.retry(3);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq.retry(999);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq.retry(NULL);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq_test.digest() = :'before' AS unchanged;
-- A failed job whose dedupe key is now held by a live job cannot come back: it stays failed.
SELECT pgq.enqueue('a', dedupe_key => 'k1') AS new_k1 \gset
SELECT :new_k1 <> 1 AS new_job;
SELECT pgq_test.digest() AS before \gset
SELECT pgq.retry(1);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq_test.digest() = :'before' AS unchanged;
SELECT id, state, dedupe_key FROM pgq_test.jobs WHERE dedupe_key = 'k1' ORDER BY id;
-- Once the key is free again, the retry works.
SELECT pgq.cancel(:new_k1);
SELECT pgq.retry(1);
SELECT id, state FROM pgq.jobs WHERE dedupe_key = 'k1';
