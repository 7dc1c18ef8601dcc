"""The worker runtime: claim jobs, run their handlers, keep their leases, report how they ended.

Every state change is a pgq.* call. Loops on one asyncio event loop: claiming (pgq.claim
sized to free capacity, woken by NOTIFY pgq_jobs, polling as the fallback), listening (a
dedicated LISTEN connection, also for pgq_cancel; which connection goes where, and the wait
for the database at start, are pgq_thin/_pools.py's), heartbeats (pgq.renew for every held
job; the ids it no longer holds are stopped; the worker itself in pgq.workers) and the
OutcomeWriter (batched, fenced writes). Each job runs as its own task (`async def` handlers
are awaited in it, plain `def` ones on HandlerThreads); a claim is decoded in one go.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import time
import uuid
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, Literal

import psycopg

from pgq_thin._connection import describe
from pgq_thin._outcomes import TIMEOUT, Outcome, OutcomeWriter
from pgq_thin._pools import Connections
from pgq_thin._retry import TRANSIENT, Retry, kv
from pgq_thin._threads import HandlerThreads, ThreadCall
from pgq_thin._version import __version__
from pgq_thin.app import App, Entrypoint, Job
from pgq_thin.config import Settings
from pgq_thin.errors import PgqError, one_line
from pgq_thin.observer import JobObserver

log = logging.getLogger("pgq_thin.worker")

APPLICATION_NAME = "pgq-thin worker"
SHUTDOWN = "shutdown"
CANCELLED = "cancelled"
LEASE_LOST = "lease lost (cancelled, timed out or expired)"
Mode = Literal["forever", "drain"]

SET_ENTRYPOINT = """
SELECT pgq.set_entrypoint(%s, concurrency_limit => %s, max_attempts => %s, timeout => %s,
    backoff_base => %s, backoff_factor => %s::numeric, backoff_max => %s, jitter => %s::numeric)
"""
REGISTER = "SELECT pgq.register_worker(%s, %s, %s, %s, %s, %s, %s)"
WORKER_HEARTBEAT = "SELECT pgq.worker_heartbeat(%s)"
DEREGISTER = "SELECT pgq.deregister_worker(%s)"
# payload and headers come as text: a claim's JSON is decoded in one json.loads (see _jobs).
# The claim commits without waiting for its WAL flush (set_config local to this statement's
# transaction): a claim lost with a crashed server leaves its job queued, as if never claimed,
# and the next completion's (synchronous) commit flushes it anyway. Saves ~0.4 ms a claim at idle.
DEQUEUE = """
SELECT d.id, d.entrypoint, d.payload::text, d.headers::text, d.priority, d.attempt,
       d.max_attempts, d.lease_token, d.lease_expires_at, d.enqueued_at, d.timeout_at
FROM set_config('synchronous_commit', 'off', true) AS s, pgq.claim(%b, %b, %b, %b) AS d
"""
# The jobs no longer held, and why ('cancelled', 'timeout', 'lost', 'finished').
HEARTBEAT = "SELECT job_id, gone FROM pgq.renew(%s, %s, %s) WHERE gone IS NOT NULL"


@dataclass(eq=False)
class _Held:
    """A claim this worker holds, from pgq.claim until its outcome is written."""

    job: Job
    claimed_at: float  # loop.time() when pgq.claim was sent; timeouts count from it
    task: asyncio.Task[None] | None = None
    call: ThreadCall | None = None  # a `def` handler's, in its thread
    stop_reason: str | None = None
    reported: bool = False


async def _wait(event: asyncio.Event, timeout: float | None) -> None:
    """Wait until `event` is set or `timeout` seconds pass."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await event.wait()


def _jobs(rows: list[tuple[Any, ...]]) -> list[Job]:
    """Jobs from pgq.claim rows (as DEQUEUE selects them), decoding all their JSON at once."""
    texts = [row[2] for row in rows] + [row[3] for row in rows]
    docs = json.loads(f"[{','.join(texts)}]")
    n = len(rows)
    return [Job(r[0], r[1], docs[i], docs[n + i], *r[4:]) for i, r in enumerate(rows)]


def _seconds(value: float | None) -> timedelta | None:
    return None if value is None else timedelta(seconds=value)


def _policy(entry: Entrypoint) -> tuple[Any, ...]:
    """pgq.set_entrypoint arguments; None keeps what the database has."""
    backoff = entry.backoff
    return (
        entry.name,
        entry.concurrency_limit,
        entry.max_attempts,
        _seconds(entry.timeout),
        _seconds(backoff.base if backoff else None),
        backoff.factor if backoff else None,
        _seconds(backoff.max if backoff else None),
        backoff.jitter if backoff else None,
    )


class Worker:
    """Serves an App's entrypoints until stopped (in drain mode: until nothing is claimable)."""

    def __init__(
        self,
        app: App,
        settings: Settings,
        *,
        mode: Mode = "forever",
        worker_id: str | None = None,
        observer: JobObserver | None = None,
    ) -> None:
        if not app.entrypoints:
            raise PgqError("the app has no entrypoints: register one with @app.entrypoint(name)")
        self.app = app
        self.settings = settings
        self.mode = mode
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}"
        self._db = Connections(settings, APPLICATION_NAME)  # where, how many, start-up waits
        self.dsn = self._db.dsn
        self.exit_code = 0
        self._observer = observer or JobObserver()  # metrics hooks; the base does nothing
        self._names = sorted(app.entrypoints)
        self._lease = timedelta(seconds=settings.lease_duration)
        self._held: dict[uuid.UUID, _Held] = {}  # by lease token: one per claim
        self._cancel_notified: set[int] = set()
        self._busy = 0  # running handlers, plus threads still running after their job ended
        self._wake = asyncio.Event()
        self._beat_now = asyncio.Event()
        self._stop = asyncio.Event()
        self._threads = HandlerThreads(settings.max_concurrent_jobs)
        self._pool = self._db.pool  # claims, heartbeats, outcomes
        self._outcomes = OutcomeWriter(self._pool, self._settled)

    @property
    def lingering_threads(self) -> int:
        """Handler threads still running after their job ended (threads cannot be interrupted)."""
        return self._busy

    def request_stop(self) -> None:
        """Stop claiming; running jobs get the shutdown grace, then go back to the queue."""
        self._stop.set()
        self._wake.set()

    def install_signal_handlers(self) -> None:
        """SIGINT/SIGTERM: the first stops gracefully, a second exits at once."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal, sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        if self._stop.is_set():
            log.warning(
                "second %s: exiting now; unfinished jobs run again when their leases expire",
                sig.name,
            )
            logging.shutdown()
            os._exit(128 + sig.value)
        log.info(
            "%s: claiming no more jobs; waiting up to %gs for %d running job(s) "
            "(signal again to exit at once)",
            sig.name, self.settings.shutdown_grace, len(self._running()),
        )  # fmt: skip
        self.request_stop()

    async def run(self) -> int:
        """Serve until stopped; returns the exit status (0 after a clean shutdown)."""
        started = False
        try:
            started = await self._start()
        finally:
            if not started:
                await self._db.close()
        if not started:
            log.info("worker %s stopped before it started", self.worker_id)
            return self.exit_code
        self._banner()
        background = [
            asyncio.create_task(self._db.listen(self._on_notify, self._caught_up), name="listener"),
            asyncio.create_task(self._heartbeat_loop(), name="heartbeat"),
            asyncio.create_task(self._db.maintenance().run(), name="maintenance"),
        ]
        for task in background:
            task.add_done_callback(self._background_done)
        writer = asyncio.create_task(self._outcomes.run(), name="outcome writer")
        try:
            try:
                await self._claim_loop()
            except PgqError as exc:
                self._fatal(str(exc))
            except Exception as exc:
                log.error("internal error while claiming", exc_info=exc)
                self._fatal("claiming failed")
            await self._shutdown(writer)
        finally:
            for task in (*background, writer):
                task.cancel()
            await asyncio.gather(*background, writer, return_exceptions=True)
            await self._db.close()
            self._threads.shutdown()
        return self.exit_code

    def _fatal(self, message: str) -> None:
        log.error("%s; stopping", message)
        self.exit_code = 1
        self.request_stop()

    def _background_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if isinstance(exc, PgqError):
            self._fatal(str(exc))
        elif exc is not None:
            log.error("internal error in the %s", task.get_name(), exc_info=exc)
            self._fatal(f"the {task.get_name()} failed")

    # --- start-up -------------------------------------------------------------------------

    def _registration(self) -> tuple[Any, ...]:
        """pgq.register_worker arguments: this worker in the pgq.workers view."""
        s = self.settings
        return (
            self.worker_id, self._names, s.max_concurrent_jobs, socket.gethostname(),
            os.getpid(), __version__, self._db.count,
        )  # fmt: skip

    async def _start(self) -> bool:
        """Wait for the database (until stopped: False), then store policies and register."""
        opening = asyncio.create_task(self._db.open(self._set_policies))
        stopped = asyncio.create_task(self._stop.wait())
        await asyncio.wait([opening, stopped], return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if not opening.done():
            opening.cancel()
            await asyncio.gather(opening, return_exceptions=True)
            return False
        opening.result()
        self.settings = replace(self.settings, poll_interval=self._db.poll_interval)
        await self._register()
        return True

    async def _set_policies(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Store each entrypoint's policy with pgq.set_entrypoint."""
        for entry in self.app.entrypoints.values():
            try:
                await conn.execute(SET_ENTRYPOINT, _policy(entry))
            except TRANSIENT:
                raise
            except psycopg.Error as exc:
                message = exc.diag.message_primary or str(exc)
                raise PgqError(f"entrypoint {entry.name!r}: {message}") from exc

    async def _register(self) -> None:
        """Announce this worker in pgq.workers (if the database is gone, the heartbeat will)."""
        try:
            async with self._pool.connection() as conn:
                await conn.execute(REGISTER, self._registration())
        except TRANSIENT:
            self._beat_now.set()
        except psycopg.errors.UndefinedFunction as exc:
            raise PgqError(
                f"the pgq schema in {describe(self.dsn)} is older than this worker: "
                "run `pgq-thin upgrade`"
            ) from exc

    def _banner(self) -> None:
        s = self.settings
        log.info(
            "pgq-thin worker %s started: database=%s entrypoints=%s max_concurrent_jobs=%d "
            "job_timeout=%s batch_size=%d lease_duration=%gs poll_interval=%gs "
            "shutdown_grace=%gs mode=%s",
            self.worker_id, json.dumps(describe(self.dsn)), ",".join(self._names),
            s.max_concurrent_jobs, f"{s.job_timeout:g}s" if s.job_timeout else "none",
            s.batch_size, s.lease_duration, s.poll_interval, s.shutdown_grace, self.mode,
        )  # fmt: skip

    # --- claiming -------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        retry = Retry()
        while not self._stop.is_set():
            self._wake.clear()
            free = self.settings.max_concurrent_jobs - self._busy
            if free <= 0:
                await _wait(self._wake, None)
                continue
            idle = not self._held
            want = min(free, self.settings.batch_size)
            claimed_at = asyncio.get_running_loop().time()
            try:
                async with self._pool.connection() as conn:
                    cur = await conn.execute(
                        DEQUEUE, (self._names, want, self.worker_id, self._lease), binary=True
                    )
                    jobs = _jobs(await cur.fetchall())
            except TRANSIENT as exc:
                delay = retry.next()
                log.warning("dequeue failed: %s; retrying in %gs", one_line(exc), delay)
                await _wait(self._stop, delay)
                continue
            except psycopg.Error as exc:
                raise PgqError(f"pgq.claim failed: {exc.diag.message_primary or exc}") from exc
            retry.reset()
            for job in jobs:
                self._dispatch(job, claimed_at)
            if len(jobs) == want:
                continue
            if self.mode == "drain" and idle and not jobs:
                log.info("drained: no job is claimable for %s", ",".join(self._names))
                return
            await _wait(self._wake, self.settings.poll_interval)

    def _dispatch(self, job: Job, claimed_at: float) -> None:
        held = _Held(job, claimed_at)
        self._held[job.lease_token] = held
        self._busy += 1
        held.task = asyncio.create_task(self._run_job(held), name=f"job {job.id}")

    def _running(self) -> list[_Held]:
        return [h for h in self._held.values() if h.task is not None and not h.task.done()]

    # --- running a job --------------------------------------------------------------------

    async def _run_job(self, held: _Held) -> None:
        if log.isEnabledFor(logging.INFO):
            log.info("job started %s", kv(held.job))
        self._observer.started(held.job)
        try:
            self._report(held, await self._execute(held))
        finally:
            self._end_job(held)

    async def _execute(self, held: _Held) -> Outcome:
        """Run the handler under its timeout; every way it can end becomes an Outcome."""
        job = held.job
        entry = self.app.entrypoints.get(job.entrypoint)
        if entry is None:
            return Outcome.failure(
                job, 0.0, f"unknown entrypoint {job.entrypoint!r}", retryable=False
            )
        timeout = entry.timeout if entry.timeout is not None else self.settings.job_timeout
        scope = asyncio.timeout_at(held.claimed_at + timeout) if timeout else None
        started = time.monotonic()
        try:
            if scope is None:  # no timeout: no scope to enter and leave for every job
                result = await self._call(held, entry)
            else:
                async with scope:
                    result = await self._call(held, entry)
        except asyncio.CancelledError:
            if held.stop_reason is None:
                raise
            if held.stop_reason == SHUTDOWN:
                return Outcome(job, "release", time.monotonic() - started)
            return Outcome.failure(job, time.monotonic() - started, held.stop_reason)
        except BaseException as exc:  # whatever a handler does, the worker carries on
            took = time.monotonic() - started
            if isinstance(exc, TimeoutError) and scope is not None and scope.expired():
                job.stop_requested.set()
                return Outcome.failure(job, took, TIMEOUT, f"timeout after {timeout:g}s")
            return Outcome.exception(job, took, exc, entry.is_retryable(exc))
        return Outcome.success(job, result, time.monotonic() - started)

    async def _call(self, held: _Held, entry: Entrypoint) -> Any:
        if entry.is_async:
            return await entry.handler(held.job)
        held.call = self._threads.start(entry.handler, held.job)
        return await held.call.result

    def _end_job(self, held: _Held) -> None:
        """Free the job's slot, once its thread (if any) has returned too."""
        if held.call is None or not held.call.still_running():
            self._free_slot()
            return
        log.warning("handler thread of job %d still running; its slot stays taken", held.job.id)
        loop = asyncio.get_running_loop()
        held.call.thread.add_done_callback(lambda _: loop.call_soon_threadsafe(self._free_slot))

    def _free_slot(self) -> None:
        self._busy -= 1
        self._wake.set()

    def _stop_job(self, held: _Held, reason: str) -> None:
        if held.task is None or held.task.done() or held.reported:
            return
        log.info("job stopping %s", kv(held.job, reason=reason))
        held.stop_reason = reason
        held.job.stop_requested.set()
        held.task.cancel()

    def _report(self, held: _Held, outcome: Outcome) -> None:
        if not held.reported:
            held.reported = True
            self._outcomes.add(outcome)

    def _settled(self, outcome: Outcome, answer: str) -> None:
        """The outcome is written (or refused): the claim is over."""
        self._observer.finished(outcome, answer)
        self._held.pop(outcome.job.lease_token, None)
        if not self._held:
            self._wake.set()  # drain mode may be done

    # --- listening and heartbeats ---------------------------------------------------------

    def _caught_up(self) -> None:
        """Listening (again): claim and beat at once, for what was sent while not listening."""
        self._wake.set()
        self._beat_now.set()

    def _on_notify(self, channel: str, payload: str) -> None:
        if channel == "pgq_jobs" and payload in self.app.entrypoints:
            self._wake.set()
        elif channel == "pgq_cancel" and payload.isdigit():
            job_id = int(payload)
            if any(h.job.id == job_id for h in self._held.values()):
                self._cancel_notified.add(job_id)
                self._beat_now.set()  # the heartbeat confirms it before anything is stopped

    async def _heartbeat_loop(self) -> None:
        """Every third of a lease: the worker's own heartbeat, then its jobs' leases."""
        retry = Retry()
        while True:
            await _wait(self._beat_now, self.settings.lease_duration / 3)
            self._beat_now.clear()
            held = list(self._held.values())
            ids = [h.job.id for h in held]
            tokens = [h.job.lease_token for h in held]
            lost: dict[int, str] = {}
            try:
                async with self._pool.connection() as conn:
                    cur = await conn.execute(WORKER_HEARTBEAT, (self.worker_id,))
                    if await cur.fetchone() != (True,):  # forgotten (pruned): announce again
                        await conn.execute(REGISTER, self._registration())
                    if held:
                        cur = await conn.execute(HEARTBEAT, (ids, tokens, self._lease))
                        lost = dict(await cur.fetchall())
            except TRANSIENT as exc:
                delay = retry.next()
                log.warning("heartbeat failed: %s; retrying in %gs", one_line(exc), delay)
                await asyncio.sleep(delay)
                self._beat_now.set()
                continue
            except psycopg.Error as exc:
                raise PgqError(f"pgq.renew failed: {exc.diag.message_primary or exc}") from exc
            retry.reset()
            for h in held:
                if h.job.id in lost:
                    cancelled = lost[h.job.id] == "cancelled" or h.job.id in self._cancel_notified
                    self._stop_job(h, CANCELLED if cancelled else LEASE_LOST)
            self._cancel_notified.intersection_update(h.job.id for h in self._held.values())

    # --- shutdown -------------------------------------------------------------------------

    async def _shutdown(self, writer: asyncio.Task[None]) -> None:
        """Let running jobs finish within the grace period, release the rest, write everything."""
        running = self._running()
        if running:
            grace = self.settings.shutdown_grace
            log.info("shutting down: waiting up to %gs for %d running job(s)", grace, len(running))
            await asyncio.wait([h.task for h in running if h.task], timeout=grace)
            for held in self._running():
                self._stop_job(held, SHUTDOWN)
            late = [h.task for h in self._running() if h.task]
            if late:
                await asyncio.wait(late, timeout=1.0)
            for held in self._running():  # handlers that ignored cancellation
                self._report(held, Outcome(held.job, "release"))
        self._outcomes.close()
        try:
            await asyncio.wait_for(asyncio.shield(writer), max(self.settings.shutdown_grace, 5.0))
        except TimeoutError:
            log.error(
                "could not record %d job outcome(s) before exiting; those jobs run again "
                "when their leases expire",
                len(self._outcomes),
            )
            self.exit_code = 1
        with contextlib.suppress(psycopg.Error, TimeoutError):
            async with asyncio.timeout(5.0), self._pool.connection() as conn:
                await conn.execute(DEREGISTER, (self.worker_id,))
        log.info("worker %s stopped", self.worker_id)
