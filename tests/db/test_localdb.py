"""`pgq-thin db`, the throwaway-server helper, and the pytest plugin's fixtures."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgq_thin._connection import NO_DATABASE, resolve_dsn
from pgq_thin.errors import PgqError
from pgq_thin.testing import ThrowawayServer

PGQ_THIN = str(Path(sys.executable).parent / "pgq-thin")


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without any database settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG") and k != "DATABASE_URL"}
    return {**env, **extra}


def cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PGQ_THIN, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )


def can_connect(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.OperationalError:
        return False


@pytest.fixture
def db_dir(tmp_path: Path) -> Iterator[Path]:
    """A PGQ_THIN_DB_DIR; its server is stopped and its data removed afterwards."""
    where = tmp_path / "localdb"
    yield where
    cli("db", "stop", env=clean_env(PGQ_THIN_DB_DIR=str(where)), cwd=tmp_path)
    state = where / "state.json"
    if state.exists():
        info = json.loads(state.read_text())
        shutil.rmtree(Path(info["datadir"]).parent, ignore_errors=True)
        shutil.rmtree(info["socket_dir"], ignore_errors=True)


def test_db_start_status_url_stop(db_dir: Path, tmp_path: Path) -> None:
    env = clean_env(PGQ_THIN_DB_DIR=str(db_dir))

    started = cli("db", "start", env=env, cwd=tmp_path)
    assert started.returncode == 0, started.stderr
    url = started.stdout.strip()
    assert url.startswith("postgresql://postgres@127.0.0.1:")
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT current_setting('server_encoding'), 6 * 7").fetchone()
        assert row == ("UTF8", 42)

    status = cli("db", "status", env=env, cwd=tmp_path)
    assert status.returncode == 0
    assert "running" in status.stdout and url in status.stdout
    assert cli("db", "url", env=env, cwd=tmp_path).stdout.strip() == url

    again = cli("db", "start", env=env, cwd=tmp_path)
    assert again.returncode == 0 and again.stdout.strip() == url

    stopped = cli("db", "stop", env=env, cwd=tmp_path)
    assert stopped.returncode == 0 and stopped.stdout.strip() == "stopped"
    assert not can_connect(url)
    assert cli("db", "status", env=env, cwd=tmp_path).returncode == 3
    assert cli("db", "stop", env=env, cwd=tmp_path).stdout.strip() == "not running"

    restarted = cli("db", "start", env=env, cwd=tmp_path)
    assert restarted.returncode == 0
    assert can_connect(restarted.stdout.strip())


def test_no_database_gives_one_line_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("PG") or name in ("DATABASE_URL", "PGQ_THIN_DB_DIR"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PgqError) as exc:
        resolve_dsn()
    assert str(exc.value) == NO_DATABASE

    result = cli("db", "url", env=clean_env(), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pgq-thin: error:")
    assert "pgq-thin db start" in lines[0]


def test_throwaway_server_survives_restart(throwaway_server: ThrowawayServer) -> None:
    with throwaway_server.connect() as conn:
        conn.execute("CREATE TABLE t (x int)")
        conn.execute("INSERT INTO t VALUES (1)")
    dsn = throwaway_server.dsn()

    throwaway_server.restart()
    assert throwaway_server.dsn() == dsn
    with throwaway_server.connect() as conn:
        conn.execute("INSERT INTO t VALUES (2)")

    throwaway_server.kill()
    assert not throwaway_server.is_running()
    assert not can_connect(dsn)
    throwaway_server.start()
    with throwaway_server.connect() as conn:
        assert conn.execute("SELECT array_agg(x ORDER BY x) FROM t").fetchone() == ([1, 2],)

    assert throwaway_server.stop() is True
    assert throwaway_server.stop() is False


def test_plugin_is_loaded_by_entry_point(pytestconfig: pytest.Config) -> None:
    assert pytestconfig.pluginmanager.get_plugin("pgq_thin") is not None


@pytest.mark.parametrize("round_", [1, 2])
def test_each_test_gets_a_fresh_database_with_the_schema(
    pgq_conn: psycopg.Connection[tuple[Any, ...]], round_: int
) -> None:
    assert pgq_conn.autocommit
    assert pgq_conn.execute("SELECT to_regnamespace('pgq') IS NOT NULL").fetchone() == (True,)
    assert pgq_conn.execute("SELECT to_regclass('public.marker')").fetchone() == (None,)
    pgq_conn.execute("CREATE TABLE public.marker (round int)")


def test_throwaway_fallback_when_no_server_is_configured(tmp_path: Path) -> None:
    """PGQ_THIN_TEST_SERVER=throwaway: the path a machine with no running PostgreSQL takes."""
    (tmp_path / "test_inner.py").write_text(
        textwrap.dedent(
            """
            def test_inner(pgq_server, pgq_conn):
                assert pgq_server.local is not None
                pgq_conn.execute("SELECT pgq.version()")
                print("INNER-DSN", pgq_server.dsn())
            """
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "test_inner.py"],
        env=clean_env(PGQ_THIN_TEST_SERVER="throwaway"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    dsn = result.stdout.split("INNER-DSN ", 1)[1].splitlines()[0]
    assert not can_connect(dsn)  # stopped at the end of the session
