-- enqueue / enqueue_many: defaults, priority, run_at, headers, max_attempts, dedupe, bad input.
\set VERBOSITY terse
SELECT pgq_test.start();

-- The version is the number of the last migration (printed as a check, not a number).
SELECT pgq.version() = (SELECT max(version)::text FROM pgq.migrations) AS version_ok;

-- Defaults: queued now, priority 0, attempt 0, max_attempts from the policy, empty payload/headers.
SELECT pgq.enqueue('mail');
SELECT id, entrypoint, state, priority, attempt, max_attempts, dedupe_key, run_at, leased,
       payload, headers
FROM pgq_test.jobs;
-- The first job of an entrypoint creates its policy row with the table's defaults.
SELECT name, concurrency_limit, max_attempts, timeout, backoff_base, backoff_factor, backoff_max,
       jitter, paused
FROM pgq.entrypoints;

-- Every argument, by name.
SELECT pgq.enqueue('mail', payload => '{"to": "a@b.c"}', priority => 5,
                   headers => '{"trace": "t1"}', max_attempts => 2);
-- run_at in the future is scheduled; now or in the past is queued (run_at kept).
SELECT pgq.enqueue('mail', run_at => '2030-01-01 00:10:00+00');
SELECT pgq.enqueue('mail', run_at => '2030-01-01 00:00:00+00');
SELECT pgq.enqueue('mail', run_at => '2029-12-31 00:00:00+00');
-- A NULL priority or payload means the default.
SELECT pgq.enqueue('mail', payload => NULL, priority => NULL);
SELECT id, state, priority, max_attempts, run_at, payload, headers
FROM pgq_test.jobs ORDER BY id;

-- Dedupe: a key held by a live job returns that job's id and inserts nothing.
SELECT pgq.set_entrypoint('dd', jitter => 0, backoff_base => '0', max_attempts => 1);
SELECT pgq.enqueue('dd', '{"n": 1}', dedupe_key => 'k1') AS first;
SELECT pgq.enqueue('dd', '{"n": 2}', priority => 9, dedupe_key => 'k1') AS again;
SELECT id, priority, payload FROM pgq.jobs WHERE dedupe_key = 'k1';
-- A scheduled job holds its key too.
SELECT pgq.enqueue('dd', run_at => '2030-01-02 00:00:00+00', dedupe_key => 'k2') AS scheduled;
SELECT pgq.enqueue('dd', dedupe_key => 'k2') AS again;
-- The key is global: another entrypoint's live job with the same key answers too.
SELECT pgq.enqueue('sms', dedupe_key => 'k1') AS other_entrypoint;
SELECT count(*) AS sms_jobs FROM pgq.jobs WHERE entrypoint = 'sms';
-- A running job holds its key.
INSERT INTO pgq_test.held SELECT * FROM pgq.dequeue('{dd}', 1) RETURNING id, priority, attempt;
SELECT pgq.enqueue('dd', dedupe_key => 'k1') AS while_running;
-- Once the job finished (succeeded, failed or cancelled), the key is free: a new job is inserted.
SELECT pgq.complete(7, pgq_test.token(7));
SELECT pgq.enqueue('dd', dedupe_key => 'k1') AS second \gset
SELECT :second > 7 AS new_job_after_success;
INSERT INTO pgq_test.held SELECT * FROM pgq.dequeue('{dd}', 1) RETURNING id = :second AS second_claimed;
SELECT pgq.fail(:second, pgq_test.token(:second), 'boom');
SELECT pgq.enqueue('dd', dedupe_key => 'k1') AS third \gset
SELECT :third > :second AS new_job_after_failure;
SELECT pgq.cancel(:third);
SELECT pgq.enqueue('dd', dedupe_key => 'k1') AS fourth \gset
SELECT :fourth > :third AS new_job_after_cancel;
SELECT pgq.enqueue('dd', dedupe_key => 'k1') = :fourth AS deduped_again;
SELECT state, count(*) FROM pgq_test.jobs WHERE dedupe_key = 'k1' GROUP BY state ORDER BY state;

-- enqueue_many: ids in input order, per-row options, NULL elements mean the default.
SELECT pgq_test.reset();
SELECT * FROM pgq.enqueue_many(
    ARRAY['b', 'a', 'b'],
    ARRAY['{"i": 1}', '{"i": 2}', NULL]::jsonb[],
    priorities => ARRAY[1, NULL, 3],
    run_ats => ARRAY[NULL, '2030-01-01 01:00:00+00', NULL]::timestamptz[],
    headers => ARRAY['{"h": 1}', NULL, '{}']::jsonb[],
    max_attempts => ARRAY[NULL, 3, 1]) WITH ORDINALITY AS e(id, ord);
SELECT id, entrypoint, state, priority, max_attempts, run_at, payload, headers
FROM pgq_test.jobs ORDER BY id;
-- Only the payloads are needed.
SELECT * FROM pgq.enqueue_many(ARRAY['a', 'a'], NULL) WITH ORDINALITY AS e(id, ord);
-- Dedupe within one batch: a repeated key answers with the first row's id.
SELECT * FROM pgq.enqueue_many(ARRAY['a', 'a', 'a', 'a'],
                               ARRAY['{"n": 1}', '{"n": 2}', '{"n": 3}', '{"n": 4}']::jsonb[],
                               dedupe_keys => ARRAY['x', NULL, 'x', 'y']) WITH ORDINALITY AS e(id, ord);
SELECT id, dedupe_key, payload FROM pgq.jobs WHERE id > 5 ORDER BY id;
-- ... and a key held by a live job answers with that job's id.
SELECT * FROM pgq.enqueue_many(ARRAY['a', 'a'], NULL, dedupe_keys => ARRAY['new', 'y'])
    WITH ORDINALITY AS e(id, ord);
SELECT count(*) AS live_jobs FROM pgq.jobs;

-- Bad input raises a clear error and changes nothing.
SELECT pgq_test.digest() AS before \gset
SELECT pgq.enqueue(NULL);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq.enqueue('');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq.enqueue('   ');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq.enqueue('a', max_attempts => 0);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq.enqueue('a', max_attempts => -1);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq.enqueue('a', headers => '["not", "an", "object"]');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq.enqueue('a', payload => '{"n": 1}', headers => '"text"');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq.enqueue_many(NULL, NULL);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq.enqueue_many(ARRAY['a', NULL], NULL);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq.enqueue_many(ARRAY['a', ''], NULL);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq.enqueue_many(ARRAY['a', 'a'], ARRAY['{}']::jsonb[]);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq.enqueue_many(ARRAY['a', 'a'], NULL, priorities => ARRAY[1, 2, 3]);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq.enqueue_many(ARRAY['a', 'a'], NULL, run_ats => ARRAY[now()]);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq.enqueue_many(ARRAY['a', 'a'], NULL, dedupe_keys => ARRAY['k']);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq.enqueue_many(ARRAY['a', 'a'], NULL, headers => ARRAY['{}']::jsonb[]);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq.enqueue_many(ARRAY['a', 'a'], NULL, max_attempts => ARRAY[1]);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq.enqueue_many(ARRAY['new_entrypoint', 'a'], NULL, max_attempts => ARRAY[1, 0]);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq_test.digest() = :'before' AS unchanged;
SELECT count(*) AS new_entrypoint_rows FROM pgq.entrypoints WHERE name = 'new_entrypoint';
