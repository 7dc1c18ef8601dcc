"""pgq-thin, driven through its Python API (Queue, App, Worker); runs in the project venv.

Also the references: `enqueue --raw` is a plain multi-row INSERT into the SQL floor's table,
`single --raw` a plain INSERT ... RETURNING + pg_notify, one job per commit (psycopg).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import UTC, datetime
from typing import Any

import common
import psycopg
from psycopg.types.json import Jsonb

from pgq_thin import App, AsyncQueue, Job, NewJob, Queue, schema
from pgq_thin.config import Settings
from pgq_thin.worker import Worker


async def install(args: argparse.Namespace) -> dict[str, Any]:
    """pgq-thin's schema (its installer), plus the SQL floor's table for the raw reference."""
    with psycopg.connect(args.dsn) as conn:
        applied = schema.install(conn)
        conn.execute(common.FLOOR_SCHEMA.read_text())
        conn.commit()
    return {"applied": applied}


def _jobs(chunk: range) -> list[NewJob]:
    return [NewJob(common.ENTRYPOINT, common.payload(i)) for i in chunk]


async def fill(args: argparse.Namespace) -> dict[str, Any]:
    """Enqueue `--count` jobs in batches of 1,000 (untimed set-up)."""
    async with await psycopg.AsyncConnection.connect(args.dsn, autocommit=True) as conn:
        queue = AsyncQueue(conn)
        for chunk in common.batches(args.count, 1000):
            await queue.enqueue_many(_jobs(chunk))
    return {"count": args.count}


async def enqueue(args: argparse.Namespace) -> dict[str, Any]:
    """Seconds to enqueue `--count` jobs in batches of `--batch`, each batch committed."""
    async with await psycopg.AsyncConnection.connect(args.dsn, autocommit=True) as conn:
        queue = AsyncQueue(conn)

        async def send(chunk: range) -> None:
            await queue.enqueue_many(_jobs(chunk))

        async def send_raw(chunk: range) -> None:
            values = ", ".join(["(%s)"] * len(chunk))
            await conn.execute(
                f"INSERT INTO floor.jobs (payload) VALUES {values}",
                [Jsonb(common.payload(i)) for i in chunk],
            )

        seconds = await common.timed_batches(args.count, args.batch, send_raw if args.raw else send)
    return {"seconds": seconds}


async def worker(args: argparse.Namespace) -> dict[str, Any]:
    """A pgq-thin Worker with a no-op handler; `--mode drain` returns once the queue is empty."""
    app = App()
    latencies = common.LatencyLog(args.latency_file)
    done = 0

    work = args.work_ms / 1000

    @app.entrypoint(common.ENTRYPOINT)
    async def handler(job: Job) -> None:
        nonlocal done
        latencies.record(job.payload)
        if work:
            await asyncio.sleep(work)
        done += 1

    settings = Settings(
        database_url=args.dsn,
        max_concurrent_jobs=args.concurrency,
        batch_size=args.batch,
        log_level="WARNING",
    )
    runner = Worker(app, settings, mode=args.mode)
    await common.barrier(args.barrier)
    runner.install_signal_handlers()
    code = await runner.run()
    return {"end": time.monotonic(), "jobs": done, "exit": code}


async def produce(args: argparse.Namespace) -> dict[str, Any]:
    """Single enqueues, `--interval` apart, each stamped for the latency log and committed on
    its own, as a user's code does on its connection; `--ahead` schedules each that far."""
    async with await psycopg.AsyncConnection.connect(args.dsn) as conn:
        queue = AsyncQueue(conn)

        async def send() -> None:
            stamp = common.stamp(args.ahead)
            due = stamp.get(common.DUE_KEY)
            run_at = None if due is None else datetime.fromtimestamp(due, UTC)
            await queue.enqueue(common.ENTRYPOINT, stamp, run_at=run_at)
            await conn.commit()

        await common.paced(args.count, args.interval, send)
    return {"count": args.count}


RAW_SINGLE = """
WITH job AS (INSERT INTO floor.jobs (payload) VALUES (%b) RETURNING id)
SELECT job.id, pg_notify('floor', %b) FROM job
"""


async def single(args: argparse.Namespace) -> dict[str, Any]:
    """Seconds to enqueue `--count` jobs one per transaction on the caller's connection:
    `AsyncQueue.enqueue` + commit, `Queue.enqueue` + commit (`--sync`), or the raw
    INSERT + NOTIFY (`--raw`) through the same driver. Two references: `AsyncQueue.enqueue`
    on an autocommit connection (`--autocommit`, one round trip), and the driver's transaction
    with `SELECT 1` in place of the job (`--floor`: BEGIN, statement, COMMIT)."""
    if args.sync:
        with psycopg.connect(args.dsn) as sync_conn:
            queue = Queue(sync_conn)
            start = time.perf_counter()
            for i in range(args.count):
                queue.enqueue(common.ENTRYPOINT, common.payload(i))
                sync_conn.commit()
            return {"seconds": time.perf_counter() - start}
    async with await psycopg.AsyncConnection.connect(args.dsn, autocommit=args.autocommit) as conn:
        aqueue = AsyncQueue(conn)

        async def send(i: int) -> None:
            await aqueue.enqueue(common.ENTRYPOINT, common.payload(i))
            await conn.commit()  # a no-op in autocommit

        async def send_raw(i: int) -> None:
            await conn.execute(RAW_SINGLE, (Jsonb(common.payload(i)), common.ENTRYPOINT))
            await conn.commit()

        async def send_nothing(i: int) -> None:
            await conn.execute("SELECT 1")
            await conn.commit()

        how = send_raw if args.raw else send_nothing if args.floor else send
        seconds = await common.timed_singles(args.count, how)
    return {"seconds": seconds}


async def depth(args: argparse.Namespace) -> dict[str, Any]:
    """Jobs/s of pgq.dequeue + pgq.complete_many (`--batch` a call) at a constant depth.

    Each call's jobs are replaced, untimed, before the next, so the queue keeps its depth.
    """
    async with await psycopg.AsyncConnection.connect(args.dsn, autocommit=True) as conn:
        queue = AsyncQueue(conn)
        timed = 0.0
        for n in range(args.calls):
            start = time.perf_counter()
            cur = await conn.execute(
                "SELECT id, lease_token FROM pgq.dequeue(%s, %s, 'bench')",
                ([common.ENTRYPOINT], args.batch),
            )
            rows = await cur.fetchall()
            await conn.execute(
                "SELECT pgq.complete_many(%s, %s)", ([r[0] for r in rows], [r[1] for r in rows])
            )
            timed += time.perf_counter() - start
            await queue.enqueue_many(_jobs(range(n * args.batch, (n + 1) * args.batch)))
    return {"seconds": timed, "jobs": args.calls * args.batch}


if __name__ == "__main__":
    common.main(sys.modules[__name__])
