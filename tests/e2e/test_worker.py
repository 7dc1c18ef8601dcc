"""The worker runtime end to end: real `pgq-thin run` subprocesses against real PostgreSQL.

The app they serve is tests/e2e/worker_app.py; its handlers record starts and ends in `events`.
The last tests drain the queue with a Worker in the test's own process instead.
Waits are bounded polls; nothing asserts how long anything took.
"""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg

from pgq_thin import App, Job, NewJob, Queue
from pgq_thin.config import Settings
from pgq_thin.worker import DEQUEUE, Worker
from tests.e2e.harness import (
    Conn,
    Start,
    count,
    enqueue,
    finished,
    history,
    starts,
    wait_for,
)


def test_runs_async_and_sync_handlers_and_stores_results(db: Conn, start_worker: Start) -> None:
    async_ids = enqueue(db, "async_job", [{"value": i} for i in range(8)])
    sync_ids = enqueue(db, "sync_job", [{"value": i} for i in range(8)])
    worker = start_worker("--mode", "drain")
    assert worker.wait() == 0, worker.log()
    done = history(db)
    for i, job_id in enumerate(async_ids + sync_ids):
        assert done[job_id] == ("succeeded", 1, None, {"value": i % 8, "attempt": 1})
    log = worker.log()
    assert "entrypoints=async_job,hostile_async,hostile_sync,sync_job" in log
    assert "max_concurrent_jobs=10" in log
    assert "password" not in log
    first = async_ids[0]
    assert f"job started id={first} entrypoint=async_job attempt=1" in log
    assert f"job succeeded id={first} entrypoint=async_job attempt=1 duration=" in log


def test_max_concurrent_jobs_is_never_exceeded(db: Conn, start_worker: Start) -> None:
    ids = enqueue(db, "async_job", [{"sleep": 0.2}] * 6)
    ids += enqueue(db, "sync_job", [{"sleep": 0.2}] * 6)
    worker = start_worker("--mode", "drain", "--batch-size", "50", MAX_CONCURRENT_JOBS="3")
    assert worker.wait() == 0, worker.log()
    assert all(state == "succeeded" for state, *_ in history(db).values())
    assert count(db, "SELECT max(running) FROM events WHERE event = 'start'") == 3
    assert starts(db) == len(ids)


def test_job_timeout_stops_the_handler_and_the_job_is_retried(
    db: Conn, start_worker: Start
) -> None:
    ids = enqueue(db, "async_job", [{"sleep": 60}]) + enqueue(db, "sync_job", [{"sleep": 60}])
    # Both attempts time out (the sync handler notices job.cancelled); then the job is dead.
    # async_job's timeout is its own (also enforced by pgq.reap), sync_job's is JOB_TIMEOUT.
    retry = {"max_attempts": 2, "backoff": [0, 1, 0, 0]}
    policy = {"async_job": {**retry, "timeout": 0.3}, "sync_job": retry}
    worker = start_worker("--mode", "drain", JOB_TIMEOUT="0.3", policy=policy)
    assert worker.wait() == 0, worker.log()
    done = history(db)
    for job_id in ids:
        assert done[job_id][:3] == ("failed", 2, "timeout")
    assert count(db, "SELECT count(*) FROM events WHERE event = 'end'") == 0
    assert starts(db) == 4
    assert f"job failed id={ids[1]} entrypoint=sync_job attempt=1" in worker.log()
    assert 'error="timeout after 0.3s"' in worker.log()
    assert "job outcome not recorded" not in worker.log()  # a reaper first is still a timeout


def test_a_job_whose_handler_barely_ran_is_not_logged_as_a_slow_one(
    db: Conn, start_worker: Start
) -> None:
    # The blocking handler is claimed first; the others' timeouts pass before they start.
    [blocker] = Queue(db).enqueue_many(
        [NewJob("hostile_async", {"do": "none", "at_once": True, "seconds": 1.5}, priority=1)]
    )
    ids = enqueue(db, "async_job", [{}] * 3)
    policy = {"async_job": {"timeout": 1, "max_attempts": 1}, "hostile_async": {"max_attempts": 1}}
    worker = start_worker("--mode", "drain", policy=policy)
    assert worker.wait() == 0, worker.log()
    assert history(db)[blocker][0] == "failed"  # "none" is no misbehaviour it knows
    assert [history(db)[i][:3] for i in ids] == [("failed", 1, "timeout")] * 3
    lines = [ln for ln in worker.log().splitlines() if f" id={ids[0]} " in ln]
    assert "job timed out" in lines[-1] or "job failed" in lines[-1]
    assert (
        'error="timeout after 1s, before its handler could run (the loop reached it 1.'
        in (lines[-1])
    )


def test_a_timeout_set_only_in_sql_stops_the_handler(db: Conn, start_worker: Start) -> None:
    # Neither the decorator nor JOB_TIMEOUT sets one: the worker stops the handler at the
    # claim's timeout_at all the same, and records the timeout itself.
    for name in ("async_job", "sync_job"):
        db.execute("SELECT pgq.set_entrypoint(%s, timeout => '0.5 s', max_attempts => 1)", (name,))
    ids = enqueue(db, "async_job", [{"sleep": 60}]) + enqueue(db, "sync_job", [{"sleep": 60}])
    worker = start_worker("--mode", "drain")
    assert worker.wait() == 0, worker.log()
    assert [history(db)[i][:3] for i in ids] == [("failed", 1, "timeout")] * 2
    assert count(db, "SELECT count(*) FROM events WHERE event = 'end'") == 0
    # The worker and the database time the job out at the same moment; either may record it.
    assert worker.log().count('error="timeout after 0.5s"') == 2


def test_delayed_jobs_and_retries_start_without_waiting_for_a_poll(
    db: Conn, start_worker: Start
) -> None:
    # Polling once a minute, the worker still wakes when the earliest scheduled job is due.
    [delayed] = Queue(db).enqueue_many([NewJob("async_job", {"value": 1}, delay=1.5)])
    [flaky] = enqueue(db, "async_job", [{"fail_until": 1}])  # retried after 1 s of backoff
    policy = {"async_job": {"backoff": [1, 1, 1, 0]}}
    worker = start_worker(PGQ_POLL_INTERVAL="60", policy=policy)
    wait_for(lambda: finished(db, [delayed, flaky]), "both jobs to run", timeout=20)
    worker.send(signal.SIGTERM)
    assert worker.wait() == 0, worker.log()
    assert history(db)[delayed][:2] == ("succeeded", 1)
    assert history(db)[flaky][:2] == ("succeeded", 2)


def test_retries_follow_the_backoff_policy(db: Conn, start_worker: Start) -> None:
    [flaky] = enqueue(db, "async_job", [{"fail_until": 2, "value": "x"}])
    [doomed] = enqueue(db, "sync_job", [{"fail_until": 99}])
    [fatal] = enqueue(db, "async_job", [{"fatal": True}])
    [bad] = enqueue(db, "sync_job", [{"bad_result": True}])
    [nul] = enqueue(db, "async_job", [{"nul_result": True}])
    policy = {
        "async_job": {"max_attempts": 3, "backoff": [0.3, 2, 10, 0]},
        "sync_job": {"max_attempts": 2, "backoff": [0, 1, 0, 0]},
    }
    worker = start_worker(policy=policy)  # drain mode would not wait for scheduled retries
    wait_for(lambda: finished(db, [flaky, doomed, fatal, bad, nul]), "every job to finish")
    worker.send(signal.SIGTERM)
    assert worker.wait() == 0, worker.log()
    done = history(db)

    assert done[flaky] == ("succeeded", 3, None, {"value": "x", "attempt": 3})
    gaps = db.execute(
        "SELECT extract(epoch FROM at - lag(at) OVER (ORDER BY attempt)) FROM events"
        " WHERE job_id = %s AND event = 'start' ORDER BY attempt",
        (flaky,),
    ).fetchall()
    first_gap, second_gap = (float(g) for (g,) in gaps[1:])
    assert first_gap >= 0.3  # base
    assert second_gap >= 0.6  # base * factor

    state, attempt, error, _ = done[doomed]
    assert (state, attempt) == ("failed", 2)
    assert error.startswith("RuntimeError: failing attempt 2")
    assert "Traceback (most recent call last)" in error and "worker_app.py" in error

    assert done[fatal][:2] == ("failed", 1)  # not in retryable_exceptions
    assert done[fatal][2].startswith("worker_app.Fatal: no point retrying")
    assert done[bad][:2] == ("failed", 1)
    assert "not JSON-serializable" in done[bad][2]
    assert done[nul][:2] == ("failed", 1)
    assert done[nul][2].startswith("result could not be stored: ")


def test_heartbeats_keep_long_jobs_leased(db: Conn, start_worker: Start) -> None:
    ids = enqueue(db, "async_job", [{"sleep": 2}]) + enqueue(db, "sync_job", [{"sleep": 2}])
    worker = start_worker("--mode", "drain", PGQ_LEASE_DURATION="0.6")
    assert worker.wait() == 0, worker.log()
    assert [history(db)[i][:2] for i in ids] == [("succeeded", 1)] * 2


def test_config_precedence_flag_over_env_over_file(
    db: Conn, start_worker: Start, tmp_path: Path
) -> None:
    (tmp_path / "pgq-thin.toml").write_text("max_concurrent_jobs = 5\njob-timeout = 7\n")
    runs = [
        (["--max-concurrent-jobs", "7"], {"MAX_CONCURRENT_JOBS": "6"}, "max_concurrent_jobs=7"),
        ([], {"MAX_CONCURRENT_JOBS": "6"}, "max_concurrent_jobs=6"),
        ([], {}, "max_concurrent_jobs=5"),
    ]
    for flags, env, expected in runs:
        worker = start_worker("--mode", "drain", *flags, **env)
        assert worker.wait() == 0, worker.log()
        assert expected in worker.log() and "job_timeout=7s" in worker.log()


def test_killed_worker_jobs_complete_exactly_once_after_lease_expiry(
    db: Conn, start_worker: Start
) -> None:
    ids = enqueue(db, "async_job", [{"sleep": 0.4, "value": i} for i in range(6)])
    policy = {"async_job": {"backoff": [0, 1, 0, 0]}}
    first = start_worker(MAX_CONCURRENT_JOBS="3", PGQ_LEASE_DURATION="1", policy=policy)
    wait_for(lambda: starts(db) >= 3, "the first worker to start jobs")
    first.proc.kill()
    first.wait()
    interrupted = {
        row[0]
        for row in db.execute(
            "SELECT job_id FROM events GROUP BY job_id HAVING count(*) FILTER"
            " (WHERE event = 'end') = 0"
        )
    }
    assert interrupted

    second = start_worker(PGQ_LEASE_DURATION="1", policy=policy)
    wait_for(lambda: finished(db, ids), "every job to finish")
    second.send(signal.SIGTERM)
    assert second.wait() == 0, second.log()
    done = history(db)
    assert [done[i][0] for i in ids] == ["succeeded"] * len(ids)
    for job_id in interrupted:
        assert done[job_id][1] >= 2, f"job {job_id} ran once only though its worker died"
    ended = db.execute("SELECT DISTINCT job_id FROM events WHERE event = 'end'").fetchall()
    assert {row[0] for row in ended} == set(ids)


def test_zombie_completion_is_rejected_by_lease_fencing(db: Conn, start_worker: Start) -> None:
    [job_id] = enqueue(db, "async_job", [{"sleep": 1.5}])
    worker = start_worker(PGQ_LEASE_DURATION="1", policy={"async_job": {"backoff": [0, 1, 0, 0]}})
    wait_for(lambda: starts(db) == 1, "the job to start")
    worker.send(signal.SIGSTOP)  # no heartbeats: the lease runs out
    try:
        wait_for(lambda: count(db, "SELECT pgq.reap()") == 1, "the expired lease to be reaped")
        time.sleep(1)  # past the handler's end: it returns before a heartbeat can stop it
    finally:
        worker.send(signal.SIGCONT)
    # Resumed, the handler returns and the heartbeat thread learns the claim is gone at the
    # same moment: whichever the loop hears first, the outcome is refused and said so.
    finished_late = "job finished after its claim ended (its lease lapsed, or it was cancelled)"
    stopped = "job outcome not recorded: lease already gone"
    line = wait_for(
        lambda: [ln for ln in worker.log().splitlines() if finished_late in ln or stopped in ln],
        "the zombie's outcome to be rejected",
    )[0]
    assert finished_late not in line or "): result discarded" in line
    assert f"id={job_id} entrypoint=async_job attempt=1" in line
    wait_for(lambda: finished(db, [job_id]), "the job to run again and finish")
    worker.send(signal.SIGTERM)
    assert worker.wait() == 0, worker.log()
    assert history(db)[job_id][:2] == ("succeeded", 2)


def test_survives_terminated_connections(db: Conn, start_worker: Start) -> None:
    ids = enqueue(db, "async_job", [{"sleep": 0.05, "value": i} for i in range(40)])
    worker = start_worker(MAX_CONCURRENT_JOBS="4")
    for done_before_kill in (5, 20):
        wait_for(lambda n=done_before_kill: len(history(db)) >= n, "some jobs to finish")
        killed = count(
            db,
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = 'pgq-thin worker' AND datname = current_database()",
        )
        assert killed >= 2
    wait_for(lambda: finished(db, ids), "every job to finish")
    worker.send(signal.SIGTERM)
    assert worker.wait() == 0, worker.log()
    assert {state for state, *_ in history(db).values()} == {"succeeded"}
    assert "connection lost" in worker.log() or "failed:" in worker.log()


def test_survives_a_postgresql_restart(throwaway_server: Any, start_worker: Start) -> None:
    throwaway_server.install_schema()
    dsn = throwaway_server.dsn()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE events (job_id bigint, attempt int, event text, running int, pid int,"
            " at timestamptz NOT NULL DEFAULT clock_timestamp())"
        )
        ids = enqueue(conn, "async_job", [{"sleep": 0.05} for _ in range(30)])
    # Handlers whose own writes hit the restart fail and are retried quickly.
    policy = {"async_job": {"max_attempts": 20, "backoff": [0.1, 1, 0.1, 0]}}
    worker = start_worker(dsn=dsn, MAX_CONCURRENT_JOBS="4", policy=policy)

    def done_count() -> int:
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                return len(history(conn))
        except psycopg.OperationalError:
            return 0

    wait_for(lambda: done_count() >= 5, "some jobs to finish")
    throwaway_server.restart()
    wait_for(lambda: done_count() == len(ids), "every job to finish after the restart", 60)
    worker.send(signal.SIGTERM)
    assert worker.wait() == 0, worker.log()
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert {state for state, *_ in history(conn).values()} == {"succeeded"}
    assert "listener connection lost" in worker.log()


def test_a_claim_lost_with_a_crashed_server_leaves_its_job_queued(throwaway_server: Any) -> None:
    """Claims commit asynchronously: a crash may undo a claim, never lose its job."""
    throwaway_server.install_schema()
    with psycopg.connect(throwaway_server.dsn(), autocommit=True) as conn:
        # Nothing else may flush the WAL: the WAL writer flushes at most every 10 s.
        conn.execute("ALTER SYSTEM SET wal_writer_delay = '10s'")
        conn.execute("ALTER SYSTEM SET autovacuum = off")
        conn.execute("SELECT pg_reload_conf()")
        first, second = enqueue(conn, "async_job", [{}, {}])

        def claim() -> list[Any]:
            lease = timedelta(minutes=5)
            return conn.execute(DEQUEUE, (["async_job"], 1, "w", lease), binary=True).fetchall()

        assert [row[0] for row in claim()] == [first]
        assert conn.execute("SHOW synchronous_commit").fetchone() == ("on",)  # not left behind
        # The WAL writer flushes the first claim (it is woken for the first asynchronous commit).
        wait_for(
            lambda: (
                conn.execute(
                    "SELECT pg_current_wal_flush_lsn() >= pg_current_wal_insert_lsn()"
                ).fetchone()
                == (True,)
            ),
            "the first claim to be flushed",
        )
        assert [row[0] for row in claim()] == [second]
    throwaway_server.kill()
    throwaway_server.start()
    with psycopg.connect(throwaway_server.dsn(), autocommit=True) as conn:
        states = conn.execute("SELECT id, state, attempt FROM pgq.jobs ORDER BY id").fetchall()
        assert states == [(first, "running", 1), (second, "queued", 0)]
        again = conn.execute("SELECT id, attempt FROM pgq.dequeue('{async_job}', 5)").fetchall()
        assert again == [(second, 1)]


def test_graceful_shutdown_releases_jobs_for_another_worker(db: Conn, start_worker: Start) -> None:
    ids = enqueue(db, "async_job", [{"sleep": 60}] * 3) + enqueue(
        db, "sync_job", [{"sleep": 60}] * 3
    )
    first = start_worker(MAX_CONCURRENT_JOBS="4", PGQ_SHUTDOWN_GRACE="0.2")
    wait_for(lambda: starts(db) == 4, "four jobs to start")
    first.send(signal.SIGTERM)
    assert first.wait() == 0, first.log()
    assert first.log().count("job released") == 4
    assert not history(db)
    states = db.execute("SELECT state, attempt FROM pgq.jobs WHERE id = ANY(%s)", (ids,)).fetchall()
    assert sorted(states) == [("queued", 0)] * 6  # released: the attempt did not count

    second = start_worker("--mode", "drain", WORKER_APP_SLEEP_SCALE="0")
    assert second.wait() == 0, second.log()
    done = history(db)
    assert [done[i][:2] for i in ids] == [("succeeded", 1)] * 6


def test_second_signal_exits_at_once(db: Conn, start_worker: Start) -> None:
    enqueue(db, "async_job", [{"sleep": 60}])
    worker = start_worker(PGQ_SHUTDOWN_GRACE="60")
    wait_for(lambda: starts(db) == 1, "the job to start")
    worker.send(signal.SIGTERM)
    wait_for(lambda: "claiming no more jobs" in worker.log(), "the first signal to be handled")
    worker.send(signal.SIGINT)
    assert worker.wait(10) == 128 + signal.SIGINT


def test_cancel_stops_a_running_handler_and_the_registry_shows_the_worker(
    db: Conn, start_worker: Start
) -> None:
    ids = enqueue(db, "async_job", [{"sleep": 60}]) + enqueue(db, "sync_job", [{"sleep": 60}])
    worker = start_worker()
    wait_for(lambda: starts(db) == 2, "both jobs to start")
    for job_id in ids:
        assert db.execute("SELECT pgq.cancel(%s)", (job_id,)).fetchone() == (True,)
    wait_for(lambda: finished(db, ids), "both jobs to end")
    assert [history(db)[i][:2] for i in ids] == [("cancelled", 1)] * 2
    assert "reason=cancelled" in worker.log()
    registry = "SELECT status, entrypoints, concurrency, pid FROM pgq.workers"
    assert db.execute(registry).fetchall() == [
        ("alive", ["async_job", "hostile_async", "hostile_sync", "sync_job"], 10, worker.proc.pid)
    ]
    worker.send(signal.SIGTERM)
    assert worker.wait() == 0, worker.log()
    assert db.execute(registry).fetchall() == []  # deregistered on a clean exit


def drain(dsn: str, app: App, **settings: Any) -> int:
    """Run an in-process Worker in drain mode; returns its exit status."""

    async def run() -> int:
        worker = Worker(app, Settings(database_url=dsn, **settings), mode="drain")
        return await asyncio.wait_for(worker.run(), 60)

    return asyncio.run(run())


def echo(job: Job) -> dict[str, Any]:
    return {"id": job.id, "payload": job.payload, "headers": job.headers}


def test_each_handler_of_a_claim_batch_gets_its_own_job(pgq_dsn: str, db: Conn) -> None:
    # A claim's JSON is decoded in one go and `def` handlers' results come back in batches:
    # nothing may end up with another job's payload, headers or result.
    app = App()
    app.entrypoint("echo_sync")(echo)

    @app.entrypoint("echo_async")
    async def echo_async(job: Job) -> dict[str, Any]:
        return echo(job)

    odd = ['comma, ] } " quote', [1, [2, {"x": None}]], 12345678901234567890, 1.5, True, {}]
    batch = [
        NewJob(name, odd[n % len(odd)] if n % 4 else {"n": n}, headers={"n": n} if n % 3 else None)
        for n in range(150)
        for name in ("echo_async", "echo_sync")
    ]
    ids = Queue(db).enqueue_many(batch)
    ids.append(count(db, "SELECT pgq.enqueue('echo_async', 'null')"))  # a JSON null payload
    batch.append(NewJob("echo_async", None))
    assert drain(pgq_dsn, app, max_concurrent_jobs=40, batch_size=25) == 0
    done = {row[0]: row[1:] for row in db.execute("SELECT id, state, result FROM pgq.job_history")}
    for job_id, new in zip(ids, batch, strict=True):
        payload = new.payload if job_id != ids[-1] else None
        expected = {"id": job_id, "payload": payload, "headers": new.headers or {}}
        assert done[job_id] == ("succeeded", expected)


def test_a_handler_sees_the_claims_times_to_the_microsecond_in_utc(pgq_dsn: str, db: Conn) -> None:
    # The claim sends its times as epoch seconds (cheaper than timestamptz in a zone session):
    # each must still equal the database's, aware, in UTC, and None stays None.
    app = App()
    seen: dict[int, tuple[Any, ...]] = {}

    @app.entrypoint("times", timeout=600)
    async def times(job: Job) -> None:
        seen[job.id] = (job.enqueued_at, job.lease_expires_at, job.timeout_at)
        # Made when first read, they are still the dataclass's fields.
        copy = dataclasses.replace(job, attempt=job.attempt)
        assert copy == job and copy.enqueued_at == job.enqueued_at
        assert f"enqueued_at={job.enqueued_at!r}" in repr(job)

    @app.entrypoint("untimed")
    async def untimed(job: Job) -> None:
        seen[job.id] = (job.enqueued_at, job.lease_expires_at, job.timeout_at)

    db.execute("SET TimeZone = 'America/New_York'")
    ids = enqueue(db, "times", [{}] * 5) + enqueue(db, "untimed", [{}])
    db.execute("UPDATE pgq.entrypoints SET timeout = NULL WHERE name = 'untimed'")  # no deadline
    # Times with every microsecond digit set, as a clock gives them.
    db.execute(
        "UPDATE pgq.jobs SET enqueued_at = enqueued_at + make_interval(secs => id * 0.000123)"
    )
    before = {
        row[0]: row[1]
        for row in db.execute("SELECT id, enqueued_at FROM pgq.jobs WHERE id = ANY(%s)", (ids,))
    }
    assert drain(pgq_dsn, app, batch_size=10) == 0
    rows = db.execute(
        "SELECT id, started_at FROM pgq.job_history WHERE id = ANY(%s) AND state = 'succeeded'",
        (ids,),
    ).fetchall()
    assert len(rows) == len(ids)  # the handlers' own assertions held
    for job_id, started in rows:
        enqueued_at, lease_expires_at, timeout_at = seen[job_id]
        assert enqueued_at == before[job_id] and enqueued_at.utcoffset() == timedelta(0)
        assert lease_expires_at.utcoffset() == timedelta(0) and lease_expires_at > started
        if job_id == ids[-1]:
            assert timeout_at is None
        else:
            assert timeout_at == started + timedelta(seconds=600)
            assert timeout_at.utcoffset() == timedelta(0)


def test_results_may_all_be_none_and_a_def_handler_may_raise_anything(
    pgq_dsn: str, db: Conn
) -> None:
    app = App()

    @app.entrypoint("quiet")
    async def quiet(job: Job) -> None:
        return None

    @app.entrypoint("stop", max_attempts=1)
    def stop(job: Job) -> None:
        raise StopIteration  # asyncio futures refuse it: it must still fail the job

    quiet_ids = enqueue(db, "quiet", [{}] * 30)
    stop_ids = enqueue(db, "stop", [{}] * 3)
    assert drain(pgq_dsn, app, batch_size=50) == 0
    done = history(db)
    assert [done[i] for i in quiet_ids] == [("succeeded", 1, None, None)] * 30
    for job_id in stop_ids:
        state, attempt, error, _ = done[job_id]
        assert (state, attempt) == ("failed", 1)
        assert error.startswith("RuntimeError: handler raised StopIteration")


def test_a_def_handler_outliving_its_timeout_keeps_its_slot_until_it_returns(
    pgq_dsn: str, db: Conn
) -> None:
    app = App()
    events: list[tuple[str, int]] = []
    release = threading.Event()

    @app.entrypoint("stubborn", max_attempts=1)
    def stubborn(job: Job) -> None:
        events.append(("start", job.id))
        if len(events) == 1:
            threading.Timer(0.5, release.set).start()
            release.wait(10)  # ignores job.cancelled: threads cannot be interrupted
        events.append(("end", job.id))

    first, second = enqueue(db, "stubborn", [{}, {}])
    assert drain(pgq_dsn, app, max_concurrent_jobs=1, job_timeout=0.1) == 0
    assert history(db)[first][:3] == ("failed", 1, "timeout")
    assert history(db)[second][:2] == ("succeeded", 1)
    assert events == [("start", first), ("end", first), ("start", second), ("end", second)]
