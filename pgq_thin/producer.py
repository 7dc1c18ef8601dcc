"""Enqueue jobs: thin wrappers over `pgq.enqueue` and `pgq.enqueue_many`.

Given a connection, the call runs in the caller's transaction (the job exists only if the
caller commits); given a pool, it borrows a connection and commits on its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from psycopg.types.numeric import Int4
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from pgq_thin import _tracing, results
from pgq_thin.errors import PgqError
from pgq_thin.results import JobStatus, WaitResult


@dataclass(frozen=True)
class NewJob:
    """One job for `enqueue_many`; the fields mean what `enqueue`'s arguments mean."""

    entrypoint: str
    payload: Any = None
    priority: int = 0
    run_at: datetime | None = None
    delay: float | timedelta | None = None
    dedupe_key: str | None = None
    headers: dict[str, Any] | None = None
    max_attempts: int | None = None


# The batch travels in few parameters: entrypoints as a binary text[], payloads and headers as
# one JSON array each, and NULL for a column every job leaves at its default (the SQL's own
# default then applies). run_at, or the database clock plus delay: the delay is measured by the
# server, not the client.
ENQUEUE_MANY = """
SELECT * FROM pgq.enqueue_many(
    %(entrypoints)b::text[],
    (SELECT array_agg(p ORDER BY i)
     FROM jsonb_array_elements(%(payloads)b) WITH ORDINALITY AS t(p, i)),
    %(priorities)b::int[],
    (SELECT array_agg(coalesce(r, pgq.now() + d * interval '1 second') ORDER BY i)
     FROM unnest(%(run_ats)b::timestamptz[], %(delays)b::float8[]) WITH ORDINALITY AS t(r, d, i)),
    %(dedupe_keys)b::text[],
    (SELECT array_agg(h ORDER BY i)
     FROM jsonb_array_elements(%(headers)b) WITH ORDINALITY AS t(h, i)),
    %(max_attempts)b::int[])
"""


# One job goes through pgq.enqueue: its own statement on the server (about half the batch
# path's time at idle) and scalar parameters in binary, with nothing to pack or unpack. The
# delay, when given, is added to the database clock as in the batch.
ENQUEUE = """
SELECT pgq.enqueue(%(entrypoint)b, %(payload)b, %(priority)b, {run_at}, %(dedupe_key)b,
                   %(headers)b, %(max_attempts)b)
"""
ENQUEUE_AT = ENQUEUE.format(run_at="%(run_at)b")
ENQUEUE_AFTER = ENQUEUE.format(run_at="pgq.now() + %(delay)b * interval '1 second'")


def _seconds(delay: float | timedelta | None) -> float | None:
    return delay.total_seconds() if isinstance(delay, timedelta) else delay


def _unless_all(default: Any, values: list[Any]) -> list[Any] | None:
    """`values`, or None (SQL NULL) when every one is `default`."""
    return None if values.count(default) == len(values) else values


def _check(job: NewJob) -> None:
    if job.run_at is not None and job.delay is not None:
        raise PgqError(f"job for {job.entrypoint!r}: give run_at or delay, not both")


def _one(job: NewJob) -> tuple[str, dict[str, Any]]:
    """pgq.enqueue's statement and parameters for one job."""
    _check(job)
    delay = _seconds(job.delay)
    headers = _tracing.with_context(_tracing.producer_context([job.entrypoint], 1), job.headers)
    return ENQUEUE_AT if delay is None else ENQUEUE_AFTER, {
        "entrypoint": job.entrypoint,
        "payload": Jsonb({} if job.payload is None else job.payload),
        "priority": Int4(job.priority),
        "run_at": job.run_at,
        "delay": delay,
        "dedupe_key": job.dedupe_key,
        "headers": None if headers is None else Jsonb(headers),
        "max_attempts": None if job.max_attempts is None else Int4(job.max_attempts),
    }


def _params(jobs: Iterable[NewJob]) -> dict[str, Any]:
    """pgq.enqueue_many's parameters, by name."""
    batch = list(jobs)
    for job in batch:
        _check(job)
    context = _tracing.producer_context([job.entrypoint for job in batch], len(batch))
    headers = _unless_all(None, [_tracing.with_context(context, job.headers) for job in batch])
    return {
        "entrypoints": [job.entrypoint for job in batch],
        "payloads": Jsonb([{} if job.payload is None else job.payload for job in batch]),
        "priorities": _unless_all(0, [job.priority for job in batch]),
        "run_ats": _unless_all(None, [job.run_at for job in batch]),
        "delays": _unless_all(None, [_seconds(job.delay) for job in batch]),
        "dedupe_keys": _unless_all(None, [job.dedupe_key for job in batch]),
        "headers": None if headers is None else Jsonb([h or {} for h in headers]),
        "max_attempts": _unless_all(None, [job.max_attempts for job in batch]),
    }


def _id(row: tuple[Any, ...] | None) -> int:
    assert row is not None  # pgq.enqueue returns exactly one row
    job_id: int = row[0]
    return job_id


class Queue:
    """Enqueue through a psycopg Connection (caller's transaction) or a ConnectionPool."""

    def __init__(self, conn_or_pool: psycopg.Connection[Any] | ConnectionPool[Any]) -> None:
        self._target = conn_or_pool

    def enqueue(
        self,
        entrypoint: str,
        payload: Any = None,
        *,
        priority: int = 0,
        run_at: datetime | None = None,
        delay: float | timedelta | None = None,
        dedupe_key: str | None = None,
        headers: dict[str, Any] | None = None,
        max_attempts: int | None = None,
    ) -> int:
        """Enqueue one job and return its id (that of the live job holding `dedupe_key`, if any)."""
        query, params = _one(
            NewJob(entrypoint, payload, priority, run_at, delay, dedupe_key, headers, max_attempts)
        )
        if isinstance(self._target, ConnectionPool):
            with self._target.connection() as conn:
                return _id(conn.execute(query, params).fetchone())
        return _id(self._target.execute(query, params).fetchone())

    def enqueue_many(self, jobs: Iterable[NewJob]) -> list[int]:
        """Enqueue a batch in one statement; ids in input order."""
        params = _params(jobs)
        if not params["entrypoints"]:
            return []
        if isinstance(self._target, ConnectionPool):
            with self._target.connection() as conn:
                return self._run(conn, params)
        return self._run(self._target, params)

    @staticmethod
    def _run(conn: psycopg.Connection[Any], params: dict[str, Any]) -> list[int]:
        rows = conn.execute(ENQUEUE_MANY, params).fetchall()
        return [row[0] for row in rows]

    def wait(self, job_ids: Iterable[int], timeout: float | None = None) -> WaitResult:
        """Wait until every job has finished (succeeded, failed or cancelled), or `timeout`
        seconds (None: no limit); any process may wait for any job. Ids that no job has are
        reported in `unknown`, not waited for; on timeout, `pending` names the rest.
        A connection must not be inside a transaction."""
        return results.wait(self._target, job_ids, timeout)

    def result(self, job_id: int) -> JobStatus | None:
        """The job's status now (final or not); None when no job has this id."""
        rows = results.status(self._target, [job_id])
        return JobStatus(*rows[0]) if rows else None


class AsyncQueue:
    """`Queue` for asyncio: an AsyncConnection (caller's transaction) or an AsyncConnectionPool."""

    def __init__(
        self, conn_or_pool: psycopg.AsyncConnection[Any] | AsyncConnectionPool[Any]
    ) -> None:
        self._target = conn_or_pool

    async def enqueue(
        self,
        entrypoint: str,
        payload: Any = None,
        *,
        priority: int = 0,
        run_at: datetime | None = None,
        delay: float | timedelta | None = None,
        dedupe_key: str | None = None,
        headers: dict[str, Any] | None = None,
        max_attempts: int | None = None,
    ) -> int:
        """Enqueue one job and return its id (that of the live job holding `dedupe_key`, if any)."""
        query, params = _one(
            NewJob(entrypoint, payload, priority, run_at, delay, dedupe_key, headers, max_attempts)
        )
        if isinstance(self._target, AsyncConnectionPool):
            async with self._target.connection() as conn:
                return _id(await (await conn.execute(query, params)).fetchone())
        return _id(await (await self._target.execute(query, params)).fetchone())

    async def enqueue_many(self, jobs: Iterable[NewJob]) -> list[int]:
        """Enqueue a batch in one statement; ids in input order."""
        params = _params(jobs)
        if not params["entrypoints"]:
            return []
        if isinstance(self._target, AsyncConnectionPool):
            async with self._target.connection() as conn:
                return await self._run(conn, params)
        return await self._run(self._target, params)

    @staticmethod
    async def _run(conn: psycopg.AsyncConnection[Any], params: dict[str, Any]) -> list[int]:
        cur = await conn.execute(ENQUEUE_MANY, params)
        return [row[0] for row in await cur.fetchall()]

    async def wait(self, job_ids: Iterable[int], timeout: float | None = None) -> WaitResult:
        """`Queue.wait` for asyncio."""
        return await results.await_jobs(self._target, job_ids, timeout)

    async def result(self, job_id: int) -> JobStatus | None:
        """`Queue.result` for asyncio."""
        rows = await results.astatus(self._target, [job_id])
        return JobStatus(*rows[0]) if rows else None
