"""What keeps a worker's claims alive and tells when its event loop is blocked: two threads.

`Heartbeats` renews the leases of held jobs and the worker's registration over a connection
of its own, so an `async def` handler that blocks the event loop (time.sleep, a busy loop, a
synchronous driver) cannot make the worker lose its jobs to another one. `StallDetector` sees
the loop stop answering, names the job whose handler was on the loop's stack, logs once per
stall how long it lasted, and ends the worker when the blocking handler is past its timeout
(its job is about to be retried elsewhere: two runs must not overlap).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from types import FrameType
from typing import Any

import psycopg

from pgq_thin._retry import TRANSIENT, Retry
from pgq_thin.errors import one_line

log = logging.getLogger("pgq_thin.worker")

PROBE = 0.1  # seconds between the loop's "still here" marks
STALL = 0.5  # seconds without a mark that count as a stall
LONG_STALL = 10.0  # a stall still going on after this is reported before it ends
# The worker gives up on a handler blocking the loop this long before its job's timeout_at:
# past it, the database records a bare 'timeout' (whoever writes first), not the cause.
GIVE_UP_EARLY = 0.25
EXIT_STUCK = 70  # EX_SOFTWARE: the worker ended itself because a handler wedged it

REGISTER = "SELECT pgq.register_worker(%s, %s, %s, %s, %s, %s, %s)"
WORKER_HEARTBEAT = "SELECT pgq.worker_heartbeat(%s, %s)"
# The jobs no longer held, and why ('cancelled', 'timeout', 'lost', 'finished').
RENEW = "SELECT job_id, gone FROM pgq.renew(%s, %s, %s) WHERE gone IS NOT NULL"
DEREGISTER = "SELECT pgq.deregister_worker(%s)"

Leases = list[tuple[int, uuid.UUID]]


@dataclass
class Beat:
    """What one heartbeat needs from the worker, read from the heartbeat thread."""

    leases: Callable[[], Leases]  # the held (job id, lease token) pairs, safe off the loop
    lost: Callable[[Leases, dict[int, str]], None]  # on the loop: those gone, and why
    fatal: Callable[[str], None]  # called on the loop: the worker must stop
    registration: Callable[[], tuple[Any, ...]]  # pgq.register_worker's arguments
    stuck: Callable[[], int]  # slots held by handlers that outlived their job


class Heartbeats:
    """Every third of a lease (or when poked): the worker's heartbeat, then its jobs' leases."""

    def __init__(
        self, dsn: str, connect: dict[str, Any], worker_id: str, lease: float, beat: Beat
    ) -> None:
        self._dsn = dsn
        self._connect = connect  # psycopg.connect's keyword arguments
        self._worker_id = worker_id
        self._lease = timedelta(seconds=lease)
        self._every = lease / 3
        self._beat = beat
        self._now = threading.Event()
        self._stopping = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, name="pgq-heartbeat", daemon=True)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread.start()

    def poke(self) -> None:
        """Beat now (a cancel to confirm, a reconnected listener)."""
        self._now.set()

    async def stop(self) -> None:
        """Stop beating; leases still held run out on their own."""
        self._stopping.set()
        self._now.set()
        await asyncio.to_thread(self._thread.join, 5.0)

    def _call_loop(self, func: Callable[..., None], *args: Any) -> None:
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(func, *args)
        except RuntimeError:  # the loop is closed: the worker is gone
            self._stopping.set()

    def _run(self) -> None:
        retry = Retry()
        conn: psycopg.Connection[Any] | None = None
        while not self._stopping.is_set():
            self._now.wait(self._every)
            self._now.clear()
            if self._stopping.is_set():
                break
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self._dsn, **self._connect)
                self._once(conn)
            except TRANSIENT as exc:
                delay = retry.next()
                log.warning("heartbeat failed: %s; retrying in %gs", one_line(exc), delay)
                if conn is not None:
                    conn.close()
                self._stopping.wait(delay)
                self._now.set()
                continue
            except psycopg.Error as exc:
                message = f"pgq.renew failed: {exc.diag.message_primary or exc}"
                self._call_loop(self._beat.fatal, message)
                break
            retry.reset()
        if conn is not None:
            conn.close()

    def _once(self, conn: psycopg.Connection[Any]) -> None:
        cur = conn.execute(WORKER_HEARTBEAT, (self._worker_id, self._beat.stuck()))
        if cur.fetchone() != (True,):  # forgotten (pruned): announce again
            conn.execute(REGISTER, self._beat.registration())
            conn.execute(WORKER_HEARTBEAT, (self._worker_id, self._beat.stuck()))
        leases = self._beat.leases()
        if not leases:
            return
        ids = [job_id for job_id, _ in leases]
        tokens = [token for _, token in leases]
        lost = dict(conn.execute(RENEW, (ids, tokens, self._lease)).fetchall())
        if lost:
            self._call_loop(self._beat.lost, leases, lost)


@dataclass
class Culprit:
    """Whatever was running on the blocked loop: a job's handler, and when that job times out."""

    what: str  # e.g. "the handler of job 7 (entrypoint x) at app.py:12 in handler"
    deadline: float | None = None  # time.monotonic() of the job's timeout, if it has one
    lease: tuple[int, uuid.UUID] | None = None  # the job's (id, lease token)


class StallDetector:
    """Watches the event loop from a thread: `mark` must run on the loop every PROBE seconds."""

    def __init__(
        self,
        culprit: Callable[[FrameType | None], Culprit],
        give_up: Callable[[Culprit, float], None],
    ):
        self._culprit = culprit  # reads the loop thread's stack (called off the loop)
        self._give_up = give_up  # off the loop, right before the process ends: records why
        self._seen = time.monotonic()
        self._loop_thread = threading.get_ident()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pgq-stall-detector", daemon=True)

    async def run(self) -> None:
        """On the loop: mark it alive until cancelled; the watching thread runs meanwhile."""
        self._loop_thread = threading.get_ident()
        self._seen = time.monotonic()
        self._thread.start()
        try:
            while True:
                self._seen = time.monotonic()
                await asyncio.sleep(PROBE)
        finally:
            self._stopping.set()

    def _run(self) -> None:
        stall: Culprit | None = None
        started = 0.0
        told = False  # this long stall was reported
        last = resumed = time.monotonic()
        while not self._stopping.wait(PROBE):
            now = time.monotonic()
            if now - last > PROBE + STALL:  # this thread did not run either: the whole process
                resumed = now  # was stopped (SIGSTOP, a paused VM), not the loop blocked
            last = now
            seen = max(self._seen, resumed)
            blocked = now - seen - PROBE
            if blocked < STALL:
                if stall is not None:
                    log.warning(
                        "event loop was blocked for %.1fs by %s; nothing else on the loop ran "
                        "meanwhile (leases were kept from their own thread). Blocking code "
                        "belongs in a plain `def` handler (run in a thread) or behind "
                        "`await asyncio.to_thread(...)`",
                        self._seen - started, stall.what,
                    )  # fmt: skip
                    stall = None
                continue
            if stall is None:
                started, told = seen + PROBE, False
                stall = self._culprit(sys._current_frames().get(self._loop_thread))
            if not told and time.monotonic() - started >= LONG_STALL:
                told = True
                log.error(
                    "event loop blocked for %.0fs so far by %s; the worker runs nothing else "
                    "until it returns", time.monotonic() - started, stall.what,
                )  # fmt: skip
            if stall.deadline is not None and time.monotonic() >= stall.deadline - GIVE_UP_EARLY:
                blocked = time.monotonic() - started
                log.error(
                    "event loop blocked for %.1fs by %s, at its job's timeout: the "
                    "worker cannot stop that handler, so it fails the job and exits (status "
                    "%d) for its supervisor to start it again; its other jobs run again after "
                    "their leases lapse. Blocking code belongs in a plain `def` handler",
                    blocked, stall.what, EXIT_STUCK,
                )  # fmt: skip
                self._give_up(stall, blocked)
                logging.shutdown()
                os._exit(EXIT_STUCK)
