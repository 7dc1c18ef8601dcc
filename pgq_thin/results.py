"""Waiting for jobs to finish: `pgq.job_status`, woken by NOTIFY pgq_done, polling as fallback.

`Queue.wait` / `AsyncQueue.wait` and `Queue.result` call these; any process can wait for any
job id, whoever enqueued it. The order of a wait avoids a lost wake-up: LISTEN commits first,
then `pgq.watch_jobs` flags the live jobs to be announced and reads every status, so a job
that finishes after that read is always notified.
Notifications only say which ids to read again; a connection that cannot LISTEN (a transaction
pooler drops it silently) still gets every answer by polling.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Generator, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from pgq_thin.errors import PgqError

FINISHED = frozenset({"succeeded", "failed", "cancelled"})
CHANNEL = "pgq_done"
POLL_INTERVAL = 1.0  # seconds between reads of every pending status, notified or not
COLUMNS = "id, entrypoint, state, attempt, result, error, finished_at"
STATUS = f"SELECT {COLUMNS} FROM pgq.job_status(%b::bigint[])"
# The first read of a wait also flags the live jobs to be announced on pgq_done.
WATCH = f"SELECT {COLUMNS} FROM pgq.watch_jobs(%b::bigint[])"
# READ_ONLY: a role that may read statuses but not flag jobs (pgq_monitor) still waits, by
# polling and by the notifications of jobs someone else watches.


@dataclass(frozen=True)
class JobStatus:
    """A job as `pgq.job_status` sees it: live (scheduled, queued, running; `error` is the last
    failed try's) or finished (succeeded, failed, cancelled)."""

    id: int
    entrypoint: str
    state: str
    attempt: int
    result: Any
    error: str | None
    finished_at: datetime | None

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    @property
    def succeeded(self) -> bool:
        return self.state == "succeeded"


@dataclass(frozen=True)
class WaitResult:
    """How a wait ended: every known job's status (final, or the last seen for a pending one),
    the ids still pending when the timeout came, and the ids no job has (never existed, or
    pruned from history), which are not waited for."""

    jobs: dict[int, JobStatus]
    pending: tuple[int, ...]
    unknown: tuple[int, ...]

    @property
    def timed_out(self) -> bool:
        return bool(self.pending)

    @property
    def failed(self) -> list[JobStatus]:
        """The jobs that ended failed or cancelled."""
        return [s for s in self.jobs.values() if s.finished and not s.succeeded]

    @property
    def all_succeeded(self) -> bool:
        return not (self.pending or self.unknown or self.failed)


# What a wait asks of its connection next (see _Wait.steps), and what it is answered.
Steps = Generator[list[int] | float, list[Any], None]


def _ids(payload: str) -> list[int] | None:
    """The ids of a pgq_done payload; None when it is not a list of ids (read everything)."""
    try:
        return [int(part) for part in payload.split(",")]
    except ValueError:
        return None


def check_timeout(timeout: float | None) -> None:
    """Raise unless `timeout` is None or a finite number of seconds > 0."""
    if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
        raise PgqError(f"timeout must be a number of seconds > 0 (or None), got {timeout}")


class _Wait:
    """The bookkeeping of one wait, shared by the blocking and the asyncio loops."""

    def __init__(self, job_ids: Iterable[int], timeout: float | None, poll: float) -> None:
        check_timeout(timeout)
        self.ids = list(dict.fromkeys(int(i) for i in job_ids))
        now = time.monotonic()
        self.deadline = None if timeout is None else now + timeout
        self.poll = poll
        self.next_poll = now + poll
        self.jobs: dict[int, JobStatus] = {}
        self.pending: set[int] = set()

    def seen(self, rows: list[tuple[Any, ...]]) -> None:
        for row in rows:
            status = JobStatus(*row)
            self.jobs[status.id] = status
            if status.finished:
                self.pending.discard(status.id)
            else:
                self.pending.add(status.id)

    def delay(self) -> float | None:
        """Seconds to listen before the next poll or the deadline; None when the wait is over."""
        if not self.pending:
            return None
        now = time.monotonic()
        if self.deadline is not None and now >= self.deadline:
            return None
        until = self.next_poll if self.deadline is None else min(self.next_poll, self.deadline)
        return max(until - now, 0.0)

    def to_read(self, payloads: list[str]) -> list[int]:
        """The pending ids to read again after these notifications (all of them when polling)."""
        now = time.monotonic()
        notified: set[int] = set()
        for payload in payloads:
            ids = _ids(payload)
            if ids is None:
                self.next_poll = now  # not ids: read everything now
                break
            notified.update(ids)
        if now >= self.next_poll:
            self.next_poll = now + self.poll
            return sorted(self.pending)
        return sorted(self.pending & notified)

    def steps(self) -> Steps:
        """The wait after its first read, as requests to its LISTENing connection: a list of
        ids, to be answered with their pgq.job_status rows; a number of seconds, to be answered
        with the pgq_done payloads received meanwhile (one is enough). Ends with the wait."""
        while (delay := self.delay()) is not None:
            payloads = yield delay
            if ids := self.to_read(payloads):
                self.seen((yield ids))

    def result(self) -> WaitResult:
        unknown = tuple(i for i in self.ids if i not in self.jobs)
        pending = tuple(i for i in self.ids if i in self.pending)
        return WaitResult(self.jobs, pending, unknown)


def _send(steps: Steps, answer: list[Any]) -> list[int] | float | None:
    """The wait's next request, or None once it is over."""
    try:
        return steps.send(answer)
    except StopIteration:
        return None


def _idle(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> None:
    if conn.info.transaction_status != TransactionStatus.IDLE:
        raise PgqError(
            "wait needs a connection outside a transaction: commit first "
            "(workers see a job only once its enqueue commits)"
        )


@contextmanager
def _listening(
    target: psycopg.Connection[Any] | ConnectionPool[Any],
) -> Iterator[psycopg.Connection[Any]]:
    """A connection LISTENing on pgq_done, in autocommit, put back as it was afterwards."""
    if isinstance(target, ConnectionPool):
        with target.connection() as conn, _listening(conn) as listening:
            yield listening
        return
    _idle(target)
    autocommit = target.autocommit
    target.autocommit = True
    try:
        target.execute(f"LISTEN {CHANNEL}")
        yield target
    finally:
        if not target.closed:
            target.execute(f"UNLISTEN {CHANNEL}")
            target.autocommit = autocommit


def status(
    conn: psycopg.Connection[Any] | ConnectionPool[Any], job_ids: list[int], query: str = STATUS
) -> list[tuple[Any, ...]]:
    """pgq.job_status rows (in the caller's transaction, given a connection)."""
    if isinstance(conn, ConnectionPool):
        with conn.connection() as borrowed:
            return status(borrowed, job_ids, query)
    try:
        return conn.execute(query, (job_ids,)).fetchall()
    except psycopg.errors.InsufficientPrivilege:
        if query != WATCH or not conn.autocommit:
            raise
        return conn.execute(STATUS, (job_ids,)).fetchall()  # see READ_ONLY


def wait(
    target: psycopg.Connection[Any] | ConnectionPool[Any],
    job_ids: Iterable[int],
    timeout: float | None,
    poll: float = POLL_INTERVAL,
) -> WaitResult:
    """See `Queue.wait`."""
    state = _Wait(job_ids, timeout, poll)
    if not state.ids:
        return state.result()
    with _listening(target) as conn:
        state.seen(status(conn, state.ids, WATCH))
        steps = state.steps()
        request = next(steps, None)
        while request is not None:
            answer: list[Any]
            if isinstance(request, list):
                answer = status(conn, request)
            else:
                answer = [n.payload for n in conn.notifies(timeout=request, stop_after=1)]
            request = _send(steps, answer)
    return state.result()


@asynccontextmanager
async def _alistening(
    target: psycopg.AsyncConnection[Any] | AsyncConnectionPool[Any],
) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """`_listening` for asyncio."""
    if isinstance(target, AsyncConnectionPool):
        async with target.connection() as conn, _alistening(conn) as listening:
            yield listening
        return
    _idle(target)
    autocommit = target.autocommit
    await target.set_autocommit(True)
    try:
        await target.execute(f"LISTEN {CHANNEL}")
        yield target
    finally:
        if not target.closed:
            await target.execute(f"UNLISTEN {CHANNEL}")
            await target.set_autocommit(autocommit)


async def astatus(
    conn: psycopg.AsyncConnection[Any] | AsyncConnectionPool[Any],
    job_ids: list[int],
    query: str = STATUS,
) -> list[tuple[Any, ...]]:
    """`status` for asyncio."""
    if isinstance(conn, AsyncConnectionPool):
        async with conn.connection() as borrowed:
            return await astatus(borrowed, job_ids, query)
    try:
        cur = await conn.execute(query, (job_ids,))
    except psycopg.errors.InsufficientPrivilege:
        if query != WATCH or not conn.autocommit:
            raise
        cur = await conn.execute(STATUS, (job_ids,))  # see READ_ONLY
    return await cur.fetchall()


async def await_jobs(
    target: psycopg.AsyncConnection[Any] | AsyncConnectionPool[Any],
    job_ids: Iterable[int],
    timeout: float | None,
    poll: float = POLL_INTERVAL,
) -> WaitResult:
    """`wait` for asyncio."""
    state = _Wait(job_ids, timeout, poll)
    if not state.ids:
        return state.result()
    async with _alistening(target) as conn:
        state.seen(await astatus(conn, state.ids, WATCH))
        steps = state.steps()
        request = next(steps, None)
        while request is not None:
            answer: list[Any]
            if isinstance(request, list):
                answer = await astatus(conn, request)
            else:
                answer = [n.payload async for n in conn.notifies(timeout=request, stop_after=1)]
            request = _send(steps, answer)
    return state.result()
