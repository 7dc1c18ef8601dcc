"""Workers fire `@app.periodic` schedules: every second, one job per tick, with one worker or
two; an app that stops declaring a schedule pauses it. Counts per tick, no timing assertion;
the delay from tick to enqueue is printed (`pytest -s`) for the record."""

from __future__ import annotations

import signal
import statistics
import time
from collections import Counter
from datetime import datetime

import psycopg

from pgq_thin._maintenance import REAP_LOCK
from tests.e2e.harness import Conn, Start, count, enqueue, starts, wait_for

EVERY_SECOND = {"WORKER_APP_PERIODIC": "* * * * * *"}
TICKS = """
SELECT (h.headers->>'tick')::timestamptz, h.enqueued_at
FROM pgq.job_history AS h
WHERE h.headers->>'schedule' = 'ticker' AND h.state = 'succeeded'
"""


def ticks(db: Conn) -> list[tuple[datetime, datetime]]:
    return [(tick, enqueued) for tick, enqueued in db.execute(TICKS).fetchall()]


def check_one_job_per_tick(db: Conn, seconds: float) -> list[datetime]:
    """The ticks run in `seconds` of firing: each second once, none missing in between."""
    time.sleep(seconds)
    fired = ticks(db)
    per_tick = Counter(tick for tick, _ in fired)
    assert set(per_tick.values()) == {1}, per_tick
    seen = sorted(per_tick)
    span = int((seen[-1] - seen[0]).total_seconds()) + 1
    assert len(seen) == span, f"missing ticks between {seen[0]} and {seen[-1]}"
    delays = sorted((enqueued - tick).total_seconds() for tick, enqueued in fired)
    print(
        f"\n{len(seen)} ticks in {seconds:g}s; tick to enqueue: median"
        f" {statistics.median(delays):.3f}s, max {delays[-1]:.3f}s"
    )
    return seen


def test_a_worker_runs_one_job_a_second(db: Conn, start_worker: Start) -> None:
    worker = start_worker(**EVERY_SECOND)
    wait_for(lambda: "schedules: ticker (* * * * * *)" in worker.log(), "the worker's start")
    wait_for(lambda: ticks(db), "the first tick")
    seen = check_one_job_per_tick(db, 10)
    assert 9 <= len(seen) <= 13  # about 10 jobs in 10 s (first and last tick partly counted)
    worker.send(signal.SIGTERM)
    assert worker.wait() == 0

    # The app no longer declares it: the next worker pauses it and says so; nothing is deleted.
    again = start_worker()
    wait_for(lambda: "'ticker' is no longer declared" in again.log(), "the warning")
    row = db.execute("SELECT paused_reason FROM pgq.schedule_stats WHERE name = 'ticker'")
    assert row.fetchall() == [("no longer declared",)]
    again.send(signal.SIGTERM)
    assert again.wait() == 0


def test_two_workers_still_run_one_job_per_tick(db: Conn, start_worker: Start) -> None:
    workers = [start_worker(**EVERY_SECOND) for _ in range(2)]
    for worker in workers:
        wait_for(lambda w=worker: "schedules: ticker" in w.log(), "both workers' start")
    wait_for(lambda: ticks(db), "the first tick")
    seen = check_one_job_per_tick(db, 10)
    assert len(seen) >= 9
    for worker in workers:
        worker.send(signal.SIGTERM)
    for worker in workers:
        assert worker.wait() == 0


FIRED = "SELECT count(*) FROM pgq.jobs WHERE headers->>'schedule' = 'ticker'"


def test_only_the_worker_that_reaps_fires_schedules_from_its_upkeep_loop(
    db: Conn, pgq_dsn: str, start_worker: Start
) -> None:
    # The worker's one slot is taken by a long job, so it never claims (claims fire too): only
    # its upkeep loop could fire the ticks, and only while it holds the reap lock.
    enqueue(db, "async_job", [{"sleep": 60}])
    with psycopg.connect(pgq_dsn, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s, %s)", REAP_LOCK)  # the reaper is elsewhere
        worker = start_worker(MAX_CONCURRENT_JOBS="1", PGQ_SHUTDOWN_GRACE="0.1", **EVERY_SECOND)
        wait_for(lambda: starts(db) == 1, "the long job's start")
        time.sleep(1.5)  # a claim made before the slot filled may have fired a tick
        before = count(db, FIRED)
        time.sleep(3)
        assert count(db, FIRED) == before, "a worker without the reap lock fired schedules"
    # The lock is free again: the worker's upkeep loop takes it and fires the ticks due.
    wait_for(lambda: count(db, FIRED) > before, "a tick fired by the upkeep loop")
    worker.send(signal.SIGTERM)
    assert worker.wait() == 0
