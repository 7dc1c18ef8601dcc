"""A fleet: 16 worker processes of small concurrency against one server, draining a queue
exactly once while workers are added and removed (gracefully: a crashed worker's jobs run
again after its lease, a fault that explains a second run). The 50,000-job run, and
throughput by fleet size, are in bench/topology.py; here the same shape, scaled to the suite's
time budget."""

from __future__ import annotations

import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.e2e.harness import APP, WorkerProcess, count, enqueue, wait_for

JOBS = 8_000  # a multiple of 4,000 (enqueued 4,000 a call)
FLEET = 16
TOPOLOGY_APP = APP.with_name("topology_app.py")
# A small worker: one pooled connection, heartbeats, LISTEN and maintenance: 4 connections each.
SMALL = {"MAX_CONCURRENT_JOBS": "2", "PGQ_POOL_SIZE": "1", "PGQ_BATCH_SIZE": "2"}


@pytest.fixture
def fleet(throwaway_server: Any, tmp_path: Path) -> Iterator[list[WorkerProcess]]:
    """Workers are appended by the test; any still running at the end are killed."""
    shutil.copy(TOPOLOGY_APP, tmp_path)
    workers: list[WorkerProcess] = []
    yield workers
    for worker in workers:
        if worker.proc.poll() is None:
            worker.proc.kill()
            worker.proc.wait()


def test_sixteen_workers_drain_once_while_workers_come_and_go(
    throwaway_server: Any, fleet: list[WorkerProcess], tmp_path: Path
) -> None:
    throwaway_server.install_schema()
    dsn = throwaway_server.dsn()

    def start() -> WorkerProcess:
        name = f"worker{len(fleet)}"
        worker = WorkerProcess(dsn, tmp_path, [], SMALL, name, "topology_app:main")
        fleet.append(worker)
        return worker

    with psycopg.connect(dsn, autocommit=True) as conn:
        ids = [i for _ in range(JOBS // 4000) for i in enqueue(conn, "echo", [{}] * 4000)]

        def finished() -> int:
            return count(conn, "SELECT count(*) FROM pgq.job_history")

        for _ in range(FLEET - 4):
            start()
        wait_for(lambda: finished() >= JOBS // 5, "a fifth of the jobs", 120)
        leaving = fleet[:4]
        for worker in leaving:  # removed: their running jobs finish or go back to the queue
            worker.send(signal.SIGTERM)
        for _ in range(8):  # added: 16 running from here on
            start()
        wait_for(lambda: finished() >= JOBS // 2, "half of the jobs", 120)
        for worker in leaving:
            assert worker.wait() == 0, worker.log()
        wait_for(lambda: finished() == JOBS, f"all {JOBS} jobs", 240)

        outcomes = conn.execute(
            "SELECT state, attempt, count(*) FROM pgq.job_history WHERE id = ANY(%s) GROUP BY 1, 2",
            (ids,),
        ).fetchall()
        assert outcomes == [("succeeded", 1, JOBS)]  # each ran once, at its first attempt
        assert count(conn, "SELECT count(*) FROM pgq.jobs") == 0
        pids = count(conn, "SELECT count(DISTINCT result->>'pid') FROM pgq.job_history")
        assert pids == len(fleet)  # every worker took part, the leaving ones included
        connections = conn.execute("SELECT DISTINCT connections FROM pgq.workers").fetchall()
        assert connections == [(4,)]
        assert count(conn, "SELECT count(*) FROM pgq.workers") == FLEET

    for worker in fleet[4:]:
        worker.send(signal.SIGTERM)
    for worker in fleet[4:]:
        assert worker.wait() == 0, worker.log()
