-- Roles and least privilege. Four NOLOGIN group roles, created once per cluster; an
-- application's login role is made a member of one (GRANT pgq_worker TO app_worker). Nobody
-- else reaches schema pgq, and no role writes a table directly: every change goes through the
-- SECURITY DEFINER functions. Applied after every other api file, by every install and upgrade,
-- so each object's privileges are exactly these, whatever they were before.

-- The group roles that do not exist yet. Installs into other databases of the cluster may
-- create them at the same moment: the loser of that race waits, then finds them created.
-- A role of these names that pgq-thin did not create (its comment, set below, starts with
-- 'pgq-thin:'; SkyTools PgQ also has a pgq_admin) is refused, not adopted: its members would
-- get rights over this queue. Commenting it so is how a DBA adopts it on purpose.
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT x.rolname FROM pg_catalog.pg_roles AS x
        WHERE x.rolname IN ('pgq_producer', 'pgq_worker', 'pgq_monitor', 'pgq_admin')
          AND coalesce(pg_catalog.shobj_description(x.oid, 'pg_authid'), '') NOT LIKE 'pgq-thin:%'
        ORDER BY x.rolname
    LOOP
        RAISE EXCEPTION 'role % exists and pgq-thin did not create it (SkyTools PgQ has a pgq_admin too)', r.rolname
            USING ERRCODE = 'duplicate_object',
                  HINT = pg_catalog.format('pgq-thin would give its members rights over the queue; '
                      'to share it on purpose: COMMENT ON ROLE %I IS ''pgq-thin: adopted''', r.rolname);
    END LOOP;
    FOR r IN
        SELECT v.name, v.purpose
        FROM (VALUES
            ('pgq_producer', 'pgq-thin: enqueue and cancel jobs'),
            ('pgq_worker', 'pgq-thin: claim, run and finish jobs; register entrypoint policies and workers; prune'),
            ('pgq_monitor', 'pgq-thin: read the queue (views, tables, explain_job)'),
            ('pgq_admin', 'pgq-thin: everything the other pgq roles may do, plus retry and configure')
        ) AS v(name, purpose)
        WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_roles AS x WHERE x.rolname = v.name)
    LOOP
        BEGIN
            EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', r.name);
            EXECUTE pg_catalog.format('COMMENT ON ROLE %I IS %L', r.name, r.purpose);
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
    END LOOP;
    FOR r IN
        SELECT v.name FROM (VALUES ('pgq_producer'), ('pgq_worker'), ('pgq_monitor')) AS v(name)
        WHERE NOT pg_catalog.pg_has_role('pgq_admin', v.name, 'MEMBER')
    LOOP
        BEGIN
            EXECUTE pg_catalog.format('GRANT %I TO pgq_admin', r.name);
        EXCEPTION WHEN unique_violation THEN
            NULL;
        END;
    END LOOP;
END
$$;

-- Start from nothing: no privilege for PUBLIC or the pgq roles on anything in schema pgq.
REVOKE ALL ON SCHEMA pgq FROM PUBLIC, pgq_producer, pgq_worker, pgq_monitor, pgq_admin;
REVOKE ALL ON ALL TABLES IN SCHEMA pgq FROM PUBLIC, pgq_producer, pgq_worker, pgq_monitor, pgq_admin;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA pgq FROM PUBLIC, pgq_producer, pgq_worker, pgq_monitor, pgq_admin;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA pgq FROM PUBLIC, pgq_producer, pgq_worker, pgq_monitor, pgq_admin;

GRANT USAGE ON SCHEMA pgq TO pgq_producer, pgq_worker, pgq_monitor, pgq_admin;

-- The clock (the views and the Python producer read it) and the version, for every role.
GRANT EXECUTE ON FUNCTION pgq.now, pgq.version TO pgq_producer, pgq_worker, pgq_monitor;
-- A pure function of its arguments: anyone may ask when a cron expression fires next.
GRANT EXECUTE ON FUNCTION pgq.cron_next TO pgq_producer, pgq_worker, pgq_monitor;

GRANT EXECUTE ON FUNCTION pgq.enqueue, pgq.enqueue_many, pgq.cancel TO pgq_producer;
-- Waiting for results: producers and monitors read any job's status (pgq.job_status); a
-- producer may also ask to be notified when jobs finish (pgq.watch_jobs flags them).
GRANT EXECUTE ON FUNCTION pgq.job_status TO pgq_producer, pgq_monitor;
GRANT EXECUTE ON FUNCTION pgq.watch_jobs TO pgq_producer;

-- A worker registers its entrypoints' policies at start (pgq.set_entrypoint), so it may also
-- pause and resume them; it prunes history within the retention pgq_admin sets.
GRANT EXECUTE ON FUNCTION
    pgq.claim, pgq.dequeue, pgq.next_due, pgq.promote_due, pgq.reap, pgq.renew, pgq.heartbeat, pgq.release,
    pgq.complete, pgq.complete_many, pgq.fail, pgq.fail_many,
    pgq.register_worker, pgq.worker_heartbeat, pgq.deregister_worker,
    pgq.set_entrypoint, pgq.prune, pgq.report_vacuum
TO pgq_worker;
-- A worker fires due schedules (dequeue and its upkeep loop) and registers its app's schedules
-- at start (only for the entrypoints it serves).
GRANT EXECUTE ON FUNCTION pgq.fire_schedules, pgq.register_schedules TO pgq_worker;
-- The queue and schedule gauges of a worker's /metrics endpoint.
GRANT SELECT ON pgq.queue_stats, pgq.schedule_stats TO pgq_worker;

-- Read-only: the views, the tables behind `pgq-thin jobs` and `verify`, and explain_job.
GRANT SELECT ON ALL TABLES IN SCHEMA pgq TO pgq_monitor;
GRANT EXECUTE ON FUNCTION
    pgq.explain_job, pgq.describe_schema, pgq.fingerprint, pgq.tables_fingerprint
TO pgq_monitor;

-- pgq_admin is a member of the three roles above (granted when it was created), plus these.
GRANT EXECUTE ON FUNCTION pgq.retry, pgq.configure, pgq.remove_entrypoint TO pgq_admin;
-- Schedules are managed from SQL (or `pgq-thin schedule ...`) by admins.
GRANT EXECUTE ON FUNCTION
    pgq.schedule, pgq.unschedule, pgq.pause_schedule, pgq.resume_schedule, pgq.run_schedule
TO pgq_admin;
