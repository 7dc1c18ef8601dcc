"""PgQueuer, driven through its public API over asyncpg; runs in the peers venv (bench/.peers/).

The schema is installed with PgQueuer's own CLI (`pgq install`), next to the SQL floor's table
for `single --raw` (a plain INSERT ... RETURNING + pg_notify through asyncpg).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import common
from pgqueuer import AsyncpgDriver, AsyncpgPoolDriver, PgQueuer, Queries
from pgqueuer.models import Job
from pgqueuer.ports.repository import EntrypointExecutionParameter
from pgqueuer.types import QueueExecutionMode, QueueManagerId


async def install(args: argparse.Namespace) -> dict[str, Any]:
    """`pgq install` from the peers venv."""
    pgq = Path(sys.executable).parent / "pgq"
    subprocess.run([str(pgq), "--pg-dsn", args.dsn, "install"], check=True, capture_output=True)
    conn = await asyncpg.connect(args.dsn)
    try:
        await conn.execute(common.FLOOR_SCHEMA.read_text())
    finally:
        await conn.close()
    return {"installed": True}


def _payloads(chunk: range) -> list[bytes | None]:
    return [json.dumps(common.payload(i)).encode() for i in chunk]


async def _enqueue(queries: Queries, chunk: range) -> None:
    await queries.enqueue([common.ENTRYPOINT] * len(chunk), _payloads(chunk), [0] * len(chunk))


async def fill(args: argparse.Namespace) -> dict[str, Any]:
    """Enqueue `--count` jobs in batches of 1,000 (untimed set-up)."""
    conn = await asyncpg.connect(args.dsn)
    try:
        queries = Queries(AsyncpgDriver(conn))
        for chunk in common.batches(args.count, 1000):
            await _enqueue(queries, chunk)
    finally:
        await conn.close()
    return {"count": args.count}


async def enqueue(args: argparse.Namespace) -> dict[str, Any]:
    """Seconds to enqueue `--count` jobs in batches of `--batch` (`Queries.enqueue` with lists)."""
    conn = await asyncpg.connect(args.dsn)
    try:
        queries = Queries(AsyncpgDriver(conn))

        async def send(chunk: range) -> None:
            await _enqueue(queries, chunk)

        seconds = await common.timed_batches(args.count, args.batch, send)
    finally:
        await conn.close()
    return {"seconds": seconds}


async def worker(args: argparse.Namespace) -> dict[str, Any]:
    """A PgQueuer with a no-op entrypoint; `--mode drain` returns once the queue is empty.

    Its pool driver by default; `--one-connection` as its README sets it up (AsyncpgDriver on
    one connection): 0.6-2 ms lower idle latency per round here, so the latency workloads use it.
    """
    db: asyncpg.Connection | asyncpg.Pool
    if args.one_connection:
        db = await asyncpg.connect(args.dsn)
        pgq = PgQueuer(AsyncpgDriver(db))
    else:
        db = await asyncpg.create_pool(args.dsn, min_size=2, max_size=4)
        pgq = PgQueuer(AsyncpgPoolDriver(db))
    latencies = common.LatencyLog(args.latency_file)
    done = 0

    @pgq.entrypoint(common.ENTRYPOINT)
    async def handler(job: Job) -> None:
        nonlocal done
        latencies.record(json.loads(job.payload or b"{}"))
        done += 1

    await common.barrier(args.barrier)
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, pgq.shutdown.set)
    mode = QueueExecutionMode.drain if args.mode == "drain" else QueueExecutionMode.continuous
    try:
        await pgq.run(batch_size=args.batch, mode=mode, max_concurrent_tasks=args.concurrency)
    finally:
        await db.close()
    return {"end": time.monotonic(), "jobs": done}


async def produce(args: argparse.Namespace) -> dict[str, Any]:
    """Single enqueues, `--interval` apart, each stamped for the latency log; asyncpg commits
    each on its own, as a user's code does on its connection. `--ahead` delays each that far
    (PgQueuer takes an interval from the server's clock: the stamp leads it by the call's
    travel to the server, which counts against PgQueuer's lateness)."""
    conn = await asyncpg.connect(args.dsn)
    try:
        queries = Queries(AsyncpgDriver(conn))
        after = timedelta(seconds=args.ahead) if args.ahead else None

        async def send() -> None:
            body = json.dumps(common.stamp(args.ahead)).encode()
            await queries.enqueue(common.ENTRYPOINT, body, execute_after=after)

        await common.paced(args.count, args.interval, send)
    finally:
        await conn.close()
    return {"count": args.count}


RAW_SINGLE = """
WITH job AS (INSERT INTO floor.jobs (payload) VALUES ($1::jsonb) RETURNING id)
SELECT job.id, pg_notify('floor', $2) FROM job
"""


async def single(args: argparse.Namespace) -> dict[str, Any]:
    """Seconds to enqueue `--count` jobs one per commit on the caller's connection:
    `Queries.enqueue`, or the raw INSERT + NOTIFY (`--raw`) through asyncpg."""
    conn = await asyncpg.connect(args.dsn)
    try:
        queries = Queries(AsyncpgDriver(conn))

        async def send(i: int) -> None:
            await queries.enqueue(common.ENTRYPOINT, json.dumps(common.payload(i)).encode())

        async def send_raw(i: int) -> None:
            await conn.fetch(RAW_SINGLE, json.dumps(common.payload(i)), common.ENTRYPOINT)

        seconds = await common.timed_singles(args.count, send_raw if args.raw else send)
    finally:
        await conn.close()
    return {"seconds": seconds}


async def depth(args: argparse.Namespace) -> dict[str, Any]:
    """Jobs/s of `Queries.dequeue` + `Queries.log_jobs` (`--batch` a call) at a constant depth."""
    conn = await asyncpg.connect(args.dsn)
    try:
        queries = Queries(AsyncpgDriver(conn))
        entrypoints = {common.ENTRYPOINT: EntrypointExecutionParameter(concurrency_limit=0)}
        manager = QueueManagerId(uuid.uuid4())
        timed = 0.0
        for n in range(args.calls):
            start = time.perf_counter()
            jobs = await queries.dequeue(
                batch_size=args.batch,
                entrypoints=entrypoints,
                queue_manager_id=manager,
                global_concurrency_limit=None,
                heartbeat_timeout=timedelta(seconds=30),
            )
            await queries.log_jobs([(job, "successful", None) for job in jobs])
            timed += time.perf_counter() - start
            await _enqueue(queries, range(n * args.batch, (n + 1) * args.batch))
    finally:
        await conn.close()
    return {"seconds": timed, "jobs": args.calls * args.batch}


if __name__ == "__main__":
    common.main(sys.modules[__name__])
