-- The clock of every queue function: statement time, or the `pgq.now` setting when the session's
-- login role is a superuser or a member of pgq_admin (others cannot move leases, due times or history).
CREATE OR REPLACE FUNCTION pgq.now() RETURNS timestamptz
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pgq, pg_temp
SECURITY DEFINER
AS $$
BEGIN
    -- PL/pgSQL: a SQL function would be planned again in every transaction that calls it.
    RETURN CASE
        WHEN coalesce(current_setting('pgq.now', true), '') = ''
             OR NOT pg_has_role(session_user, 'pgq_admin', 'MEMBER') THEN statement_timestamp()
        ELSE current_setting('pgq.now', true)::timestamptz
    END;
END
$$;
COMMENT ON FUNCTION pgq.now() IS
    'Current time for the queue: statement_timestamp(), or the pgq.now setting (for deterministic tests) when the login role is a superuser or a pgq_admin member.';

-- Raises a clear error unless the entrypoint names are all usable.
CREATE OR REPLACE FUNCTION pgq._check_entrypoints(entrypoints text[]) RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pgq, pg_temp
SECURITY DEFINER
AS $$
DECLARE
    v_null boolean;
    v_blank boolean;
    v_chars integer;
    v_control text;
BEGIN
    IF entrypoints IS NULL OR cardinality(entrypoints) = 0 THEN
        RAISE EXCEPTION 'pgq: at least one entrypoint is required'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF cardinality(entrypoints) > 10000 THEN
        RAISE EXCEPTION 'pgq: at most 10000 entrypoints per call, got %', cardinality(entrypoints)
            USING ERRCODE = 'program_limit_exceeded';
    END IF;
    -- Each distinct name once (a batch repeats a few): NULL, blank, too long, or holding a control
    -- character (C0, DEL, C1).
    SELECT bool_or(e.name IS NULL), bool_or(btrim(e.name) = ''),
           max(char_length(e.name)) FILTER (WHERE char_length(e.name) > 200),
           min(e.name) FILTER (WHERE e.name ~ '[\x01-\x1f\x7f-\x9f]')
    INTO v_null, v_blank, v_chars, v_control
    FROM (SELECT DISTINCT u.name FROM unnest(entrypoints) AS u(name)) AS e;
    IF v_null THEN
        RAISE EXCEPTION 'pgq: entrypoint must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF v_blank THEN
        RAISE EXCEPTION 'pgq: entrypoint must not be empty'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF v_chars IS NOT NULL THEN
        RAISE EXCEPTION 'pgq: entrypoint names are limited to 200 characters, got %', v_chars
            USING ERRCODE = 'program_limit_exceeded';
    END IF;
    IF v_control IS NOT NULL THEN
        RAISE EXCEPTION 'pgq: entrypoint must not contain control characters, got %', to_json(v_control)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;
COMMENT ON FUNCTION pgq._check_entrypoints(text[]) IS
    'Raises 22004 for a missing or NULL entrypoint name, 22023 for a blank one or one with control characters, 54000 past 200 characters or 10000 names.';
