-- Inserts a batch of jobs in one statement and returns their ids in input order.
CREATE OR REPLACE FUNCTION pgq.enqueue_many(
    entrypoints text[],
    payloads jsonb[],
    priorities integer[] DEFAULT NULL,
    run_ats timestamptz[] DEFAULT NULL,
    dedupe_keys text[] DEFAULT NULL,
    headers jsonb[] DEFAULT NULL,
    max_attempts integer[] DEFAULT NULL
) RETURNS SETOF bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pgq
AS $$
DECLARE
    v_now timestamptz := pgq.now();
    v_n integer := cardinality(entrypoints);
    v_ids bigint[];
    v_ord integer;
    v_id bigint;
BEGIN
    PERFORM pgq.check_entrypoints(entrypoints);
    IF coalesce(cardinality(payloads), v_n) <> v_n
        OR coalesce(cardinality(priorities), v_n) <> v_n
        OR coalesce(cardinality(run_ats), v_n) <> v_n
        OR coalesce(cardinality(dedupe_keys), v_n) <> v_n
        OR coalesce(cardinality(enqueue_many.headers), v_n) <> v_n
        OR coalesce(cardinality(enqueue_many.max_attempts), v_n) <> v_n
    THEN
        RAISE EXCEPTION 'pgq: every array argument must have % elements, like entrypoints', v_n
            USING ERRCODE = 'array_subscript_error';
    END IF;
    IF EXISTS (SELECT 1 FROM unnest(enqueue_many.max_attempts) AS m(n) WHERE m.n < 1) THEN
        RAISE EXCEPTION 'pgq: max_attempts must be >= 1' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF EXISTS (SELECT 1 FROM unnest(enqueue_many.headers) AS h(doc)
               WHERE jsonb_typeof(h.doc) IS DISTINCT FROM 'object' AND h.doc IS NOT NULL) THEN
        RAISE EXCEPTION 'pgq: headers must be a JSON object' USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- Every entrypoint that has jobs has a policy row (with the table's defaults).
    INSERT INTO pgq.entrypoints (name)
    SELECT DISTINCT e.name FROM unnest(entrypoints) AS e(name)
    ON CONFLICT DO NOTHING;

    WITH input AS (
        SELECT nextval('pgq.jobs_id_seq') AS id, u.*
        FROM unnest(entrypoints, payloads, priorities, run_ats, dedupe_keys,
                    enqueue_many.headers, enqueue_many.max_attempts)
             WITH ORDINALITY AS u(entrypoint, payload, priority, run_at, dedupe_key, headers, max_attempts, ord)
    ), inserted AS (
        INSERT INTO pgq.jobs (id, entrypoint, state, priority, run_at, max_attempts, dedupe_key,
                              enqueued_at, payload, headers)
        OVERRIDING SYSTEM VALUE
        SELECT i.id, i.entrypoint,
               CASE WHEN i.run_at > v_now THEN 'scheduled' ELSE 'queued' END,
               coalesce(i.priority, 0), coalesce(i.run_at, v_now), i.max_attempts, i.dedupe_key,
               v_now, coalesce(i.payload, '{}'), coalesce(i.headers, '{}')
        FROM input AS i
        -- Key order, so concurrent batches sharing dedupe keys cannot deadlock.
        ORDER BY i.dedupe_key, i.ord
        ON CONFLICT (dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING
        RETURNING pgq.jobs.id
    )
    SELECT array_agg(ins.id ORDER BY i.ord) INTO v_ids
    FROM input AS i LEFT JOIN inserted AS ins ON ins.id = i.id;

    -- A job skipped for its dedupe key answers with the live job's id (inserting again if it
    -- finished in the meantime).
    v_ord := array_position(v_ids, NULL);
    WHILE v_ord IS NOT NULL LOOP
        SELECT j.id INTO v_id FROM pgq.jobs AS j WHERE j.dedupe_key = dedupe_keys[v_ord];
        IF NOT FOUND THEN
            v_id := pgq.enqueue(entrypoints[v_ord], payloads[v_ord], priorities[v_ord], run_ats[v_ord],
                                dedupe_keys[v_ord], enqueue_many.headers[v_ord],
                                enqueue_many.max_attempts[v_ord]);
        END IF;
        v_ids[v_ord] := v_id;
        v_ord := array_position(v_ids, NULL);
    END LOOP;

    PERFORM pg_notify('pgq_jobs', r.name)
    FROM (SELECT DISTINCT u.name FROM unnest(entrypoints, run_ats) AS u(name, run_at)
          WHERE u.run_at IS NULL OR u.run_at <= v_now) AS r;

    RETURN QUERY SELECT unnest(v_ids);
END
$$;
COMMENT ON FUNCTION pgq.enqueue_many(text[], jsonb[], integer[], timestamptz[], text[], jsonb[], integer[]) IS
    'Enqueues a batch in one statement; returns ids in input order (a live job''s id for a duplicate dedupe key).';

-- Inserts one job; a dedupe_key held by a live job returns that job's id and inserts nothing.
CREATE OR REPLACE FUNCTION pgq.enqueue(
    entrypoint text,
    payload jsonb DEFAULT '{}',
    priority integer DEFAULT 0,
    run_at timestamptz DEFAULT NULL,
    dedupe_key text DEFAULT NULL,
    headers jsonb DEFAULT '{}',
    max_attempts integer DEFAULT NULL
) RETURNS bigint
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pgq
AS $$
    SELECT pgq.enqueue_many(ARRAY[entrypoint], ARRAY[payload], ARRAY[priority], ARRAY[run_at],
                            ARRAY[dedupe_key], ARRAY[headers], ARRAY[max_attempts])
$$;
COMMENT ON FUNCTION pgq.enqueue(text, jsonb, integer, timestamptz, text, jsonb, integer) IS
    'Enqueues one job; returns its id, or the id of the live job holding the same dedupe_key.';
