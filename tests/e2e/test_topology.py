"""Workers in production topologies: behind a real PgBouncer (transaction, session and
statement pooling), with a direct LISTEN connection or polling only, on a server with too few
connections, started before their database, and the previous release's worker against this
release's schema."""

from __future__ import annotations

import signal
import subprocess
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from pgq_thin._pools import POLL_ONLY
from tests.e2e.harness import REPO, Conn, Start, WorkerProcess, count, enqueue, history, wait_for
from tests.e2e.pgbouncer import PgBouncer

APP = "topology_app:main"
IDLE_POLL = "60"  # seconds: a job found sooner than this while idle was found by its NOTIFY
PREVIOUS_RELEASE = "c149b27"  # v0.1.0


def done(conn: Conn, ids: list[int]) -> bool:
    return count(conn, "SELECT count(*) FROM pgq.job_history WHERE id = ANY(%s)", ids) == len(ids)


def assert_ran_once(conn: Conn, ids: list[int]) -> None:
    """Every job succeeded at its first attempt: no job ran twice, none is left."""
    finished = history(conn)
    assert set(finished) == set(ids)
    assert {(state, attempt) for state, attempt, *_ in finished.values()} == {("succeeded", 1)}
    assert count(conn, "SELECT count(*) FROM pgq.jobs") == 0


def pickup_ms(conn: Conn, job_id: int) -> float:
    row = conn.execute(
        "SELECT extract(epoch FROM started_at - enqueued_at) * 1000 FROM pgq.job_history"
        " WHERE id = %s",
        (job_id,),
    ).fetchone()
    assert row is not None
    return float(row[0])


def connections(conn: Conn) -> list[int | None]:
    return [row[0] for row in conn.execute("SELECT connections FROM pgq.workers").fetchall()]


def enqueue_when_idle(conn: Conn, worker: WorkerProcess) -> list[int]:
    """One job, once the worker has had time to go idle (waiting for a NOTIFY or a poll)."""
    time.sleep(1.0)
    assert worker.proc.poll() is None, worker.log()
    return enqueue(conn, "echo", [{}])


def stop(worker: WorkerProcess) -> None:
    worker.send(signal.SIGTERM)
    assert worker.wait() == 0, worker.log()


@pytest.mark.parametrize("pool_mode", ["transaction", "session"])
def test_behind_pgbouncer_with_a_direct_listen_url_jobs_run_once_and_arrive_by_notify(
    pool_mode: str,
    pgq_dsn: str,
    pgq_conn: Conn,
    pgbouncer: Callable[..., PgBouncer],
    start_worker: Start,
) -> None:
    bouncer = pgbouncer(pool_mode, pool_size=4)
    ids = enqueue(pgq_conn, "echo", [{} for _ in range(600)])
    worker = start_worker(
        dsn=bouncer.dsn(), target=APP, PGQ_LISTEN_URL=pgq_dsn, PGQ_POLL_INTERVAL=IDLE_POLL,
        PGQ_BATCH_SIZE="10",  # 60+ claims: psycopg would have prepared the statement by now
    )  # fmt: skip
    wait_for(lambda: done(pgq_conn, ids), "600 jobs through PgBouncer", 90)
    assert connections(pgq_conn) == [6]
    late = enqueue_when_idle(pgq_conn, worker)
    wait_for(lambda: done(pgq_conn, late), f"the job enqueued while idle (poll {IDLE_POLL}s)", 20)
    assert_ran_once(pgq_conn, ids + late)
    stop(worker)
    log = worker.log()
    assert "1 LISTEN (PGQ_LISTEN_URL), 1 maintenance (PGQ_LISTEN_URL): 6 in all" in log
    # Prepared statements (they save planning each claim) only where the session is kept.
    prepared = "outcomes (DATABASE_URL, prepared statements), 1 heartbeat" in log
    assert prepared == (pool_mode == "session")
    assert "WARNING" not in log and "ERROR" not in log, log
    print(f"pickup through {pool_mode} pooling: {pickup_ms(pgq_conn, late[0]):.1f} ms")


@pytest.mark.parametrize("how", ["detected", "PGQ_LISTEN=off"])
def test_without_notifications_the_worker_polls_often_and_says_why(
    how: str,
    pgq_dsn: str,
    pgq_conn: Conn,
    pgbouncer: Callable[..., PgBouncer],
    start_worker: Start,
) -> None:
    if how == "detected":  # a transaction pooler hands a LISTEN to whoever runs next
        worker = start_worker(
            dsn=pgbouncer("transaction").dsn(), target=APP, PGQ_POLL_INTERVAL=IDLE_POLL
        )
        why = "DATABASE_URL drops LISTEN (a transaction pooler?): set PGQ_LISTEN_URL"
    else:
        worker = start_worker(target=APP, PGQ_POLL_INTERVAL=IDLE_POLL, PGQ_LISTEN="off")
        why = "PGQ_LISTEN=off"
    ids = enqueue(pgq_conn, "echo", [{} for _ in range(200)])
    wait_for(lambda: done(pgq_conn, ids), "200 jobs", 60)
    late = enqueue_when_idle(pgq_conn, worker)
    wait_for(lambda: done(pgq_conn, late), "the job enqueued while idle, by a short poll", 20)
    assert_ran_once(pgq_conn, ids + late)
    assert connections(pgq_conn) == [5]  # no LISTEN connection
    stop(worker)
    log = worker.log()
    assert f"5 in all; poll-only mode, every {POLL_ONLY:g}s: {why}" in log
    if how == "detected":  # its lock needs a session: one vacuumer at a time is not sure here
        assert "VACUUM of pgq.jobs left to autovacuum" in log
    else:
        assert "VACUUM pgq.jobs every 0.5s" in log


def test_configuration_errors_exit_at_once_with_one_line(
    pgq_dsn: str, pgbouncer: Callable[..., PgBouncer], start_worker: Start
) -> None:
    transaction = pgbouncer("transaction").dsn()
    unknown_db = make_conninfo(pgq_dsn, dbname="no_such_db")
    cases = {
        "is a pooler in statement mode, which refuses the transactions a worker needs: "
        "use pool_mode = transaction or session": {"dsn": pgbouncer("statement").dsn()},
        "(PGQ_LISTEN_URL) gets no notification sent through DATABASE_URL: point it straight "
        "at the same PostgreSQL database": {"dsn": transaction, "PGQ_LISTEN_URL": transaction},
        'database "no_such_db" does not exist': {"dsn": unknown_db},
        "failed to resolve host 'no-such-host.invalid'": {
            "dsn": "host=no-such-host.invalid dbname=x", "PGQ_CONNECT_TIMEOUT": "0"
        },
    }  # fmt: skip
    workers = {line: start_worker(target=APP, **kw) for line, kw in cases.items()}
    for line, worker in workers.items():
        assert worker.wait(30) == 1, worker.log()
        last = worker.log().strip().splitlines()[-1]
        assert last.startswith("pgq-thin: error: ") and line in last, worker.log()


def test_with_max_connections_20_twelve_workers_all_stay_and_run_every_job_once(
    throwaway_server: Any, start_worker: Start
) -> None:
    with throwaway_server.connect() as conn:
        conn.execute("ALTER SYSTEM SET max_connections = 20")
    throwaway_server.restart()
    throwaway_server.install_schema()
    dsn = throwaway_server.dsn()
    with psycopg.connect(dsn, autocommit=True) as conn:  # held: the server will be full
        ids = enqueue(conn, "echo", [{"sleep": 0.01} for _ in range(1000)])
        workers = [
            start_worker(dsn=dsn, target=APP, MAX_CONCURRENT_JOBS="4") for _ in range(12)
        ]  # 12 x 6 connections wanted, 19 to be had
        wait_for(lambda: done(conn, ids), "1000 jobs on a full server", 180)
        assert [w.proc.poll() for w in workers] == [None] * 12
        assert_ran_once(conn, ids)
    logs = "".join(w.log() for w in workers)
    assert "sorry, too many clients already (max_connections exhausted?); retrying" in logs
    assert "Traceback" not in logs
    for worker in workers:
        stop(worker)


def test_workers_started_before_their_database_wait_for_it(
    throwaway_server: Any, start_worker: Start
) -> None:
    throwaway_server.install_schema()
    dsn = throwaway_server.dsn()
    with psycopg.connect(dsn, autocommit=True) as conn:
        ids = enqueue(conn, "echo", [{} for _ in range(200)])
    throwaway_server.stop()
    workers = [start_worker(dsn=dsn, target=APP) for _ in range(2)]
    wait_for(lambda: all("waiting: cannot connect" in w.log() for w in workers), "waiting")
    time.sleep(5)
    throwaway_server.start()
    with psycopg.connect(dsn, autocommit=True) as conn:
        wait_for(lambda: done(conn, ids), "the jobs once the server is up", 60)
        assert_ran_once(conn, ids)
    for worker in workers:
        log = worker.log()
        assert "Connection refused; retrying for up to 6" in log  # 60 s, the default
        assert log.count("Connection refused") == 1, log  # said once
        stop(worker)


def test_the_previous_release_worker_runs_jobs_once_against_this_schema(
    pgq_conn: Conn, start_worker: Start, tmp_path: Path
) -> None:
    old = tmp_path / "v0.1.0"
    old.mkdir()
    archive = subprocess.run(
        ["git", "archive", PREVIOUS_RELEASE, "pgq_thin"], cwd=REPO, check=True, capture_output=True
    ).stdout
    (tmp_path / "old.tar").write_bytes(archive)
    with tarfile.open(tmp_path / "old.tar") as tar:
        tar.extractall(old, filter="data")
    ids = enqueue(pgq_conn, "echo", [{} for _ in range(300)])
    worker = start_worker(target=APP, PYTHONPATH=str(old))
    wait_for(lambda: done(pgq_conn, ids), "300 jobs by the v0.1.0 worker", 60)
    registered = pgq_conn.execute("SELECT version, connections FROM pgq.workers").fetchall()
    assert registered == [("0.1.0", None)]  # its registration call predates `connections`
    late = enqueue_when_idle(pgq_conn, worker)
    wait_for(lambda: done(pgq_conn, late), "a job enqueued while it is idle", 20)
    assert_ran_once(pgq_conn, ids + late)
    stop(worker)
    assert "ERROR" not in worker.log() and "WARNING" not in worker.log(), worker.log()
