-- Periodic jobs: cron expressions evaluated in SQL, schedules stored in pgq.schedules and fired
-- by pgq.fire_schedules (called by dequeue when a schedule is due, and by workers' upkeep).

-- One field of a cron expression as a bit mask (bit v set = value v matches): lists, ranges,
-- steps, names. Day-of-week 7 is Sunday (bit 0).
CREATE OR REPLACE FUNCTION pgq._cron_field(
    field text, label text, lo integer, hi integer, names text[] DEFAULT NULL
) RETURNS bigint
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pgq, pg_temp
SECURITY DEFINER
AS $$
DECLARE
    v_mask bigint := 0;
    v_item text;
    v_parts text[];
    v_from integer;
    v_to integer;
    v_step integer;
    v_bound text;
    v_value integer;
BEGIN
    FOREACH v_item IN ARRAY string_to_array(field, ',') LOOP
        v_parts := regexp_match(v_item, '^(\*|[a-z0-9]+)(?:-([a-z0-9]+))?(?:/([0-9]+))?$');
        IF v_parts IS NULL OR (v_parts[1] = '*' AND v_parts[2] IS NOT NULL) THEN
            RAISE EXCEPTION 'pgq: invalid cron expression: % field "%": %', label, field,
                CASE WHEN v_item = '' THEN 'empty list item' ELSE format('cannot read "%s"', v_item) END
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        -- Each bound: a number, or a name (its position in names, from lo).
        FOREACH v_bound IN ARRAY ARRAY[v_parts[1], coalesce(v_parts[2], v_parts[1])] LOOP
            IF v_bound = '*' THEN
                v_value := NULL;
            ELSIF v_bound ~ '^[0-9]{1,4}$' THEN
                v_value := v_bound::integer;
            ELSE
                v_value := array_position(names, v_bound) - 1 + lo;
                IF v_value IS NULL THEN
                    RAISE EXCEPTION 'pgq: invalid cron expression: % field "%": unknown value "%"',
                        label, field, v_bound USING ERRCODE = 'invalid_parameter_value';
                END IF;
            END IF;
            IF v_value < lo OR v_value > hi THEN
                RAISE EXCEPTION 'pgq: invalid cron expression: % field "%": % is out of range %-%',
                    label, field, v_value, lo, CASE WHEN label = 'day-of-week' THEN 7 ELSE hi END
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            v_from := CASE WHEN v_bound IS NOT DISTINCT FROM v_parts[1] AND v_to IS NULL THEN v_value ELSE v_from END;
            v_to := v_value;
        END LOOP;
        v_from := coalesce(v_from, lo);
        -- `*` spans the field; `n/step` runs from n to the field's end (for day-of-week, as
        -- croniter: Sunday as 0, to Saturday).
        IF v_parts[1] = '*' THEN
            v_to := hi;
        ELSIF v_parts[2] IS NULL AND v_parts[3] IS NOT NULL THEN
            v_from := CASE WHEN label = 'day-of-week' THEN v_from % 7 ELSE v_from END;
            v_to := CASE WHEN label = 'day-of-week' THEN 6 ELSE hi END;
        END IF;
        v_step := coalesce(v_parts[3]::integer, 1);
        IF v_step = 0 THEN
            RAISE EXCEPTION 'pgq: invalid cron expression: % field "%": step 0', label, field
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF v_from > v_to THEN
            RAISE EXCEPTION 'pgq: invalid cron expression: % field "%": range %-% runs backwards',
                label, field, v_from, v_to USING ERRCODE = 'invalid_parameter_value';
        END IF;
        FOR v_value IN v_from .. v_to BY v_step LOOP
            v_mask := v_mask | (1::bigint << v_value);
        END LOOP;
        v_from := NULL;
        v_to := NULL;
    END LOOP;
    RETURN v_mask;
END
$$;
COMMENT ON FUNCTION pgq._cron_field(text, text, integer, integer, text[]) IS
    'One cron field as a bit mask of the values it matches; 22023 naming the field and value when invalid.';

-- A cron expression as pgq._cron_next evaluates it: ARRAY[second, minute, hour, day-of-month,
-- month, day-of-week masks, 1 when a day matches either day field (both restricted) else 0].
CREATE OR REPLACE FUNCTION pgq._cron_parse(expr text) RETURNS bigint[]
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pgq, pg_temp
SECURITY DEFINER
AS $$
DECLARE
    v_text text := lower(btrim(expr));
    v_fields text[];
    v_dow bigint;
    v_spec bigint[];
BEGIN
    IF expr IS NULL THEN
        RAISE EXCEPTION 'pgq: cron expression must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    v_text := CASE v_text
        WHEN '@yearly' THEN '0 0 1 1 *' WHEN '@annually' THEN '0 0 1 1 *'
        WHEN '@monthly' THEN '0 0 1 * *' WHEN '@weekly' THEN '0 0 * * 0'
        WHEN '@daily' THEN '0 0 * * *' WHEN '@midnight' THEN '0 0 * * *'
        WHEN '@hourly' THEN '0 * * * *' ELSE v_text END;
    IF v_text LIKE '@%' THEN
        RAISE EXCEPTION 'pgq: invalid cron expression "%": unknown macro (use @yearly, @annually, @monthly, @weekly, @daily, @midnight or @hourly)', expr
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_fields := regexp_split_to_array(v_text, '\s+');
    IF cardinality(v_fields) = 5 THEN
        v_fields := '0'::text || v_fields;
    ELSIF cardinality(v_fields) <> 6 OR v_text = '' THEN
        RAISE EXCEPTION 'pgq: invalid cron expression "%": expected 5 fields (minute hour day-of-month month day-of-week) or 6 (seconds first), got %',
            expr, CASE WHEN v_text = '' THEN 0 ELSE cardinality(v_fields) END
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_dow := pgq._cron_field(v_fields[6], 'day-of-week', 0, 7,
                             ARRAY['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat']);
    v_spec := ARRAY[
        pgq._cron_field(v_fields[1], 'second', 0, 59),
        pgq._cron_field(v_fields[2], 'minute', 0, 59),
        pgq._cron_field(v_fields[3], 'hour', 0, 23),
        pgq._cron_field(v_fields[4], 'day-of-month', 1, 31),
        pgq._cron_field(v_fields[5], 'month', 1, 12,
                        ARRAY['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec']),
        (v_dow | (v_dow >> 7)) & 127,
        -- Classic cron: a day field written starting with '*' does not restrict the day.
        (v_fields[4] NOT LIKE '*%' AND v_fields[6] NOT LIKE '*%')::integer
    ];
    -- A day that never comes (30 February): refused here rather than found by every caller.
    BEGIN
        PERFORM pgq._cron_next(v_spec, timestamptz '2000-01-01 00:00:00+00', 'UTC');
    EXCEPTION WHEN invalid_parameter_value THEN
        RAISE EXCEPTION 'pgq: invalid cron expression "%": it never matches (no such day)', expr
            USING ERRCODE = 'invalid_parameter_value';
    END;
    RETURN v_spec;
END
$$;
COMMENT ON FUNCTION pgq._cron_parse(text) IS
    'Parses a cron expression (5 fields, or 6 with seconds first, or a macro) into the masks pgq._cron_next reads; 22023 when invalid.';

-- The first instant in (lo, hi] whose UTC offset in zone tz differs from lo's (a DST change).
CREATE OR REPLACE FUNCTION pgq._tz_change(lo timestamptz, hi timestamptz, tz text) RETURNS timestamptz
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pgq, pg_temp
SECURITY DEFINER
AS $$
DECLARE
    v_offset interval := (lo AT TIME ZONE tz) - (lo AT TIME ZONE 'UTC');
    v_mid timestamptz;
BEGIN
    WHILE hi - lo > interval '1 second' LOOP
        v_mid := date_trunc('second', lo + (hi - lo) / 2);
        IF (v_mid AT TIME ZONE tz) - (v_mid AT TIME ZONE 'UTC') = v_offset THEN
            lo := v_mid;
        ELSE
            hi := v_mid;
        END IF;
    END LOOP;
    RETURN hi;
END
$$;
COMMENT ON FUNCTION pgq._tz_change(timestamptz, timestamptz, text) IS
    'The instant of a UTC offset change in zone tz between lo and hi, by bisection to the second.';

-- The first tick of a parsed expression strictly after `after`, in zone tz. Local times are
-- searched field by field (bit masks, no per-second stepping); a local time skipped by a DST
-- change fires at the change, a repeated one at its first occurrence only.
CREATE OR REPLACE FUNCTION pgq._cron_next(spec bigint[], after timestamptz, tz text) RETURNS timestamptz
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pgq, pg_temp
SECURITY DEFINER
AS $$
DECLARE
    v_sec bigint := spec[1];
    v_min bigint := spec[2];
    v_hour bigint := spec[3];
    v_dom bigint := spec[4];
    v_mon bigint := spec[5];
    v_dow bigint := spec[6];
    v_either boolean := spec[7] = 1;
    v_local timestamp := date_trunc('second', after AT TIME ZONE tz) + interval '1 second';
    v_limit integer := extract(year FROM v_local)::integer + 50;
    y integer; mo integer; d integer; h integer; mi integer; s integer;
    r bigint; v_dim integer; v_wd integer; v_next_dom integer; v_next_dow integer; v_day integer;
    v_cand timestamp;
    v_at timestamptz;
    v_first timestamptz;
BEGIN
    LOOP
        y := extract(year FROM v_local); mo := extract(month FROM v_local); d := extract(day FROM v_local);
        h := extract(hour FROM v_local); mi := extract(minute FROM v_local); s := extract(second FROM v_local);
        LOOP
            IF y > v_limit THEN
                RAISE EXCEPTION 'pgq: cron expression never matches (no tick within 50 years)'
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            -- Month: the next one in the mask, else January... of the next year.
            r := v_mon >> mo;
            IF r = 0 THEN
                y := y + 1; mo := 0; d := 1; h := 0; mi := 0; s := 0;
                CONTINUE;
            END IF;
            r := mo + round(ln((r & -r)::float8) / 0.6931471805599453)::integer;
            IF r <> mo THEN
                mo := r; d := 1; h := 0; mi := 0; s := 0;
            END IF;
            -- Day: the next day matching day-of-month and/or day-of-week.
            v_dim := CASE WHEN mo = 2 THEN 28 + (y % 4 = 0 AND (y % 100 <> 0 OR y % 400 = 0))::integer
                          ELSE 31 - (mo - 1) % 7 % 2 END;
            IF d <= v_dim THEN
                r := v_dom >> d;
                v_next_dom := CASE WHEN r = 0 THEN 99 ELSE d + round(ln((r & -r)::float8) / 0.6931471805599453)::integer END;
                v_wd := extract(dow FROM make_date(y, mo, d));
                r := ((v_dow >> v_wd) | (v_dow << (7 - v_wd))) & 127;
                v_next_dow := d + round(ln((r & -r)::float8) / 0.6931471805599453)::integer;
                v_day := CASE WHEN v_either THEN least(v_next_dom, v_next_dow)
                              ELSE greatest(v_next_dom, v_next_dow) END;
            END IF;
            IF d > v_dim OR v_day > v_dim THEN
                mo := mo + 1; d := 1; h := 0; mi := 0; s := 0;
                IF mo > 12 THEN
                    y := y + 1; mo := 1;
                END IF;
                CONTINUE;
            END IF;
            IF v_day <> d THEN
                d := v_day; h := 0; mi := 0; s := 0;
                CONTINUE;  -- both fields are checked again on the new day
            END IF;
            -- Hour, minute, second: the next set bit, else carry into the field above.
            r := v_hour >> h;
            IF r = 0 THEN
                d := d + 1; h := 0; mi := 0; s := 0;
                CONTINUE;
            END IF;
            r := h + round(ln((r & -r)::float8) / 0.6931471805599453)::integer;
            IF r <> h THEN
                h := r; mi := 0; s := 0;
            END IF;
            r := v_min >> mi;
            IF r = 0 THEN
                h := h + 1; mi := 0; s := 0;
                CONTINUE;
            END IF;
            r := mi + round(ln((r & -r)::float8) / 0.6931471805599453)::integer;
            IF r <> mi THEN
                mi := r; s := 0;
            END IF;
            r := v_sec >> s;
            IF r = 0 THEN
                mi := mi + 1; s := 0;
                CONTINUE;
            END IF;
            s := s + round(ln((r & -r)::float8) / 0.6931471805599453)::integer;
            EXIT;
        END LOOP;

        v_cand := make_timestamp(y, mo, d, h, mi, s);
        v_at := v_cand AT TIME ZONE tz;  -- in a gap: the offset before it; repeated: the later one
        IF v_at AT TIME ZONE tz <> v_cand THEN
            -- Skipped by a DST change: the change itself is the first valid instant after it.
            RETURN pgq._tz_change(v_at - ((v_at AT TIME ZONE tz) - v_cand), v_at, tz);
        END IF;
        -- Repeated: an earlier instant with the offset from before the change shows the same time.
        v_first := (v_cand - ((v_at - interval '3 hours') AT TIME ZONE tz
                              - (v_at - interval '3 hours') AT TIME ZONE 'UTC')) AT TIME ZONE 'UTC';
        IF v_first < v_at AND v_first AT TIME ZONE tz = v_cand THEN
            IF v_first > after THEN
                RETURN v_first;
            END IF;
            -- Its first occurrence is past (`after` lies in the repeat): go on after the repeat.
            v_local := greatest(v_cand + interval '1 second',
                                (pgq._tz_change(v_first, v_at, tz) - interval '1 second') AT TIME ZONE tz
                                    + interval '1 second');
            CONTINUE;
        END IF;
        RETURN v_at;
    END LOOP;
END
$$;
COMMENT ON FUNCTION pgq._cron_next(bigint[], timestamptz, text) IS
    'The first tick of a parsed cron expression after an instant, in a time zone (DST: skipped times fire at the change, repeated ones once).';

-- Raises 22023 unless tz is a time zone PostgreSQL knows.
CREATE OR REPLACE FUNCTION pgq._check_timezone(tz text) RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pgq, pg_temp
SECURITY DEFINER
AS $$
BEGIN
    IF tz IS NULL OR btrim(tz) = '' THEN
        RAISE EXCEPTION 'pgq: timezone must not be empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM timestamptz '2000-01-01 00:00:00+00' AT TIME ZONE tz;
EXCEPTION WHEN invalid_parameter_value OR feature_not_supported THEN
    RAISE EXCEPTION 'pgq: unknown time zone %', to_json(tz) USING ERRCODE = 'invalid_parameter_value';
END
$$;
COMMENT ON FUNCTION pgq._check_timezone(text) IS 'Raises 22023 for an empty or unknown time zone name.';

-- The next tick of a cron expression after an instant, in a time zone.
CREATE OR REPLACE FUNCTION pgq.cron_next(
    expr text,
    after timestamptz,
    timezone text DEFAULT 'UTC'
) RETURNS timestamptz
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pgq, pg_temp
SECURITY DEFINER
AS $$
BEGIN
    PERFORM pgq._check_timezone(timezone);
    IF after IS NULL OR NOT after BETWEEN timestamptz '0001-01-01 00:00:00+00' AND timestamptz '100000-01-01 00:00:00+00' THEN
        RAISE EXCEPTION 'pgq: after must be a time between the years 1 and 100000, got %', coalesce(after::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN pgq._cron_next(pgq._cron_parse(expr), after, timezone);
END
$$;
COMMENT ON FUNCTION pgq.cron_next(text, timestamptz, text) IS
    'The first tick of a cron expression (5 fields, or 6 with seconds first, or @daily etc.) strictly after `after`, evaluated in `timezone`; 22023 when invalid or never matching.';

-- Validates and stores a schedule (insert or update); the caller says who declares it.
CREATE OR REPLACE FUNCTION pgq._upsert_schedule(
    name text, cron text, entrypoint text, payload jsonb, timezone text, priority integer,
    headers jsonb, max_attempts integer, catch_up text, declared_by text
) RETURNS timestamptz
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pgq, pg_temp
SECURITY DEFINER
AS $$
DECLARE
    v_now timestamptz := pgq.now();
    v_spec bigint[];
    v_next timestamptz;
BEGIN
    IF name IS NULL OR btrim(name) = '' OR char_length(name) > 200 OR name ~ '[\x01-\x1f\x7f-\x9f]' THEN
        RAISE EXCEPTION 'pgq: schedule name must be 1 to 200 characters without control characters, got %',
            coalesce(to_json(name)::text, 'NULL') USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pgq._check_entrypoints(ARRAY[entrypoint]);
    PERFORM pgq._check_timezone(timezone);
    IF catch_up IS NULL OR catch_up NOT IN ('latest', 'all', 'none') THEN
        RAISE EXCEPTION 'pgq: catch_up must be latest, all or none, got %', coalesce(catch_up, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF priority IS NULL OR priority < -32768 OR priority > 32767 THEN
        RAISE EXCEPTION 'pgq: priority must be between -32768 and 32767, got %', coalesce(priority::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF max_attempts < 1 THEN
        RAISE EXCEPTION 'pgq: max_attempts must be >= 1, got %', max_attempts
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF payload IS NULL OR headers IS NULL OR jsonb_typeof(headers) <> 'object' THEN
        RAISE EXCEPTION 'pgq: payload must not be NULL and headers must be a JSON object'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- The headers as a job will carry them (with schedule and tick, always 20 characters).
    IF pg_column_size(payload) > (SELECT st.max_payload_bytes FROM pgq.settings AS st)
        OR pg_column_size(headers || jsonb_build_object('schedule', name, 'tick', '2000-01-01T00:00:00Z'))
            > (SELECT st.max_headers_bytes FROM pgq.settings AS st) THEN
        RAISE EXCEPTION 'pgq: payload or headers (with schedule and tick) exceed max_payload_bytes / max_headers_bytes'
            USING ERRCODE = 'program_limit_exceeded';
    END IF;
    v_spec := pgq._cron_parse(cron);
    v_next := pgq._cron_next(v_spec, v_now, timezone);

    INSERT INTO pgq.schedules AS s (name, cron, cron_spec, timezone, entrypoint, payload, headers,
                                    priority, max_attempts, catch_up, next_run_at, declared_by,
                                    created_at, updated_at)
    VALUES (name, cron, v_spec, timezone, entrypoint, payload, headers, priority, max_attempts,
            catch_up, v_next, declared_by, v_now, v_now)
    ON CONFLICT ON CONSTRAINT schedules_pkey DO UPDATE SET
        cron = excluded.cron, cron_spec = excluded.cron_spec, timezone = excluded.timezone,
        entrypoint = excluded.entrypoint, payload = excluded.payload, headers = excluded.headers,
        priority = excluded.priority, max_attempts = excluded.max_attempts,
        catch_up = excluded.catch_up, declared_by = excluded.declared_by,
        -- The pending tick stays unless the timing changed (a worker restart loses no tick).
        next_run_at = CASE WHEN s.cron_spec = excluded.cron_spec AND s.timezone = excluded.timezone
                           THEN s.next_run_at ELSE excluded.next_run_at END,
        -- The app declaring it again resumes what it paused; a pause by request stays.
        paused = CASE WHEN excluded.declared_by = 'app' AND s.paused = 'no longer declared'
                      THEN NULL ELSE s.paused END,
        updated_at = excluded.updated_at
    RETURNING s.next_run_at INTO v_next;
    RETURN v_next;
END
$$;
COMMENT ON FUNCTION pgq._upsert_schedule(text, text, text, jsonb, text, integer, jsonb, integer, text, text) IS
    'Validates and upserts a schedule (pgq.schedule and pgq.register_schedules); returns its next run.';

-- Creates or replaces a schedule; returns its next run.
CREATE OR REPLACE FUNCTION pgq.schedule(
    name text,
    cron text,
    entrypoint text,
    payload jsonb DEFAULT '{}',
    timezone text DEFAULT 'UTC',
    priority integer DEFAULT 0,
    headers jsonb DEFAULT '{}',
    max_attempts integer DEFAULT NULL,
    catch_up text DEFAULT 'latest'
) RETURNS timestamptz
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pgq, pg_temp
SECURITY DEFINER
AS $$
BEGIN
    RETURN pgq._upsert_schedule(name, cron, entrypoint, payload, timezone, priority, headers,
                                max_attempts, catch_up, 'sql');
END
$$;
COMMENT ON FUNCTION pgq.schedule(text, text, text, jsonb, text, integer, jsonb, integer, text) IS
    'Creates or replaces a periodic job (cron in timezone; catch_up latest, all or none); returns its next run.';

-- Stores the schedules an app declares (@app.periodic) and pauses the ones it declared before for
-- these entrypoints and no longer does; returns the names it paused.
CREATE OR REPLACE FUNCTION pgq.register_schedules(
    entrypoints text[],
    names text[],
    crons text[],
    schedule_entrypoints text[],
    payloads jsonb[],
    timezones text[],
    priorities integer[],
    headers jsonb[],
    max_attempts integer[],
    catch_ups text[]
) RETURNS SETOF text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pgq, pg_temp
SECURITY DEFINER
AS $$
DECLARE
    v_n integer := coalesce(cardinality(names), 0);
BEGIN
    PERFORM pgq._check_batch(
        'names, crons, schedule_entrypoints, payloads, timezones, priorities, headers, max_attempts and catch_ups',
        ARRAY[v_n, coalesce(cardinality(crons), 0), coalesce(cardinality(schedule_entrypoints), 0),
              coalesce(cardinality(payloads), 0), coalesce(cardinality(timezones), 0),
              coalesce(cardinality(priorities), 0), coalesce(cardinality(register_schedules.headers), 0),
              coalesce(cardinality(register_schedules.max_attempts), 0), coalesce(cardinality(catch_ups), 0)]);
    PERFORM pgq._check_entrypoints(entrypoints);
    IF NOT schedule_entrypoints <@ entrypoints THEN
        RAISE EXCEPTION 'pgq: an app declares schedules only for its own entrypoints'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- Startup only, a handful of rows: each through the one validating upsert.
    FOR i IN 1 .. v_n LOOP
        BEGIN
            PERFORM pgq._upsert_schedule(names[i], crons[i], schedule_entrypoints[i], payloads[i],
                                         timezones[i], priorities[i], register_schedules.headers[i],
                                         register_schedules.max_attempts[i], catch_ups[i], 'app');
        EXCEPTION WHEN invalid_parameter_value OR null_value_not_allowed OR program_limit_exceeded THEN
            RAISE EXCEPTION 'pgq: schedule %: %', to_json(names[i]), regexp_replace(SQLERRM, '^pgq: ', '')
                USING ERRCODE = SQLSTATE;
        END;
    END LOOP;
    RETURN QUERY
    UPDATE pgq.schedules AS s SET paused = 'no longer declared', updated_at = pgq.now()
    WHERE s.declared_by = 'app' AND s.entrypoint = ANY (entrypoints) AND s.paused IS NULL
      AND s.name <> ALL (coalesce(names, '{}'))
    RETURNING s.name;
END
$$;
COMMENT ON FUNCTION pgq.register_schedules(text[], text[], text[], text[], jsonb[], text[], integer[], jsonb[], integer[], text[]) IS
    'A worker''s start: upserts its app''s schedules and pauses those it declared before for these entrypoints and no longer does (returned).';

-- Deletes a schedule (its jobs already enqueued stay); false if there was none.
CREATE OR REPLACE FUNCTION pgq.unschedule(name text) RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pgq, pg_temp
SECURITY DEFINER
AS $$
BEGIN
    DELETE FROM pgq.schedules AS s WHERE s.name = unschedule.name;
    RETURN FOUND;
END
$$;
COMMENT ON FUNCTION pgq.unschedule(text) IS 'Deletes a schedule (jobs it enqueued stay); false if there was none.';

-- Pauses a schedule: no tick fires until it is resumed. False if there is no such schedule.
CREATE OR REPLACE FUNCTION pgq.pause_schedule(name text) RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pgq, pg_temp
SECURITY DEFINER
AS $$
BEGIN
    UPDATE pgq.schedules AS s SET paused = 'by request', updated_at = pgq.now()
    WHERE s.name = pause_schedule.name;
    RETURN FOUND;
END
$$;
COMMENT ON FUNCTION pgq.pause_schedule(text) IS 'Pauses a schedule (no tick fires until resumed); false if there is none.';

-- Resumes a schedule from now: ticks that passed while it was paused do not fire.
CREATE OR REPLACE FUNCTION pgq.resume_schedule(name text) RETURNS timestamptz
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pgq, pg_temp
SECURITY DEFINER
AS $$
DECLARE
    v_next timestamptz;
BEGIN
    UPDATE pgq.schedules AS s SET
        paused = NULL,
        next_run_at = CASE WHEN s.paused IS NULL THEN s.next_run_at
                           ELSE pgq._cron_next(s.cron_spec, pgq.now(), s.timezone) END,
        updated_at = pgq.now()
    WHERE s.name = resume_schedule.name
    RETURNING s.next_run_at INTO v_next;
    RETURN v_next;
END
$$;
COMMENT ON FUNCTION pgq.resume_schedule(text) IS
    'Resumes a paused schedule from now (missed ticks do not fire); returns its next run, NULL if there is none.';

-- Enqueues a schedule's job now, outside its timing (its next run is unchanged).
CREATE OR REPLACE FUNCTION pgq.run_schedule(name text) RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pgq, pg_temp
SECURITY DEFINER
AS $$
DECLARE
    v_now timestamptz := pgq.now();
    v_row pgq.schedules;
BEGIN
    SELECT * INTO v_row FROM pgq.schedules AS s WHERE s.name = run_schedule.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pgq: no schedule named %', to_json(name) USING ERRCODE = 'no_data_found';
    END IF;
    RETURN pgq.enqueue(v_row.entrypoint, v_row.payload, v_row.priority, NULL, NULL,
                       v_row.headers || jsonb_build_object('schedule', v_row.name, 'tick',
                                                         to_char(v_now AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')),
                       v_row.max_attempts);
END
$$;
COMMENT ON FUNCTION pgq.run_schedule(text) IS
    'Enqueues a schedule''s job now (headers: schedule, tick = now), leaving its timing alone; returns the job id.';

-- The ticks a schedule fires after missing some (`following`, the tick after its next run, is
-- due too), and its next run after them: all: every tick from next_run_at to now_at, oldest
-- first, at most 1000 (later missed ticks are skipped); latest and none: the newest tick.
CREATE OR REPLACE FUNCTION pgq._missed_ticks(
    spec bigint[], tz text, catch_up text, next_run_at timestamptz, following timestamptz,
    now_at timestamptz, OUT ticks timestamptz[], OUT next timestamptz
)
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pgq, pg_temp
SECURITY DEFINER
AS $$
DECLARE
    v_tick timestamptz := next_run_at;
    v_window interval := interval '1 second';
    v_probe timestamptz;
BEGIN
    next := following;
    IF catch_up = 'all' THEN
        ticks := ARRAY[v_tick];
        WHILE next <= now_at AND cardinality(ticks) < 1000 LOOP
            ticks := ticks || next;
            next := pgq._cron_next(spec, next, tz);
        END LOOP;
        IF next <= now_at THEN
            next := pgq._cron_next(spec, now_at, tz);
        END IF;
        RETURN;
    END IF;
    -- The newest tick <= now_at: find one in a window doubling back from now_at, then walk on.
    LOOP
        IF now_at - v_window <= next THEN
            v_tick := next;
            EXIT;
        END IF;
        v_probe := pgq._cron_next(spec, now_at - v_window, tz);
        IF v_probe <= now_at THEN
            v_tick := v_probe;
            EXIT;
        END IF;
        v_window := v_window * 2;
    END LOOP;
    LOOP
        next := pgq._cron_next(spec, v_tick, tz);
        EXIT WHEN next > now_at;
        v_tick := next;
    END LOOP;
    ticks := ARRAY[v_tick];
END
$$;
COMMENT ON FUNCTION pgq._missed_ticks(bigint[], text, text, timestamptz, timestamptz, timestamptz) IS
    'The ticks a schedule that missed some fires under its catch-up policy (all: at most 1000), and its next run.';

-- Fires every due schedule: enqueues its job(s) and advances its next run in one transaction.
-- Due rows are locked (SKIP LOCKED), so concurrent callers never fire the same tick twice.
CREATE OR REPLACE FUNCTION pgq.fire_schedules(max_jobs integer DEFAULT 1000) RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pgq, pg_temp
SET jit = off
SECURITY DEFINER
AS $$
DECLARE
    v_now timestamptz := pgq.now();
    v_names text[];
    v_next timestamptz[];
    v_last timestamptz[];
    v_tick_names text[];
    v_ticks timestamptz[];
    v_entrypoints text[];
    v_payloads jsonb[];
    v_priorities integer[];
    v_headers jsonb[];
    v_max_attempts integer[];
    v_ids bigint[];
BEGIN
    IF max_jobs IS NULL OR max_jobs < 1 OR max_jobs > 10000 THEN
        RAISE EXCEPTION 'pgq: max_jobs must be between 1 and 10000, got %', max_jobs
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- A schedule whose job the limits now refuse (pgq.configure lowered them after it was
    -- stored) is paused with the reason, rather than failing every claim that fires.
    UPDATE pgq.schedules AS s SET paused = 'over the size limits', updated_at = v_now
    FROM pgq.settings AS st
    WHERE s.paused IS NULL AND s.next_run_at <= v_now
      -- Sized as enqueue_many sizes them: a fresh value, not the stored (maybe compressed) one.
      AND (pg_column_size(s.payload::text::jsonb) > st.max_payload_bytes
           OR pg_column_size(s.headers || jsonb_build_object('schedule', s.name, 'tick', '2000-01-01T00:00:00Z'))
              > st.max_headers_bytes);
    -- The due schedules, oldest first, with their ticks: on time (the tick after the due one is
    -- still ahead), the due tick; otherwise by catch-up policy, where `none` keeps only a tick at
    -- most a minute late. Schedules past max_jobs jobs wait for the next call (the first one
    -- always fires: a catch-up is never split).
    WITH locked AS (
        SELECT s.*, pgq._cron_next(s.cron_spec, s.next_run_at, s.timezone) AS following
        FROM (SELECT * FROM pgq.schedules AS s
              WHERE s.paused IS NULL AND s.next_run_at <= v_now
              ORDER BY s.next_run_at
              LIMIT max_jobs
              FOR UPDATE SKIP LOCKED) AS s
    ), planned AS (
        SELECT l.*, t.ticks, t.next
        FROM locked AS l
        CROSS JOIN LATERAL (
            SELECT ARRAY[l.next_run_at] AS ticks, l.following AS next WHERE l.following > v_now
            UNION ALL
            SELECT m.ticks, m.next
            FROM pgq._missed_ticks(l.cron_spec, l.timezone, l.catch_up, l.next_run_at, l.following, v_now) AS m
            WHERE l.following <= v_now
        ) AS t
    ), due AS (
        SELECT p.name, p.entrypoint, p.payload, p.priority, p.headers, p.max_attempts, p.next,
               p.next_run_at,
               CASE WHEN p.catch_up = 'none' AND v_now - p.ticks[1] > interval '1 minute'
                    THEN '{}' ELSE p.ticks END AS ticks
        FROM planned AS p
    ), fired AS MATERIALIZED (
        SELECT d.* FROM (SELECT d.*, sum(cardinality(d.ticks)) OVER (ORDER BY d.next_run_at, d.name) AS total
                         FROM due AS d) AS d
        WHERE d.total <= max_jobs OR d.total = cardinality(d.ticks)
    )
    SELECT (SELECT array_agg(f.name) FROM fired AS f),
           (SELECT array_agg(f.next) FROM fired AS f),
           (SELECT array_agg(f.ticks[cardinality(f.ticks)]) FROM fired AS f),
           x.names, x.ticks, x.entrypoints, x.payloads, x.priorities, x.headers, x.max_attempts
    INTO v_names, v_next, v_last,
         v_tick_names, v_ticks, v_entrypoints, v_payloads, v_priorities, v_headers, v_max_attempts
    FROM (SELECT array_agg(f.name ORDER BY k.tick, f.name) AS names,
                 array_agg(k.tick ORDER BY k.tick, f.name) AS ticks,
                 array_agg(f.entrypoint ORDER BY k.tick, f.name) AS entrypoints,
                 array_agg(f.payload ORDER BY k.tick, f.name) AS payloads,
                 array_agg(f.priority ORDER BY k.tick, f.name) AS priorities,
                 array_agg(f.headers || jsonb_build_object('schedule', f.name, 'tick',
                                                     to_char(k.tick AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'))
                           ORDER BY k.tick, f.name) AS headers,
                 array_agg(f.max_attempts ORDER BY k.tick, f.name) AS max_attempts
          FROM fired AS f, unnest(f.ticks) AS k(tick)) AS x;
    IF v_names IS NULL THEN
        RETURN 0;
    END IF;
    IF v_tick_names IS NOT NULL THEN
        v_ids := ARRAY(SELECT pgq.enqueue_many(v_entrypoints, v_payloads, v_priorities, NULL, NULL,
                                               v_headers, v_max_attempts));
    END IF;

    -- Ids are drawn in input order (no dedupe keys): a schedule's newest job has its highest id.
    UPDATE pgq.schedules AS s SET
        next_run_at = u.next,
        last_tick_at = coalesce(u.last_tick, s.last_tick_at),
        last_fired_at = CASE WHEN u.last_tick IS NULL THEN s.last_fired_at ELSE v_now END,
        last_job_id = coalesce(j.id, s.last_job_id),
        last_success_at = CASE WHEN j.id IS NULL THEN s.last_success_at
            ELSE coalesce((SELECT h.finished_at FROM pgq.job_history AS h
                           WHERE h.id = s.last_job_id AND h.state = 'succeeded'), s.last_success_at) END,
        updated_at = v_now
    FROM unnest(v_names, v_next, v_last) AS u(name, next, last_tick)
    LEFT JOIN (SELECT i.name, max(i.id) AS id FROM unnest(v_tick_names, v_ids) AS i(name, id)
               GROUP BY i.name) AS j ON j.name = u.name
    WHERE s.name = u.name;
    RETURN coalesce(cardinality(v_ids), 0);
END
$$;
COMMENT ON FUNCTION pgq.fire_schedules(integer) IS
    'Enqueues the jobs of every due schedule (catch-up policy applied; headers: schedule, tick) and advances them, at most max_jobs jobs; returns how many.';

-- One row per schedule: its timing, its last tick and how the job fired for it is doing.
CREATE OR REPLACE VIEW pgq.schedule_stats AS
SELECT s.name, s.cron, s.timezone, s.entrypoint, s.catch_up, s.declared_by,
       s.paused IS NOT NULL AS paused, s.paused AS paused_reason,
       s.next_run_at,
       -- How late the pending tick is (0 while it is not due).
       greatest(pgq.now() - s.next_run_at, interval '0') AS lateness,
       s.last_tick_at, s.last_fired_at,
       s.last_fired_at - s.last_tick_at AS last_fire_delay,
       s.last_job_id,
       coalesce(j.state, h.state) AS last_job_state,
       coalesce(j.last_error, h.error) AS last_job_error,
       CASE WHEN h.state = 'succeeded' THEN h.finished_at ELSE s.last_success_at END AS last_success_at
FROM pgq.schedules AS s
LEFT JOIN pgq.jobs AS j ON j.id = s.last_job_id
LEFT JOIN pgq.job_history AS h ON h.id = s.last_job_id;
COMMENT ON VIEW pgq.schedule_stats IS
    'Schedules: next run and lateness, last tick and how late it fired, the last job''s state and error, the last success, paused.';
