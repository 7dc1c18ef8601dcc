"""The worker runtime: claim jobs, run their handlers, keep their leases, report how they ended.

Every state change is a pgq.* call. Loops on one asyncio event loop: claiming (pgq.claim
sized to free capacity, woken by NOTIFY pgq_jobs, polling as the fallback), listening (a
dedicated LISTEN connection, also for pgq_cancel; which connection goes where, and the wait
for the database at start, are pgq_thin/_pools.py's) and the OutcomeWriter (batched, fenced
writes). Two threads watch over it (_liveness): heartbeats (pgq.renew for every held job
on a connection of their own, so a handler blocking the loop cannot cost the leases; the ids
no longer held are stopped) and the stall detector. Each job runs as its own task (`async
def` handlers are awaited in it, plain `def` ones on HandlerThreads); a claim is decoded in
one go. Whatever a handler raises, returns or however long it runs, its attempt ends with an
outcome; a `def` handler thread that outlives its job holds its slot and is reported as
stuck, and a worker whose slots are all stuck exits for its supervisor to restart it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import signal
import socket
import time
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any, Literal

import psycopg

from pgq_thin import _schedules as schedules
from pgq_thin import _tracing
from pgq_thin._connection import describe
from pgq_thin._liveness import (
    DEREGISTER,
    EXIT_STUCK,
    REGISTER,
    Beat,
    Culprit,
    Heartbeats,
    Leases,
    StallDetector,
)
from pgq_thin._logging import job_context
from pgq_thin._outcomes import FAIL, TIMEOUT, Outcome, OutcomeWriter
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
GONE = {  # why pgq.renew no longer holds a job -> why its handler is stopped
    "cancelled": CANCELLED,
    "timeout": "timed out (recorded by the database)",
    "lost": "lease lapsed (recorded as worker lost)",
    "finished": "finished elsewhere",
}
TIMEOUT_SWEEP = 0.05  # seconds between two checks of the held jobs' deadlines
STUCK_AFTER = 1.0  # seconds a `def` handler may take to return once its job ended
SHUTDOWN_STOP = 1.0  # seconds a handler asked to stop at shutdown has to do so
Mode = Literal["forever", "drain"]

SET_ENTRYPOINT = """
SELECT pgq.set_entrypoint(%s, concurrency_limit => %s, max_attempts => %s, timeout => %s,
    backoff_base => %s, backoff_factor => %s::numeric, backoff_max => %s, jitter => %s::numeric)
"""
# payload and headers come as text: a claim's JSON is decoded in one json.loads (see _jobs).
# The claim commits without waiting for its WAL flush (set_config local to this statement's
# transaction): a claim lost with a crashed server leaves its job queued, as if never claimed,
# and the next completion's (synchronous) commit flushes it anyway. Saves ~0.4 ms a claim at idle.
# The last column is the seconds left until timeout_at, by the database's clock (the worker's
# may differ): the handler is stopped then, whatever set the timeout.
DEQUEUE = """
SELECT d.id, d.entrypoint, d.payload::text, d.headers::text, d.priority, d.attempt,
       d.max_attempts, d.lease_token, date_part('epoch', d.lease_expires_at),
       date_part('epoch', d.enqueued_at), date_part('epoch', d.timeout_at),
       extract(epoch FROM d.timeout_at - t.now)::float8
FROM set_config('synchronous_commit', 'off', true) AS s, pgq.now() AS t(now),
     pgq.claim(%b, %b, %b, %b) AS d
"""
# Seconds until the earliest scheduled job (a delayed job, a retry in backoff) is due.
NEXT_DUE = "SELECT extract(epoch FROM pgq.next_due(%b) - pgq.now())::float8"


@dataclass(eq=False)
class _Held:
    """A claim this worker holds, from pgq.claim until its outcome is written."""

    job: Job
    claimed_at: float  # time.monotonic() when pgq.claim was sent; timeouts count from it
    timeout_in: float | None  # seconds from the claim to the job's timeout_at (None: none)
    started: float | None = None  # time.monotonic() when its handler was called
    deadline: float | None = None  # time.monotonic() at which the job times out
    task: asyncio.Task[None] | None = None
    call: ThreadCall | None = None  # a `def` handler's, in its thread
    stop_reason: str | None = None
    reported: bool = False


async def _wait(event: asyncio.Event, timeout: float | None) -> None:
    """Wait until `event` is set or `timeout` seconds pass."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await event.wait()


class _Claimed(Job):
    """A job from a claim, whose times become datetimes when first read. Most handlers never
    read them, and three datetimes cost more than the rest of a job's making (9k of its 122k
    instructions, valgrind); a frozen dataclass's __init__ costs too, so the row goes straight
    into the instance's dict. `dataclasses.replace` still makes a plain copy."""

    @classmethod
    def from_row(cls, row: tuple[Any, ...], payload: Any, headers: Any) -> _Claimed:
        job = object.__new__(cls)
        job.__dict__.update(
            id=row[0], entrypoint=row[1], payload=payload, headers=headers, priority=row[4],
            attempt=row[5], max_attempts=row[6], lease_token=row[7], _epochs=row[8:11],
        )  # fmt: skip
        return job

    def _at(self, i: int) -> datetime:
        return datetime.fromtimestamp(self.__dict__["_epochs"][i], UTC)

    @functools.cached_property
    def lease_expires_at(self) -> datetime:
        return self._at(0)

    @functools.cached_property
    def enqueued_at(self) -> datetime:
        return self._at(1)

    @functools.cached_property
    def timeout_at(self) -> datetime | None:
        return None if self.__dict__["_epochs"][2] is None else self._at(2)


def _jobs(rows: list[tuple[Any, ...]]) -> list[tuple[Job, float | None]]:
    """Jobs from pgq.claim rows (as DEQUEUE selects them), decoding all their JSON at once,
    each with the seconds left until its timeout_at. Times come as epoch seconds (psycopg's
    timestamptz loader converts each with `astimezone` in a session whose TimeZone is a zone,
    Etc/UTC included), made UTC datetimes when a handler reads them."""
    texts = [row[2] for row in rows] + [row[3] for row in rows]
    docs = json.loads(f"[{','.join(texts)}]")
    n = len(rows)
    return [(_Claimed.from_row(r, docs[i], docs[n + i]), r[11]) for i, r in enumerate(rows)]


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
        self._tracing = _tracing.for_worker()  # OpenTelemetry spans, if it is installed
        self._names = sorted(app.entrypoints)
        self._lease = timedelta(seconds=settings.lease_duration)
        self._held: dict[uuid.UUID, _Held] = {}  # by lease token: one per claim
        self._cancel_notified: set[int] = set()
        self._busy = 0  # running handlers, plus threads still running after their job ended
        self._stuck: dict[int, Job] = {}  # by id(_Held): jobs whose `def` handler outlived them
        self._released: list[int] = []  # at shutdown
        self._stopping = False  # shutting down: handlers still running are left to their leases
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        beat = Beat(
            self._leases, self._lost, self._fatal, self._registration, lambda: len(self._stuck)
        )
        self._heartbeats = Heartbeats(
            self.dsn, self._db.kwargs, self.worker_id, settings.lease_duration, beat
        )
        self._stall = StallDetector(self._culprit, self._give_up)
        self._threads = HandlerThreads(settings.max_concurrent_jobs)
        self._pool = self._db.pool  # claims, heartbeats, outcomes
        self._outcomes = OutcomeWriter(self._pool, self._settled)

    def request_stop(self) -> None:
        """Stop claiming; running jobs get the shutdown grace, then are asked to stop: those
        whose handler stops go back to the queue, the others keep their lease until it lapses."""
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
        self._loop = asyncio.get_running_loop()
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
        self._heartbeats.start()
        background = [
            asyncio.create_task(self._db.listen(self._on_notify, self._caught_up), name="listener"),
            asyncio.create_task(self._stall.run(), name="stall detector"),
            asyncio.create_task(self._enforce_timeouts(), name="timeouts"),
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
            await self._heartbeats.stop()
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
        """Store each entrypoint's policy (pgq.set_entrypoint) and the app's schedules."""
        for entry in self.app.entrypoints.values():
            try:
                await conn.execute(SET_ENTRYPOINT, _policy(entry))
            except TRANSIENT:
                raise
            except psycopg.Error as exc:
                message = exc.diag.message_primary or str(exc)
                raise PgqError(f"entrypoint {entry.name!r}: {message}") from exc
        await schedules.register(conn, self.app)

    async def _register(self) -> None:
        """Announce this worker in pgq.workers (if the database is gone, the heartbeat will)."""
        try:
            async with self._pool.connection() as conn:
                await conn.execute(REGISTER, self._registration())
        except TRANSIENT:
            self._heartbeats.poke()
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
            claimed_at = time.monotonic()
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
            self._tracing.claimed()
            for job, timeout_in in jobs:
                self._dispatch(job, claimed_at, timeout_in)
            if len(jobs) == want:
                continue
            if self.mode == "drain" and idle and not jobs:
                log.info("drained: no job is claimable for %s", ",".join(self._names))
                return
            await _wait(self._wake, await self._until_due(bool(jobs)))

    async def _until_due(self, claimed: bool) -> float:
        """How long to sleep: until the earliest scheduled job is due (a delayed job, a retry
        in backoff: nothing announces those), or the poll interval, whichever is sooner."""
        poll = self.settings.poll_interval
        try:
            async with self._pool.connection() as conn:
                cur = await conn.execute(NEXT_DUE, (self._names,), binary=True)
                row = await cur.fetchone()
        except psycopg.Error:
            return poll  # the next claim reports what is wrong
        due: float | None = row[0] if row else None
        if due is None:
            return poll
        if due <= 0:  # due already: claim again, unless that claimed nothing (paused, limited)
            return 0.0 if claimed else poll
        return min(poll, due)

    async def _enforce_timeouts(self) -> None:
        """Stop each handler at its job's deadline. A sweep of the held jobs every TIMEOUT_SWEEP
        seconds costs less than a timer per job (most jobs end long before their timeout)."""
        while True:
            await asyncio.sleep(TIMEOUT_SWEEP)
            now = time.monotonic()
            for held in [h for h in self._held.values() if h.deadline and h.deadline <= now]:
                self._stop_job(held, TIMEOUT)

    def _dispatch(self, job: Job, claimed_at: float, timeout_in: float | None) -> None:
        held = _Held(job, claimed_at, timeout_in)
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
        job_context(held.job)
        try:
            span = self._tracing.attempt(held.job)
            if span is None:  # untraced: no context manager to enter and leave for every job
                outcome = await self._execute(held)
            else:
                with span:
                    outcome = await self._execute(held)
            self._report(held, outcome)
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
        # Whatever set it: the decorator, JOB_TIMEOUT, or the entrypoint's policy in SQL.
        timeout = entry.timeout if entry.timeout is not None else self.settings.job_timeout
        limit = held.timeout_in
        if timeout and (limit is None or timeout < limit):
            limit = timeout
        started = held.started = time.monotonic()
        if limit is not None:  # _enforce_timeouts stops the handler then
            held.deadline = held.claimed_at + (limit if limit > 0 else 0.0)  # cheaper than max()
        try:
            result = await self._call(held, entry)
        except asyncio.CancelledError as exc:
            took = time.monotonic() - started
            if held.stop_reason is not None:
                return self._stopped(held, took)
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # the worker itself is being torn down
            # Not asked for: the handler awaited something cancelled elsewhere.
            return Outcome.exception(job, took, exc, entry.is_retryable(exc))
        except BaseException as exc:  # whatever a handler does, the worker carries on
            took = time.monotonic() - started
            if held.stop_reason is not None:
                return self._stopped(held, took)
            return Outcome.exception(job, took, exc, entry.is_retryable(exc))
        took = time.monotonic() - started
        if held.stop_reason is not None:  # a `def` handler that returned once asked to stop
            return self._stopped(held, took)
        return Outcome.success(job, result, took)

    @staticmethod
    def _stopped(held: _Held, took: float) -> Outcome:
        """A handler stopped by the worker: released at shutdown, else failed with the reason."""
        if held.stop_reason == SHUTDOWN:
            return Outcome(held.job, "release", took)
        if held.stop_reason == TIMEOUT:
            return Outcome.failure(held.job, took, TIMEOUT, _timed_out(held))
        return Outcome.failure(held.job, took, held.stop_reason or "")

    async def _call(self, held: _Held, entry: Entrypoint) -> Any:
        if entry.is_async:
            return await entry.handler(held.job)
        held.call = self._threads.start(entry.handler, held.job)
        return await held.call.result

    def _end_job(self, held: _Held) -> None:
        """Free the job's slot, once its thread (if any) has returned too."""
        call = held.call
        if call is None or not call.still_running():
            self._free_slot()
            return
        loop = asyncio.get_running_loop()
        call.thread.add_done_callback(lambda _: _call_soon(loop, self._thread_returned, held))
        loop.call_later(STUCK_AFTER, self._check_stuck, held)

    def _check_stuck(self, held: _Held) -> None:
        """A `def` handler still running STUCK_AFTER seconds after its job ended is stuck."""
        if held.call is None or held.call.thread.done() or self._stopping:
            return
        self._stuck[id(held)] = held.job
        n, slots = len(self._stuck), self.settings.max_concurrent_jobs
        log.error(
            "handler thread of job %d (entrypoint %s) still running %gs after its job ended "
            "(%s): it holds a slot until it returns; %d of %d slot(s) stuck. A plain `def` "
            "handler cannot be interrupted: return when job.cancelled is set",
            held.job.id, held.job.entrypoint, STUCK_AFTER, held.stop_reason or TIMEOUT, n, slots,
        )  # fmt: skip
        self._observer.stuck(n)
        self._heartbeats.poke()  # pgq.workers shows it unhealthy now
        if n >= slots and self.settings.exit_when_stuck:
            log.error(
                "every slot is held by a stuck handler thread: the worker exits (status %d) "
                "for its supervisor to start it again (PGQ_EXIT_WHEN_STUCK=false keeps it)",
                EXIT_STUCK,
            )
            self.exit_code = EXIT_STUCK
            self.request_stop()

    def _thread_returned(self, held: _Held) -> None:
        if self._stuck.pop(id(held), None) is not None:
            log.warning("stuck handler thread of job %d returned; its slot is free", held.job.id)
            self._observer.stuck(len(self._stuck))
            self._heartbeats.poke()
        self._free_slot()

    def _free_slot(self) -> None:
        self._busy -= 1
        self._wake.set()

    def _stop_job(self, held: _Held, reason: str) -> None:
        """Ask the handler to stop: an `async def` one is cancelled, a `def` one told so (it
        cannot be interrupted); its job ends now unless the worker is shutting down."""
        if held.task is None or held.task.done() or held.reported or held.stop_reason:
            return
        log.info("job stopping %s", kv(held.job, reason=reason))
        held.stop_reason = reason
        held.job.stop_requested.set()
        if held.call is None or reason != SHUTDOWN:
            held.task.cancel()

    def _report(self, held: _Held, outcome: Outcome) -> None:
        if held.stop_reason is not None:
            outcome.claim_ended = held.stop_reason
        elif held.deadline is not None and time.monotonic() >= held.deadline:
            at = held.job.timeout_at or _wall(held.deadline)
            outcome.claim_ended = f"timed out at {at.isoformat(sep=' ', timespec='milliseconds')}"
        if not held.reported:
            held.reported = True
            self._outcomes.add(outcome)
            if outcome.kind == "release":
                self._released.append(held.job.id)

    def _settled(self, outcome: Outcome, answer: str) -> None:
        """The outcome is written (or refused): the claim is over."""
        self._observer.finished(outcome, answer)
        self._tracing.settled(outcome, answer)
        self._held.pop(outcome.job.lease_token, None)
        if self._cancel_notified:
            self._cancel_notified.discard(outcome.job.id)
        if not self._held:
            self._wake.set()  # drain mode may be done

    # --- what the watching threads ask ----------------------------------------------------

    def _leases(self) -> Leases:
        """Off the loop: the held claims (a dict's copy is atomic, its iteration is not)."""
        return [(h.job.id, h.job.lease_token) for h in self._held.copy().values()]

    def _lost(self, leases: Leases, lost: dict[int, str]) -> None:
        """pgq.renew no longer holds these: stop their handlers (cancelled, timed out...)."""
        for job_id, token in leases:
            held = self._held.get(token)
            if held is not None and job_id in lost:
                gone = "cancelled" if job_id in self._cancel_notified else lost[job_id]
                self._stop_job(held, GONE.get(gone, LEASE_LOST))

    def _culprit(self, frame: FrameType | None) -> Culprit:
        """Off the loop, while it is blocked: the job whose handler runs on it, and where."""
        where = ""
        if frame is not None:
            code = frame.f_code
            where = f" at {os.path.basename(code.co_filename)}:{frame.f_lineno} in {code.co_name}"
        task = asyncio.current_task(self._loop) if self._loop is not None else None
        for held in self._held.copy().values():
            if held.task is task and task is not None:
                job = held.job
                what = f"the handler of job {job.id} (entrypoint {job.entrypoint}){where}"
                return Culprit(what, held.deadline, (job.id, job.lease_token))
        name = f"the worker's {task.get_name()}" if task is not None else "a worker callback"
        return Culprit(f"{name}{where} (or `def` handler threads busy in Python, holding the GIL)")

    def _give_up(self, culprit: Culprit, blocked: float) -> None:
        """Off the loop, before the process ends: fail the job whose handler blocks the loop
        (saying so), and deregister, so that pgq.reap sees this worker's other jobs as lost."""
        with (
            contextlib.suppress(psycopg.Error),
            psycopg.connect(self.dsn, **{**self._db.kwargs, "connect_timeout": 3}) as conn,
        ):
            if culprit.lease is not None:
                error = f"{TIMEOUT}: its handler blocked the event loop for {blocked:.1f}s"
                conn.execute(FAIL, (*culprit.lease, error, True))
            conn.execute(DEREGISTER, (self.worker_id,))

    # --- listening ------------------------------------------------------------------------

    def _caught_up(self, again: bool) -> None:
        """Listening: claim at once, for what was sent while not listening. Listening again
        (after a lost connection): also beat, for the held jobs' cancels sent meanwhile. Not
        at the first LISTEN: the worker has just registered, and a beat then would renew the
        first claim's leases at once (a write per job, by every worker)."""
        self._wake.set()
        if again:
            self._heartbeats.poke()

    def _on_notify(self, channel: str, payload: str) -> None:
        if channel == "pgq_jobs" and payload in self.app.entrypoints:
            self._wake.set()
        elif channel == "pgq_cancel" and payload.isdigit():
            job_id = int(payload)
            if any(h.job.id == job_id for h in self._held.values()):
                self._cancel_notified.add(job_id)
                self._heartbeats.poke()  # the heartbeat confirms it before anything is stopped

    # --- shutdown -------------------------------------------------------------------------

    async def _shutdown(self, writer: asyncio.Task[None]) -> None:
        """Let running jobs finish within the grace period, then stop them; release those whose
        handler stopped, and leave those whose handler still runs to their leases (a job is
        never handed to another worker while its handler runs here)."""
        running = self._running()
        if running:
            grace = self.settings.shutdown_grace
            log.info("shutting down: waiting up to %gs for %d running job(s)", grace, len(running))
            await asyncio.wait([h.task for h in running if h.task], timeout=grace)
            for held in self._running():
                self._stop_job(held, SHUTDOWN)
            late = [h.task for h in self._running() if h.task]
            if late:
                await asyncio.wait(late, timeout=SHUTDOWN_STOP)
        self._stopping = True
        left = self._running()
        for held in left:
            held.reported = True  # nothing will be: the lease runs out, pgq.reap retries it
        if left:
            log.warning(
                "shutdown: released job(s) %s back to the queue; left job(s) %s to their "
                "leases, as their handlers still run (they run again once the lease lapses)",
                _ids(self._released), _ids(h.job.id for h in left),
            )  # fmt: skip
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
        await self._heartbeats.stop()
        with contextlib.suppress(psycopg.Error, TimeoutError):
            async with asyncio.timeout(5.0), self._pool.connection() as conn:
                await conn.execute(DEREGISTER, (self.worker_id,))
        log.info("worker %s stopped", self.worker_id)


def _timed_out(held: _Held) -> str:
    """The log's account of a timeout; a handler that barely ran had waited for its slot."""
    timeout = (held.deadline or held.claimed_at) - held.claimed_at
    text = f"timeout after {timeout:g}s"
    waited = (held.started or held.claimed_at) - held.claimed_at
    if waited >= timeout:
        text += (
            f", before its handler could run (the loop reached it {waited:.3f}s after the claim)"
        )
    elif waited > timeout / 2:
        text += f" (its handler started {waited:.3f}s after the claim)"
    return text


def _wall(moment: float) -> datetime:
    """A time.monotonic() moment as local wall-clock time."""
    return datetime.now().astimezone() + timedelta(seconds=moment - time.monotonic())


def _ids(ids: Any) -> str:
    return ",".join(map(str, ids)) or "none"


def _call_soon(loop: asyncio.AbstractEventLoop, func: Any, *args: Any) -> None:
    """From another thread; a closed loop means nobody is waiting any more."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(func, *args)
