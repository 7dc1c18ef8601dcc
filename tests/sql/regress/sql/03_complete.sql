-- complete / complete_many: only the holder of the current lease finishes a job; anything
-- else returns false / is not counted and changes nothing.
\set VERBOSITY terse
SELECT pgq_test.start();
SELECT pgq.set_entrypoint('a', jitter => 0, backoff_base => '0');

SELECT count(*) FROM pgq.enqueue_many(ARRAY['a', 'a', 'a'],
                                      ARRAY['{"n": 1}', '{"n": 2}', '{"n": 3}']::jsonb[],
                                      dedupe_keys => ARRAY['d1', NULL, NULL]);
INSERT INTO pgq_test.held SELECT * FROM pgq.dequeue('{a}', 3, 'w1') RETURNING id, attempt;

-- Wrong token, NULL token, a job that is not running, an unknown job: false, nothing changed.
SELECT pgq.enqueue('a', '{"n": 4}');
SELECT pgq_test.digest() AS before \gset
SELECT pgq.complete(1, gen_random_uuid()) AS wrong_token;
SELECT pgq.complete(1, NULL) AS null_token;
SELECT pgq.complete(1, pgq_test.token(2)) AS other_jobs_token;
SELECT pgq.complete(4, gen_random_uuid()) AS queued_job;
SELECT pgq.complete(4, NULL) AS queued_job_null_token;
SELECT pgq.complete(999, gen_random_uuid()) AS unknown_job;
SELECT pgq.complete(NULL, pgq_test.token(1)) AS null_job;
SELECT pgq_test.digest() = :'before' AS unchanged;

-- The holder finishes it: succeeded, moved to history with its result; the key is freed.
SELECT pgq_test.advance('3 seconds');
SELECT pgq.complete(1, pgq_test.token(1), '{"ok": true}') AS completed;
SELECT id, state, attempt, worker_id, started_at, finished_at, error, result, payload, dedupe_key
FROM pgq.job_history;
SELECT count(*) AS still_live FROM pgq.jobs WHERE id = 1;
-- Completing again (same token) is stale: false, nothing changed.
SELECT pgq_test.digest() AS before \gset
SELECT pgq.complete(1, pgq_test.token(1), '{"ok": "again"}') AS twice;
SELECT pgq_test.digest() = :'before' AS unchanged;

-- A token from before the lease expired and the job was reclaimed is stale.
SELECT pgq_test.advance('30 seconds');
INSERT INTO pgq_test.held SELECT * FROM pgq.dequeue('{a}', 1, 'w2') RETURNING id, attempt;
SELECT id, state, attempt, worker_id FROM pgq.jobs WHERE id = 2;
SELECT pgq_test.digest() AS before \gset
SELECT pgq.complete(2, pgq_test.token(2, 1)) AS old_token;
SELECT pgq_test.digest() = :'before' AS unchanged;
SELECT pgq.complete(2, pgq_test.token(2, 2)) AS new_token;
SELECT id, state, attempt, worker_id FROM pgq.job_history WHERE id = 2;

-- (That dequeue reaped job 3 as well: its lease had expired too.)
SELECT id, state, attempt, error FROM pgq_test.jobs WHERE id = 3;

-- An expired lease that nobody reaped yet is over all the same: complete returns false and
-- records the lapse as the reaper would.
SELECT pgq.enqueue('a', '{"n": 5}') AS id5;
INSERT INTO pgq_test.held SELECT * FROM pgq.dequeue('{a}', 1, 'w3') RETURNING id, attempt;
INSERT INTO pgq_test.held SELECT * FROM pgq.dequeue('{a}', 1, 'w3') RETURNING id, attempt;
SELECT pgq_test.advance('1 minute');
SELECT id, lease_expires_at < pgq.now() AS expired FROM pgq.jobs WHERE state = 'running' ORDER BY id;
SELECT pgq.complete(3, pgq_test.token(3)) AS expired_but_not_reaped;
SELECT id, state, attempt, error FROM pgq_test.jobs WHERE id = 3;

-- complete_many: returns the ids it finished; stale entries are skipped.
SELECT pgq_test.reset();
SELECT count(*) FROM pgq.enqueue_many(array_fill('a'::text, ARRAY[5]), NULL);
INSERT INTO pgq_test.held SELECT * FROM pgq.dequeue('{a}', 4) RETURNING id;
SELECT pgq.complete_many(ARRAY[1, 2, 3, 5, 999, 1],
                         ARRAY[pgq_test.token(1), pgq_test.token(2), gen_random_uuid(),
                               gen_random_uuid(), gen_random_uuid(), pgq_test.token(1)],
                         ARRAY['{"r": 1}', NULL, '{"r": 3}', '{"r": 5}', '{}', '{"r": 1}']::jsonb[])
       AS completed;
SELECT id, state, result FROM pgq_test.jobs ORDER BY id;
-- Without results; empty arrays; NULL arrays.
SELECT pgq.complete_many(ARRAY[3], ARRAY[pgq_test.token(3)]) AS completed;
SELECT pgq.complete_many('{}', '{}') AS empty;
SELECT pgq.complete_many(NULL, NULL) AS nulls;
SELECT id, state, result FROM pgq_test.jobs ORDER BY id;

-- Arrays of different lengths raise and change nothing.
SELECT pgq_test.digest() AS before \gset
SELECT pgq.complete_many(ARRAY[4], '{}');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq.complete_many(ARRAY[4, 5], ARRAY[pgq_test.token(4)]);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq.complete_many(ARRAY[4], NULL);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq.complete_many(ARRAY[4], ARRAY[pgq_test.token(4)], ARRAY['{}', '{}']::jsonb[]);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq.complete_many(ARRAY[4], ARRAY[pgq_test.token(4)], '{}');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq_test.digest() = :'before' AS unchanged;
