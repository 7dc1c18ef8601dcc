"""Helpers for tests that run real `pgq-thin run` workers serving tests/e2e/worker_app.py.

The fixtures `db` and `start_worker` built on these live in tests/e2e/conftest.py.
"""

from __future__ import annotations

import itertools
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


def runs(conn: Conn) -> dict[int, list[list[Any]]]:
    """job id -> its runs from `events`, by start: [attempt, started, ended or None, pid]."""
    found: dict[int, list[list[Any]]] = {}
    rows = conn.execute("SELECT job_id, attempt, event, at, pid FROM events ORDER BY at")
    for job_id, attempt, event, at, pid in rows:
        if event == "start":
            found.setdefault(job_id, []).append([attempt, at, None, pid])
            continue
        for run in reversed(found.get(job_id, [])):
            if run[0] == attempt and run[3] == pid and run[2] is None:
                run[2] = at
                break
    return found


def audit(conn: Conn, ids: list[int], workers: list[WorkerProcess]) -> dict[str, list[int]]:
    """For every job of `ids` that should have succeeded: which were lost (not succeeded),
    ran more than once without a fault to explain it, or ran twice at once.

    A run before the last is explained when it never ended (stopped, released, killed) or its
    worker exited with an error (it died, or gave up on a handler); one that ended on a healthy
    worker is not. Two runs overlap when one started while an earlier one went on (it ended
    later, or never ended and its worker is still alive)."""
    done = history(conn)
    alive = {w.proc.pid for w in workers if w.proc.poll() is None}
    healthy = {w.proc.pid for w in workers if w.proc.returncode in (0, None)}
    found = runs(conn)
    report: dict[str, list[int]] = {"lost": [], "more_than_once": [], "overlapping": []}
    for job_id in ids:
        if job_id not in done or done[job_id][0] != "succeeded":
            report["lost"].append(job_id)
            continue
        job_runs = found.get(job_id, [])
        if any(run[2] is not None and run[3] in healthy for run in job_runs[:-1]):
            report["more_than_once"].append(job_id)
        for earlier, later in itertools.pairwise(job_runs):
            still = earlier[2] is None and earlier[3] in alive
            if still or (earlier[2] is not None and earlier[2] > later[1]):
                report["overlapping"].append(job_id)
                break
    return report


CLEAN: dict[str, list[int]] = {"lost": [], "more_than_once": [], "overlapping": []}


def supervise(
    start: Start, done: Callable[[], bool], *args: str, restarts: int = 6, **env: Any
) -> list[WorkerProcess]:
    """Run a worker until `done()`, starting it again whenever it exits (as a supervisor
    would); then stop the last one. Returns every worker started."""
    workers = [start(*args, **env)]
    deadline = time.monotonic() + 60
    while not done():
        if workers[-1].proc.poll() is not None:
            if len(workers) > restarts:
                pytest.fail(f"worker exited {len(workers)} times; last log:\n{workers[-1].log()}")
            workers.append(start(*args, **env))
        if time.monotonic() > deadline:
            pytest.fail(f"jobs not done after 60s; last log:\n{workers[-1].log()}")
        time.sleep(0.05)
    if workers[-1].proc.poll() is None:
        workers[-1].send(signal.SIGTERM)
        workers[-1].wait()
    return workers
