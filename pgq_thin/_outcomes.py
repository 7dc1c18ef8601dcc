"""Job outcomes and their fenced, batched writes (pgq.complete_many, pgq.fail_many, pgq.release).

An outcome stays pending until the transaction that writes it commits: a lost connection
delays it, never drops it. The SQL decides what an outcome means (retry or dead letter,
stale lease); this module only reports and logs what it answered.
"""

from __future__ import annotations

import asyncio
import json
import logging
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import psycopg
from psycopg_pool import AsyncConnectionPool

from pgq_thin._retry import TRANSIENT, Retry, kv
from pgq_thin.app import Job
from pgq_thin.errors import one_line

log = logging.getLogger("pgq_thin.worker")

FLUSH_DELAY = 0.02  # seconds a completion may wait for others to share its write
# Results longer than this (JSON characters) are written on their own: one the database
# refuses (max_result_bytes) then costs a single round trip, not the batch's.
ALONE = 256 * 1024
# A value over a pgq size cap (a result over max_result_bytes): psycopg files SQLSTATE class 54
# under OperationalError, but no retry can help.
REFUSED = psycopg.errors.ProgramLimitExceeded
TIMEOUT = "timeout"  # the error of a try that ran out of time, as the worker and pgq.reap record it

# Batches travel as binary arrays (psycopg dumps those several times faster than text ones).
COMPLETE_MANY = "SELECT pgq.complete_many(%b::bigint[], %b::uuid[], %b::text[]::jsonb[])"
FAIL_MANY = "SELECT job_id, outcome FROM pgq.fail_many(%b::bigint[], %b::uuid[], %b, %b)"
RELEASE = "SELECT pgq.release(%b::bigint[], %b::uuid[])"
COMPLETE = "SELECT pgq.complete(%s, %s, %s::jsonb)"
FAIL = "SELECT pgq.fail(%s, %s, %s, %s)"


def _clean(text: str) -> str:
    """PostgreSQL text cannot hold NUL characters."""
    return text.replace("\x00", "\\x00")


@dataclass(eq=False)
class Outcome:
    """How one claim of a job ended, waiting to be written."""

    job: Job
    kind: Literal["complete", "fail", "release"]
    duration: float = 0.0
    result: str | None = None  # JSON text
    error: str = ""  # stored on the job
    summary: str = ""  # for the log line
    retryable: bool = True
    claim_ended: str = ""  # how the claim ended before this outcome, if the worker knows

    @classmethod
    def success(cls, job: Job, result: Any, duration: float) -> Outcome:
        """A completion, or a failure when the result is not JSON (the database checks its size)."""
        try:
            text = None if result is None else json.dumps(result)
        except (TypeError, ValueError, RecursionError) as exc:
            error = f"result is not JSON-serializable: {exc}"
            return cls.failure(job, duration, error, retryable=False)
        return cls(job, "complete", duration, result=text)

    @classmethod
    def failure(
        cls, job: Job, duration: float, error: str, summary: str = "", retryable: bool = True
    ) -> Outcome:
        """A failed try; the SQL decides between retry and dead letter."""
        error = _clean(error)
        return cls(
            job, "fail", duration, error=error, summary=summary or error, retryable=retryable
        )

    @classmethod
    def exception(cls, job: Job, duration: float, exc: BaseException, retryable: bool) -> Outcome:
        """A handler that raised: type, message and traceback in the error."""
        kind = type(exc)
        name = kind.__qualname__
        if kind.__module__ != "builtins":
            name = f"{kind.__module__}.{name}"
        summary = f"{name}: {exc}" if str(exc) else name
        trace = "".join(traceback.format_exception(exc))
        return cls.failure(
            job, duration, f"{summary}\n\n{trace}", _clean(summary.splitlines()[0]), retryable
        )


def _leases(outcomes: list[Outcome]) -> tuple[list[int], list[uuid.UUID]]:
    """The (job_ids, lease_tokens) arrays of the fenced pgq functions."""
    return [o.job.id for o in outcomes], [o.job.lease_token for o in outcomes]


class OutcomeWriter:
    """Writes outcomes in batches; calls `settled(outcome, answer)` once each is written or
    refused, with the database's answer ('succeeded', pgq.fail's, 'released', 'stale') or
    'refused'."""

    def __init__(
        self, pool: AsyncConnectionPool[Any], settled: Callable[[Outcome, str], None]
    ) -> None:
        self._pool = pool
        self._settled = settled
        self._pending: list[Outcome] = []
        self._ready = asyncio.Event()
        self._closing = False

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, outcome: Outcome) -> None:
        self._pending.append(outcome)
        self._ready.set()

    def close(self) -> None:
        """Let `run` return once everything pending is written."""
        self._closing = True
        self._ready.set()

    async def run(self) -> None:
        """Write pending outcomes until closed and empty, retrying through lost connections."""
        retry = Retry()
        while True:
            if not self._pending:
                if self._closing:
                    return
                await self._ready.wait()
                self._ready.clear()
                # Completions wait a moment to share a write; failures (a timeout races the
                # database's own reaper) and releases go at once.
                if not self._closing and all(o.kind == "complete" for o in self._pending):
                    await asyncio.sleep(FLUSH_DELAY)
                continue
            try:
                await self._write(list(self._pending))
            except TRANSIENT as exc:
                delay = retry.next()
                log.warning(
                    "could not record %d job outcome(s): %s; retrying in %gs",
                    len(self._pending), one_line(exc), delay,
                )  # fmt: skip
                await asyncio.sleep(delay)
                continue
            retry.reset()

    async def _write(self, batch: list[Outcome]) -> None:
        """One transaction for the batch; when the database refuses it, one by one."""
        for outcome in [o for o in batch if o.result is not None and len(o.result) > ALONE]:
            await self._write_one(outcome)
            batch.remove(outcome)
        if not batch:
            return
        done = [o for o in batch if o.kind == "complete"]
        failed = [o for o in batch if o.kind == "fail"]
        released = [o for o in batch if o.kind == "release"]
        succeeded: set[int] = set()  # the ids pgq.complete_many completed
        try:
            async with self._pool.connection() as conn, conn.transaction():
                if done:
                    results: list[str | None] | None = [o.result for o in done]
                    if results and results.count(None) == len(results):
                        results = None  # the same as NULL results, and nothing to send
                    # The ids come back binary: a text array would parse each one.
                    args = (*_leases(done), results)
                    cur = await conn.execute(COMPLETE_MANY, args, binary=True)
                    row = await cur.fetchone()
                    succeeded = set(row[0]) if row else succeeded
                answers: dict[int, str] = {}
                if failed:
                    params = (
                        *_leases(failed),
                        [o.error for o in failed],
                        [o.retryable for o in failed],
                    )
                    cur = await conn.execute(FAIL_MANY, params)
                    answers = dict(await cur.fetchall())
                if released:
                    await conn.execute(RELEASE, _leases(released))
        except psycopg.Error as exc:
            if isinstance(exc, TRANSIENT) and not isinstance(exc, REFUSED):
                raise
            for outcome in batch:
                await self._write_one(outcome)
            return
        written = {id(o) for o in batch}
        self._pending = [o for o in self._pending if id(o) not in written]
        for outcome in done:
            self._done(outcome, "succeeded" if outcome.job.id in succeeded else "stale")
        for outcome in failed:
            self._done(outcome, answers.get(outcome.job.id, "stale"))
        for outcome in released:
            self._done(outcome, "released")

    async def _write_one(self, outcome: Outcome) -> None:
        job = outcome.job
        async with self._pool.connection() as conn:
            try:
                if outcome.kind == "complete":
                    cur = await conn.execute(COMPLETE, (job.id, job.lease_token, outcome.result))
                elif outcome.kind == "fail":
                    params = (job.id, job.lease_token, outcome.error, outcome.retryable)
                    cur = await conn.execute(FAIL, params)
                else:
                    cur = await conn.execute(RELEASE, ([job.id], [job.lease_token]))
                row = await cur.fetchone()
            except psycopg.Error as exc:
                if isinstance(exc, TRANSIENT) and not isinstance(exc, REFUSED):
                    raise
                self._refused(outcome, exc)
                return
        answer = row[0] if row else None  # fail: its outcome; complete: bool; release: count
        if outcome.kind != "fail" and answer:
            answer = "succeeded" if outcome.kind == "complete" else "released"
        self._pending.remove(outcome)
        self._done(outcome, answer or "stale")

    def _refused(self, outcome: Outcome, exc: psycopg.Error) -> None:
        """The database refused the outcome itself: a result becomes a failure, else give up."""
        message = exc.diag.message_primary or str(exc)
        self._pending.remove(outcome)
        if outcome.kind == "complete":
            error = f"result could not be stored: {message}"
            self._pending.append(
                Outcome.failure(outcome.job, outcome.duration, error, retryable=False)
            )
            return
        log.error("job outcome refused by the database %s", kv(outcome.job, error=message))
        self._settled(outcome, "refused")

    def _done(self, outcome: Outcome, answer: str) -> None:
        """Let go of a written outcome and log what the database answered."""
        self._settled(outcome, answer)
        if answer == "succeeded" and not log.isEnabledFor(logging.INFO):
            return
        fields: dict[str, object] = {"duration": f"{outcome.duration:.3f}s"}
        if answer == "succeeded":
            log.info("job succeeded %s", kv(outcome.job, **fields))
        elif answer == "released":
            log.info("job released %s", kv(outcome.job, **fields))
        elif answer == "stale" and outcome.error == TIMEOUT:
            # The worker's timeout and the reaper's lease check fall due together; whichever
            # writes first, the job is failed with 'timeout' and retried or dead-lettered.
            log.warning(
                "job timed out (the database recorded it first) %s",
                kv(outcome.job, **fields, error=outcome.summary),
            )
        elif answer == "stale" and outcome.kind == "complete":
            log.warning(
                "job finished after its claim ended (%s): result discarded %s",
                outcome.claim_ended or "its lease lapsed, or it was cancelled",
                kv(outcome.job, **fields),
            )
        elif answer == "stale":
            if outcome.summary:
                fields["error"] = outcome.summary
            log.warning(
                "job outcome not recorded: lease already gone (reaped after expiry or timeout,"
                " or cancelled) %s",
                kv(outcome.job, **fields, outcome=outcome.kind),
            )
        else:
            level = logging.WARNING if answer == "queued" else logging.ERROR
            log.log(
                level,
                "job failed %s",
                kv(outcome.job, **fields, outcome=answer, error=outcome.summary),
            )
