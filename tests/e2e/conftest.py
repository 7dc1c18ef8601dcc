"""Fixtures for the worker tests: the test database with an `events` table, workers, and
PgBouncers in front of the test server."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import APP, Conn, Start, WorkerProcess
from tests.e2e.pgbouncer import PgBouncer

TOPOLOGY_APP = APP.with_name("topology_app.py")


@pytest.fixture
def db(pgq_conn: Conn) -> Conn:
    """The test database, with the `events` table the app's handlers write to."""
    pgq_conn.execute(
        "CREATE TABLE events (job_id bigint, attempt int, event text, running int, pid int,"
        " at timestamptz NOT NULL DEFAULT clock_timestamp())"
    )
    return pgq_conn


@pytest.fixture
def start_worker(pgq_dsn: str, tmp_path: Path) -> Iterator[Start]:
    """Start workers on the test database; any still running at the end are killed.
    `target="topology_app:main"` serves tests/e2e/topology_app.py instead of worker_app.py."""
    shutil.copy(APP, tmp_path / APP.name)
    shutil.copy(TOPOLOGY_APP, tmp_path / TOPOLOGY_APP.name)
    started: list[WorkerProcess] = []

    def start(
        *args: str,
        dsn: str = pgq_dsn,
        policy: dict[str, Any] | None = None,
        target: str = "worker_app:main",
        **env: str,
    ) -> WorkerProcess:
        if policy is not None:
            env["WORKER_APP_POLICY"] = json.dumps(policy)
        name = f"worker{len(started)}"
        worker = WorkerProcess(dsn, tmp_path, list(args), env, name, target)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        if worker.proc.poll() is None:
            worker.proc.kill()
            worker.proc.wait()


@pytest.fixture
def pgbouncer(pgq_dsn: str) -> Iterator[Callable[..., PgBouncer]]:
    """Start PgBouncers (`pool_mode`, in front of the test server unless `server_dsn` says
    otherwise); stopped at the end, before the test database is dropped."""
    started: list[PgBouncer] = []

    def start(pool_mode: str, server_dsn: str = pgq_dsn, pool_size: int = 20) -> PgBouncer:
        bouncer = PgBouncer(server_dsn, pool_mode, pool_size)
        started.append(bouncer)
        return bouncer

    yield start
    for bouncer in started:
        bouncer.stop()
