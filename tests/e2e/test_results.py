"""Waiting for results: the producer is this process, the workers `pgq-thin run` processes."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import threading
from collections import Counter

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from pgq_thin import AsyncQueue, NewJob, PgqError, Queue, WaitResult, results
from tests.e2e.harness import Conn, Start, enqueue, history, starts, wait_for

UNKNOWN = 10**12
NOTIFY_OFF = """
CREATE OR REPLACE FUNCTION pgq._notify_done(job_ids bigint[]) RETURNS void
LANGUAGE plpgsql AS $$ BEGIN END $$
"""


def cli(dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`pgq-thin ARGS` in a process of its own."""
    return subprocess.run(
        [sys.executable, "-m", "pgq_thin", *args, "-d", dsn],
        capture_output=True,
        text=True,
        timeout=120,
    )


def agrees_with_history(db: Conn, result: WaitResult) -> None:
    done = history(db)
    for job_id, status in result.jobs.items():
        assert done[job_id] == (status.state, status.attempt, status.error, status.result)


def test_a_producer_waits_for_how_each_job_ended(
    db: Conn, pgq_dsn: str, start_worker: Start
) -> None:
    [ok, retried, dead] = enqueue(
        db, "async_job", [{"value": 1}, {"fail_until": 1, "value": 2}, {"fatal": True}]
    )
    [running] = enqueue(db, "sync_job", [{"sleep": 60}])
    [waiting] = Queue(db).enqueue_many([NewJob("async_job", delay=3600)])
    policy = {"async_job": {"max_attempts": 3, "backoff": [0, 1, 0, 0]}}
    worker = start_worker(policy=policy)
    wait_for(lambda: starts(db, [running]), "the long job to start")
    assert db.execute("SELECT pgq.cancel(%s), pgq.cancel(%s)", (running, waiting)).fetchone() == (
        True,
        True,
    )

    ids = [ok, retried, dead, running, waiting, UNKNOWN, ok]
    with ConnectionPool(pgq_dsn, min_size=1, max_size=1) as pool:
        result = Queue(pool).wait(ids, timeout=60)
    worker.send(signal.SIGTERM)
    assert worker.wait() == 0, worker.log()

    assert result.unknown == (UNKNOWN,) and result.pending == () and not result.timed_out
    assert {i: s.state for i, s in result.jobs.items()} == {
        ok: "succeeded",
        retried: "succeeded",
        dead: "failed",
        running: "cancelled",
        waiting: "cancelled",
    }
    assert result.jobs[ok].result == {"value": 1, "attempt": 1}
    assert result.jobs[retried].result == {"value": 2, "attempt": 2}
    assert result.jobs[retried].attempt == 2
    assert (result.jobs[dead].error or "").startswith("worker_app.Fatal: no point retrying")
    assert [s.id for s in result.failed] == [dead, running, waiting]
    assert not result.all_succeeded
    agrees_with_history(db, result)
    assert Queue(db).result(ok) == result.jobs[ok]
    assert Queue(db).result(UNKNOWN) is None

    # Another process waits for the same ids through the command line.
    both = cli(pgq_dsn, "wait", str(ok), str(retried))
    assert both.returncode == 0, both.stderr
    assert both.stdout.splitlines() == [
        f'job {ok}: succeeded (attempt 1) result={{"value": 1, "attempt": 1}}',
        f'job {retried}: succeeded (attempt 2) result={{"value": 2, "attempt": 2}}',
    ]
    failed = cli(pgq_dsn, "wait", str(ok), str(dead), str(UNKNOWN))
    assert failed.returncode == 1
    assert f"job {dead}: failed (attempt 1): worker_app.Fatal: no point retrying" in failed.stdout
    assert f"job {UNKNOWN}: unknown (no such job)" in failed.stdout


def test_a_wait_that_times_out_says_what_is_still_pending(
    db: Conn, pgq_dsn: str, start_worker: Start
) -> None:
    [slow] = enqueue(db, "sync_job", [{"sleep": 60}])
    worker = start_worker()
    wait_for(lambda: starts(db, [slow]), "the slow job to start")

    result = Queue(db).wait([slow], timeout=0.5)
    assert result.timed_out and result.pending == (slow,) and result.unknown == ()
    assert result.jobs[slow].state == "running" and not result.jobs[slow].finished

    timed_out = cli(pgq_dsn, "wait", str(slow), "--timeout", "0.5")
    assert timed_out.returncode == 2
    assert timed_out.stdout == f"job {slow}: running (attempt 1), still pending\n"

    enqueued = cli(pgq_dsn, "enqueue", "async_job", '{"value": 7}', "--wait")
    assert enqueued.returncode == 0, enqueued.stderr
    job_id, line = enqueued.stdout.splitlines()
    assert line == f'job {job_id}: succeeded (attempt 1) result={{"value": 7, "attempt": 1}}'

    for bad in ("0", "-1"):
        refused = cli(pgq_dsn, "wait", str(slow), "--timeout", bad)
        assert refused.returncode == 1
        assert refused.stderr == (
            f"pgq-thin: error: timeout must be a number of seconds > 0 (or None), got {bad}.0\n"
        )
    jobs = "SELECT count(*) FROM pgq.jobs"
    before = db.execute(jobs).fetchone()
    refused = cli(pgq_dsn, "enqueue", "async_job", "--wait", "--timeout", "0")
    assert refused.returncode == 1 and "timeout must be" in refused.stderr
    assert db.execute(jobs).fetchone() == before  # refused before anything was enqueued
    with pytest.raises(PgqError, match="timeout must be a number of seconds > 0"):
        Queue(db).wait([slow], timeout=0)
    db.execute("SELECT pgq.cancel(%s)", (slow,))
    worker.send(signal.SIGTERM)
    assert worker.wait() == 0, worker.log()


def test_notifications_wake_a_wait_and_polling_stands_in_for_them(
    db: Conn, start_worker: Start
) -> None:
    worker = start_worker()
    ids = enqueue(db, "async_job", [{"sleep": 0.5, "value": n} for n in range(5)])
    # Polling once an hour: only pgq_done can end this wait in time.
    woken = results.wait(db, ids, timeout=60, poll=3600)
    assert not woken.timed_out and all(s.succeeded for s in woken.jobs.values())

    db.execute(NOTIFY_OFF)  # no notification at all: polling alone finds the results
    ids = enqueue(db, "async_job", [{"sleep": 0.5, "value": n} for n in range(5)])
    polled = results.wait(db, ids, timeout=60, poll=0.2)
    assert not polled.timed_out and all(s.succeeded for s in polled.jobs.values())
    worker.send(signal.SIGTERM)
    assert worker.wait() == 0, worker.log()


def test_a_wait_refuses_a_connection_inside_a_transaction(pgq_dsn: str) -> None:
    with psycopg.connect(pgq_dsn) as conn:
        [job_id] = Queue(conn).enqueue_many([NewJob("async_job")])
        with pytest.raises(PgqError, match="outside a transaction: commit first"):
            Queue(conn).wait([job_id], timeout=1)
        conn.commit()
        # Waiting leaves the connection as it found it: not in autocommit, nothing LISTENed.
        assert Queue(conn).wait([job_id], timeout=0.2).pending == (job_id,)
        assert not conn.autocommit
        assert conn.execute("SELECT pg_listening_channels()").fetchall() == []


def test_waiting_on_ten_thousand_jobs_at_once(db: Conn, pgq_dsn: str, start_worker: Start) -> None:
    ids = enqueue(db, "noop_async", [{}] * 10_000)

    async def wait() -> WaitResult:
        async with await psycopg.AsyncConnection.connect(pgq_dsn, autocommit=True) as conn:
            return await AsyncQueue(conn).wait(ids, timeout=300)

    worker = start_worker("--mode", "drain", "--max-concurrent-jobs", "200", WORKER_APP_NOOP="1")
    result = asyncio.run(wait())
    assert worker.wait(120) == 0, worker.log()
    assert result.all_succeeded and len(result.jobs) == 10_000
    agrees_with_history(db, result)


def test_no_waiting_client_misses_a_completion_under_a_drain_of_50000(
    db: Conn, pgq_dsn: str, start_worker: Start
) -> None:
    ids = [i for _ in range(5) for i in enqueue(db, "noop_async", [{}] * 10_000)]
    listener = psycopg.connect(pgq_dsn, autocommit=True)
    listener.execute("LISTEN pgq_done")
    # Every job is watched before the worker starts (as if its producer asked), so that the
    # listener above must hear of each. Three clients wait for a third each, polling once an
    # hour: only pgq_done wakes them.
    db.execute("SELECT count(*) FROM pgq.watch_jobs(%s)", (ids,))
    waited: dict[int, WaitResult] = {}

    def client(n: int) -> None:
        with psycopg.connect(pgq_dsn, autocommit=True) as conn:
            waited[n] = results.wait(conn, ids[n::3], timeout=600, poll=3600)

    clients = [threading.Thread(target=client, args=(n,)) for n in range(3)]
    for thread in clients:
        thread.start()
    worker = start_worker("--mode", "drain", "--max-concurrent-jobs", "200", WORKER_APP_NOOP="1")
    assert worker.wait(600) == 0, worker.log()
    for thread in clients:
        thread.join(600)
    for n in range(3):
        assert waited[n].all_succeeded and sorted(waited[n].jobs) == sorted(ids[n::3])

    notified: Counter[int] = Counter()
    with listener:
        while batch := [note.payload for note in listener.notifies(timeout=1.0)]:
            notified.update(int(i) for payload in batch for i in payload.split(","))
    finished = history(db)
    assert len(finished) == 50_000 and set(notified) == set(finished) == set(ids)
    assert set(notified.values()) == {1}  # each completion announced exactly once
