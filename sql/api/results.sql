-- Results a producer can wait for: the status of jobs wherever they live, and NOTIFY pgq_done
-- when jobs someone waits for finish. A waiting client LISTENs on pgq_done, then reads
-- pgq.watch_jobs (which flags the live ones to be announced); a notification only says "these
-- ids finished, look again", so none is ever needed for correctness (a client that polls
-- job_status gets the same answers, later).

-- Largest number of ids in one pgq_done payload: 390 ids of at most 19 digits and a comma fit in
-- 7,800 bytes, under PostgreSQL's 8,000-byte payload limit.
CREATE OR REPLACE FUNCTION pgq._notify_done(job_ids bigint[]) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pgq, pg_temp
SECURITY DEFINER
AS $$
DECLARE
    v_n integer := coalesce(cardinality(job_ids), 0);
BEGIN
    IF v_n = 0 THEN
        RETURN;
    END IF;
    -- One notification per 390 ids: a finishing statement of up to 390 jobs (the worker's
    -- batches are 100) sends exactly one.
    FOR i IN 0 .. (v_n - 1) / 390 LOOP
        PERFORM pg_notify('pgq_done', array_to_string(job_ids[i * 390 + 1 : (i + 1) * 390], ','));
    END LOOP;
END
$$;
COMMENT ON FUNCTION pgq._notify_done(bigint[]) IS
    'Internal: NOTIFY pgq_done with the finished ids, comma-separated, 390 at most per notification.';

-- Each known job's state, attempt, result and error: live jobs from pgq.jobs (state scheduled,
-- queued or running; error = the last failed try's), finished ones from pgq.job_history.
CREATE OR REPLACE FUNCTION pgq.job_status(job_ids bigint[])
RETURNS TABLE (id bigint, entrypoint text, state text, attempt integer, result jsonb, error text,
               finished_at timestamptz)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pgq, pg_temp
SET jit = off
SECURITY DEFINER
AS $$
    SELECT j.id, j.entrypoint, j.state, j.attempt, NULL::jsonb, j.last_error, NULL::timestamptz
    FROM pgq.jobs AS j WHERE j.id = ANY (job_ids)
    UNION ALL
    SELECT h.id, h.entrypoint, h.state, h.attempt, h.result, h.error, h.finished_at
    FROM pgq.job_history AS h WHERE h.id = ANY (job_ids)
    ORDER BY 1
$$;
COMMENT ON FUNCTION pgq.job_status(bigint[]) IS
    'The state, attempt, result, error and finished_at of each given job that exists (live or in history); unknown ids are left out.';

-- job_status, after flagging the given live jobs to announce their end on pgq_done. Rows are
-- locked in id order, as every batch writer of pgq.jobs locks them, so it cannot deadlock with
-- one; a job that finishes meanwhile is simply read from history.
CREATE OR REPLACE FUNCTION pgq.watch_jobs(job_ids bigint[])
RETURNS TABLE (id bigint, entrypoint text, state text, attempt integer, result jsonb, error text,
               finished_at timestamptz)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pgq, pg_temp
SET jit = off
SECURITY DEFINER
AS $$
BEGIN
    UPDATE pgq.jobs AS j SET notify_done = true
    FROM (SELECT x.id FROM pgq.jobs AS x
          WHERE x.id = ANY (job_ids) AND NOT x.notify_done
          ORDER BY x.id
          FOR UPDATE) AS l
    WHERE j.id = l.id;
    RETURN QUERY SELECT * FROM pgq.job_status(job_ids);
END
$$;
COMMENT ON FUNCTION pgq.watch_jobs(bigint[]) IS
    'Flags the given live jobs to NOTIFY pgq_done when they finish, then returns pgq.job_status of all of them.';
