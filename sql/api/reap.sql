-- Ends running jobs whose lease lapsed: 'timeout' when the lease ran to the job's timeout, else
-- 'worker lost: <worker id> ...' (its holder stopped renewing it). The holder's own late
-- complete/fail/renew/release records the same in its statement (pgq._lock_held), so the
-- outcome never depends on whether a reap came first.
CREATE OR REPLACE FUNCTION pgq.reap(max_jobs integer DEFAULT 1000) RETURNS integer
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
        WHERE j.lease_expires_at <= v_now
        ORDER BY j.lease_expires_at
        LIMIT max_jobs
        FOR UPDATE SKIP LOCKED);
    IF cardinality(v_ids) = 0 THEN
        RETURN 0;
    END IF;
    PERFORM pgq._expire(v_ids);
    RETURN cardinality(v_ids);
END
$$;
COMMENT ON FUNCTION pgq.reap(integer) IS
    'Fails (retry or dead-letter by policy) running jobs past their lease or timeout, as ''timeout'' or ''worker lost: ...''; returns how many.';
