-- Upserts an entrypoint's policy; NULL keeps the current value (0 limit = unlimited, 0 timeout = none).
CREATE OR REPLACE FUNCTION pgq.set_entrypoint(
    name text,
    concurrency_limit integer DEFAULT NULL,
    max_attempts integer DEFAULT NULL,
    timeout interval DEFAULT NULL,
    backoff_base interval DEFAULT NULL,
    backoff_factor numeric DEFAULT NULL,
    backoff_max interval DEFAULT NULL,
    jitter numeric DEFAULT NULL,
    paused boolean DEFAULT NULL
) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pgq, pg_temp
SECURITY DEFINER
AS $$
BEGIN
    PERFORM pgq._check_entrypoints(ARRAY[name]);
    IF concurrency_limit < 0 THEN
        RAISE EXCEPTION 'pgq: concurrency_limit must be >= 0 (0 = unlimited), got %', concurrency_limit
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF max_attempts < 1 THEN
        RAISE EXCEPTION 'pgq: max_attempts must be >= 1, got %', max_attempts
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF timeout < interval '0' OR timeout > interval '10 years' THEN
        RAISE EXCEPTION 'pgq: timeout must be between 0 (none) and 10 years, got %', timeout
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF backoff_base < interval '0' OR backoff_max < interval '0'
        OR backoff_base > interval '10 years' OR backoff_max > interval '10 years' THEN
        RAISE EXCEPTION 'pgq: backoff_base and backoff_max must be between 0 and 10 years'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- NaN sorts above every number, so it fails the upper bound.
    IF backoff_factor < 1 OR backoff_factor > 100 THEN
        RAISE EXCEPTION 'pgq: backoff_factor must be between 1 and 100, got %', backoff_factor
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF jitter < 0 OR jitter > 1 THEN
        RAISE EXCEPTION 'pgq: jitter must be between 0 and 1, got %', jitter
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    INSERT INTO pgq.entrypoints AS e (name) VALUES (set_entrypoint.name) ON CONFLICT DO NOTHING;
    UPDATE pgq.entrypoints AS e SET
        concurrency_limit = CASE WHEN set_entrypoint.concurrency_limit IS NULL THEN e.concurrency_limit
                                 ELSE nullif(set_entrypoint.concurrency_limit, 0) END,
        max_attempts = coalesce(set_entrypoint.max_attempts, e.max_attempts),
        timeout = CASE WHEN set_entrypoint.timeout IS NULL THEN e.timeout
                       ELSE nullif(set_entrypoint.timeout, interval '0') END,
        backoff_base = coalesce(set_entrypoint.backoff_base, e.backoff_base),
        backoff_factor = coalesce(set_entrypoint.backoff_factor, e.backoff_factor),
        backoff_max = coalesce(set_entrypoint.backoff_max, e.backoff_max),
        jitter = coalesce(set_entrypoint.jitter, e.jitter),
        paused = coalesce(set_entrypoint.paused, e.paused),
        updated_at = pgq.now()
    WHERE e.name = set_entrypoint.name;
    IF set_entrypoint.paused IS false THEN
        PERFORM pg_notify('pgq_jobs', set_entrypoint.name);
    END IF;
END
$$;
COMMENT ON FUNCTION pgq.set_entrypoint(text, integer, integer, interval, interval, numeric, interval, numeric, boolean) IS
    'Upserts an entrypoint''s policy (NULL keeps the current value; concurrency_limit 0 = unlimited, timeout 0 = none).';

-- Removes an entrypoint's policy row (a name paused by mistake, or one no longer served).
-- Refused while the entrypoint has live jobs: enqueue makes the row and dequeue reads it.
CREATE OR REPLACE FUNCTION pgq.remove_entrypoint(name text) RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pgq, pg_temp
SECURITY DEFINER
AS $$
DECLARE
    v_live bigint;
BEGIN
    PERFORM pgq._check_entrypoints(ARRAY[name]);
    -- The row lock makes a concurrent enqueue (which inserts the row ON CONFLICT) wait.
    PERFORM FROM pgq.entrypoints AS e WHERE e.name = remove_entrypoint.name FOR UPDATE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    SELECT count(*) INTO v_live FROM pgq.jobs AS j WHERE j.entrypoint = remove_entrypoint.name;
    IF v_live > 0 THEN
        RAISE EXCEPTION 'pgq: entrypoint % still has % live job(s): cancel them or let them finish first',
            remove_entrypoint.name, v_live
            USING ERRCODE = 'object_in_use';
    END IF;
    DELETE FROM pgq.entrypoints AS e WHERE e.name = remove_entrypoint.name;
    RETURN true;
END
$$;
COMMENT ON FUNCTION pgq.remove_entrypoint(text) IS
    'Removes an entrypoint''s policy row (true if there was one); refused (55006) while it has live jobs.';

-- The delay before the next try after `attempt` failed tries: base * factor^(attempt-1), jittered, capped.
CREATE OR REPLACE FUNCTION pgq._backoff(
    attempt integer, base interval, factor numeric, max_delay interval, jitter numeric
) RETURNS interval
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pgq, pg_temp
SECURITY DEFINER
AS $$
    SELECT make_interval(secs => least(
        extract(epoch FROM base)
            * power(factor, least(greatest(attempt - 1, 0), 200))
            * (1 + jitter * (2 * random()::numeric - 1)),
        extract(epoch FROM max_delay)
    )::double precision)
$$;
COMMENT ON FUNCTION pgq._backoff(integer, interval, numeric, interval, numeric) IS
    'Retry delay after attempt N: base * factor^(N-1) with multiplicative jitter, capped at max_delay.';
