-- Moves due scheduled jobs (delayed enqueues, retries after backoff) to queued, at most max_jobs.
CREATE OR REPLACE FUNCTION pgq.promote_due(max_jobs integer DEFAULT 1000) RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pgq, pg_temp
SET jit = off
SECURITY DEFINER
AS $$
DECLARE
    v_now timestamptz := pgq.now();
    v_ids bigint[];
BEGIN
    IF max_jobs IS NULL OR max_jobs < 0 THEN
        RAISE EXCEPTION 'pgq: max_jobs must be >= 0, got %', max_jobs
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_ids := ARRAY(
        SELECT j.id FROM pgq.jobs AS j
        WHERE j.state = 'scheduled' AND j.run_at <= v_now
        ORDER BY j.run_at
        LIMIT max_jobs
        FOR UPDATE SKIP LOCKED);
    IF cardinality(v_ids) = 0 THEN
        RETURN 0;
    END IF;
    UPDATE pgq.jobs AS j SET state = 'queued' WHERE j.id = ANY (v_ids);
    RETURN cardinality(v_ids);
END
$$;
COMMENT ON FUNCTION pgq.promote_due(integer) IS
    'Makes due scheduled jobs claimable; called by dequeue, callable by anyone.';

-- Claims up to batch_size ready jobs: priority then FIFO, per-entrypoint concurrency limits held
-- across all callers, expired leases reaped first. Rows come back in that claim order, each with
-- the job's deadline (timeout_at). Call it in its own READ COMMITTED transaction.
CREATE OR REPLACE FUNCTION pgq.claim(
    entrypoints text[],
    batch_size integer DEFAULT 1,
    worker_id text DEFAULT NULL,
    lease_duration interval DEFAULT interval '30 seconds'
) RETURNS TABLE (
    id bigint,
    entrypoint text,
    payload jsonb,
    headers jsonb,
    priority integer,
    attempt integer,
    max_attempts integer,
    lease_token uuid,
    lease_expires_at timestamptz,
    enqueued_at timestamptz,
    timeout_at timestamptz
)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pgq, pg_temp
SET plan_cache_mode = force_generic_plan
SET jit = off
SECURITY DEFINER
AS $$
#variable_conflict use_column
DECLARE
    v_now timestamptz := pgq.now();
    v_reap boolean;
    v_promote boolean;
    v_fire boolean;
    v_known integer;
    v_limited boolean;
    v_names text[];
    v_limits integer[];
    v_timeouts interval[];
    v_max_attempts integer[];
    v_allow integer[];
    v_running integer;
    v_ids bigint[];
    v_held boolean;
    v_marks jsonb;
BEGIN
    IF batch_size IS NULL OR batch_size < 1 OR batch_size > 10000 THEN
        RAISE EXCEPTION 'pgq: batch_size must be between 1 and 10000, got %', batch_size
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF lease_duration IS NULL OR lease_duration <= interval '0' OR lease_duration > interval '10 years' THEN
        RAISE EXCEPTION 'pgq: lease_duration must be positive and at most 10 years, got %', lease_duration
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF char_length(worker_id) > 200 THEN
        RAISE EXCEPTION 'pgq: worker_id is limited to 200 characters, got %', char_length(worker_id)
            USING ERRCODE = 'program_limit_exceeded';
    END IF;

    -- While a transaction holds the cleanup horizon (the vacuuming worker stood down), every job
    -- claimed or finished since leaves index entries no VACUUM may remove, and a scan from the
    -- front of the claim order walks them all again. This session then claims past the last
    -- job it took (its marks), and walks from the front, probing leases too, once a second:
    -- a job queued behind a mark meanwhile (a retry, a release, a late commit, a higher
    -- priority) waits at most that second.
    SELECT v.stood_down_since IS NOT NULL, current_setting('pgq.claim_marks', true)::jsonb
    INTO v_held, v_marks
    FROM pgq.vacuum_state AS v;
    IF NOT coalesce(v_held AND (v_marks ->> 't')::timestamptz > v_now - interval '1 second', false) THEN
        v_marks := NULL;
    END IF;

    -- Reap, promote and fire only when an index probe finds an expired lease, a due job or a due
    -- schedule: the calls cost more than the probes, and most dequeues find none.
    SELECT v_marks IS NULL AND (SELECT min(j.lease_expires_at) FROM pgq.jobs AS j) <= v_now,
           (SELECT min(j.run_at) FROM pgq.jobs AS j WHERE j.state = 'scheduled') <= v_now,
           (SELECT min(s.next_run_at) FROM pgq.schedules AS s WHERE s.paused IS NULL) <= v_now
    INTO v_reap, v_promote, v_fire;
    IF v_reap THEN
        PERFORM pgq.reap(100);
    END IF;
    IF v_fire THEN
        PERFORM pgq.fire_schedules(100);
    END IF;
    IF v_promote THEN
        PERFORM pgq.promote_due(1000);
    END IF;

    -- The named entrypoints' policies, in name order (the order limited ones are locked in).
    SELECT count(*),
           bool_or(e.concurrency_limit IS NOT NULL AND NOT e.paused),
           array_agg(e.name ORDER BY e.name) FILTER (WHERE NOT e.paused),
           array_agg(e.concurrency_limit ORDER BY e.name) FILTER (WHERE NOT e.paused),
           array_agg(e.timeout ORDER BY e.name) FILTER (WHERE NOT e.paused),
           array_agg(e.max_attempts ORDER BY e.name) FILTER (WHERE NOT e.paused)
    INTO v_known, v_limited, v_names, v_limits, v_timeouts, v_max_attempts
    FROM pgq.entrypoints AS e
    WHERE e.name = ANY (entrypoints);
    -- Names that are all known need no checking; otherwise bad ones raise (unknown ones claim nothing).
    IF v_known = 0 OR coalesce(v_known < cardinality(entrypoints), true) OR cardinality(entrypoints) > 10000 THEN
        PERFORM pgq._check_entrypoints(entrypoints);
    END IF;
    IF v_names IS NULL THEN
        RETURN;
    END IF;

    -- What each entrypoint may still start. A limited entrypoint is claimed under a transaction
    -- lock, and the running jobs are counted after taking it, so limits hold across callers.
    v_allow := array_fill(batch_size, ARRAY[cardinality(v_names)]);
    IF v_limited THEN
        IF current_setting('transaction_isolation') <> 'read committed' THEN
            RAISE EXCEPTION 'pgq: dequeue must run in a READ COMMITTED transaction'
                USING ERRCODE = 'invalid_transaction_state';
        END IF;
        FOR i IN 1 .. cardinality(v_names) LOOP
            CONTINUE WHEN v_limits[i] IS NULL;
            PERFORM pg_advisory_xact_lock(1886418288, hashtext(v_names[i]));
            SELECT count(*) INTO v_running FROM pgq.jobs AS j
            WHERE j.entrypoint = v_names[i] AND j.state = 'running';
            v_allow[i] := greatest(0, least(batch_size, v_limits[i] - v_running));
        END LOOP;
    END IF;

    -- While the horizon is held and this session has marks: from each entrypoint's mark (the
    -- mark's priority after its id, then the lower ones; without a mark, from the front: no job
    -- has the top priority).
    IF v_marks IS NOT NULL THEN
        v_ids := ARRAY(
            SELECT c.id
            FROM unnest(v_names, v_allow) AS a(name, n)
            CROSS JOIN LATERAL (
                SELECT coalesce((v_marks -> a.name ->> 0)::integer, 2147483647) AS top,
                       coalesce((v_marks -> a.name ->> 1)::bigint, 0) AS after
            ) AS m
            CROSS JOIN LATERAL (
                SELECT * FROM (
                    SELECT j.id, j.priority FROM pgq.jobs AS j
                    WHERE j.entrypoint = a.name AND j.state = 'queued' AND j.priority = m.top
                      AND j.id > m.after
                    ORDER BY j.id
                    LIMIT a.n
                    FOR UPDATE SKIP LOCKED) AS at_mark
                UNION ALL
                SELECT * FROM (
                    SELECT j.id, j.priority FROM pgq.jobs AS j
                    WHERE j.entrypoint = a.name AND j.state = 'queued' AND j.priority < m.top
                    ORDER BY j.priority DESC, j.id
                    LIMIT a.n
                    FOR UPDATE SKIP LOCKED) AS below
                LIMIT a.n
            ) AS c
            ORDER BY c.priority DESC, c.id
            LIMIT batch_size);
    END IF;

    -- Otherwise one index walk per entrypoint, merged: highest priority first, then oldest.
    v_ids := coalesce(v_ids, ARRAY(
        SELECT c.id
        FROM unnest(v_names, v_allow) AS a(name, n)
        CROSS JOIN LATERAL (
            SELECT j.id, j.priority FROM pgq.jobs AS j
            WHERE j.entrypoint = a.name AND j.state = 'queued'
            ORDER BY j.priority DESC, j.id
            LIMIT a.n
            FOR UPDATE SKIP LOCKED
        ) AS c
        ORDER BY c.priority DESC, c.id
        LIMIT batch_size));

    -- Marks: each entrypoint's last job taken, kept for this session while the horizon is held
    -- (from the walk from the front: 't'); an entrypoint that took nothing keeps its mark.
    IF v_held THEN
        SELECT coalesce(v_marks, jsonb_build_object('t', v_now))
               || coalesce(jsonb_object_agg(l.entrypoint, jsonb_build_array(l.priority, l.id)), '{}')
        INTO v_marks
        FROM (SELECT DISTINCT ON (j.entrypoint) j.entrypoint, j.priority, j.id
              FROM pgq.jobs AS j WHERE j.id = ANY (v_ids)
              ORDER BY j.entrypoint, j.priority, j.id DESC) AS l;
        PERFORM set_config('pgq.claim_marks', v_marks::text, false);
    END IF;
    IF cardinality(v_ids) = 0 THEN
        RETURN;
    END IF;

    RETURN QUERY
    WITH claimed AS (
        UPDATE pgq.jobs AS j SET
            state = 'running',
            attempt = j.attempt + 1,
            lease_token = gen_random_uuid(),
            lease_expires_at = least(v_now + claim.lease_duration, v_now + t.timeout),
            timeout_at = v_now + t.timeout,
            worker_id = claim.worker_id,
            started_at = v_now
        FROM unnest(v_names, v_timeouts, v_max_attempts) AS t(name, timeout, max_attempts)
        WHERE j.id = ANY (v_ids) AND t.name = j.entrypoint
        RETURNING j.id, j.entrypoint, j.payload, j.headers, j.priority, j.attempt,
                  coalesce(j.max_attempts, t.max_attempts) AS max_attempts, j.lease_token,
                  j.lease_expires_at, j.enqueued_at, j.timeout_at
    )
    SELECT * FROM claimed AS c ORDER BY c.priority DESC, c.id;
END
$$;
COMMENT ON FUNCTION pgq.claim(text[], integer, text, interval) IS
    'Claims up to batch_size ready jobs (priority, then FIFO; concurrency limits across workers) with a lease; rows in claim order, with timeout_at.';

-- The 0.1 form of pgq.claim, kept for the workers of that release (their rows have exactly
-- these columns): the same claim without timeout_at.
CREATE OR REPLACE FUNCTION pgq.dequeue(
    entrypoints text[],
    batch_size integer DEFAULT 1,
    worker_id text DEFAULT NULL,
    lease_duration interval DEFAULT interval '30 seconds'
) RETURNS SETOF pgq.claimed_job
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pgq, pg_temp
SET jit = off
SECURITY DEFINER
AS $$
    SELECT c.id, c.entrypoint, c.payload, c.headers, c.priority, c.attempt, c.max_attempts,
           c.lease_token, c.lease_expires_at, c.enqueued_at
    FROM pgq.claim(entrypoints, batch_size, worker_id, lease_duration) AS c
$$;
COMMENT ON FUNCTION pgq.dequeue(text[], integer, text, interval) IS
    'The 0.1 form of pgq.claim (no timeout_at column): claims up to batch_size ready jobs with a lease, in claim order.';

-- When the earliest scheduled job (delayed enqueue, retry in backoff) of these entrypoints is
-- due, or NULL when none is scheduled: a worker sleeps until then instead of a poll interval,
-- as no NOTIFY announces that a scheduled job became due.
CREATE OR REPLACE FUNCTION pgq.next_due(entrypoints text[]) RETURNS timestamptz
LANGUAGE sql STABLE
SET search_path = pg_catalog, pgq, pg_temp
SET jit = off
SECURITY DEFINER
AS $$
    SELECT min(n.run_at)
    FROM unnest(entrypoints) AS e(name)
    CROSS JOIN LATERAL (
        SELECT j.run_at FROM pgq.jobs AS j
        WHERE j.entrypoint = e.name AND j.state = 'scheduled'
        ORDER BY j.run_at
        LIMIT 1
    ) AS n
$$;
COMMENT ON FUNCTION pgq.next_due(text[]) IS
    'The run_at of the earliest scheduled job of these entrypoints (NULL if none): when to wake up and claim.';
