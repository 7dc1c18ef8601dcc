-- Raises unless the arrays of one batch call have the same length and the batch holds at most
-- 10,000 jobs. Callers pass the lengths with the batch's first, and an optional array's as
-- coalesce(cardinality(a), n) so that leaving it out (NULL) passes.
CREATE OR REPLACE FUNCTION pgq._check_batch(arguments text, lengths integer[]) RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pgq, pg_temp
SECURITY DEFINER
AS $$
BEGIN
    IF lengths[1] > 10000 THEN
        RAISE EXCEPTION 'pgq: a batch holds at most 10000 jobs, got %', lengths[1]
            USING ERRCODE = 'program_limit_exceeded';
    END IF;
    -- array_positions matches NULL to NULL: two missing required arrays agree.
    IF cardinality(array_positions(lengths, lengths[1])) <> cardinality(lengths) THEN
        RAISE EXCEPTION 'pgq: % must have the same length, got %', arguments,
            array_to_string(lengths, ', ', 'NULL')
            USING ERRCODE = 'array_subscript_error';
    END IF;
END
$$;
COMMENT ON FUNCTION pgq._check_batch(text, integer[]) IS
    'Raises 2202E unless the given array lengths are equal, 54000 when the batch exceeds 10000 jobs.';

-- Locks the jobs the caller holds (id and current lease_token match) in id order and returns their
-- ids: batch writers over the same jobs (a worker's heartbeat and its completions, listed in other
-- orders) then wait for each other instead of deadlocking.
CREATE OR REPLACE FUNCTION pgq._lock_held(job_ids bigint[], lease_tokens uuid[]) RETURNS bigint[]
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pgq, pg_temp
SECURITY DEFINER
AS $$
BEGIN
    RETURN ARRAY(
        SELECT j.id FROM pgq.jobs AS j
        JOIN unnest(job_ids, lease_tokens) AS u(id, token) ON u.id = j.id AND u.token = j.lease_token
        WHERE j.id = ANY (job_ids)
        ORDER BY j.id
        FOR UPDATE OF j);
END
$$;
COMMENT ON FUNCTION pgq._lock_held(bigint[], uuid[]) IS
    'Internal: locks the caller''s held jobs in id order; returns their ids.';

-- Settles failed tries of running jobs: retry after backoff while attempts remain and the error is
-- retryable, else dead-letter to history as failed (cancelled when a cancel was requested).
-- Callers pass jobs they hold; it is the one place the retry rule lives.
CREATE OR REPLACE FUNCTION pgq._settle_failures(job_ids bigint[], errors text[], retryable boolean[])
RETURNS TABLE (job_id bigint, outcome text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pgq, pg_temp
SECURITY DEFINER
AS $$
DECLARE
    v_now timestamptz := pgq.now();
    v_ids bigint[];
    v_outcomes text[];
    v_ready text[];
    v_ended bigint[];
BEGIN
    WITH target AS (
        SELECT j.id, u.error,
               CASE
                   WHEN j.cancel_requested THEN 'cancelled'
                   WHEN coalesce(u.retryable, true)
                        AND j.attempt < coalesce(j.max_attempts, e.max_attempts, 5) THEN 'queued'
                   ELSE 'failed'
               END AS outcome,
               CASE WHEN e.name IS NULL THEN interval '0'
                    ELSE pgq._backoff(j.attempt, e.backoff_base, e.backoff_factor, e.backoff_max, e.jitter)
               END AS delay
        FROM pgq.jobs AS j
        JOIN (SELECT DISTINCT ON (x.id) x.* FROM unnest(job_ids, errors, retryable) AS x(id, error, retryable)
              ORDER BY x.id) AS u ON u.id = j.id
        LEFT JOIN pgq.entrypoints AS e ON e.name = j.entrypoint
        WHERE j.id = ANY (job_ids) AND j.lease_token IS NOT NULL
    ), requeued AS (
        UPDATE pgq.jobs AS j SET
            state = CASE WHEN t.delay > interval '0' THEN 'scheduled' ELSE 'queued' END,
            run_at = v_now + t.delay,
            last_error = t.error,
            lease_token = NULL,
            lease_expires_at = NULL,
            timeout_at = NULL,
            worker_id = NULL
        FROM target AS t
        WHERE j.id = t.id AND t.outcome = 'queued'
        RETURNING j.id, j.entrypoint, j.state, j.attempt, j.last_error
    ), logged AS (
        INSERT INTO pgq.job_retries (job_id, entrypoint, attempt, failed_at, error)
        SELECT q.id, q.entrypoint, q.attempt, v_now, q.last_error FROM requeued AS q
    ), ended AS (
        DELETE FROM pgq.jobs AS j USING target AS t
        WHERE j.id = t.id AND t.outcome <> 'queued'
        RETURNING j.*, t.outcome, t.error
    ), archived AS (
        INSERT INTO pgq.job_history (id, entrypoint, state, priority, attempt, max_attempts, dedupe_key,
                                     worker_id, enqueued_at, started_at, finished_at, error, result,
                                     payload, headers)
        SELECT d.id, d.entrypoint, d.outcome, d.priority, d.attempt, d.max_attempts, d.dedupe_key,
               d.worker_id, d.enqueued_at, d.started_at, v_now, d.error, NULL, d.payload, d.headers
        FROM ended AS d
        RETURNING pgq.job_history.id, pgq.job_history.state, pgq.job_history.entrypoint
    ), settled AS (
        SELECT q.id, 'queued'::text AS outcome, q.entrypoint, q.state = 'queued' AS ready FROM requeued AS q
        UNION ALL
        SELECT a.id, a.state, a.entrypoint, false FROM archived AS a
    )
    SELECT array_agg(s.id), array_agg(s.outcome), array_agg(DISTINCT s.entrypoint) FILTER (WHERE s.ready),
           (SELECT array_agg(d.id) FROM ended AS d WHERE d.notify_done)
    INTO v_ids, v_outcomes, v_ready, v_ended
    FROM settled AS s;

    PERFORM pg_notify('pgq_jobs', r.name) FROM unnest(v_ready) AS r(name);
    PERFORM pgq._notify_done(v_ended);
    RETURN QUERY SELECT * FROM unnest(v_ids, v_outcomes);
END
$$;
COMMENT ON FUNCTION pgq._settle_failures(bigint[], text[], boolean[]) IS
    'Internal: retries or dead-letters failed running jobs by their entrypoint policy.';

-- Finishes held jobs as succeeded (cancelled if a cancel was requested); returns how many succeeded.
CREATE OR REPLACE FUNCTION pgq.complete_many(job_ids bigint[], lease_tokens uuid[], results jsonb[] DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pgq, pg_temp
SET plan_cache_mode = force_generic_plan
SET jit = off
SECURITY DEFINER
AS $$
DECLARE
    v_now timestamptz := pgq.now();
    v_done integer;
    v_ended bigint[];
BEGIN
    PERFORM pgq._check_batch('job_ids, lease_tokens and results', ARRAY[cardinality(job_ids),
        cardinality(lease_tokens), coalesce(cardinality(results), cardinality(job_ids))]);
    -- Deleted in id order, as _lock_held locks (the sorted input drives the generic plan's join):
    -- no pgq._lock_held here, whose extra row locks would cost ~3 us a job on the hot path.
    WITH ended AS (
        DELETE FROM pgq.jobs AS j
        USING (SELECT * FROM unnest(job_ids, lease_tokens, results) AS x(id, token, result) ORDER BY x.id) AS u
        WHERE j.id = ANY (job_ids) AND j.id = u.id AND j.lease_token = u.token
        RETURNING j.*, u.result
    ), archived AS (
        INSERT INTO pgq.job_history (id, entrypoint, state, priority, attempt, max_attempts, dedupe_key,
                                     worker_id, enqueued_at, started_at, finished_at, error, result,
                                     payload, headers)
        SELECT d.id, d.entrypoint, CASE WHEN d.cancel_requested THEN 'cancelled' ELSE 'succeeded' END,
               d.priority, d.attempt, d.max_attempts, d.dedupe_key, d.worker_id, d.enqueued_at,
               d.started_at, v_now, CASE WHEN d.cancel_requested THEN 'cancelled' END, d.result,
               d.payload, d.headers
        FROM ended AS d
        RETURNING pgq.job_history.state
    )
    SELECT (SELECT count(*) FROM archived AS a WHERE a.state = 'succeeded'),
           (SELECT array_agg(d.id) FROM ended AS d WHERE d.notify_done)
    INTO v_done, v_ended;
    PERFORM pgq._notify_done(v_ended);
    RETURN v_done;
END
$$;
COMMENT ON FUNCTION pgq.complete_many(bigint[], uuid[], jsonb[]) IS
    'Finishes the jobs whose lease the caller holds as succeeded; returns how many (stale tokens are not counted).';

-- Finishes one held job as succeeded; false when the caller no longer holds it (or it was cancelled).
CREATE OR REPLACE FUNCTION pgq.complete(job_id bigint, lease_token uuid, result jsonb DEFAULT NULL)
RETURNS boolean
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pgq, pg_temp
SECURITY DEFINER
AS $$
    SELECT pgq.complete_many(ARRAY[job_id], ARRAY[lease_token], ARRAY[result]) = 1
$$;
COMMENT ON FUNCTION pgq.complete(bigint, uuid, jsonb) IS
    'Finishes a job as succeeded if the caller holds its lease; false (and nothing changed) otherwise.';

-- Records failed tries of held jobs; returns the outcome of each held job.
CREATE OR REPLACE FUNCTION pgq.fail_many(
    job_ids bigint[], lease_tokens uuid[], errors text[], retryable boolean[] DEFAULT NULL
) RETURNS TABLE (job_id bigint, outcome text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pgq, pg_temp
SET jit = off
SECURITY DEFINER
AS $$
DECLARE
    v_held bigint[];
    v_ids bigint[];
    v_errors text[];
    v_retryable boolean[];
BEGIN
    PERFORM pgq._check_batch('job_ids, lease_tokens, errors and retryable',
        ARRAY[cardinality(job_ids), cardinality(lease_tokens), cardinality(errors),
              coalesce(cardinality(retryable), cardinality(job_ids))]);
    v_held := pgq._lock_held(job_ids, lease_tokens);
    -- Errors are taken only from entries whose token holds the lease.
    SELECT array_agg(u.id), array_agg(coalesce(u.error, 'unknown error')), array_agg(u.retryable)
    INTO v_ids, v_errors, v_retryable
    FROM unnest(job_ids, lease_tokens, errors, retryable) AS u(id, token, error, retryable)
    JOIN pgq.jobs AS j ON j.id = u.id AND j.lease_token = u.token
    WHERE j.id = ANY (v_held);
    RETURN QUERY SELECT * FROM pgq._settle_failures(v_ids, v_errors, v_retryable);
END
$$;
COMMENT ON FUNCTION pgq.fail_many(bigint[], uuid[], text[], boolean[]) IS
    'Records failed tries of the jobs the caller holds; returns (job_id, outcome) for each of them.';

-- Records one failed try of a held job: 'queued' (retry later), 'failed', 'cancelled', or 'stale'.
CREATE OR REPLACE FUNCTION pgq.fail(job_id bigint, lease_token uuid, error text, retryable boolean DEFAULT true)
RETURNS text
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pgq, pg_temp
SECURITY DEFINER
AS $$
    SELECT coalesce(
        (SELECT f.outcome FROM pgq.fail_many(ARRAY[job_id], ARRAY[lease_token], ARRAY[error],
                                             ARRAY[retryable]) AS f),
        'stale')
$$;
COMMENT ON FUNCTION pgq.fail(bigint, uuid, text, boolean) IS
    'Records a failed try: ''queued'' (retry after backoff), ''failed'' (dead letter), ''cancelled'', or ''stale'' (not the holder; nothing changed).';

-- Gives held jobs back to the queue (graceful shutdown): runnable now, the attempt not counted.
CREATE OR REPLACE FUNCTION pgq.release(job_ids bigint[], lease_tokens uuid[]) RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pgq, pg_temp
SET jit = off
SECURITY DEFINER
AS $$
DECLARE
    v_held bigint[];
    v_released integer;
    v_ready text[];
    v_cancelled bigint[];
BEGIN
    PERFORM pgq._check_batch('job_ids and lease_tokens', ARRAY[cardinality(job_ids), cardinality(lease_tokens)]);
    v_held := pgq._lock_held(job_ids, lease_tokens);
    WITH released AS (
        UPDATE pgq.jobs AS j SET
            state = 'queued', run_at = pgq.now(), attempt = j.attempt - 1, lease_token = NULL,
            lease_expires_at = NULL, timeout_at = NULL, worker_id = NULL, started_at = NULL
        WHERE j.id = ANY (v_held) AND NOT j.cancel_requested
        RETURNING j.entrypoint
    )
    SELECT count(*), array_agg(DISTINCT r.entrypoint) INTO v_released, v_ready FROM released AS r;
    PERFORM pg_notify('pgq_jobs', r.name) FROM unnest(v_ready) AS r(name);

    -- A job whose cancel was requested ends as cancelled instead.
    v_cancelled := ARRAY(SELECT j.id FROM pgq.jobs AS j WHERE j.id = ANY (v_held) AND j.cancel_requested);
    PERFORM pgq._settle_failures(v_cancelled, array_fill('cancelled'::text, ARRAY[cardinality(v_cancelled)]), NULL);
    RETURN v_released;
END
$$;
COMMENT ON FUNCTION pgq.release(bigint[], uuid[]) IS
    'Gives held jobs back to the queue, runnable now, without counting the attempt; returns how many.';

-- Extends the leases the caller still holds; returns the ids it no longer holds (stop those).
CREATE OR REPLACE FUNCTION pgq.heartbeat(
    job_ids bigint[], lease_tokens uuid[], lease_duration interval DEFAULT interval '30 seconds'
) RETURNS SETOF bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pgq, pg_temp
SET jit = off
SECURITY DEFINER
AS $$
DECLARE
    v_now timestamptz := pgq.now();
    v_held bigint[];
BEGIN
    PERFORM pgq._check_batch('job_ids and lease_tokens', ARRAY[cardinality(job_ids), cardinality(lease_tokens)]);
    IF lease_duration IS NULL OR lease_duration <= interval '0' OR lease_duration > interval '10 years' THEN
        RAISE EXCEPTION 'pgq: lease_duration must be positive and at most 10 years, got %', lease_duration
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_held := pgq._lock_held(job_ids, lease_tokens);
    WITH extended AS (
        UPDATE pgq.jobs AS j SET lease_expires_at = least(v_now + lease_duration, j.timeout_at)
        WHERE j.id = ANY (v_held) AND NOT j.cancel_requested
        RETURNING j.id, j.lease_expires_at
    )
    SELECT coalesce(array_agg(e.id), '{}') INTO v_held FROM extended AS e WHERE e.lease_expires_at > v_now;
    RETURN QUERY SELECT DISTINCT u.id FROM unnest(job_ids) AS u(id) WHERE u.id <> ALL (v_held);
END
$$;
COMMENT ON FUNCTION pgq.heartbeat(bigint[], uuid[], interval) IS
    'Extends the caller''s leases (never past the job''s timeout); returns the ids it no longer holds.';
