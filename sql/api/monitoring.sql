-- Monitoring: views readable with plain psql, the worker registry, and history retention.
-- The views read waiting and running jobs through partial indexes of pgq.jobs, and recent
-- history through the BRIN indexes on finish time: none of them scans the whole history.

-- Per entrypoint: jobs ready to run (queued, or scheduled and due), scheduled for later, running,
-- dead-lettered (failed, kept in history), finished in the last 5 minutes, the longest wait, and
-- the policy's limit and pause. The longest wait is that of the job each priority will run next
-- (or of a due job not promoted yet), counted from when it became due: it grows while nothing
-- is claimed. Every count comes from an index; the wait costs one probe per priority in use.
CREATE OR REPLACE VIEW pgq.queue_stats AS
SELECT e.name AS entrypoint,
       q.queued + s.due AS queued,
       s.later AS scheduled,
       r.running,
       f.failed,
       coalesce(recent.succeeded, 0) AS succeeded_5m,
       coalesce(recent.failed, 0) AS failed_5m,
       c.now - least(q.head_run_at, s.oldest_due) AS oldest_waiting,
       e.concurrency_limit,
       e.paused
-- The clock is read once (OFFSET 0 keeps it a value, not a call per counted row).
FROM (SELECT pgq.now() AS now OFFSET 0) AS c
CROSS JOIN pgq.entrypoints AS e
CROSS JOIN LATERAL (
    SELECT count(*) AS queued,
           -- The next job of each priority: walk the claim index from one priority to the next.
           (WITH RECURSIVE head(priority, run_at) AS (
                (SELECT j.priority, j.run_at FROM pgq.jobs AS j
                 WHERE j.entrypoint = e.name AND j.state = 'queued'
                 ORDER BY j.priority DESC, j.id
                 LIMIT 1)
                UNION ALL
                SELECT n.priority, n.run_at
                FROM head AS h
                CROSS JOIN LATERAL (
                    SELECT j.priority, j.run_at FROM pgq.jobs AS j
                    WHERE j.entrypoint = e.name AND j.state = 'queued' AND j.priority < h.priority
                    ORDER BY j.priority DESC, j.id
                    LIMIT 1
                ) AS n
            )
            SELECT min(head.run_at) FROM head) AS head_run_at
    FROM pgq.jobs AS j
    WHERE j.entrypoint = e.name AND j.state = 'queued'
) AS q
CROSS JOIN LATERAL (
    SELECT count(*) FILTER (WHERE j.run_at <= c.now) AS due,
           count(*) FILTER (WHERE j.run_at > c.now) AS later,
           min(j.run_at) FILTER (WHERE j.run_at <= c.now) AS oldest_due
    FROM pgq.jobs AS j
    WHERE j.entrypoint = e.name AND j.state = 'scheduled'
) AS s
CROSS JOIN LATERAL (
    SELECT count(*) AS running FROM pgq.jobs AS j WHERE j.entrypoint = e.name AND j.state = 'running'
) AS r
CROSS JOIN LATERAL (
    SELECT count(*) AS failed FROM pgq.job_history AS h WHERE h.entrypoint = e.name AND h.state = 'failed'
) AS f
LEFT JOIN (
    SELECT h.entrypoint,
           count(*) FILTER (WHERE h.state = 'succeeded') AS succeeded,
           count(*) FILTER (WHERE h.state = 'failed') AS failed
    FROM pgq.job_history AS h
    -- A sub-select: the bound is computed once, not rechecked per row of a lossy BRIN bitmap.
    WHERE h.finished_at > (SELECT pgq.now() - interval '5 minutes')
    GROUP BY h.entrypoint
) AS recent ON recent.entrypoint = e.name
ORDER BY e.name;

COMMENT ON VIEW pgq.queue_stats IS
    'Per entrypoint: queued (ready), scheduled, running, failed (dead letters), outcomes in the last 5 minutes, longest wait of a next-to-run job, limit, paused.';

-- Jobs being run now, oldest first, with their lease and whether it already expired.
CREATE OR REPLACE VIEW pgq.running_jobs AS
SELECT j.id,
       j.entrypoint,
       j.worker_id,
       j.attempt,
       coalesce(j.max_attempts, e.max_attempts) AS max_attempts,
       j.priority,
       j.started_at,
       pgq.now() - j.started_at AS running_for,
       j.lease_expires_at,
       j.lease_expires_at <= pgq.now() AS lease_expired,
       j.timeout_at,
       j.cancel_requested
FROM pgq.jobs AS j
LEFT JOIN pgq.entrypoints AS e ON e.name = j.entrypoint
WHERE j.state = 'running'
ORDER BY j.started_at, j.id;

COMMENT ON VIEW pgq.running_jobs IS 'Running jobs, oldest first: worker, attempt, lease and whether it expired.';

-- Dead-lettered jobs (attempts exhausted or not retryable), most recent first; pgq.retry(id) revives one.
CREATE OR REPLACE VIEW pgq.failed_jobs AS
SELECT h.id,
       h.entrypoint,
       h.attempt,
       coalesce(h.max_attempts, e.max_attempts) AS max_attempts,
       h.error,
       h.finished_at,
       h.enqueued_at,
       h.worker_id,
       h.payload
FROM pgq.job_history AS h
LEFT JOIN pgq.entrypoints AS e ON e.name = h.entrypoint
WHERE h.state = 'failed'
ORDER BY h.finished_at DESC, h.id DESC;

COMMENT ON VIEW pgq.failed_jobs IS 'Dead-lettered jobs kept in history, most recent first (pgq.retry(id) re-queues one).';

-- Registered workers with their running jobs: alive, unhealthy (alive, but some of its slots are
-- held by handlers that outlived their job), stale (no heartbeat within
-- pgq.settings.worker_stale_after; their jobs are reaped when the leases expire), or
-- unregistered (holds running jobs under a worker_id that never registered).
CREATE OR REPLACE VIEW pgq.workers AS
SELECT coalesce(w.worker_id, r.worker_id) AS worker_id,
       CASE
           WHEN w.worker_id IS NULL THEN 'unregistered'
           WHEN w.heartbeat_at < pgq.now() - (SELECT s.worker_stale_after FROM pgq.settings AS s) THEN 'stale'
           WHEN w.stuck_slots > 0 THEN 'unhealthy'
           ELSE 'alive'
       END AS status,
       coalesce(r.running, 0) AS running,
       w.concurrency,
       w.connections,
       w.entrypoints,
       w.hostname,
       w.pid,
       w.version,
       w.started_at,
       w.heartbeat_at,
       w.stuck_slots
FROM pgq.worker_registry AS w
FULL JOIN (
    SELECT j.worker_id, count(*) AS running
    FROM pgq.jobs AS j
    WHERE j.state = 'running' AND j.worker_id IS NOT NULL
    GROUP BY j.worker_id
) AS r ON r.worker_id = w.worker_id
ORDER BY 1;

COMMENT ON VIEW pgq.workers IS
    'Registered workers (alive, unhealthy or stale) and unregistered holders of running jobs, with their running count, the connections each holds and its stuck slots.';

-- Per minute and entrypoint over the last hour (the current minute included): outcomes, retries,
-- and p50/p95 of wait (enqueued to last start) and run (last start to finish) times. The window's
-- start is computed once (a sub-select), not by a pgq.now() call per row a lossy BRIN bitmap or
-- a scan of the retry log rechecks: that cost 80 ms at 1,000,000 history rows.
CREATE OR REPLACE VIEW pgq.throughput AS
WITH finished AS (
    SELECT date_trunc('minute', h.finished_at) AS minute,
           h.entrypoint,
           count(*) FILTER (WHERE h.state = 'succeeded') AS succeeded,
           count(*) FILTER (WHERE h.state = 'failed') AS failed,
           count(*) FILTER (WHERE h.state = 'cancelled') AS cancelled,
           percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY h.started_at - h.enqueued_at)
               FILTER (WHERE h.state <> 'cancelled') AS wait,
           percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY h.finished_at - h.started_at)
               FILTER (WHERE h.state <> 'cancelled') AS run
    FROM pgq.job_history AS h
    WHERE h.finished_at >= (SELECT date_trunc('minute', pgq.now()) - interval '59 minutes')
    GROUP BY 1, 2
), retried AS (
    SELECT date_trunc('minute', r.failed_at) AS minute, r.entrypoint, count(*) AS retried
    FROM pgq.job_retries AS r
    WHERE r.failed_at >= (SELECT date_trunc('minute', pgq.now()) - interval '59 minutes')
    GROUP BY 1, 2
)
SELECT minute,
       entrypoint,
       coalesce(f.succeeded, 0) AS succeeded,
       coalesce(f.failed, 0) AS failed,
       coalesce(f.cancelled, 0) AS cancelled,
       coalesce(r.retried, 0) AS retried,
       f.wait[1] AS wait_p50,
       f.wait[2] AS wait_p95,
       f.run[1] AS run_p50,
       f.run[2] AS run_p95
FROM finished AS f
FULL JOIN retried AS r USING (minute, entrypoint)
ORDER BY minute DESC, entrypoint;

COMMENT ON VIEW pgq.throughput IS
    'Per minute and entrypoint, last hour: succeeded, failed, cancelled, retried; p50/p95 wait and run times.';

-- One row: expired leases not reaped yet, live and dead tuples of the queue tables, how full the
-- NOTIFY queue is, and the client session of this database whose snapshot or transaction id is
-- oldest, i.e. holds back vacuum (other sessions' details need pg_read_all_stats).
CREATE OR REPLACE VIEW pgq.health AS
SELECT (SELECT count(*) FROM pgq.jobs AS j WHERE j.lease_expires_at <= pgq.now()) AS expired_leases,
       pg_stat_get_live_tuples('pgq.jobs'::regclass) AS jobs_live_tuples,
       pg_stat_get_dead_tuples('pgq.jobs'::regclass) AS jobs_dead_tuples,
       greatest(pg_stat_get_last_vacuum_time('pgq.jobs'::regclass),
                pg_stat_get_last_autovacuum_time('pgq.jobs'::regclass)) AS jobs_last_vacuum,
       pg_stat_get_live_tuples('pgq.job_history'::regclass) AS history_live_tuples,
       pg_stat_get_dead_tuples('pgq.job_history'::regclass) AS history_dead_tuples,
       pg_notification_queue_usage() AS notification_queue_usage,
       x.pid AS oldest_xact_pid,
       x.xid_age AS oldest_xact_xid_age,
       x.xact_start AS oldest_xact_start,
       x.state AS oldest_xact_state,
       -- Since when the workers' VACUUM of pgq.jobs stands down, and for which session.
       (SELECT v.stood_down_since FROM pgq.vacuum_state AS v) AS vacuum_stood_down_since,
       (SELECT v.held_by_pid FROM pgq.vacuum_state AS v) AS vacuum_held_by_pid
FROM (SELECT) AS one
LEFT JOIN LATERAL (
    SELECT a.pid, greatest(age(a.backend_xid), age(a.backend_xmin)) AS xid_age, a.xact_start, a.state
    FROM pg_stat_activity AS a
    WHERE a.datname = current_database() AND a.backend_type = 'client backend'
      AND a.pid <> pg_backend_pid() AND (a.backend_xid IS NOT NULL OR a.backend_xmin IS NOT NULL)
    ORDER BY 2 DESC, a.xact_start
    LIMIT 1
) AS x ON true;

COMMENT ON VIEW pgq.health IS
    'Expired leases, live/dead tuples of pgq.jobs and pgq.job_history, NOTIFY queue usage, the oldest transaction holding back vacuum, and whether the workers'' VACUUM stands down for it.';

-- Changes the settings (retention, worker staleness, size caps of enqueue and of results); NULL
-- keeps a value.
CREATE OR REPLACE FUNCTION pgq.configure(
    history_retention interval DEFAULT NULL,
    worker_stale_after interval DEFAULT NULL,
    max_payload_bytes integer DEFAULT NULL,
    max_headers_bytes integer DEFAULT NULL,
    max_result_bytes integer DEFAULT NULL
) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pgq, pg_temp
SECURITY DEFINER
AS $$
BEGIN
    IF history_retention < interval '0' OR history_retention > interval '10 years' THEN
        RAISE EXCEPTION 'pgq: history_retention must be between 0 and 10 years, got %', history_retention
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF worker_stale_after <= interval '0' OR worker_stale_after > interval '10 years' THEN
        RAISE EXCEPTION 'pgq: worker_stale_after must be positive and at most 10 years, got %', worker_stale_after
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF max_payload_bytes < 1 OR max_headers_bytes < 1 OR max_result_bytes < 1 THEN
        RAISE EXCEPTION 'pgq: max_payload_bytes, max_headers_bytes and max_result_bytes must be positive'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE pgq.settings AS s SET
        history_retention = coalesce(configure.history_retention, s.history_retention),
        worker_stale_after = coalesce(configure.worker_stale_after, s.worker_stale_after),
        max_payload_bytes = coalesce(configure.max_payload_bytes, s.max_payload_bytes),
        max_headers_bytes = coalesce(configure.max_headers_bytes, s.max_headers_bytes),
        max_result_bytes = coalesce(configure.max_result_bytes, s.max_result_bytes);
END
$$;
COMMENT ON FUNCTION pgq.configure(interval, interval, integer, integer, integer) IS
    'Sets history_retention (7 days), worker_stale_after (1 minute), max_payload_bytes (1 MiB), max_headers_bytes (64 KiB) and max_result_bytes (1 MiB); NULL keeps a value.';

-- Announces a worker, or announces it again after a restart or after prune forgot it.
CREATE OR REPLACE FUNCTION pgq.register_worker(
    worker_id text,
    entrypoints text[] DEFAULT '{}',
    concurrency integer DEFAULT NULL,
    hostname text DEFAULT NULL,
    pid integer DEFAULT NULL,
    version text DEFAULT NULL,
    connections integer DEFAULT NULL
) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pgq, pg_temp
SECURITY DEFINER
AS $$
DECLARE
    v_now timestamptz := pgq.now();
BEGIN
    IF worker_id IS NULL OR btrim(worker_id) = '' THEN
        RAISE EXCEPTION 'pgq: worker_id must not be empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF char_length(worker_id) > 200 THEN
        RAISE EXCEPTION 'pgq: worker_id is limited to 200 characters, got %', char_length(worker_id)
            USING ERRCODE = 'program_limit_exceeded';
    END IF;
    IF connections < 0 THEN
        RAISE EXCEPTION 'pgq: connections must not be negative, got %', connections
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO pgq.worker_registry AS w (worker_id, hostname, pid, entrypoints, concurrency, version,
                                          connections, started_at, heartbeat_at)
    VALUES (register_worker.worker_id, register_worker.hostname, register_worker.pid,
            coalesce(register_worker.entrypoints, '{}'), register_worker.concurrency,
            register_worker.version, register_worker.connections, v_now, v_now)
    ON CONFLICT ON CONSTRAINT worker_registry_pkey DO UPDATE SET
        hostname = excluded.hostname, pid = excluded.pid, entrypoints = excluded.entrypoints,
        concurrency = excluded.concurrency, version = excluded.version,
        connections = excluded.connections,
        started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at;
END
$$;
COMMENT ON FUNCTION pgq.register_worker(text, text[], integer, text, integer, text, integer) IS
    'Registers a worker (hostname, pid, entrypoints, concurrency, version, connections held) in pgq.workers; idempotent.';

-- Records that a worker is alive, with how many of its slots are stuck (held by handlers that
-- outlived their job); false when it is not registered (register it again).
CREATE OR REPLACE FUNCTION pgq.worker_heartbeat(worker_id text, stuck_slots integer DEFAULT 0)
RETURNS boolean
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pgq, pg_temp
SECURITY DEFINER
AS $$
    WITH beat AS (
        UPDATE pgq.worker_registry AS w
        SET heartbeat_at = pgq.now(), stuck_slots = greatest(coalesce(worker_heartbeat.stuck_slots, 0), 0)
        WHERE w.worker_id = worker_heartbeat.worker_id
        RETURNING 1
    )
    SELECT EXISTS (SELECT FROM beat)
$$;
COMMENT ON FUNCTION pgq.worker_heartbeat(text, integer) IS
    'Marks a registered worker alive now, with its stuck slots (0 = healthy); false if it is not registered (call pgq.register_worker again).';

-- Removes a worker from the registry on a clean exit (its jobs should be finished or released first).
CREATE OR REPLACE FUNCTION pgq.deregister_worker(worker_id text) RETURNS boolean
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pgq, pg_temp
SECURITY DEFINER
AS $$
    WITH gone AS (
        DELETE FROM pgq.worker_registry AS w WHERE w.worker_id = deregister_worker.worker_id RETURNING 1
    )
    SELECT EXISTS (SELECT FROM gone)
$$;
COMMENT ON FUNCTION pgq.deregister_worker(text) IS 'Removes a worker from the registry; false if it was not registered.';

-- Deletes history and retry records older than pgq.settings.history_retention, at most max_rows
-- of each per call, and forgets workers silent for as long. One caller at a time: the others
-- return 0 at once. Call it until it returns 0.
CREATE OR REPLACE FUNCTION pgq.prune(max_rows integer DEFAULT 10000) RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pgq, pg_temp
SECURITY DEFINER
AS $$
DECLARE
    v_cutoff timestamptz;
    v_history bigint;
    v_retries bigint;
    v_workers bigint;
BEGIN
    IF max_rows IS NULL OR max_rows < 1 THEN
        RAISE EXCEPTION 'pgq: max_rows must be positive, got %', max_rows
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT pg_try_advisory_xact_lock(1886418288, 2) THEN
        RETURN 0;
    END IF;
    SELECT pgq.now() - s.history_retention INTO v_cutoff FROM pgq.settings AS s;

    DELETE FROM pgq.job_history AS h
    WHERE h.ctid = ANY (ARRAY(SELECT x.ctid FROM pgq.job_history AS x
                              WHERE x.finished_at < v_cutoff LIMIT max_rows));
    GET DIAGNOSTICS v_history = ROW_COUNT;

    DELETE FROM pgq.job_retries AS r
    WHERE r.ctid = ANY (ARRAY(SELECT x.ctid FROM pgq.job_retries AS x
                              WHERE x.failed_at < v_cutoff LIMIT max_rows));
    GET DIAGNOSTICS v_retries = ROW_COUNT;

    DELETE FROM pgq.worker_registry AS w WHERE w.heartbeat_at < v_cutoff;
    GET DIAGNOSTICS v_workers = ROW_COUNT;

    RETURN v_history + v_retries + v_workers;
END
$$;
COMMENT ON FUNCTION pgq.prune(integer) IS
    'Removes finished jobs and retry records older than the retention (at most max_rows each per call); returns how many rows.';
