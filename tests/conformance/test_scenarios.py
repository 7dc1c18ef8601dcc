"""The scenarios every worker must pass, kept once and run against each worker kind.

A worker in any language is written from docs/sql-api.md; these check that what the page
promises holds for the Python worker, the bash+psql worker and the Node worker alike (plus one
fleet mixing all three). Each scenario enqueues jobs for the entrypoint `conf` (whose handler,
the same in the three languages, records `start`/`end` in table `events`), runs workers, and
reads the outcome from the database.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.conformance.fleet import KINDS, Worker, unavailable

Conn = psycopg.Connection[Any]
Start = Callable[..., Worker]
LEASE = "3"  # seconds: renewed every second


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    reason = unavailable(request.param)
    if reason:
        pytest.skip(reason)
    return str(request.param)


@pytest.fixture
def db(pgq_conn: Conn) -> Conn:
    """The test database: table `events`, entrypoint `conf` without jitter or backoff."""
    pgq_conn.execute(
        "CREATE TABLE events (job_id bigint, attempt int, event text, worker text,"
        " at timestamptz NOT NULL DEFAULT clock_timestamp())"
    )
    pgq_conn.execute("SELECT pgq.set_entrypoint('conf', jitter => 0, backoff_base => '0')")
    return pgq_conn


@pytest.fixture
def start(pgq_dsn: str, tmp_path: Path) -> Iterator[Start]:
    """Start workers (kind, settings as keyword arguments); all are killed at the end."""
    started: list[Worker] = []

    def start_worker(kind: str, **settings: str) -> Worker:
        settings.setdefault("PGQ_LEASE_DURATION", LEASE)
        worker = Worker(kind, pgq_dsn, tmp_path, f"{kind}{len(started)}", **settings)
        started.append(worker)
        return worker

    yield start_worker
    for worker in started:
        if worker.proc.poll() is None:
            worker.kill()


def enqueue(db: Conn, payloads: list[dict[str, Any]], priorities: Any = None) -> list[int]:
    rows = db.execute(
        "SELECT * FROM pgq.enqueue_many(array_fill('conf'::text, ARRAY[%s]), %s, %s)",
        (len(payloads), [Jsonb(p) for p in payloads], priorities),
    ).fetchall()
    return [r[0] for r in rows]


def wait_for(
    check: Callable[[], Any], what: str, workers: list[Worker], timeout: float = 30
) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {w.name}\n{w.log()[-3000:]}" for w in workers)
            pytest.fail(f"timed out waiting for {what}\n{logs}")
        time.sleep(0.05)
    return value


def finished(db: Conn, ids: list[int]) -> dict[int, tuple[Any, ...]]:
    """id -> (state, attempt, error, result, worker_id) once every job of `ids` finished."""
    rows = db.execute(
        "SELECT id, state, attempt, error, result, worker_id FROM pgq.job_history"
        " WHERE id = ANY(%s)",
        (ids,),
    ).fetchall()
    return {r[0]: r[1:] for r in rows} if len(rows) == len(ids) else {}


def events(db: Conn, event: str) -> list[tuple[Any, ...]]:
    return db.execute(
        "SELECT job_id, attempt, worker, at FROM events WHERE event = %s ORDER BY at", (event,)
    ).fetchall()


# --- the scenarios ----------------------------------------------------------------------------


def test_a_mixed_fleet_drains_every_job_exactly_once(db: Conn, start: Start) -> None:
    kinds = [k for k in KINDS if unavailable(k) is None]
    ids = enqueue(db, [{"value": i} for i in range(300)])
    fleet = [start(k, MAX_CONCURRENT_JOBS="4", PGQ_BATCH_SIZE="5") for k in kinds]
    for worker in fleet:
        assert worker.wait(120) == 0, worker.log()
    done = finished(db, ids)
    assert done, "jobs left unfinished"
    for i, job_id in enumerate(ids):
        state, attempt, _, result, _ = done[job_id]
        assert (state, attempt, result) == ("succeeded", 1, {"value": i, "attempt": 1})
    starts = [e[0] for e in events(db, "start")]
    assert sorted(starts) == sorted(ids)  # each job ran once
    ran = {e[2].split("-")[0] for e in events(db, "start")}
    assert len(kinds) == 1 or len(ran) > 1, f"one kind did all the work: {ran}"


def test_a_failed_try_is_retried_after_its_backoff(db: Conn, start: Start, kind: str) -> None:
    db.execute("SELECT pgq.set_entrypoint('conf', backoff_base => '1 second', backoff_factor => 2)")
    [job] = enqueue(db, [{"fail_until": 2, "value": "x"}])
    worker = start(kind, PGQ_MODE="forever")
    done = wait_for(lambda: finished(db, [job]), "the job to succeed", [worker])
    assert done[job][:2] == ("succeeded", 3)
    starts = [e[3] for e in events(db, "start")]
    assert len(starts) == 3
    # Backoff 1 s, then 2 s (no jitter): a try never starts before its backoff passed.
    assert (starts[1] - starts[0]).total_seconds() >= 1.0
    assert (starts[2] - starts[1]).total_seconds() >= 2.0
    assert worker.stop() == 0


def test_a_frozen_worker_is_fenced_out(db: Conn, start: Start, kind: str) -> None:
    """SIGSTOP: its lease lapses, another worker runs the job; thawed, its outcome is refused."""
    [job] = enqueue(db, [{"sleep": 2, "value": "v"}])
    frozen = start(kind, PGQ_MODE="forever")
    wait_for(lambda: events(db, "start"), "the first start", [frozen])
    frozen.signal_group(signal.SIGSTOP)
    other = start(kind, PGQ_MODE="forever")
    done = wait_for(lambda: finished(db, [job]), "the second worker to finish it", [other], 40)
    frozen.signal_group(signal.SIGCONT)
    time.sleep(3)  # the thawed handler ends and reports: refused, its claim is over
    assert finished(db, [job]) == done
    state, attempt, _, result, _ = done[job]
    assert (state, attempt, result) == ("succeeded", 2, {"value": "v", "attempt": 2})
    [(error,)] = db.execute("SELECT error FROM pgq.job_retries WHERE job_id = %s", (job,))
    assert error.startswith("worker lost: ")
    assert [e[1] for e in events(db, "start")] == [1, 2]
    for worker in (frozen, other):
        worker.stop()


def test_a_job_past_its_timeout_is_stopped_and_recorded(db: Conn, start: Start, kind: str) -> None:
    db.execute("SELECT pgq.set_entrypoint('conf', timeout => '1 second', max_attempts => 1)")
    [job] = enqueue(db, [{"sleep": 30}])
    worker = start(kind, PGQ_MODE="forever")
    done = wait_for(lambda: finished(db, [job]), "the timeout", [worker], 20)
    assert done[job][:3] == ("failed", 1, "timeout")
    assert worker.stop() == 0  # the handler was stopped: shutdown does not wait 30 s for it
    assert events(db, "end") == []


def test_a_running_job_can_be_cancelled(db: Conn, start: Start, kind: str) -> None:
    [job] = enqueue(db, [{"sleep": 30}])
    worker = start(kind, PGQ_MODE="forever")
    wait_for(lambda: events(db, "start"), "the job to start", [worker])
    assert db.execute("SELECT pgq.cancel(%s)", (job,)).fetchone() == (True,)
    done = wait_for(lambda: finished(db, [job]), "the cancel", [worker], 15)
    assert done[job][0] == "cancelled"
    assert worker.stop() == 0
    assert events(db, "end") == []


def test_jobs_run_by_priority_then_in_order(db: Conn, start: Start, kind: str) -> None:
    priorities = [0, 5, 1, 5, 3, 0]
    ids = enqueue(db, [{} for _ in priorities], priorities)
    worker = start(kind, MAX_CONCURRENT_JOBS="1", PGQ_BATCH_SIZE="1")
    assert worker.wait(60) == 0, worker.log()
    expected = [i for _, i in sorted(zip((-p for p in priorities), ids, strict=True))]
    assert [e[0] for e in events(db, "start")] == expected


def test_a_concurrency_limit_holds_across_the_fleet(db: Conn, start: Start, kind: str) -> None:
    db.execute("SELECT pgq.set_entrypoint('conf', concurrency_limit => 2)")
    ids = enqueue(db, [{"sleep": 0.3} for _ in range(10)])
    fleet = [start(kind, MAX_CONCURRENT_JOBS="4", PGQ_BATCH_SIZE="4") for _ in range(2)]
    for worker in fleet:
        assert worker.wait(60) == 0, worker.log()
    assert all(d[0] == "succeeded" for d in finished(db, ids).values())
    # The most handlers running at one moment, from their start and end events.
    running = peak = 0
    for (event,) in db.execute("SELECT event FROM events ORDER BY at, event").fetchall():
        running += 1 if event == "start" else -1
        peak = max(peak, running)
    assert peak == 2  # the limit, reached and never passed


def test_a_result_over_the_size_cap_fails_the_job(db: Conn, start: Start, kind: str) -> None:
    db.execute("SELECT pgq.configure(max_result_bytes => 200)")
    small, big = enqueue(db, [{"value": "x"}, {"value": "x" * 300}])
    worker = start(kind)
    assert worker.wait(60) == 0, worker.log()
    done = finished(db, [small, big])
    assert done[small][:2] == ("succeeded", 1)
    state, attempt, error, result, _ = done[big]
    assert (state, attempt, result) == ("failed", 1, None)
    assert "exceeds max_result_bytes (200)" in error
