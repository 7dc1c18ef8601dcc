"""The app the worker tests serve with `pgq-thin run worker_app:main`.

Handlers record each start and end in table `events` of the test database (with how many
handlers of this process were running at the start), then follow their payload:
`sleep` seconds (times WORKER_APP_SLEEP_SCALE), `fail_until` (raise while attempt <= it),
`fatal` (raise a non-retryable error), `bad_result` / `nul_result` (return what cannot
be stored). With WORKER_APP_NOOP set, `noop_sync` and `noop_async` do nothing (with `log`:
log a line).
`hostile_async` and `hostile_sync` misbehave as their payload's `do` says (see _misbehave):
the handlers a worker must survive (`at_once`: hostile_async blocks before anything else).
Entrypoint policies come from the JSON in WORKER_APP_POLICY; with WORKER_APP_PERIODIC set,
`async_job` also runs on that cron schedule (named "ticker").
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from pgq_thin import App, Job

DSN = os.environ["DATABASE_URL"]
SCALE = float(os.environ.get("WORKER_APP_SLEEP_SCALE", "1"))
POLICY: dict[str, dict[str, Any]] = json.loads(os.environ.get("WORKER_APP_POLICY", "{}"))
PERIODIC = os.environ.get("WORKER_APP_PERIODIC")
RECORD = "INSERT INTO events (job_id, attempt, event, running, pid) VALUES (%s, %s, %s, %s, %s)"

log = logging.getLogger("worker_app")

RETRYABLE = (RuntimeError, psycopg.OperationalError)  # Fatal is not

_lock = threading.Lock()
_running = 0


class Fatal(Exception):
    """Not in retryable_exceptions: dead-letters at once."""


def _enter() -> int:
    global _running
    with _lock:
        _running += 1
        return _running


def _leave() -> None:
    global _running
    with _lock:
        _running -= 1


def _outcome(job: Job) -> Any:
    if job.payload.get("fatal"):
        raise Fatal("no point retrying")
    if job.attempt <= job.payload.get("fail_until", 0):
        raise RuntimeError(f"failing attempt {job.attempt}")
    if job.payload.get("bad_result"):
        return {1, 2}
    if job.payload.get("nul_result"):
        return "a\x00b"  # valid JSON that jsonb refuses
    return {"value": job.payload.get("value"), "attempt": job.attempt}


def _misbehave(job: Job) -> Any:
    """What both handler kinds do alike with payload {"do": ...}."""
    do = job.payload["do"]
    if do == "system_exit":
        raise SystemExit(3)
    if do == "keyboard_interrupt":
        raise KeyboardInterrupt
    if do == "memory_error":
        return bytearray(1 << 60)  # raises MemoryError without taking the memory
    if do == "not_json":
        return object()
    if do == "huge_result":
        return "x" * (100 * 1024 * 1024)
    if do == "spawn_threads":  # threads that outlive the handler (not daemons)
        for _ in range(3):
            threading.Thread(target=time.sleep, args=(3,)).start()
        return "spawned"
    if do == "child_exit":
        child = subprocess.run([sys.executable, "-c", "import os; os._exit(1)"], check=False)
        return {"child": child.returncode}
    if do == "exit":
        os._exit(1)
    if do == "busy":
        while True:
            pass
    if do == "block":
        time.sleep(job.payload["seconds"])
        return "unblocked"
    raise ValueError(f"unknown misbehaviour {do!r}")


@asynccontextmanager
async def main() -> AsyncIterator[App]:
    """An async context manager factory: the async handlers share a pool it opens."""
    app = App()
    async with AsyncConnectionPool(
        DSN, min_size=1, max_size=4, kwargs={"autocommit": True}
    ) as pool:

        async def record(job: Job, event: str, running: int) -> None:
            async with pool.connection() as conn:
                await conn.execute(RECORD, (job.id, job.attempt, event, running, os.getpid()))

        @app.entrypoint("async_job", retryable_exceptions=RETRYABLE, **_policy("async_job"))
        async def async_job(job: Job) -> Any:
            await record(job, "start", _enter())
            try:
                await asyncio.sleep(job.payload.get("sleep", 0) * SCALE)
                result = _outcome(job)
            finally:
                _leave()
            await record(job, "end", 0)
            return result

        @app.entrypoint("sync_job", retryable_exceptions=RETRYABLE, **_policy("sync_job"))
        def sync_job(job: Job) -> Any:
            with psycopg.connect(DSN, autocommit=True) as conn:
                conn.execute(RECORD, (job.id, job.attempt, "start", _enter(), os.getpid()))
                try:
                    deadline = time.monotonic() + job.payload.get("sleep", 0) * SCALE
                    while time.monotonic() < deadline and not job.cancelled:
                        time.sleep(0.01)
                    if job.cancelled:  # timed out, cancelled or shutting down: stop here
                        return None
                    result = _outcome(job)
                finally:
                    _leave()
                conn.execute(RECORD, (job.id, job.attempt, "end", 0, os.getpid()))
            return result

        @app.entrypoint("hostile_async", **_policy("hostile_async"))
        async def hostile_async(job: Job) -> Any:
            if job.payload.get("at_once"):  # block before the others' handlers start
                time.sleep(job.payload["seconds"])
            await record(job, "start", _enter())
            try:
                if job.payload["do"] == "cancelled":  # a task cancelled elsewhere, awaited
                    task = asyncio.ensure_future(asyncio.sleep(10))
                    task.cancel()
                    await task
                result = _misbehave(job)
            finally:
                _leave()
            await record(job, "end", 0)
            return result

        @app.entrypoint("hostile_sync", **_policy("hostile_sync"))
        def hostile_sync(job: Job) -> Any:
            with psycopg.connect(DSN, autocommit=True) as conn:
                conn.execute(RECORD, (job.id, job.attempt, "start", _enter(), os.getpid()))
                try:
                    result = _misbehave(job)
                finally:
                    _leave()
                conn.execute(RECORD, (job.id, job.attempt, "end", 0, os.getpid()))
            return result

        if os.environ.get("WORKER_APP_NOOP"):
            app.entrypoint("noop_sync")(_noop)

            @app.entrypoint("noop_async")
            async def noop_async(job: Job) -> Any:
                return _noop(job)

        if PERIODIC:  # the schedule test: async_job on WORKER_APP_PERIODIC's cron
            app.periodic(PERIODIC, name="ticker")(async_job)

        yield app


def _noop(job: Job) -> Any:
    """Nothing, or with payload `log`: one line in the handler's own logger."""
    if job.payload.get("log"):
        log.info("handler of %s says hello", job.entrypoint)
    return None


def _policy(name: str) -> dict[str, Any]:
    policy = dict(POLICY.get(name, {}))
    if "backoff" in policy:
        policy["backoff"] = tuple(policy["backoff"])
    return policy
