"""Helpers for tests that run real `pgq-thin run` workers serving tests/e2e/worker_app.py.

The fixtures `db` and `start_worker` built on these live in tests/e2e/conftest.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgq_thin import NewJob, Queue

REPO = Path(__file__).resolve().parents[2]
APP = Path(__file__).with_name("worker_app.py")
OWN_ENV = ("DATABASE_URL", "MAX_CONCURRENT_JOBS", "JOB_TIMEOUT", "PGQ_", "WORKER_APP_", "PG")
Conn = psycopg.Connection[Any]


class WorkerProcess:
    """`pgq-thin run TARGET` (worker_app:main unless told) in `workdir`, logging to a file there.
    A PYTHONPATH in `env` comes before the repository (to run another release's pgq_thin)."""

    def __init__(
        self,
        dsn: str,
        workdir: Path,
        args: list[str],
        env: dict[str, str],
        name: str,
        target: str = "worker_app:main",
    ):
        self.log_path = workdir / f"{name}.log"
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(OWN_ENV)}
        full_env.update(PGQ_POLL_INTERVAL="0.2", PGQ_SHUTDOWN_GRACE="5")
        path = os.pathsep.join(filter(None, (env.get("PYTHONPATH"), str(REPO))))
        full_env.update(env, DATABASE_URL=dsn, PYTHONPATH=path)
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pgq_thin", "run", target, *args],
                cwd=workdir,
                env=full_env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait(self, timeout: float = 30) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"worker still running after {timeout}s; log:\n{self.log()}")

    def send(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)


Start = Callable[..., WorkerProcess]


def wait_for(check: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    """Poll `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def enqueue(conn: Conn, entrypoint: str, payloads: list[dict[str, Any]]) -> list[int]:
    return Queue(conn).enqueue_many([NewJob(entrypoint, p) for p in payloads])


def history(conn: Conn) -> dict[int, tuple[str, int, str | None, Any]]:
    """id -> (state, attempt, error, result) of finished jobs."""
    rows = conn.execute("SELECT id, state, attempt, error, result FROM pgq.job_history").fetchall()
    return {row[0]: tuple(row[1:]) for row in rows}


def finished(conn: Conn, ids: list[int]) -> bool:
    return set(ids) <= set(history(conn))


def count(conn: Conn, sql: str, *params: Any) -> int:
    row = conn.execute(sql, params).fetchone()
    assert row is not None
    return int(row[0])


def starts(conn: Conn, job_ids: list[int] | None = None) -> int:
    if job_ids is None:
        return count(conn, "SELECT count(*) FROM events WHERE event = 'start'")
    return count(
        conn, "SELECT count(*) FROM events WHERE event = 'start' AND job_id = ANY(%s)", job_ids
    )
