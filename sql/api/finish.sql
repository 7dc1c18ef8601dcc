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

-- Moves jobs to history in one statement, the only place a job's row is archived. When `fenced`,
-- a job is archived only while its given lease token holds a live lease (the caller's
-- completion); otherwise the caller locked and checked the jobs. NULL states mean
-- a completion: 'succeeded', or 'cancelled' when a cancel was requested. The error recorded is
-- the one given, else the job's last error (a completion records none, a cancelled one
-- 'cancelled').
CREATE OR REPLACE FUNCTION pgq._archive(
    fenced boolean, job_ids bigint[], lease_tokens uuid[], states text[], errors text[], results jsonb[],
    OUT succeeded bigint[], OUT archived integer
)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pgq, pg_temp
SET plan_cache_mode = force_generic_plan
SET jit = off
SECURITY DEFINER
AS $$
DECLARE
    v_now timestamptz := pgq.now();
    v_watched bigint[];
BEGIN
    -- Deleted in id order, as _lock_held locks (the sorted input drives the generic plan's join):
    -- no row locks taken first, which would cost ~3 us a job on the completion hot path.
    WITH ended AS (
        DELETE FROM pgq.jobs AS j
        USING (SELECT * FROM unnest(job_ids, lease_tokens, states, errors, results)
                   AS x(id, token, state, error, result)
               ORDER BY x.id) AS u
        WHERE j.id = ANY (job_ids) AND j.id = u.id
          AND (NOT fenced OR (j.lease_token = u.token AND j.lease_expires_at > v_now))
        RETURNING j.*, coalesce(u.state, CASE WHEN j.cancel_requested THEN 'cancelled' ELSE 'succeeded' END)
                  AS outcome,
                  CASE WHEN u.state IS NOT NULL THEN coalesce(u.error, j.last_error)
                       WHEN j.cancel_requested THEN 'cancelled' END AS error,
                  u.result
    ), archived AS (
        INSERT INTO pgq.job_history AS h (id, entrypoint, state, priority, attempt, max_attempts,
                                          dedupe_key, worker_id, enqueued_at, started_at, finished_at,
                                          error, result, payload, headers)
        SELECT d.id, d.entrypoint, d.outcome, d.priority, d.attempt, d.max_attempts, d.dedupe_key,
               d.worker_id, d.enqueued_at, d.started_at, v_now, d.error, d.result, d.payload, d.headers
        FROM ended AS d
        RETURNING h.id, h.state
    )
    SELECT coalesce(array_agg(a.id) FILTER (WHERE a.state = 'succeeded'), '{}'), count(*),
           (SELECT array_agg(d.id) FROM ended AS d WHERE d.notify_done)
    INTO succeeded, archived, v_watched
    FROM archived AS a;
    IF v_watched IS NOT NULL THEN  -- the jobs someone waits for (pgq.watch_jobs)
        PERFORM pgq._notify_done(v_watched);
    END IF;
END
$$;
COMMENT ON FUNCTION pgq._archive(boolean, bigint[], uuid[], text[], text[], jsonb[]) IS
    'Internal: moves jobs to history (fenced: only under the given live lease tokens); returns the ids archived as succeeded and how many were archived.';

-- Settles running jobs whose lease lapsed (the caller locked them), as pgq.reap records them:
-- 'timeout' when the lease ran to the job's timeout, else the holder stopped renewing it and is
-- recorded as lost. Both depend only on the job's row, never on when the reap happens; retries
-- after a lost worker are spread, so the jobs it held are not claimed together again.
CREATE OR REPLACE FUNCTION pgq._expire(job_ids bigint[]) RETURNS TABLE (job_id bigint, outcome text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pgq, pg_temp
SECURITY DEFINER
AS $$
DECLARE
    v_ids bigint[];
    v_errors text[];
    v_lost boolean[];
BEGIN
    SELECT array_agg(j.id ORDER BY j.id),
           array_agg(CASE WHEN j.lease_expires_at >= j.timeout_at THEN 'timeout'
                          ELSE 'worker lost: ' || coalesce(j.worker_id, '(no worker id)')
                               || ' (lease not renewed)'
                     END ORDER BY j.id),
           array_agg(j.lease_expires_at < j.timeout_at OR j.timeout_at IS NULL ORDER BY j.id)
    INTO v_ids, v_errors, v_lost
    FROM pgq.jobs AS j
    WHERE j.id = ANY (job_ids) AND j.lease_token IS NOT NULL;
    RETURN QUERY SELECT * FROM pgq._settle_failures(v_ids, v_errors, NULL, v_lost);
END
$$;
COMMENT ON FUNCTION pgq._expire(bigint[]) IS
    'Internal: fails locked running jobs whose lease lapsed, with ''timeout'' or ''worker lost: <id> ...''.';

-- Locks the jobs the caller holds (id and current lease_token match) in id order, ends the claims
-- among them that are over (lease lapsed: settled exactly as pgq.reap would, in this statement)
-- and returns the ids still held. Batch writers over the same jobs (a worker's heartbeat and its
-- completions, listed in other orders) wait for each other instead of deadlocking.
CREATE OR REPLACE FUNCTION pgq._lock_held(job_ids bigint[], lease_tokens uuid[]) RETURNS bigint[]
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pgq, pg_temp
SECURITY DEFINER
AS $$
DECLARE
    v_now timestamptz := pgq.now();
    v_held bigint[];
    v_over bigint[];
BEGIN
    SELECT coalesce(array_agg(l.id) FILTER (WHERE l.lease_expires_at > v_now), '{}'),
           array_agg(l.id) FILTER (WHERE l.lease_expires_at <= v_now)
    INTO v_held, v_over
    FROM (
        SELECT j.id, j.lease_expires_at FROM pgq.jobs AS j
        JOIN unnest(job_ids, lease_tokens) AS u(id, token) ON u.id = j.id AND u.token = j.lease_token
        WHERE j.id = ANY (job_ids)
        ORDER BY j.id
        FOR UPDATE OF j
    ) AS l;
    IF v_over IS NOT NULL THEN
        PERFORM pgq._expire(v_over);
    END IF;
    RETURN v_held;
END
$$;
COMMENT ON FUNCTION pgq._lock_held(bigint[], uuid[]) IS
    'Internal: locks the caller''s held jobs in id order, ends those whose lease lapsed; returns the ids still held.';

-- Raises 54000 when a result is larger than pgq.settings.max_result_bytes.
CREATE OR REPLACE FUNCTION pgq._check_results(results jsonb[]) RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pgq, pg_temp
SECURITY DEFINER
AS $$
DECLARE
    v_bytes integer;
    v_limit integer;
BEGIN
    SELECT max(pg_column_size(r.result)), (SELECT s.max_result_bytes FROM pgq.settings AS s)
    INTO v_bytes, v_limit
    FROM unnest(results) AS r(result);
    IF v_bytes > v_limit THEN
        RAISE EXCEPTION 'pgq: result of % bytes exceeds max_result_bytes (%)', v_bytes, v_limit
            USING ERRCODE = 'program_limit_exceeded';
    END IF;
END
$$;
COMMENT ON FUNCTION pgq._check_results(jsonb[]) IS
    'Internal: raises 54000 when a result exceeds pgq.settings.max_result_bytes.';

-- Settles failed tries of running jobs: retry after backoff while attempts remain and the error is
-- retryable, else dead-letter to history as failed (cancelled when a cancel was requested).
-- Callers pass jobs they hold; it is the one place the retry rule lives. A job marked `spread`
-- (its worker was lost) waits 0.5 to 1.5 times its backoff, capped at backoff_max.
CREATE OR REPLACE FUNCTION pgq._settle_failures(
    job_ids bigint[], errors text[], retryable boolean[], spread boolean[] DEFAULT NULL
) RETURNS TABLE (job_id bigint, outcome text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pgq, pg_temp
SECURITY DEFINER
AS $$
DECLARE
    v_now timestamptz := pgq.now();
    v_ended bigint[];
    v_outcomes text[];
    v_errors text[];
    v_requeued bigint[];
    v_ready text[];
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
                    WHEN u.spread THEN least(e.backoff_max,
                        pgq._backoff(j.attempt, e.backoff_base, e.backoff_factor, e.backoff_max, e.jitter)
                        * (0.5 + random()))
                    ELSE pgq._backoff(j.attempt, e.backoff_base, e.backoff_factor, e.backoff_max, e.jitter)
               END AS delay
        FROM pgq.jobs AS j
        JOIN (SELECT DISTINCT ON (x.id) x.*
              FROM unnest(job_ids, errors, retryable, spread) AS x(id, error, retryable, spread)
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
    )
    SELECT (SELECT array_agg(t.id ORDER BY t.id) FROM target AS t WHERE t.outcome <> 'queued'),
           (SELECT array_agg(t.outcome ORDER BY t.id) FROM target AS t WHERE t.outcome <> 'queued'),
           (SELECT array_agg(t.error ORDER BY t.id) FROM target AS t WHERE t.outcome <> 'queued'),
           (SELECT array_agg(q.id) FROM requeued AS q),
           (SELECT array_agg(DISTINCT q.entrypoint) FILTER (WHERE q.state = 'queued') FROM requeued AS q)
    INTO v_ended, v_outcomes, v_errors, v_requeued, v_ready;
    -- Dead letters go to history by the one archiving statement, after the retries are written.
    IF v_ended IS NOT NULL THEN
        PERFORM pgq._archive(false, v_ended, NULL, v_outcomes, v_errors, NULL);
    END IF;
    PERFORM pg_notify('pgq_jobs', r.name) FROM unnest(v_ready) AS r(name);
    RETURN QUERY
    SELECT r.id, 'queued'::text FROM unnest(v_requeued) AS r(id)
    UNION ALL
    SELECT * FROM unnest(v_ended, v_outcomes);
END
$$;
COMMENT ON FUNCTION pgq._settle_failures(bigint[], text[], boolean[], boolean[]) IS
    'Internal: retries or dead-letters failed running jobs by their entrypoint policy.';

-- Finishes held jobs as succeeded (cancelled if a cancel was requested); returns the ids that
-- succeeded. A claim that is over (lease lapsed) is not completed: it is recorded as pgq.reap
-- would record it, in this statement.
CREATE OR REPLACE FUNCTION pgq.complete_many(job_ids bigint[], lease_tokens uuid[], results jsonb[] DEFAULT NULL)
RETURNS bigint[]
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pgq, pg_temp
SET plan_cache_mode = force_generic_plan
SET jit = off
SECURITY DEFINER
AS $$
DECLARE
    v_done bigint[];
    v_ended integer;
    v_over bigint[];
BEGIN
    PERFORM pgq._check_batch('job_ids, lease_tokens and results', ARRAY[cardinality(job_ids),
        cardinality(lease_tokens), coalesce(cardinality(results), cardinality(job_ids))]);
    IF results IS NOT NULL THEN
        PERFORM pgq._check_results(results);
    END IF;
    SELECT a.succeeded, a.archived INTO v_done, v_ended
    FROM pgq._archive(true, job_ids, lease_tokens, NULL, NULL, results) AS a;
    -- Some were not completed: end the lapsed claims among them (the rest are not held). SKIP
    -- LOCKED, since this transaction already holds the rows it deleted: waiting now, out of id
    -- order, could deadlock with a batch writer over the same jobs (the worker's own renew). A
    -- skipped row is recorded the same way by whoever holds it, or by pgq.reap.
    IF v_ended < cardinality(job_ids) THEN
        SELECT array_agg(l.id) INTO v_over
        FROM (
            SELECT j.id FROM pgq.jobs AS j
            JOIN unnest(job_ids, lease_tokens) AS u(id, token)
                ON u.id = j.id AND u.token = j.lease_token
            WHERE j.id = ANY (job_ids) AND j.lease_expires_at <= pgq.now()
            ORDER BY j.id
            FOR UPDATE OF j SKIP LOCKED
        ) AS l;
        IF v_over IS NOT NULL THEN
            PERFORM pgq._expire(v_over);
        END IF;
    END IF;
    RETURN v_done;
END
$$;
COMMENT ON FUNCTION pgq.complete_many(bigint[], uuid[], jsonb[]) IS
    'Finishes the jobs whose live lease the caller holds as succeeded; returns their ids (a lapsed claim is recorded as timed out or lost instead).';

-- Finishes one held job as succeeded; false when the caller no longer holds it (or it was cancelled).
CREATE OR REPLACE FUNCTION pgq.complete(job_id bigint, lease_token uuid, result jsonb DEFAULT NULL)
RETURNS boolean
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pgq, pg_temp
SECURITY DEFINER
AS $$
    SELECT cardinality(pgq.complete_many(ARRAY[job_id], ARRAY[lease_token], ARRAY[result])) = 1
$$;
COMMENT ON FUNCTION pgq.complete(bigint, uuid, jsonb) IS
    'Finishes a job as succeeded if the caller holds its live lease; false otherwise (a lapsed claim is recorded as timed out or lost).';

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
    'Records failed tries of the jobs whose live lease the caller holds; returns (job_id, outcome) for each of them.';

-- Records one failed try of a held job: 'queued' (it will be retried: state 'scheduled' during
-- its backoff), 'failed', 'cancelled', or 'stale'.
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
    'Records a failed try: ''queued'' (retried, after its backoff), ''failed'' (dead letter), ''cancelled'', or ''stale'' (no live lease held; nothing changed but a lapsed claim recorded).';

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

-- Extends the leases the caller still holds, never past a job's timeout. One row per distinct
-- job id given, the renewed ones first: the new lease_expires_at, or why the claim is gone ('cancelled': stop it;
-- 'timeout' or 'lost': its lease lapsed and it was recorded so, now or by an earlier reap;
-- 'finished': no live claim by this token, e.g. already completed, failed or released).
CREATE OR REPLACE FUNCTION pgq.renew(
    job_ids bigint[], lease_tokens uuid[], lease_duration interval DEFAULT interval '30 seconds'
) RETURNS TABLE (job_id bigint, lease_expires_at timestamptz, gone text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pgq, pg_temp
SET jit = off
SECURITY DEFINER
AS $$
DECLARE
    v_now timestamptz := pgq.now();
    v_held bigint[];
    v_ends timestamptz[];
BEGIN
    PERFORM pgq._check_batch('job_ids and lease_tokens', ARRAY[cardinality(job_ids), cardinality(lease_tokens)]);
    IF lease_duration IS NULL OR lease_duration <= interval '0' OR lease_duration > interval '10 years' THEN
        RAISE EXCEPTION 'pgq: lease_duration must be positive and at most 10 years, got %', lease_duration
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_held := pgq._lock_held(job_ids, lease_tokens);
    WITH extended AS (
        UPDATE pgq.jobs AS j SET lease_expires_at = least(v_now + renew.lease_duration, j.timeout_at)
        WHERE j.id = ANY (v_held) AND NOT j.cancel_requested
        RETURNING j.id, j.lease_expires_at
    )
    SELECT coalesce(array_agg(e.id ORDER BY e.id), '{}'), array_agg(e.lease_expires_at ORDER BY e.id)
    INTO v_held, v_ends
    FROM extended AS e;
    RETURN QUERY SELECT * FROM unnest(v_held, v_ends, NULL::text[]);
    -- Why the others are gone: what each job's row says now (looked up for those ids alone).
    RETURN QUERY
    SELECT u.id, NULL::timestamptz,
           CASE
               WHEN g.cancelled THEN 'cancelled'
               WHEN g.error = 'timeout' THEN 'timeout'
               WHEN g.error LIKE 'worker lost: %' THEN 'lost'
               ELSE 'finished'
           END
    FROM (SELECT DISTINCT x.id FROM unnest(job_ids) AS x(id)
          WHERE x.id IS NOT NULL AND x.id <> ALL (v_held)) AS u
    LEFT JOIN LATERAL (
        SELECT j.cancel_requested AS cancelled, j.last_error AS error
        FROM pgq.jobs AS j WHERE j.id = u.id
        UNION ALL
        SELECT h.state = 'cancelled', h.error
        FROM pgq.job_history AS h WHERE h.id = u.id
        LIMIT 1
    ) AS g ON true
    WHERE cardinality(v_held) < cardinality(job_ids)
    ORDER BY u.id;
END
$$;
COMMENT ON FUNCTION pgq.renew(bigint[], uuid[], interval) IS
    'Extends the caller''s leases (never past the job''s timeout); per job its new lease_expires_at, or why it is gone (cancelled, timeout, lost, finished).';

-- The 0.1 form of pgq.renew, kept for the workers of that release: the ids no longer held.
CREATE OR REPLACE FUNCTION pgq.heartbeat(
    job_ids bigint[], lease_tokens uuid[], lease_duration interval DEFAULT interval '30 seconds'
) RETURNS SETOF bigint
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pgq, pg_temp
SET jit = off
SECURITY DEFINER
AS $$
    SELECT r.job_id FROM pgq.renew(job_ids, lease_tokens, lease_duration) AS r WHERE r.gone IS NOT NULL
$$;
COMMENT ON FUNCTION pgq.heartbeat(bigint[], uuid[], interval) IS
    'Extends the caller''s leases (never past the job''s timeout); returns the ids it no longer holds (pgq.renew says why).';
