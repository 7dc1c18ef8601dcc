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
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from pgq_thin.errors import PgqError


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


# run_at, or the database clock plus delay: the delay is measured by the server, not the client.
ENQUEUE_MANY = """
SELECT * FROM pgq.enqueue_many(
    %(entrypoints)s::text[], %(payloads)s::jsonb[], %(priorities)s::int[],
    ARRAY(SELECT coalesce(r, pgq.now() + d * interval '1 second')
          FROM unnest(%(run_ats)s::timestamptz[], %(delays)s::float8[])
               WITH ORDINALITY AS t(r, d, i)
          ORDER BY i),
    %(dedupe_keys)s::text[], %(headers)s::jsonb[], %(max_attempts)s::int[])
"""


def _seconds(delay: float | timedelta | None) -> float | None:
    return delay.total_seconds() if isinstance(delay, timedelta) else delay


def _params(jobs: Iterable[NewJob]) -> dict[str, list[Any]]:
    params: dict[str, list[Any]] = {
        name: []
        for name in (
            "entrypoints",
            "payloads",
            "priorities",
            "run_ats",
            "delays",
            "dedupe_keys",
            "headers",
            "max_attempts",
        )
    }
    for job in jobs:
        if job.run_at is not None and job.delay is not None:
            raise PgqError(f"job for {job.entrypoint!r}: give run_at or delay, not both")
        params["entrypoints"].append(job.entrypoint)
        params["payloads"].append(Jsonb({} if job.payload is None else job.payload))
        params["priorities"].append(job.priority)
        params["run_ats"].append(job.run_at)
        params["delays"].append(_seconds(job.delay))
        params["dedupe_keys"].append(job.dedupe_key)
        params["headers"].append(Jsonb(job.headers or {}))
        params["max_attempts"].append(job.max_attempts)
    return params


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
        job = NewJob(
            entrypoint, payload, priority, run_at, delay, dedupe_key, headers, max_attempts
        )
        return self.enqueue_many([job])[0]

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
    def _run(conn: psycopg.Connection[Any], params: dict[str, list[Any]]) -> list[int]:
        rows = conn.execute(ENQUEUE_MANY, params).fetchall()
        return [row[0] for row in rows]


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
        job = NewJob(
            entrypoint, payload, priority, run_at, delay, dedupe_key, headers, max_attempts
        )
        return (await self.enqueue_many([job]))[0]

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
    async def _run(conn: psycopg.AsyncConnection[Any], params: dict[str, list[Any]]) -> list[int]:
        cur = await conn.execute(ENQUEUE_MANY, params)
        return [row[0] for row in await cur.fetchall()]
