"""The benchmark harness's pgq-thin driver runs a tiny workload end to end (bench/sys_pgq.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg

DRIVER = Path(__file__).resolve().parents[2] / "bench" / "sys_pgq.py"


def drive(*args: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, str(DRIVER), *args], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_driver_enqueues_and_drains(pgq_dsn: str, pgq_conn: psycopg.Connection[Any]) -> None:
    assert drive("fill", "--dsn", pgq_dsn, "--count", "300") == {"count": 300}
    assert drive("enqueue", "--dsn", pgq_dsn, "--count", "200", "--batch", "100")["seconds"] > 0

    done = drive("worker", "--dsn", pgq_dsn, "--mode", "drain", "--batch", "50")

    assert done["jobs"] == 500 and done["exit"] == 0
    assert pgq_conn.execute("SELECT count(*) FROM pgq.jobs").fetchone() == (0,)
    history = "SELECT count(*) FROM pgq.job_history WHERE state = 'succeeded'"
    assert pgq_conn.execute(history).fetchone() == (500,)


def test_single_enqueue_and_its_two_references(
    pgq_dsn: str, pgq_conn: psycopg.Connection[Any]
) -> None:
    # The call + commit, the call on an autocommit connection, and the driver's bare transaction
    # (`--floor`: SELECT 1 in place of the job, nothing enqueued).
    for flags in ((), ("--autocommit",), ("--sync",), ("--floor",)):
        assert drive("single", "--dsn", pgq_dsn, "--count", "20", *flags)["seconds"] > 0
    assert pgq_conn.execute("SELECT count(*) FROM pgq.jobs").fetchone() == (60,)
