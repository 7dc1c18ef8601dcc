"""The SQL-only suites, run from pytest against the test server.

- ``tests/sql/regress``: pg_regress files covering every pgq function and state change;
- ``tests/sql/isolation``: pg_isolation_regress specs for the races (two dequeuers, complete vs
  reap, concurrency limits, dedupe, notifications);
- ``tests/sql/worker.sh``: a worker in bash + psql only, run twice concurrently over 1,000 jobs.

Both suites run through ``tests/sql/run.sh --db <the pgq_dsn database>`` (which is also how to run
them by hand, with no Python at all); a failure shows pg_regress's diffs.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

SQL_TESTS = Path(__file__).parent
RUN = SQL_TESTS / "run.sh"
WORKER = SQL_TESTS / "worker.sh"
LIBPQ_ENV = {
    "host": "PGHOST",
    "hostaddr": "PGHOSTADDR",
    "port": "PGPORT",
    "user": "PGUSER",
    "password": "PGPASSWORD",
    "sslmode": "PGSSLMODE",
}


def _pgxs() -> Path | None:
    """Where pg_regress and pg_isolation_regress live (PGXS, else from pg_config)."""
    if os.environ.get("PGXS"):
        return Path(os.environ["PGXS"])
    pg_config = shutil.which("pg_config") or "/usr/lib/postgresql/15/bin/pg_config"
    try:
        out = subprocess.run(
            [pg_config, "--pkglibdir"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return Path(out) / "pgxs"


def _require(*tools: str) -> None:
    pgxs = _pgxs()
    for tool in tools:
        if tool in ("pg_regress", "pg_isolation_regress"):
            sub = "regress" if tool == "pg_regress" else "isolation"
            if pgxs is None or not (pgxs / "src/test" / sub / tool).exists():
                pytest.skip(f"{tool} not found (package postgresql-client-<version>)")
        elif shutil.which(tool) is None:
            pytest.skip(f"{tool} not found on PATH")


def _libpq_env(dsn: str) -> tuple[dict[str, str], str]:
    """Environment for psql / pg_regress pointing at the DSN's server, and its database name."""
    params = conninfo_to_dict(dsn)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG") or k == "PGXS"}
    for key, var in LIBPQ_ENV.items():
        if params.get(key) not in (None, ""):
            env[var] = str(params[key])
    return env, str(params["dbname"])


@pytest.mark.parametrize("suite", ["regress", "isolation"])
def test_sql_suite(suite: str, pgq_dsn: str, tmp_path: Path) -> None:
    _require("bash", "pg_regress" if suite == "regress" else "pg_isolation_regress")
    env, dbname = _libpq_env(pgq_dsn)
    proc = subprocess.run(
        ["bash", str(RUN), "--db", dbname, "--outdir", str(tmp_path), suite],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    report = f"{proc.stdout}\n{proc.stderr}"
    assert proc.returncode == 0, f"tests/sql/run.sh {suite} failed:\n{report}"
    pattern = "sql/*.sql" if suite == "regress" else "specs/*.spec"
    expected = len(list((SQL_TESTS / suite).glob(pattern)))
    assert re.search(rf"All {expected} tests passed", proc.stdout), report


def test_bash_worker_runs_every_job_exactly_once(
    pgq_dsn: str, pgq_conn: psycopg.Connection[Any]
) -> None:
    """Two copies of worker.sh (bash + psql, no Python) drain 1,000 jobs between them."""
    _require("bash", "psql")
    n_jobs = 1000
    pgq_conn.execute("SELECT pgq.set_entrypoint('sqlwork', jitter => 0)")
    ids = [
        row[0]
        for row in pgq_conn.execute(
            "SELECT * FROM pgq.enqueue_many(array_fill('sqlwork'::text, ARRAY[%s]),"
            " ARRAY(SELECT jsonb_build_object('n', i) FROM generate_series(1, %s) AS i))",
            (n_jobs, n_jobs),
        )
    ]
    assert len(set(ids)) == n_jobs

    env, _ = _libpq_env(pgq_dsn)
    workers = [
        subprocess.Popen(
            ["bash", str(WORKER), "-d", pgq_dsn, "-e", "sqlwork", "-b", "10", "-w", f"w{k}"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in (1, 2)
    ]
    completed_by_summary = 0
    for worker in workers:
        try:
            out, err = worker.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            for w in workers:
                w.kill()
            raise
        assert worker.returncode == 0, f"worker.sh failed:\n{out}\n{err}"
        match = re.search(r"claimed (\d+) completed (\d+)", out)
        assert match, out
        assert match[1] == match[2], f"a worker lost leases: {out}"
        completed_by_summary += int(match[2])
    assert completed_by_summary == n_jobs

    assert pgq_conn.execute("SELECT count(*) FROM pgq.jobs").fetchone() == (0,)
    rows = pgq_conn.execute(
        "SELECT id, state, attempt, (payload->>'n')::int, result, md5(payload::text)"
        " FROM pgq.job_history ORDER BY id"
    ).fetchall()
    assert [r[0] for r in rows] == sorted(ids)  # each job once (id is the history's key)
    for _id, state, attempt, n, result, digest in rows:
        assert (state, attempt) == ("succeeded", 1)  # claimed once, finished once
        assert result["sum"] == n * (n + 1) // 2
        assert result["md5"] == digest
        assert result["worker"] in ("w1", "w2")
