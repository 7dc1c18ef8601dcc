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
SET search_path = pg_catalog, pgq, pg_temp
SET jit = off
SECURITY DEFINER
AS $$
DECLARE
    v_now timestamptz := pgq.now();
    v_n integer := cardinality(entrypoints);
    v_ids bigint[];
    v_conflicts text[];
    v_payload_limit integer;
    v_headers_limit integer;
    v_payload_bytes integer;
    v_headers_bytes integer;
    v_headers_object boolean;
    v_min_priority integer;
    v_max_priority integer;
    v_min_run_at timestamptz;
    v_max_run_at timestamptz;
    v_key_chars integer;
    v_max_attempts integer;
BEGIN
    PERFORM pgq._check_batch(
        'entrypoints, payloads, priorities, run_ats, dedupe_keys, headers and max_attempts',
        ARRAY[v_n, coalesce(cardinality(payloads), v_n), coalesce(cardinality(priorities), v_n),
              coalesce(cardinality(run_ats), v_n), coalesce(cardinality(dedupe_keys), v_n),
              coalesce(cardinality(enqueue_many.headers), v_n),
              coalesce(cardinality(enqueue_many.max_attempts), v_n)]);
    IF v_n = 0 THEN
        RETURN;
    END IF;
    PERFORM pgq._check_entrypoints(entrypoints);

    -- Every other limit in one pass over the arrays.
    SELECT (SELECT st.max_payload_bytes FROM pgq.settings AS st),
           (SELECT st.max_headers_bytes FROM pgq.settings AS st),
           max(pg_column_size(u.payload)), max(pg_column_size(u.headers)),
           bool_and(jsonb_typeof(u.headers) = 'object'), min(u.priority), max(u.priority),
           min(u.run_at), max(u.run_at), max(char_length(u.dedupe_key)), min(u.max_attempts)
    INTO v_payload_limit, v_headers_limit, v_payload_bytes, v_headers_bytes, v_headers_object,
         v_min_priority, v_max_priority, v_min_run_at, v_max_run_at, v_key_chars, v_max_attempts
    FROM unnest(payloads, priorities, run_ats, dedupe_keys, enqueue_many.headers, enqueue_many.max_attempts)
        AS u(payload, priority, run_at, dedupe_key, headers, max_attempts);
    IF v_payload_bytes > v_payload_limit THEN
        RAISE EXCEPTION 'pgq: payload of % bytes exceeds max_payload_bytes (%)', v_payload_bytes, v_payload_limit
            USING ERRCODE = 'program_limit_exceeded';
    END IF;
    IF v_headers_bytes > v_headers_limit THEN
        RAISE EXCEPTION 'pgq: headers of % bytes exceed max_headers_bytes (%)', v_headers_bytes, v_headers_limit
            USING ERRCODE = 'program_limit_exceeded';
    END IF;
    IF NOT v_headers_object THEN
        RAISE EXCEPTION 'pgq: headers must be a JSON object'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF v_min_priority < -32768 OR v_max_priority > 32767 THEN
        RAISE EXCEPTION 'pgq: priority must be between -32768 and 32767, got %',
            CASE WHEN v_min_priority < -32768 THEN v_min_priority ELSE v_max_priority END
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF v_min_run_at = '-infinity' OR v_max_run_at > v_now + interval '10 years' THEN
        RAISE EXCEPTION 'pgq: run_at must be finite and at most 10 years ahead, got %',
            CASE WHEN v_min_run_at = '-infinity' THEN v_min_run_at ELSE v_max_run_at END
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF v_key_chars > 512 THEN
        RAISE EXCEPTION 'pgq: dedupe_key is limited to 512 characters, got %', v_key_chars
            USING ERRCODE = 'program_limit_exceeded';
    END IF;
    IF v_max_attempts < 1 THEN
        RAISE EXCEPTION 'pgq: max_attempts must be >= 1, got %', v_max_attempts
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- Every entrypoint that has jobs has a policy row (with the table's defaults).
    INSERT INTO pgq.entrypoints (name)
    SELECT DISTINCT e.name FROM unnest(entrypoints) AS e(name)
    ON CONFLICT DO NOTHING;

    -- Without dedupe keys every row is new: ids drawn in input order, one plain INSERT.
    IF v_key_chars IS NULL THEN
        v_ids := ARRAY(SELECT nextval('pgq.jobs_id_seq') FROM generate_series(1, v_n));
        INSERT INTO pgq.jobs (id, entrypoint, state, priority, run_at, max_attempts, enqueued_at, payload,
                              headers)
        OVERRIDING SYSTEM VALUE
        SELECT u.id, u.entrypoint, CASE WHEN u.run_at > v_now THEN 'scheduled' ELSE 'queued' END,
               coalesce(u.priority, 0), coalesce(u.run_at, v_now), u.max_attempts, v_now,
               coalesce(u.payload, '{}'), coalesce(u.headers, '{}')
        FROM unnest(v_ids, entrypoints, payloads, priorities, run_ats, enqueue_many.headers,
                    enqueue_many.max_attempts) AS u(id, entrypoint, payload, priority, run_at, headers,
                                                    max_attempts);
    END IF;

    -- Inserts the rows without an id yet: each row without a dedupe key, and the first row of each
    -- key in the batch (its later rows share its id). A key held by a live job inserts nothing.
    -- Rows go in key order, so concurrent batches sharing dedupe keys cannot deadlock.
    WHILE v_ids IS NULL OR array_position(v_ids, NULL) IS NOT NULL LOOP
        WITH input AS (
            SELECT u.*, coalesce(k.first, u.ord) AS first,
                   CASE WHEN u.id IS NULL AND coalesce(k.first, u.ord) = u.ord
                        THEN nextval('pgq.jobs_id_seq') END AS new_id
            FROM unnest(v_ids, entrypoints, payloads, priorities, run_ats, dedupe_keys,
                        enqueue_many.headers, enqueue_many.max_attempts)
                 WITH ORDINALITY AS u(id, entrypoint, payload, priority, run_at, dedupe_key, headers,
                                      max_attempts, ord)
            LEFT JOIN (SELECT d.key, min(d.ord) AS first
                       FROM unnest(dedupe_keys) WITH ORDINALITY AS d(key, ord)
                       WHERE d.key IS NOT NULL
                       GROUP BY d.key) AS k ON k.key = u.dedupe_key
        ), inserted AS (
            INSERT INTO pgq.jobs (id, entrypoint, state, priority, run_at, max_attempts, dedupe_key,
                                  enqueued_at, payload, headers)
            OVERRIDING SYSTEM VALUE
            SELECT i.new_id, i.entrypoint,
                   CASE WHEN i.run_at > v_now THEN 'scheduled' ELSE 'queued' END,
                   coalesce(i.priority, 0), coalesce(i.run_at, v_now), i.max_attempts, i.dedupe_key,
                   v_now, coalesce(i.payload, '{}'), coalesce(i.headers, '{}')
            FROM input AS i
            WHERE i.new_id IS NOT NULL
            ORDER BY i.dedupe_key, i.ord
            ON CONFLICT (dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING
            RETURNING pgq.jobs.dedupe_key
        )
        SELECT array_agg(coalesce(i.id, i.new_id, f.new_id) ORDER BY i.ord),
               -- The keys a live job already held: their rows were not inserted.
               ARRAY(SELECT c.dedupe_key FROM input AS c
                     WHERE c.new_id IS NOT NULL AND c.dedupe_key IS NOT NULL
                       AND c.dedupe_key NOT IN (SELECT ins.dedupe_key FROM inserted AS ins
                                                WHERE ins.dedupe_key IS NOT NULL))
        INTO v_ids, v_conflicts
        FROM input AS i
        LEFT JOIN input AS f ON i.first <> i.ord AND f.ord = i.first;
        EXIT WHEN cardinality(v_conflicts) = 0;

        -- Their rows answer with the id of the live job holding the key (read by a new statement,
        -- which sees a job committed by a concurrent batch); if it finished meanwhile, the loop
        -- inserts the row again.
        SELECT array_agg(CASE WHEN c.key IS NULL THEN u.id ELSE c.id END ORDER BY u.ord)
        INTO v_ids
        FROM unnest(v_ids, dedupe_keys) WITH ORDINALITY AS u(id, dedupe_key, ord)
        LEFT JOIN (SELECT k.key, j.id FROM unnest(v_conflicts) AS k(key)
                   LEFT JOIN pgq.jobs AS j ON j.dedupe_key = k.key) AS c ON c.key = u.dedupe_key;
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
-- The common job (no dedupe key, every argument plainly valid) takes one statement of its own:
-- about half the server time of the batch path at idle (bench/sql_floor.py --only enqueue).
-- Anything else, including every input that must raise, goes through enqueue_many, which owns
-- the rules and their errors.
CREATE OR REPLACE FUNCTION pgq.enqueue(
    entrypoint text,
    payload jsonb DEFAULT '{}',
    priority integer DEFAULT 0,
    run_at timestamptz DEFAULT NULL,
    dedupe_key text DEFAULT NULL,
    headers jsonb DEFAULT '{}',
    max_attempts integer DEFAULT NULL
) RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pgq, pg_temp
SECURITY DEFINER
AS $$
DECLARE
    v_now timestamptz := pgq.now();
    v_id bigint;
BEGIN
    IF dedupe_key IS NULL AND char_length(entrypoint) <= 200 AND btrim(entrypoint) <> ''
       AND entrypoint !~ '[\x01-\x1f\x7f-\x9f]' AND priority BETWEEN -32768 AND 32767
       AND coalesce(run_at > '-infinity' AND run_at <= v_now + interval '10 years', run_at IS NULL)
       AND coalesce(max_attempts >= 1, true) AND jsonb_typeof(coalesce(headers, '{}')) = 'object'
    THEN
        -- The size caps filter the row: over one, nothing is inserted and enqueue_many raises.
        WITH job AS (
            INSERT INTO pgq.jobs (entrypoint, state, priority, run_at, max_attempts, enqueued_at,
                                  payload, headers)
            SELECT enqueue.entrypoint,
                   CASE WHEN enqueue.run_at > v_now THEN 'scheduled' ELSE 'queued' END,
                   enqueue.priority, coalesce(enqueue.run_at, v_now), enqueue.max_attempts, v_now,
                   coalesce(enqueue.payload, '{}'), coalesce(enqueue.headers, '{}')
            FROM pgq.settings AS st
            WHERE pg_column_size(coalesce(enqueue.payload, '{}')) <= st.max_payload_bytes
              AND pg_column_size(coalesce(enqueue.headers, '{}')) <= st.max_headers_bytes
            RETURNING pgq.jobs.id, pgq.jobs.state
        ), policy AS (
            -- Every entrypoint that has jobs has a policy row; a known name costs one probe.
            INSERT INTO pgq.entrypoints (name)
            SELECT enqueue.entrypoint FROM job
            WHERE NOT EXISTS (SELECT FROM pgq.entrypoints AS e WHERE e.name = enqueue.entrypoint)
            ON CONFLICT DO NOTHING
        )
        SELECT job.id INTO v_id
        FROM job
        -- Workers hear of a job they can claim now; a scheduled one is promoted when due.
        LEFT JOIN LATERAL (SELECT pg_notify('pgq_jobs', enqueue.entrypoint)
                           WHERE job.state = 'queued') AS n ON true;
        IF v_id IS NOT NULL THEN
            RETURN v_id;
        END IF;
    END IF;
    RETURN (SELECT pgq.enqueue_many(ARRAY[entrypoint], ARRAY[payload], ARRAY[priority], ARRAY[run_at],
                                    ARRAY[dedupe_key], ARRAY[headers], ARRAY[max_attempts]));
END
$$;
COMMENT ON FUNCTION pgq.enqueue(text, jsonb, integer, timestamptz, text, jsonb, integer) IS
    'Enqueues one job; returns its id, or the id of the live job holding the same dedupe_key.';
