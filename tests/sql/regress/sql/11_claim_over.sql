-- One rule for a claim that is over (lease lapsed, timeout reached): complete, complete_many,
-- fail, fail_many, renew, heartbeat and release record it exactly as pgq.reap would, in their own
-- statement, and tell the caller (false / 'stale' / not returned / gone with its reason). Plus the
-- claim contract: pgq.claim's timeout_at and row order, pgq.renew's answer, complete_many's ids,
-- the result size cap, pgq.next_due.
\set VERBOSITY terse
SELECT pgq_test.start();
SELECT pgq.set_entrypoint('a', timeout => '60 seconds', jitter => 0, backoff_base => '10 seconds');
SELECT pgq.set_entrypoint('b', timeout => NULL, jitter => 0, backoff_base => '10 seconds');

-- claim: rows in claim order (priority, then FIFO, across entrypoints), with timeout_at;
-- the lease never outlives the timeout.
SELECT count(*) FROM pgq.enqueue_many(ARRAY['a', 'b', 'a', 'b'], NULL, priorities => ARRAY[0, 5, 5, 0]);
SELECT c.id, c.entrypoint, c.priority, c.lease_expires_at, c.timeout_at
FROM pgq.claim('{a,b}', 4, 'w1', '90 seconds') AS c;
SELECT pgq_test.reset();

-- The same history twice: once reaped before the holder's late call, once not. Each outcome
-- function, given a claim past its timeout, leaves the job exactly as the reap does.
CREATE TEMP TABLE outcome (via text, reaped_first boolean, answer text, digest text);
CREATE FUNCTION pg_temp.run(via text, reaped_first boolean) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_token uuid;
    v_answer text;
BEGIN
    PERFORM pgq_test.reset();
    PERFORM set_config('pgq.now', '2030-01-01 00:00:00+00', false);
    PERFORM pgq.set_entrypoint('a', timeout => '60 seconds', jitter => 0, backoff_base => '10 seconds');
    PERFORM pgq.enqueue('a', '{"n": 1}');
    SELECT c.lease_token INTO v_token FROM pgq.claim('{a}', 1, 'w1', '90 seconds') AS c;
    PERFORM set_config('pgq.now', '2030-01-01 00:01:00+00', false);  -- exactly at timeout_at
    IF reaped_first THEN
        PERFORM pgq.reap();
    END IF;
    v_answer := CASE via
        WHEN 'complete' THEN pgq.complete(1, v_token, '{"late": true}')::text
        WHEN 'complete_many' THEN pgq.complete_many(ARRAY[1], ARRAY[v_token])::text
        WHEN 'fail' THEN pgq.fail(1, v_token, 'boom')
        WHEN 'fail_many' THEN (SELECT count(*) FROM pgq.fail_many(ARRAY[1], ARRAY[v_token], ARRAY['boom']))::text
        WHEN 'release' THEN pgq.release(ARRAY[1], ARRAY[v_token])::text
        WHEN 'renew' THEN (SELECT r::text FROM pgq.renew(ARRAY[1], ARRAY[v_token]) AS r)
        WHEN 'heartbeat' THEN (SELECT array_agg(h)::text FROM pgq.heartbeat(ARRAY[1], ARRAY[v_token]) AS h)
    END;
    INSERT INTO outcome VALUES (via, reaped_first, v_answer, pgq_test.digest());
END
$$;
SELECT pg_temp.run(v.via, r.first)
FROM unnest(ARRAY['complete', 'complete_many', 'fail', 'fail_many', 'release', 'renew', 'heartbeat']) AS v(via),
     unnest(ARRAY[false, true]) AS r(first);
SELECT via, reaped_first, answer FROM outcome ORDER BY via, reaped_first;
-- One outcome for all of them, whichever came first.
SELECT count(DISTINCT digest) AS outcomes FROM outcome;
SELECT id, state, run_at, attempt, last_error, lease_token IS NULL AS unleased FROM pgq.jobs;

-- One microsecond before the timeout the claim still holds: complete succeeds.
SELECT pgq_test.reset();
SELECT pgq.enqueue('a');
INSERT INTO pgq_test.held SELECT * FROM pgq.dequeue('{a}', 1, 'w1', '90 seconds');
SET pgq.now = '2030-01-01 00:00:59.999999+00';
SELECT pgq.complete(1, pgq_test.token(1)) AS completed;

-- A lease that lapsed before the timeout: its holder is recorded as lost, with its id, and
-- the retry is spread over 0.5 to 1.5 times its backoff (10 s here).
SELECT pgq_test.start();
SELECT pgq.set_entrypoint('a', timeout => '1 hour', jitter => 0, backoff_base => '10 seconds');
SELECT count(*) FROM pgq.enqueue_many(array_fill('a'::text, ARRAY[20]), NULL);
SELECT count(*) FROM pgq.claim('{a}', 10, 'w1', '30 seconds');
SELECT count(*) FROM pgq.claim('{a}', 10, NULL, '30 seconds');
SELECT pgq_test.advance('30 seconds');
SELECT pgq.reap() AS reaped;
SELECT last_error, count(*), min(run_at - pgq.now()) >= '5 seconds' AS min_ok,
       max(run_at - pgq.now()) <= '15 seconds' AS max_ok, count(DISTINCT run_at) > 1 AS spread
FROM pgq.jobs GROUP BY last_error ORDER BY last_error;

-- renew: per distinct job id, its new lease or why it is gone.
SELECT pgq_test.start();
SELECT pgq.set_entrypoint('a', timeout => '60 seconds', jitter => 0, backoff_base => '0');
SELECT count(*) FROM pgq.enqueue_many(array_fill('a'::text, ARRAY[5]), NULL);
INSERT INTO pgq_test.held SELECT * FROM pgq.dequeue('{a}', 4, 'w1', '20 seconds');
SELECT pgq.cancel(2);
SELECT pgq.complete(3, pgq_test.token(3));
SELECT pgq_test.advance('10 seconds');
SELECT * FROM pgq.renew(ARRAY[1, 2, 3, 5, 999, 1],
                        ARRAY[pgq_test.token(1), pgq_test.token(2), pgq_test.token(3),
                              gen_random_uuid(), gen_random_uuid(), pgq_test.token(1)], '30 seconds');
-- Job 4 was not renewed: its lease lapsed (worker lost); job 1's reaches its timeout.
SELECT pgq_test.advance('15 seconds');
SELECT * FROM pgq.renew(ARRAY[1, 4], ARRAY[pgq_test.token(1), pgq_test.token(4)], '1 hour');
SELECT pgq_test.advance('40 seconds');
SELECT * FROM pgq.renew(ARRAY[1, 4], ARRAY[pgq_test.token(1), pgq_test.token(4)]);
SELECT id, state, attempt, error FROM pgq_test.jobs ORDER BY id;

-- complete_many returns the ids it completed: not the stale, cancelled or lapsed ones.
SELECT pgq_test.start();
SELECT pgq.set_entrypoint('a', timeout => '60 seconds', jitter => 0, backoff_base => '0');
SELECT count(*) FROM pgq.enqueue_many(array_fill('a'::text, ARRAY[4]), NULL);
INSERT INTO pgq_test.held SELECT * FROM pgq.dequeue('{a}', 2, 'w1', '10 seconds');
SELECT pgq_test.advance('5 seconds');
INSERT INTO pgq_test.held SELECT * FROM pgq.dequeue('{a}', 2, 'w1', '10 seconds');
SELECT pgq.cancel(4);
SELECT pgq_test.advance('6 seconds');
SELECT pgq.complete_many(ARRAY[1, 2, 3, 4], ARRAY[pgq_test.token(1), gen_random_uuid(),
                                                  pgq_test.token(3), pgq_test.token(4)]) AS completed;
SELECT id, state, attempt, error FROM pgq_test.jobs ORDER BY id;

-- Results are capped like payloads: 54000, nothing changed.
SELECT pgq_test.start();
SELECT pgq.configure(max_result_bytes => 100);
SELECT pgq.enqueue('a');
INSERT INTO pgq_test.held SELECT * FROM pgq.dequeue('{a}', 1, 'w1');
SELECT pgq_test.digest() AS before \gset
SELECT pgq.complete(1, pgq_test.token(1), jsonb_build_object('big', repeat('x', 200)));
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq.complete_many(ARRAY[1], ARRAY[pgq_test.token(1)], ARRAY[jsonb_build_object('big', repeat('x', 200))]);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq_test.digest() = :'before' AS unchanged;
SELECT pgq.complete(1, pgq_test.token(1), '{"small": true}') AS completed;
SELECT pgq.configure(max_result_bytes => 0);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq.configure(max_result_bytes => 1048576);

-- next_due: the earliest scheduled job of the named entrypoints, or NULL.
SELECT pgq_test.start();
SELECT pgq.next_due('{a,b}') AS none;
SELECT count(*) FROM pgq.enqueue_many(ARRAY['a', 'b', 'c', 'a'], NULL,
    run_ats => ARRAY['2030-01-01 00:00:30', '2030-01-01 00:00:10', '2030-01-01 00:00:01', NULL]::timestamptz[]);
SELECT pgq.next_due('{a}') AS a, pgq.next_due('{a,b}') AS ab, pgq.next_due('{c}') AS c,
       pgq.next_due('{}') AS empty, pgq.next_due(NULL) AS null_names;
