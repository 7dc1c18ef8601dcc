"""Handlers as hostile input: a worker no handler can wedge (real workers, real PostgreSQL).

Each test serves tests/e2e/worker_app.py, whose `hostile_*` entrypoints misbehave as told,
beside ordinary jobs; `audit` then counts, for every ordinary job, whether it was lost, ran
more than once without a fault to explain it, or ran twice at once.
"""

from __future__ import annotations

import signal

from tests.e2e.harness import (
    CLEAN,
    Conn,
    Start,
    audit,
    enqueue,
    finished,
    history,
    runs,
    starts,
    supervise,
    wait_for,
)

ONCE = {"max_attempts": 1}


def ordinary(db: Conn, n: int = 10, **payload: object) -> list[int]:
    return enqueue(db, "async_job", [{"value": i, **payload} for i in range(n)]) + enqueue(
        db, "sync_job", [{"value": i, **payload} for i in range(n)]
    )


def test_a_def_handler_that_never_returns_ends_its_job_and_cannot_wedge_the_worker(
    db: Conn, start_worker: Start
) -> None:
    [bad] = enqueue(db, "hostile_sync", [{"do": "busy"}])
    policy = {"hostile_sync": {"max_attempts": 3, "timeout": 0.5, "backoff": [0, 1, 0, 0]}}
    first = start_worker(MAX_CONCURRENT_JOBS="2", policy=policy)
    registry = "SELECT status, stuck_slots FROM pgq.workers WHERE status = 'unhealthy'"
    assert wait_for(lambda: db.execute(registry).fetchall(), "pgq.workers to show it unhealthy")
    wait_for(lambda: starts(db, [bad]) >= 2, "the busy handler to hold both slots")
    jobs = ordinary(db)  # today's worker would never run these: its slots are all taken
    more = supervise(
        start_worker, lambda: finished(db, [bad, *jobs]), MAX_CONCURRENT_JOBS="2", policy=policy
    )
    workers = [first, *more]
    assert audit(db, jobs, workers) == CLEAN
    assert history(db)[bad][:3] == ("failed", 3, "timeout")
    assert first.wait() == 70, first.log()
    log = first.log()
    assert f"handler thread of job {bad} (entrypoint hostile_sync) still running" in log
    assert "every slot is held by a stuck handler thread: the worker exits (status 70)" in log


def test_a_cancelled_error_nobody_asked_for_fails_the_job_and_drain_ends(
    db: Conn, start_worker: Start
) -> None:
    [bad] = enqueue(db, "hostile_async", [{"do": "cancelled"}])
    jobs = ordinary(db)
    worker = start_worker("--mode", "drain", policy={"hostile_async": ONCE})
    assert worker.wait() == 0, worker.log()
    state, attempt, error, _ = history(db)[bad]
    assert (state, attempt) == ("failed", 1)
    assert error.startswith("asyncio.exceptions.CancelledError")
    assert audit(db, jobs, [worker]) == CLEAN


def test_an_async_handler_blocking_the_loop_keeps_its_leases_and_runs_once(
    db: Conn, start_worker: Start
) -> None:
    [bad] = enqueue(db, "hostile_async", [{"do": "block", "seconds": 3}])
    jobs = ordinary(db, 6, sleep=0.5)  # held beside it, by the same worker
    env = {"PGQ_LEASE_DURATION": "1", "policy": {"hostile_async": ONCE}}
    workers = [start_worker(**env)]
    wait_for(lambda: starts(db, [bad]), "the blocking handler to start")
    workers.append(start_worker(**env))  # would take over every lease that lapsed
    wait_for(lambda: finished(db, [bad, *jobs]), "every job to finish")
    for worker in workers:
        worker.send(signal.SIGTERM)
        assert worker.wait() == 0, worker.log()
    assert history(db)[bad] == ("succeeded", 1, None, "unblocked")
    assert audit(db, [bad, *jobs], workers) == CLEAN
    assert [r[0] for r in runs(db)[bad]] == [1]
    log = workers[0].log()
    assert "event loop was blocked for 3." in log or "event loop was blocked for 2.9" in log
    assert f"by the handler of job {bad} (entrypoint hostile_async) at worker_app.py:" in log
    assert "Blocking code belongs in a plain `def` handler" in log


def test_an_async_handler_blocking_the_loop_past_its_timeout_ends_the_worker(
    db: Conn, start_worker: Start
) -> None:
    [bad] = enqueue(db, "hostile_async", [{"do": "block", "seconds": 30}])
    jobs = ordinary(db, 5)
    policy = {"hostile_async": {"max_attempts": 2, "timeout": 1, "backoff": [0, 1, 0, 0]}}
    workers = supervise(start_worker, lambda: finished(db, [bad, *jobs]), policy=policy)
    state, attempt, error, _ = history(db)[bad]
    assert (state, attempt) == ("failed", 2)
    assert error.startswith("timeout: its handler blocked the event loop for ")
    assert audit(db, jobs, workers) == CLEAN
    assert workers[0].wait() == 70
    assert "at its job's timeout: the worker cannot stop that handler" in workers[0].log()


def test_shutdown_never_releases_a_job_whose_handler_still_runs(
    db: Conn, start_worker: Start
) -> None:
    [stubborn] = enqueue(db, "hostile_sync", [{"do": "block", "seconds": 4}])  # ignores stops
    [polite] = enqueue(db, "async_job", [{"sleep": 60}])
    first = start_worker(PGQ_SHUTDOWN_GRACE="0.2", PGQ_LEASE_DURATION="2")
    wait_for(lambda: starts(db) == 2, "both jobs to start")
    first.send(signal.SIGTERM)
    assert first.wait() == 0, first.log()
    states = dict(db.execute("SELECT id, state FROM pgq.jobs").fetchall())
    assert states == {stubborn: "running", polite: "queued"}
    assert f"released job(s) {polite} back to the queue; left job(s) {stubborn}" in first.log()
    second = start_worker(WORKER_APP_SLEEP_SCALE="0")
    wait_for(lambda: finished(db, [stubborn, polite]), "both jobs to run again and finish")
    second.send(signal.SIGTERM)
    second.wait()
    assert history(db)[stubborn][:2] == ("succeeded", 2)  # its lease lapsed: a fault
    assert audit(db, [stubborn, polite], [first, second]) == CLEAN


def test_a_handler_that_kills_its_worker_is_dead_lettered_alone(
    db: Conn, start_worker: Start
) -> None:
    [bad] = enqueue(db, "hostile_sync", [{"do": "exit"}])
    jobs = ordinary(db, 8, sleep=0.3)
    policy = {"hostile_sync": {"max_attempts": 2, "backoff": [0, 1, 0, 0]}}
    workers = supervise(
        start_worker, lambda: finished(db, [bad, *jobs]), PGQ_LEASE_DURATION="1", policy=policy
    )
    state, attempt, error, _ = history(db)[bad]
    assert (state, attempt) == ("failed", 2)
    assert "worker lost" in error
    assert audit(db, jobs, workers) == CLEAN
    dead = {w.proc.pid for w in workers if w.proc.returncode == 1}
    for job_id, job_runs in runs(db).items():  # a job ran again only after its worker died
        assert all(run[3] in dead for run in job_runs[:-1]), job_id


def test_hostile_handlers_fail_their_job_alone_with_the_cause(
    db: Conn, start_worker: Start
) -> None:
    both = [
        "system_exit",
        "keyboard_interrupt",
        "memory_error",
        "not_json",
        "huge_result",
        "spawn_threads",
        "child_exit",
    ]
    bad = {
        (kind, do): enqueue(db, f"hostile_{kind}", [{"do": do}])[0]
        for kind in ("async", "sync")
        for do in both
    }
    bad["async", "cancelled"] = enqueue(db, "hostile_async", [{"do": "cancelled"}])[0]
    jobs = ordinary(db)
    policy = {"hostile_async": ONCE, "hostile_sync": ONCE}
    worker = start_worker("--mode", "drain", policy=policy)
    assert worker.wait(90) == 0, worker.log()  # two results of 100 MB travel to the server
    expected = {
        "system_exit": "SystemExit: 3",
        "keyboard_interrupt": "KeyboardInterrupt",
        "memory_error": "MemoryError",
        "not_json": "result is not JSON-serializable: Object of type object",
        "huge_result": "result could not be stored: pgq: result of 104857",
        "cancelled": "asyncio.exceptions.CancelledError",
    }
    done = history(db)
    for (kind, do), job_id in bad.items():
        state, attempt, error, result = done[job_id]
        if do == "spawn_threads":
            assert (state, result) == ("succeeded", "spawned")
        elif do == "child_exit":
            assert (state, result) == ("succeeded", {"child": 1})
        else:
            assert (state, attempt) == ("failed", 1), (kind, do, error)
            assert error.startswith(expected[do]), (kind, do, error)
    assert audit(db, jobs, [worker]) == CLEAN
