"""Installing, upgrading, verifying and removing the schema, through the CLI and plain psql."""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgq_thin import schema
from pgq_thin._localdb import find_bindir
from pgq_thin.errors import PgqError
from pgq_thin.testing import PgqServer

CLI = str(Path(sys.executable).with_name("pgq-thin"))
PSQL = str(find_bindir() / "psql") if (find_bindir() / "psql").exists() else "psql"
_numbers = itertools.count(1)
LATEST = schema.latest_version()
MIGRATED = [(m.version,) for m in schema.migrations()]
ALTER_VERSION = "CREATE OR REPLACE FUNCTION pgq.version() RETURNS text LANGUAGE sql AS 'SELECT 1'"


@pytest.fixture
def blank_db(pgq_server: PgqServer) -> Iterator[Callable[[], str]]:
    """A factory of empty databases (no pgq schema), dropped after the test."""
    janitors = []

    def make() -> str:
        name = f"pgq_blank_{os.getpid()}_{next(_numbers)}"
        janitor = pgq_server.janitor(name)
        janitor.drop()
        janitor.init()
        janitors.append(janitor)
        return pgq_server.dsn(name)

    yield make
    for janitor in janitors:
        janitor.drop()


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    result = subprocess.run([CLI, *args], capture_output=True, text=True, env=env, timeout=120)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def psql(dsn: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PSQL, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dsn, *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )


def describe(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        return [r[0] for r in conn.execute("SELECT * FROM pgq.describe_schema()")]


def query(dsn: str, sql: str) -> list[tuple[Any, ...]]:
    """Rows of `sql` (none for a command)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(sql)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


def test_cli_psql_and_sql_command_installs_are_identical(blank_db: Callable[[], str]) -> None:
    by_cli, by_psql, by_sql_command = blank_db(), blank_db(), blank_db()
    assert f"installed pgq schema version {LATEST}" in cli("install", "-d", by_cli).stdout
    psql(by_psql, "-f", str(schema.sql_dir() / "install.psql"))
    psql(by_sql_command, "-f", "-", stdin=cli("sql").stdout)

    reference = describe(by_cli)
    assert len(reference) > 50
    assert describe(by_psql) == reference
    assert describe(by_sql_command) == reference
    for dsn in (by_cli, by_psql, by_sql_command):
        assert cli("verify", "-d", dsn).stdout.startswith(f"ok: pgq schema version {LATEST}")


def test_install_psql_names_every_file_in_order() -> None:
    text = (schema.sql_dir() / "install.psql").read_text()
    included = re.findall(r"^\\ir (\S+)$", text, flags=re.M)
    expected = [schema.PREFLIGHT_FILE]
    expected += [f"migrations/{m.path.name}" for m in schema.migrations()]
    expected += [f"api/{p.name}" for p in schema.api_files()]
    assert included == expected


def test_psql_install_upgrades_in_place(pgq_dsn: str) -> None:
    with psycopg.connect(pgq_dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE OR REPLACE FUNCTION pgq.version() RETURNS text LANGUAGE sql AS 'SELECT 1'"
        )
        job = conn.execute("SELECT pgq.enqueue('keep-me')").fetchone()
    psql(pgq_dsn, "-f", str(schema.sql_dir() / "install.psql"))
    assert cli("verify", "-d", pgq_dsn).returncode == 0
    assert query(pgq_dsn, "SELECT id FROM pgq.jobs") == [job]


def test_second_install_changes_nothing_but_reapplies(pgq_dsn: str) -> None:
    before = describe(pgq_dsn)
    out = cli("install", "-d", pgq_dsn).stdout
    assert "already installed; functions re-applied" in out
    assert describe(pgq_dsn) == before
    assert query(pgq_dsn, "SELECT version FROM pgq.migrations") == MIGRATED


def test_concurrent_installs_are_serialized(blank_db: Callable[[], str]) -> None:
    dsn = blank_db()
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    procs = [
        subprocess.Popen([CLI, "install", "-d", dsn], stderr=subprocess.PIPE, text=True, env=env)
        for _ in range(3)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    assert query(dsn, "SELECT version FROM pgq.migrations") == MIGRATED
    cli("verify", "-d", dsn)


def test_verify_names_each_problem(blank_db: Callable[[], str], pgq_dsn: str) -> None:
    missing = cli("verify", "-d", blank_db(), check=False)
    assert missing.returncode == 1
    assert missing.stderr == (
        "pgq-thin: error: pgq is not installed in this database: run `pgq-thin install`\n"
    )

    with psycopg.connect(pgq_dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE OR REPLACE FUNCTION pgq.version() RETURNS text LANGUAGE sql AS 'SELECT 1'"
        )
    altered = cli("verify", "-d", pgq_dsn, check=False)
    assert altered.returncode == 1
    assert "altered since it was installed" in altered.stderr
    assert "run `pgq-thin upgrade`" in altered.stderr
    cli("upgrade", "-d", pgq_dsn)
    cli("verify", "-d", pgq_dsn)

    query(pgq_dsn, "INSERT INTO pgq.migrations (version, name) VALUES (999, 'future')")
    newer = cli("verify", "-d", pgq_dsn, check=False)
    assert newer.returncode == 1 and "newer than this pgq-thin" in newer.stderr
    refused = cli("upgrade", "-d", pgq_dsn, check=False)
    assert refused.returncode == 1 and "upgrade the pgq-thin package" in refused.stderr

    query(pgq_dsn, "DELETE FROM pgq.migrations WHERE version >= 1")
    query(pgq_dsn, "INSERT INTO pgq.migrations (version, name) VALUES (0, 'older')")
    older = cli("verify", "-d", pgq_dsn, check=False)
    assert older.returncode == 1 and f"older than {LATEST}: run `pgq-thin upgrade`" in older.stderr


def test_upgrade_plan_lists_pending_work(blank_db: Callable[[], str], pgq_dsn: str) -> None:
    fresh = cli("upgrade", "--plan", "-d", blank_db()).stdout.splitlines()
    reapply = [f"re-apply api/{p.name}" for p in schema.api_files()]
    assert fresh == [f"migration {m.path.name}" for m in schema.migrations()] + reapply
    current = cli("upgrade", "--plan", "-d", pgq_dsn).stdout.splitlines()
    assert current == reapply


def test_failed_migration_leaves_database_as_it_was(pgq_dsn: str, tmp_path: Path) -> None:
    root = tmp_path / "sql"
    shutil.copytree(schema.sql_dir(), root)
    broken = f"{LATEST + 1:04d}_broken.sql"
    (root / "migrations" / broken).write_text(
        "CREATE TABLE pgq.half_done (id int);\nALTER TABLE pgq.nope ADD COLUMN x int;\n"
    )
    before = describe(pgq_dsn)
    with psycopg.connect(pgq_dsn) as conn, pytest.raises(PgqError) as err:
        schema.install(conn, root)
    assert str(err.value).startswith(f"migrations/{broken} failed, nothing was changed:")
    assert 'relation "pgq.nope" does not exist' in str(err.value)
    assert describe(pgq_dsn) == before
    assert query(pgq_dsn, "SELECT pgq.version()") == [(str(LATEST),)]


def test_upgrade_restores_a_damaged_install(pgq_dsn: str, blank_db: Callable[[], str]) -> None:
    fresh = blank_db()
    cli("install", "-d", fresh)
    query(pgq_dsn, "DROP FUNCTION pgq.explain_job(bigint)")
    query(pgq_dsn, "COMMENT ON FUNCTION pgq.cancel(bigint) IS 'changed'")
    assert describe(pgq_dsn) != describe(fresh)
    cli("upgrade", "-d", pgq_dsn)
    assert describe(pgq_dsn) == describe(fresh)


# Each release and the commit it was tagged at: a clone does not always carry the tags.
RELEASES = {"v0.1.0": "c149b278c72e2a40ab3c74e099131c0f017195d0"}


def test_upgrade_from_every_released_version(blank_db: Callable[[], str], tmp_path: Path) -> None:
    """Each release's schema (and any other v* tag's), upgraded by this checkout, equals a fresh
    install."""
    repo = schema.sql_dir().parent
    tags = subprocess.run(
        ["git", "-C", str(repo), "tag", "--list", "v*"], capture_output=True, text=True
    ).stdout.split()
    fresh = blank_db()
    cli("install", "-d", fresh)
    for tag in sorted(set(tags) | set(RELEASES)):
        old_root = tmp_path / tag
        old_root.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(repo), "archive", RELEASES.get(tag, tag), "sql"],
            capture_output=True,
            check=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(old_root)], input=archive, check=True)
        dsn = blank_db()
        psql(dsn, "-f", str(old_root / "sql" / "install.psql"))  # the release's own installer
        cli("upgrade", "-d", dsn)
        assert describe(dsn) == describe(fresh), f"upgrade from {tag} differs from a fresh install"


def test_uninstall_needs_yes_and_leaves_nothing(pgq_dsn: str) -> None:
    refused = cli("uninstall", "-d", pgq_dsn, check=False)
    assert refused.returncode == 1 and "--yes" in refused.stderr
    assert query(pgq_dsn, "SELECT pgq.version()") == [(str(LATEST),)]

    assert cli("uninstall", "--yes", "-d", pgq_dsn).stdout == "pgq schema removed\n"
    leftovers = query(
        pgq_dsn,
        """
        SELECT 'namespace ' || nspname FROM pg_namespace WHERE nspname = 'pgq'
        UNION ALL SELECT 'relation ' || relname FROM pg_class
            WHERE relname LIKE 'job%' OR relname LIKE 'pgq%' OR relname LIKE 'entrypoint%'
        UNION ALL SELECT 'function ' || proname FROM pg_proc
            WHERE proname IN ('enqueue', 'dequeue', 'fingerprint', 'describe_schema')
        UNION ALL SELECT 'type ' || typname FROM pg_type WHERE typname = 'claimed_job'
        """,
    )
    assert leftovers == []
    again = cli("uninstall", "--yes", "-d", pgq_dsn)
    assert "nothing to remove" in again.stdout


@pytest.mark.parametrize(
    ("dsn", "message"),
    [
        ("postgresql://127.0.0.1:1/nothing", "pgq-thin: error: cannot connect to "),
        ("host=/nonexistent-socket-dir dbname=x", "pgq-thin: error: cannot connect to "),
        ("not a = valid dsn '", "pgq-thin: error: invalid database URL"),
    ],
)
def test_bad_database_url_gives_one_clear_line(dsn: str, message: str) -> None:
    result = cli("install", "-d", dsn, check=False)
    assert result.returncode == 1
    assert result.stderr.startswith(message)
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr


def test_no_database_configured_says_how_to_get_one(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG") and k != "DATABASE_URL"}
    env["PGQ_THIN_DB_DIR"] = str(tmp_path / "none")
    result = subprocess.run(
        [CLI, "verify"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60
    )
    assert result.returncode == 1
    assert "pgq-thin db start" in result.stderr
    assert result.stderr.count("\n") == 1
