-- 0009 schedules: periodic jobs, stored as data and fired by pgq.fire_schedules (sql/api/schedule.sql).

CREATE TABLE pgq.schedules (
    name text PRIMARY KEY,
    cron text NOT NULL,
    -- The parsed expression (pgq._cron_parse), so that firing does not parse it again.
    cron_spec bigint[] NOT NULL,
    timezone text NOT NULL DEFAULT 'UTC',
    entrypoint text NOT NULL,
    payload jsonb NOT NULL DEFAULT '{}',
    headers jsonb NOT NULL DEFAULT '{}',
    priority integer NOT NULL DEFAULT 0,
    max_attempts integer CHECK (max_attempts > 0),
    catch_up text NOT NULL DEFAULT 'latest' CHECK (catch_up IN ('latest', 'all', 'none')),
    -- NULL while active; why it is paused otherwise.
    paused text CHECK (paused IN ('by request', 'no longer declared', 'over the size limits')),
    next_run_at timestamptz NOT NULL,
    last_tick_at timestamptz,
    last_fired_at timestamptz,
    last_job_id bigint,
    last_success_at timestamptz,
    -- 'sql' (pgq.schedule, the CLI) or 'app' (an App's @app.periodic, registered at worker start).
    declared_by text NOT NULL DEFAULT 'sql' CHECK (declared_by IN ('sql', 'app')),
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);

-- Due schedules by time: dequeue probes its first entry, fire_schedules walks it.
CREATE INDEX schedules_due_idx ON pgq.schedules (next_run_at) WHERE paused IS NULL;

INSERT INTO pgq.migrations (version, name) VALUES (9, 'schedules');
