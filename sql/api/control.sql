-- Cancels a job: a waiting one ends as cancelled at once; a running one gets a cancel request
-- (its holder learns it from heartbeat and NOTIFY pgq_cancel). False when the job already ended.
CREATE OR REPLACE FUNCTION pgq.cancel(job_id bigint) RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pgq, pg_temp
SECURITY DEFINER
AS $$
DECLARE
    v_waiting bigint[];
BEGIN
    v_waiting := ARRAY(SELECT j.id FROM pgq.jobs AS j
                       WHERE j.id = cancel.job_id AND j.state IN ('scheduled', 'queued') FOR UPDATE);
    IF cardinality(v_waiting) > 0 THEN
        PERFORM pgq._archive(false, v_waiting, NULL, ARRAY['cancelled'], NULL, NULL);
        RETURN true;
    END IF;
    UPDATE pgq.jobs AS j SET cancel_requested = true WHERE j.id = job_id AND j.state = 'running';
    IF FOUND THEN
        PERFORM pg_notify('pgq_cancel', job_id::text);
        RETURN true;
    END IF;
    RETURN false;
END
$$;
COMMENT ON FUNCTION pgq.cancel(bigint) IS
    'Cancels a waiting job, or asks the holder of a running one to stop (NOTIFY pgq_cancel); false if it already ended.';

-- Puts a failed or cancelled job back in the queue with a fresh attempt budget; returns its id.
CREATE OR REPLACE FUNCTION pgq.retry(job_id bigint) RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pgq, pg_temp
SECURITY DEFINER
AS $$
DECLARE
    v_state text;
    v_entrypoint text;
BEGIN
    SELECT h.state INTO v_state FROM pgq.job_history AS h WHERE h.id = job_id FOR UPDATE;
    IF NOT FOUND THEN
        IF EXISTS (SELECT 1 FROM pgq.jobs AS j WHERE j.id = job_id) THEN
            RAISE EXCEPTION 'pgq: job % has not finished; only failed or cancelled jobs can be retried', job_id
                USING ERRCODE = 'object_not_in_prerequisite_state';
        END IF;
        RAISE EXCEPTION 'pgq: no job with id %', job_id USING ERRCODE = 'no_data_found';
    END IF;
    IF v_state = 'succeeded' THEN
        RAISE EXCEPTION 'pgq: job % succeeded; only failed or cancelled jobs can be retried', job_id
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    BEGIN
        WITH revived AS (
            DELETE FROM pgq.job_history AS h WHERE h.id = job_id RETURNING h.*
        )
        INSERT INTO pgq.jobs (id, entrypoint, state, priority, run_at, attempt, max_attempts, dedupe_key,
                              enqueued_at, last_error, payload, headers)
        OVERRIDING SYSTEM VALUE
        SELECT r.id, r.entrypoint, 'queued', r.priority, pgq.now(), 0, r.max_attempts, r.dedupe_key,
               r.enqueued_at, r.error, r.payload, r.headers
        FROM revived AS r
        RETURNING entrypoint INTO v_entrypoint;
    EXCEPTION WHEN unique_violation THEN
        RAISE EXCEPTION 'pgq: job % cannot be retried: a live job holds its dedupe_key', job_id
            USING ERRCODE = 'unique_violation';
    END;
    PERFORM pg_notify('pgq_jobs', v_entrypoint);
    RETURN job_id;
END
$$;
COMMENT ON FUNCTION pgq.retry(bigint) IS
    'Re-queues a failed or cancelled job (same id) with a fresh attempt budget.';

-- Answers "why is this job not running?" in one line.
CREATE OR REPLACE FUNCTION pgq.explain_job(job_id bigint) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pgq, pg_temp
SECURITY DEFINER
AS $$
DECLARE
    v_now timestamptz := pgq.now();
    j pgq.jobs;
    h pgq.job_history;
    e pgq.entrypoints;
    v_running bigint[];
BEGIN
    SELECT * INTO j FROM pgq.jobs AS x WHERE x.id = job_id;
    IF NOT FOUND THEN
        SELECT * INTO h FROM pgq.job_history AS x WHERE x.id = job_id;
        IF NOT FOUND THEN
            RETURN format('job %s: no such job (never existed, or pruned from history)', job_id);
        END IF;
        RETURN format('job %s: %s at %s after %s attempt(s)%s', job_id, h.state, h.finished_at, h.attempt,
                      CASE WHEN h.error IS NULL THEN '' ELSE ': ' || h.error END);
    END IF;
    SELECT * INTO e FROM pgq.entrypoints AS x WHERE x.name = j.entrypoint;
    -- A timeout or lease already past is not "running": the try is over or its worker is gone,
    -- and the next pgq.reap() (each claim runs one) records it, retry or failed by policy.
    IF j.state = 'running' AND j.timeout_at <= v_now THEN
        RETURN format('job %s: attempt %s on worker %s timed out at %s; the next pgq.reap() '
                      'records it (retry or failed by policy)', job_id, j.attempt,
                      coalesce(j.worker_id, '(unnamed)'), j.timeout_at);
    END IF;
    IF j.state = 'running' AND j.lease_expires_at <= v_now THEN
        RETURN format('job %s: attempt %s on worker %s lost its lease at %s (the worker stopped '
                      'renewing it); the next pgq.reap() records it as worker lost (retry or '
                      'failed by policy)', job_id, j.attempt, coalesce(j.worker_id, '(unnamed)'),
                      j.lease_expires_at);
    END IF;
    IF j.state = 'running' THEN
        RETURN format('job %s: running (attempt %s) on worker %s until %s%s', job_id, j.attempt,
                      coalesce(j.worker_id, '(unnamed)'), j.lease_expires_at,
                      CASE WHEN j.cancel_requested THEN '; cancel requested' ELSE '' END);
    END IF;
    IF j.run_at > v_now THEN
        RETURN format('job %s: not due until %s%s', job_id, j.run_at,
                      CASE WHEN j.last_error IS NULL THEN ''
                           ELSE format(' (retry after attempt %s failed: %s)', j.attempt, j.last_error) END);
    END IF;
    IF e.paused THEN
        RETURN format('job %s: entrypoint %s is paused', job_id, j.entrypoint);
    END IF;
    IF e.concurrency_limit IS NOT NULL THEN
        v_running := ARRAY(SELECT x.id FROM pgq.jobs AS x
                           WHERE x.entrypoint = j.entrypoint AND x.state = 'running' ORDER BY x.id);
        IF cardinality(v_running) >= e.concurrency_limit THEN
            RETURN format('job %s: concurrency limit %s of %s reached by jobs %s', job_id,
                          e.concurrency_limit, j.entrypoint, array_to_string(v_running, ', '));
        END IF;
    END IF;
    RETURN format('job %s: ready (priority %s, %s job(s) ahead of it); waiting for a worker on %s', job_id,
                  j.priority,
                  (SELECT count(*) FROM pgq.jobs AS x
                   WHERE x.entrypoint = j.entrypoint AND x.state IN ('queued', 'scheduled')
                     AND x.run_at <= v_now
                     AND (x.priority > j.priority OR (x.priority = j.priority AND x.id < j.id))),
                  j.entrypoint);
END
$$;
COMMENT ON FUNCTION pgq.explain_job(bigint) IS
    'Explains in one line why a job is or is not running (due time, pause, concurrency limit, lease, outcome).';
