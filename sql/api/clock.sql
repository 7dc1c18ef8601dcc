-- The clock of every queue function: statement time, or the `pgq.now` setting when a test sets it.
CREATE OR REPLACE FUNCTION pgq.now() RETURNS timestamptz
LANGUAGE sql STABLE
SET search_path = pg_catalog, pgq
AS $$
    SELECT coalesce(nullif(current_setting('pgq.now', true), '')::timestamptz, statement_timestamp())
$$;
COMMENT ON FUNCTION pgq.now() IS
    'Current time for the queue: statement_timestamp(), or the pgq.now setting (for deterministic tests).';

-- Raises a clear error unless the entrypoint names are all usable.
CREATE OR REPLACE FUNCTION pgq.check_entrypoints(entrypoints text[]) RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pgq
AS $$
BEGIN
    IF entrypoints IS NULL OR cardinality(entrypoints) = 0 THEN
        RAISE EXCEPTION 'pgq: at least one entrypoint is required'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF array_position(entrypoints, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'pgq: entrypoint must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF EXISTS (SELECT 1 FROM unnest(entrypoints) AS e(name) WHERE btrim(e.name) = '') THEN
        RAISE EXCEPTION 'pgq: entrypoint must not be empty'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;
COMMENT ON FUNCTION pgq.check_entrypoints(text[]) IS
    'Raises invalid_parameter_value / null_value_not_allowed for a missing, NULL or empty entrypoint name.';
