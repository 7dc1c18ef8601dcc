"""Roles and least privilege: each group role may call its functions and nothing else.

Every test acts through fresh login roles that are members of a group role (dropped after);
the superuser connection (`pgq_conn`) only sets up and checks.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from pgq_thin import App, Job, Queue, schema
from pgq_thin.config import Settings
from pgq_thin.testing import ThrowawayServer
from pgq_thin.worker import Worker

Conn = psycopg.Connection[Any]
LoginAs = Callable[..., str]
CLI = str(Path(sys.executable).with_name("pgq-thin"))
_numbers = itertools.count(1)

# One call of every function in schema pgq, with arguments it accepts in an empty queue.
CALLS = {
    "now": "SELECT pgq.now()",
    "version": "SELECT pgq.version()",
    "enqueue": "SELECT pgq.enqueue('roles')",
    "enqueue_many": "SELECT pgq.enqueue_many(ARRAY['roles'], ARRAY['{}'::jsonb])",
    "cancel": "SELECT pgq.cancel(0)",
    "claim": "SELECT * FROM pgq.claim(ARRAY['roles'], 1, 'w')",
    "dequeue": "SELECT * FROM pgq.dequeue(ARRAY['roles'], 1, 'w')",
    "next_due": "SELECT pgq.next_due(ARRAY['roles'])",
    "renew": "SELECT * FROM pgq.renew(ARRAY[0::bigint], ARRAY[gen_random_uuid()])",
    "promote_due": "SELECT pgq.promote_due()",
    "reap": "SELECT pgq.reap()",
    "heartbeat": "SELECT * FROM pgq.heartbeat(ARRAY[0::bigint], ARRAY[gen_random_uuid()])",
    "release": "SELECT pgq.release(ARRAY[0::bigint], ARRAY[gen_random_uuid()])",
    "complete": "SELECT pgq.complete(0, gen_random_uuid())",
    "complete_many": "SELECT pgq.complete_many(ARRAY[0::bigint], ARRAY[gen_random_uuid()])",
    "fail": "SELECT pgq.fail(0, gen_random_uuid(), 'e')",
    "fail_many": "SELECT * FROM pgq.fail_many(ARRAY[0::bigint], ARRAY[gen_random_uuid()], '{e}')",
    "register_worker": "SELECT pgq.register_worker('w')",
    "worker_heartbeat": "SELECT pgq.worker_heartbeat('w')",
    "deregister_worker": "SELECT pgq.deregister_worker('w')",
    "set_entrypoint": "SELECT pgq.set_entrypoint('roles', max_attempts => 3)",
    "prune": "SELECT pgq.prune()",
    "report_vacuum": "SELECT pgq.report_vacuum(NULL)",
    "explain_job": "SELECT pgq.explain_job(0)",
    "describe_schema": "SELECT count(*) FROM pgq.describe_schema()",
    "fingerprint": "SELECT pgq.fingerprint()",
    "tables_fingerprint": "SELECT pgq.tables_fingerprint()",
    "retry": "SELECT pgq.retry(0)",  # no such job: raises no_data_found once allowed in
    "configure": "SELECT pgq.configure(worker_stale_after => interval '2 minutes')",
    "job_status": "SELECT * FROM pgq.job_status(ARRAY[0::bigint])",
    "watch_jobs": "SELECT * FROM pgq.watch_jobs(ARRAY[0::bigint])",
    "cron_next": "SELECT pgq.cron_next('@daily', now())",
    "fire_schedules": "SELECT pgq.fire_schedules()",
    "register_schedules": "SELECT * FROM pgq.register_schedules("
    "ARRAY['roles'], '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}')",
    "schedule": "SELECT pgq.schedule('roles', '@daily', 'roles')",
    "pause_schedule": "SELECT pgq.pause_schedule('roles')",
    "resume_schedule": "SELECT pgq.resume_schedule('roles')",
    "run_schedule": "SELECT pgq.run_schedule('roles')",
    "unschedule": "SELECT pgq.unschedule('roles')",
    "remove_entrypoint": "SELECT pgq.remove_entrypoint('nothing-here')",
    # Internal: called only from inside the other functions, never granted.
    "_check_entrypoints": "SELECT pgq._check_entrypoints(ARRAY['roles'])",
    "_check_batch": "SELECT pgq._check_batch('a and b', ARRAY[1, 1])",
    "_settle_failures": "SELECT * FROM pgq._settle_failures('{}', '{}', '{}')",
    "_lock_held": "SELECT pgq._lock_held('{}', '{}')",
    "_archive": "SELECT * FROM pgq._archive(true, '{}', '{}', NULL, NULL, NULL)",
    "_expire": "SELECT * FROM pgq._expire('{}')",
    "_check_results": "SELECT pgq._check_results('{}')",
    "_backoff": "SELECT pgq._backoff(1, '1s', 2, '1h', 0)",
    "_record_install": "SELECT pgq._record_install()",
    "_notify_done": "SELECT pgq._notify_done(ARRAY[0::bigint])",
    "_cron_field": "SELECT pgq._cron_field('*', 'minute', 0, 59)",
    "_cron_parse": "SELECT pgq._cron_parse('@daily')",
    "_cron_next": "SELECT pgq._cron_next('{1,1,1,2,2,1,0}', now(), 'UTC')",
    "_tz_change": "SELECT pgq._tz_change(now(), now(), 'UTC')",
    "_check_timezone": "SELECT pgq._check_timezone('UTC')",
    "_upsert_schedule": "SELECT pgq._upsert_schedule("
    "'r', '@daily', 'r', '{}', 'UTC', 0, '{}', 1, 'all', 'sql')",
    "_missed_ticks": "SELECT * FROM pgq._missed_ticks("
    "'{1,1,1,2,2,1,0}', 'UTC', 'all', now(), now(), now())",
}
ANYONE = {"now", "version", "cron_next"}
PRODUCER = ANYONE | {"enqueue", "enqueue_many", "cancel", "job_status", "watch_jobs"}
WORKER = ANYONE | {
    "claim", "dequeue", "next_due", "promote_due", "reap", "renew", "heartbeat", "release",
    "complete", "complete_many",
    "fail", "fail_many", "register_worker", "worker_heartbeat", "deregister_worker",
    "set_entrypoint", "prune", "fire_schedules", "register_schedules", "report_vacuum",
}  # fmt: skip
MONITOR = ANYONE | {
    "explain_job",
    "describe_schema",
    "fingerprint",
    "tables_fingerprint",
    "job_status",
}
SCHEDULING = {"schedule", "pause_schedule", "resume_schedule", "run_schedule", "unschedule"}
ALLOWED = {
    "producer": PRODUCER,
    "worker": WORKER,
    "monitor": MONITOR,
    "admin": PRODUCER | WORKER | MONITOR | {"retry", "configure", "remove_entrypoint"} | SCHEDULING,
    "nothing": set(),
}
READABLE = (
    "queue_stats", "running_jobs", "failed_jobs", "workers", "throughput", "health",
    "jobs", "job_history", "entrypoints", "settings", "worker_registry", "migrations",
    "schedules", "schedule_stats",
)  # fmt: skip
READS = {
    "monitor": set(READABLE),
    "admin": set(READABLE),
    "worker": {"queue_stats", "schedule_stats"},
}


@pytest.fixture
def login_as(pgq_dsn: str, pgq_conn: Conn) -> Iterator[LoginAs]:
    """A factory: a fresh login role, member of the given group roles; returns its DSN."""
    made: list[str] = []

    def make(*kinds: str) -> str:
        name = f"pgq_login_{os.getpid()}_{next(_numbers)}"
        pgq_conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))
        made.append(name)
        for kind in kinds:
            schema.grant(pgq_conn, name, kind)
        return make_conninfo(pgq_dsn, user=name)

    yield make
    for name in made:
        pgq_conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
        pgq_conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def outcome(conn: Conn, statement: str) -> str:
    """'ok', 'denied' (insufficient_privilege) or the name of another error."""
    try:
        conn.execute(statement)
    except psycopg.errors.InsufficientPrivilege:
        return "denied"
    except psycopg.Error as exc:
        return type(exc).__name__
    return "ok"


def table_writes(conn: Conn) -> list[str]:
    """INSERT, UPDATE, DELETE and TRUNCATE of every table in pgq, and nextval of its sequences."""
    tables = conn.execute(
        "SELECT c.oid::regclass::text, min(a.attname) FROM pg_class AS c"
        " JOIN pg_attribute AS a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped"
        " WHERE c.relnamespace = 'pgq'::regnamespace AND c.relkind = 'r' GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert len(tables) >= 8
    writes = []
    for table, column in tables:
        writes += [
            f"INSERT INTO {table} DEFAULT VALUES",
            f"UPDATE {table} SET {column} = {column}",
            f"DELETE FROM {table}",
            f"TRUNCATE {table}",
        ]
    return [*writes, "SELECT nextval('pgq.jobs_id_seq')"]


def test_every_function_is_covered(pgq_conn: Conn) -> None:
    names = {
        r[0]
        for r in pgq_conn.execute(
            "SELECT proname FROM pg_proc WHERE pronamespace = 'pgq'::regnamespace"
        )
    }
    assert names == set(CALLS), "classify each new function in CALLS and in sql/api/roles.sql"


@pytest.mark.parametrize("kind", list(ALLOWED))
def test_each_role_may_do_its_job_and_nothing_else(
    kind: str, login_as: LoginAs, pgq_conn: Conn
) -> None:
    dsn = login_as(*([kind] if kind != "nothing" else []))
    with psycopg.connect(dsn, autocommit=True) as conn:
        got = {name: outcome(conn, call) for name, call in CALLS.items()}
        writes = {statement: outcome(conn, statement) for statement in table_writes(pgq_conn)}
        reads = {name: outcome(conn, f"SELECT * FROM pgq.{name}") for name in READABLE}
    expected = {
        name: ("NoDataFound" if name == "retry" else "ok") if name in ALLOWED[kind] else "denied"
        for name in CALLS
    }
    assert got == expected
    assert set(writes.values()) == {"denied"}, writes
    assert reads == {n: "ok" if n in READS.get(kind, ()) else "denied" for n in READABLE}


def test_worker_member_drains_a_job_a_producer_member_enqueued(login_as: LoginAs) -> None:
    producer, worker = login_as("producer"), login_as("worker")
    with psycopg.connect(producer) as conn:
        job_id = Queue(conn).enqueue("greet", {"name": "ada"})
        conn.commit()
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM pgq.dequeue(ARRAY['greet'])")

    seen: list[Any] = []
    app = App()

    @app.entrypoint("greet", max_attempts=2)
    async def greet(job: Job) -> dict[str, str]:
        seen.append(job.payload)
        return {"hello": job.payload["name"]}

    settings = Settings(database_url=worker, poll_interval=0.1, prune_interval=0)
    assert asyncio.run(Worker(app, settings, mode="drain").run()) == 0
    assert seen == [{"name": "ada"}]

    monitor = login_as("monitor")
    with psycopg.connect(monitor) as conn:
        row = conn.execute(
            "SELECT state, result FROM pgq.job_history WHERE id = %s", (job_id,)
        ).fetchone()
        assert row == ("succeeded", {"hello": "ada"})
        policy = conn.execute("SELECT max_attempts FROM pgq.entrypoints WHERE name = 'greet'")
        assert policy.fetchone() == (2,)


def test_only_admins_and_superusers_move_the_clock(login_as: LoginAs, pgq_conn: Conn) -> None:
    job_id = pgq_conn.execute("SELECT pgq.enqueue('clock')").fetchone()
    holder = login_as("worker")
    future = datetime.now(UTC) + timedelta(days=1)
    with psycopg.connect(holder, autocommit=True) as conn:
        claimed = conn.execute("SELECT id FROM pgq.dequeue(ARRAY['clock'])").fetchall()
    assert claimed == [job_id]

    for kind in ("worker", "producer"):
        with psycopg.connect(login_as(kind), autocommit=True) as conn:
            conn.execute("SELECT set_config('pgq.now', %s, false)", (future.isoformat(),))
            row = conn.execute("SELECT pgq.now() < now() + interval '1 hour'").fetchone()
            assert row == (True,), f"a {kind} member moved the clock"
            if kind == "worker":  # a day later the lease would have expired: it must not
                assert conn.execute("SELECT pgq.reap()").fetchone() == (0,)
    state = pgq_conn.execute("SELECT state FROM pgq.jobs WHERE id = %s", job_id).fetchone()
    assert state == ("running",)

    for dsn in (login_as("admin"), pgq_conn.info.dsn):
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("SELECT set_config('pgq.now', %s, false)", (future.isoformat(),))
            assert conn.execute("SELECT pgq.now()").fetchone() == (future,)


HIJACK = """
CREATE SCHEMA evil;
CREATE TABLE evil.calls (what text);
CREATE TABLE evil.jobs (id bigint, state text, lease_token uuid);
CREATE FUNCTION evil.spy(what text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO evil.calls VALUES (what || ' as ' || current_user);
    RETURN true;
END $$;
GRANT ALL ON SCHEMA evil TO PUBLIC;
GRANT ALL ON evil.calls TO PUBLIC;
CREATE FUNCTION evil.now() RETURNS timestamptz
    LANGUAGE sql AS $$ SELECT '1999-01-01'::timestamptz $$;
CREATE FUNCTION evil.statement_timestamp() RETURNS timestamptz
    LANGUAGE sql AS $$ SELECT '1999-01-01'::timestamptz $$;
CREATE FUNCTION evil.text_eq(a text, b text) RETURNS boolean
    LANGUAGE sql AS $$ SELECT evil.spy('operator =') $$;
CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.text_eq);
CREATE FUNCTION evil.gen_random_uuid() RETURNS uuid
    LANGUAGE sql AS $$ SELECT '00000000-0000-0000-0000-000000000000'::uuid $$;
SET search_path = evil, pg_catalog, public;
CREATE TEMP TABLE jobs (id bigint, state text, lease_token uuid);
CREATE DOMAIN pg_temp.text AS pg_catalog.text CHECK (evil.spy('domain text'));
CREATE DOMAIN pg_temp.jsonb AS pg_catalog.jsonb CHECK (evil.spy('domain jsonb'));
"""


def test_a_callers_own_objects_change_nothing(login_as: LoginAs, pgq_conn: Conn) -> None:
    dsn = login_as("producer", "worker")
    pgq_conn.execute(
        sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(
            sql.Identifier(pgq_conn.info.dbname),
            sql.Identifier(str(conninfo_to_dict(dsn)["user"])),
        )
    )
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(HIJACK)
        assert conn.execute("SELECT now()").fetchone() == (datetime(1999, 1, 1, tzinfo=UTC),)
        conn.execute("SELECT pgq.set_entrypoint('hijack', backoff_base => '0s')")
        job_id = conn.execute("SELECT pgq.enqueue('hijack', dedupe_key => 'k')").fetchone()
        row = conn.execute(
            "SELECT id, lease_token FROM pgq.dequeue(ARRAY['hijack'], 1, 'w')"
        ).fetchone()
        assert job_id is not None and row is not None and row[0] == job_id[0]
        assert conn.execute("SELECT pgq.fail(%s, %s, 'boom')", row).fetchone() == ("queued",)
        row = conn.execute("SELECT id, lease_token FROM pgq.dequeue(ARRAY['hijack'])").fetchone()
        assert row is not None
        assert conn.execute("SELECT pgq.complete(%s, %s)", row).fetchone() == (True,)
        assert conn.execute(
            "SELECT count(*) FROM evil.jobs UNION ALL SELECT count(*) FROM jobs"
        ).fetchall() == [(0,), (0,)]
        assert conn.execute("SELECT * FROM evil.calls").fetchall() == []
    history = pgq_conn.execute(
        "SELECT state, attempt, finished_at > now() - interval '1 hour',"
        " worker_id FROM pgq.job_history WHERE id = %s",
        job_id,
    ).fetchone()
    assert history == ("succeeded", 2, True, None)


def test_install_grants_and_uninstall_drops_only_unused_roles(
    throwaway_server: ThrowawayServer,
) -> None:
    """On a cluster of its own: uninstall drops a group role only once nothing uses it."""
    with throwaway_server.connect() as conn:
        conn.execute("CREATE DATABASE other")
        conn.execute("CREATE ROLE app_worker LOGIN")
    dsn, other = throwaway_server.dsn("postgres"), throwaway_server.dsn("other")
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}

    def cli(*args: str, status: int = 0) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([CLI, *args], capture_output=True, text=True, env=env, timeout=120)
        assert done.returncode == status, done.stderr
        return done

    bad = cli("install", "-d", dsn, "--grant-to", "app_worker:boss", status=2)
    assert "KIND one of admin, producer, worker, monitor" in bad.stderr
    missing = cli("install", "-d", dsn, "--grant-to", "nobody:admin", status=1)
    assert missing.stderr == (
        'pgq-thin: error: cannot grant pgq_admin to nobody: role "nobody" does not exist\n'
    )
    with throwaway_server.connect() as conn:  # the whole install was rolled back
        assert (
            conn.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE 'pgq%'").fetchall() == []
        )
        assert conn.execute("SELECT to_regnamespace('pgq')").fetchone() == (None,)

    # The first installs of a cluster race to create the roles.
    racing = [
        subprocess.Popen([CLI, "install", "-d", target, *grant], text=True, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for target, grant in ((dsn, ["--grant-to", "app_worker:worker"]), (other, []))
    ]  # fmt: skip
    outputs = [proc.communicate(timeout=120) for proc in racing]
    assert [proc.returncode for proc in racing] == [0, 0], outputs
    assert outputs[0][0].splitlines()[-1] == "granted pgq_worker to app_worker"

    first = cli("uninstall", "--yes", "-d", dsn)
    assert first.stdout == "pgq schema removed\n"
    kept = first.stderr.splitlines()
    assert [line.split(": ")[1] for line in kept] == [
        f"kept role {role}" for role in ("pgq_admin", "pgq_producer", "pgq_worker", "pgq_monitor")
    ]
    assert re.search(
        r"objects in other databases depend on it \(\d+ objects in database other\)$", kept[0]
    )
    assert kept[1].endswith("it has members (pgq_admin)")
    assert kept[2].endswith("it has members (app_worker, pgq_admin)")

    with throwaway_server.connect() as conn:
        conn.execute("REVOKE pgq_worker FROM app_worker")
    last = cli("uninstall", "--yes", "-d", other)
    assert last.stderr == ""
    assert last.stdout.splitlines() == ["pgq schema removed"] + [
        f"role {role} dropped"
        for role in ("pgq_admin", "pgq_producer", "pgq_worker", "pgq_monitor")
    ]
    with throwaway_server.connect() as conn:
        assert (
            conn.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE 'pgq%'").fetchall() == []
        )


def test_a_monitor_member_may_wait_by_polling(login_as: LoginAs, pgq_conn: Conn) -> None:
    # pgq.watch_jobs is a producer's: a monitor's wait reads pgq.job_status instead.
    pgq_conn.execute("SELECT pgq.enqueue('roles') FROM generate_series(1, 2)")
    [(done, token)] = pgq_conn.execute(
        "SELECT id, lease_token FROM pgq.dequeue('{roles}', 1, 'w')"
    ).fetchall()
    pgq_conn.execute("SELECT pgq.complete(%s, %s)", (done, token))
    with psycopg.connect(login_as("monitor"), autocommit=True) as conn:
        result = Queue(conn).wait([done, done + 1, 999], timeout=0.5)
    assert result.jobs[done].state == "succeeded"
    assert (result.pending, result.unknown) == ((done + 1,), (999,))
