"""Living beside other schemas: pgq-thin refuses a schema pgq or a pgq_* role it did not create
(SkyTools PgQ has both), and uninstall drops nothing that is not its own.

PgQ creates the cluster-wide role pgq_admin, so its tests run on a server of their own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgq_thin import schema
from pgq_thin._localdb import find_bindir
from pgq_thin.errors import PgqError
from pgq_thin.testing import PgqServer, ThrowawayServer

CLI = str(Path(sys.executable).with_name("pgq-thin"))
PSQL = str(find_bindir() / "psql")
# The extension files of the server the tests start (/usr/lib/postgresql/NN/bin -> NN).
PGQ_EXTENSION = Path("/usr/share/postgresql") / find_bindir().parent.name / "extension"

needs_pgq = pytest.mark.skipif(
    not (PGQ_EXTENSION / "pgq.control").exists(),
    reason="SkyTools PgQ is not installed (`make deps` installs postgresql-NN-pgq3 as root)",
)


def cli(*args: str, status: int = 0) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    done = subprocess.run([CLI, *args], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == status, (done.stdout, done.stderr)
    return done


def psql_install(dsn: str, script: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the psql-only installer (or `script` on stdin); returns the finished process."""
    args = ["-f", "-"] if script is not None else ["-f", str(schema.sql_dir() / "install.psql")]
    return subprocess.run(
        [PSQL, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dsn, *args],
        input=script,
        capture_output=True,
        text=True,
        timeout=120,
    )


def snapshot(dsn: str) -> list[tuple[Any, ...]]:
    """Every object in schema pgq with its kind, and the rows of each of its tables."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        objects = conn.execute(
            "SELECT 'class', relname, relkind::text FROM pg_class"
            " WHERE relnamespace = 'pgq'::regnamespace"
            " UNION ALL SELECT 'proc', oid::regprocedure::text, md5(prosrc) FROM pg_proc"
            " WHERE pronamespace = 'pgq'::regnamespace ORDER BY 1, 2"
        ).fetchall()
        tables = [name for kind, name, relkind in objects if kind == "class" and relkind == "r"]
        rows = [
            (name, conn.execute(f"SELECT md5(string_agg(t::text, '|')) FROM pgq.\"{name}\" t"))
            for name in tables
        ]
        return objects + [(name, cur.fetchone()) for name, cur in rows]


@pytest.fixture
def pgq_cluster(throwaway_server: ThrowawayServer) -> Iterator[ThrowawayServer]:
    """A server with SkyTools PgQ installed as the extension pgq in database `londiste`."""
    with throwaway_server.connect() as conn:
        conn.execute("CREATE DATABASE londiste")
        conn.execute("CREATE DATABASE app")
    with throwaway_server.connect("londiste") as conn:
        conn.execute("CREATE EXTENSION pgq")
        conn.execute("SELECT pgq.create_queue('events')")
        conn.execute("SELECT pgq.insert_event('events', 'greet', 'hello')")
    yield throwaway_server


@needs_pgq
def test_install_and_uninstall_leave_skytools_pgq_alone(pgq_cluster: ThrowawayServer) -> None:
    dsn = pgq_cluster.dsn("londiste")
    before = snapshot(dsn)
    assert ("class", "queue", "r") in before

    refused = cli("install", "-d", dsn, status=1)
    assert refused.stderr == (
        "pgq-thin: error: schema pgq exists and pgq-thin did not create it (it belongs to "
        "extension pgq: SkyTools PgQ): pgq-thin leaves it alone: install pgq-thin into another "
        "database\n"
    )
    for command in ("upgrade", "verify"):
        assert cli(command, "-d", dsn, status=1).stderr == refused.stderr
    assert cli("upgrade", "--plan", "-d", dsn, status=1).stderr == refused.stderr
    by_psql = psql_install(dsn)
    assert by_psql.returncode == 3
    assert "schema pgq exists and pgq-thin did not create it" in by_psql.stderr
    assert "install pgq-thin into another database" in by_psql.stderr
    assert psql_install(dsn, cli("sql").stdout).returncode == 3

    gone = cli("uninstall", "--yes", "-d", dsn, status=1)
    assert gone.stderr == (
        "pgq-thin: error: schema pgq exists and pgq-thin did not create it (it belongs to "
        "extension pgq: SkyTools PgQ): pgq-thin dropped nothing\n"
    )
    assert snapshot(dsn) == before
    with pgq_cluster.connect("londiste") as conn:
        assert conn.execute("SELECT count(*) FROM pgq.get_queue_info()").fetchone() == (1,)


@needs_pgq
def test_a_pgq_admin_role_pgq_thin_did_not_create_is_not_adopted(
    pgq_cluster: ThrowawayServer,
) -> None:
    """PgQ's pgq_admin, made by another database of the cluster, is refused, then kept."""
    app = pgq_cluster.dsn("app")
    refused = cli("install", "-d", app, status=1)
    assert refused.stderr.startswith(
        "pgq-thin: error: api/roles.sql failed, nothing was changed: role pgq_admin exists and "
        "pgq-thin did not create it"
    )
    assert refused.stderr.count("\n") == 1
    with pgq_cluster.connect("app") as conn:
        assert conn.execute("SELECT to_regnamespace('pgq')").fetchone() == (None,)
        roles = conn.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE 'pgq%' ORDER BY 1")
        assert roles.fetchall() == [("pgq_admin",), ("pgq_reader",), ("pgq_writer",)]

    nothing = cli("uninstall", "--yes", "-d", app)
    assert nothing.stdout == "pgq was not installed; nothing to remove\n"
    assert nothing.stderr == "pgq-thin: kept role pgq_admin: pgq-thin did not create it\n"

    # Adopting it is the DBA's explicit choice: the comment pgq-thin's own roles carry.
    with pgq_cluster.connect() as conn:
        conn.execute("COMMENT ON ROLE pgq_admin IS 'pgq-thin: adopted'")
    assert "installed pgq schema version" in cli("install", "-d", app).stdout
    cli("verify", "-d", app)


@pytest.fixture
def blank_dsn(pgq_server: PgqServer) -> Iterator[str]:
    """An empty database of this test's own on the shared server."""
    name = f"pgq_neighbour_{os.getpid()}"
    janitor = pgq_server.janitor(name)
    janitor.drop()
    janitor.init()
    yield pgq_server.dsn(name)
    janitor.drop()


def test_a_plain_schema_named_pgq_is_refused_and_kept(blank_dsn: str) -> None:
    """Anything else a user named pgq (PgQ loaded from scripts, say) is not dropped."""
    with psycopg.connect(blank_dsn, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA pgq")
        conn.execute("CREATE TABLE pgq.queue (name text)")
        conn.execute("INSERT INTO pgq.queue VALUES ('mine')")
    reason = "schema pgq exists and pgq-thin did not create it (it has no table pgq.installation)"
    assert cli("install", "-d", blank_dsn, status=1).stderr == (
        f"pgq-thin: error: {reason}: pgq-thin leaves it alone: install pgq-thin into another "
        "database\n"
    )
    assert cli("uninstall", "--yes", "-d", blank_dsn, status=1).stderr == (
        f"pgq-thin: error: {reason}: pgq-thin dropped nothing\n"
    )
    with psycopg.connect(blank_dsn) as conn:
        assert conn.execute("SELECT name FROM pgq.queue").fetchall() == [("mine",)]


def test_uninstall_refuses_when_objects_outside_depend_on_pgq(pgq_dsn: str) -> None:
    with psycopg.connect(pgq_dsn, autocommit=True) as conn:
        conn.execute("CREATE VIEW public.my_jobs AS SELECT id FROM pgq.jobs")
        conn.execute(
            "CREATE FUNCTION public.job_id(j pgq.jobs) RETURNS bigint LANGUAGE sql AS 'SELECT j.id'"
        )
    refused = cli("uninstall", "--yes", "-d", pgq_dsn, status=1)
    assert refused.stderr == (
        "pgq-thin: error: objects outside schema pgq depend on it (function job_id(pgq.jobs), "
        "view my_jobs): drop them first; pgq-thin dropped nothing\n"
    )
    with psycopg.connect(pgq_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM public.my_jobs").fetchone() == (0,)
    cli("verify", "-d", pgq_dsn)


def test_verify_keeps_reporting_a_column_upgrade_cannot_remove(pgq_dsn: str) -> None:
    with psycopg.connect(pgq_dsn, autocommit=True) as conn:
        conn.execute("ALTER TABLE pgq.jobs ADD COLUMN tenant text")
    advice = "`pgq-thin upgrade` does not undo that"
    assert advice in cli("verify", "-d", pgq_dsn, status=1).stderr
    cli("upgrade", "-d", pgq_dsn)
    after = cli("verify", "-d", pgq_dsn, status=1)
    assert "the tables of schema pgq were changed since pgq-thin installed them" in after.stderr
    assert advice in after.stderr

    with psycopg.connect(pgq_dsn, autocommit=True) as conn:
        conn.execute("ALTER TABLE pgq.jobs DROP COLUMN tenant")
    cli("upgrade", "-d", pgq_dsn)
    assert cli("verify", "-d", pgq_dsn).stdout.startswith("ok: ")


def test_sql_command_upgrades_an_installed_schema_and_refuses_a_newer_version(
    pgq_dsn: str,
) -> None:
    done = psql_install(pgq_dsn, cli("sql").stdout)
    assert done.returncode == 0, done.stderr
    cli("verify", "-d", pgq_dsn)
    latest = schema.latest_version()
    assert cli("sql", "--from-version", str(latest + 1), status=1).stderr == (
        f"pgq-thin: error: --from-version {latest + 1} is newer than the schema of this "
        f"pgq-thin ({latest}): upgrade the pgq-thin package\n"
    )
    partial = cli("sql", "--from-version", str(latest)).stdout
    assert "CREATE SCHEMA pgq" not in partial
    assert psql_install(pgq_dsn, partial).returncode == 0


def test_migrations_over_changed_tables_are_refused(pgq_dsn: str, tmp_path: Path) -> None:
    """Through the CLI's installer and install.psql alike: nothing changes until reverted."""
    root = tmp_path / "sql"
    shutil.copytree(schema.sql_dir(), root)
    nxt = schema.latest_version() + 1
    name = f"migrations/{nxt:04d}_extra.sql"
    (root / name).write_text(
        f"CREATE TABLE pgq.extra (id int);\nINSERT INTO pgq.migrations VALUES ({nxt}, 'extra');\n"
    )
    installer = root / "install.psql"
    installer.write_text(
        installer.read_text().replace(
            "-- Each later migration",
            f"SELECT NOT EXISTS (SELECT FROM pgq.migrations WHERE version = {nxt}) AS pgq_pending"
            f" \\gset\n\\if :pgq_pending\n\\ir {name}\n\\endif\n-- Each later migration",
        )
    )
    with psycopg.connect(pgq_dsn, autocommit=True) as conn:
        conn.execute("ALTER TABLE pgq.jobs ADD COLUMN tenant text")
        with pytest.raises(PgqError) as refused:
            schema.install(conn, root)
        assert str(refused.value) == (
            "the tables of schema pgq were changed since pgq-thin installed them (a column, index "
            "or constraint added or removed): revert that before upgrading, or the migrations "
            "would run over tables they do not know (pgq-thin verify; nothing was changed)"
        )
        by_psql = psql_install(pgq_dsn, installer.read_text().replace("\\ir ", f"\\ir {root}/"))
        assert by_psql.returncode == 3
        assert "the tables of schema pgq were changed" in by_psql.stderr
        assert conn.execute("SELECT to_regclass('pgq.extra')").fetchone() == (None,)

        conn.execute("ALTER TABLE pgq.jobs DROP COLUMN tenant")
        assert schema.install(conn, root) == [name.removeprefix("migrations/")]
        assert conn.execute("SELECT pgq.version()").fetchone() == (str(nxt),)
