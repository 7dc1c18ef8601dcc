"""Fixtures for the worker tests: the test database with an `events` table, and workers."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import APP, Conn, Start, WorkerProcess


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
    """Start workers on the test database; any still running at the end are killed."""
    shutil.copy(APP, tmp_path / APP.name)
    started: list[WorkerProcess] = []

    def start(
        *args: str, dsn: str = pgq_dsn, policy: dict[str, Any] | None = None, **env: str
    ) -> WorkerProcess:
        if policy is not None:
            env["WORKER_APP_POLICY"] = json.dumps(policy)
        worker = WorkerProcess(dsn, tmp_path, list(args), env, f"worker{len(started)}")
        started.append(worker)
        return worker

    yield start
    for worker in started:
        if worker.proc.poll() is None:
            worker.proc.kill()
            worker.proc.wait()
