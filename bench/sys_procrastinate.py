"""procrastinate, driven through its public API over psycopg; runs in the peers venv.

The schema is installed with procrastinate's own schema manager (what `schema --apply` runs).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import Any

import common
import procrastinate
from procrastinate.jobs import Status

# The drivers define their task in __main__ on purpose; procrastinate warns about that.
logging.getLogger("procrastinate.blueprints").setLevel(logging.ERROR)


def _app(dsn: str, latencies: common.LatencyLog | None = None) -> tuple[procrastinate.App, Any]:
    """An App with the no-op task `bench` (queue `bench`), and a counter of jobs it ran."""
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=dsn))
    done = [0]

    @app.task(name=common.ENTRYPOINT, queue=common.ENTRYPOINT)
    async def bench(i: int = 0, **stamp: float) -> None:
        if latencies is not None:
            latencies.record(stamp)
        done[0] += 1

    return app, (bench, done)


async def install(args: argparse.Namespace) -> dict[str, Any]:
    """procrastinate's schema, applied by its schema manager."""
    app, _ = _app(args.dsn)
    async with app.open_async():
        await app.schema_manager.apply_schema_async()
    return {"installed": True}


async def fill(args: argparse.Namespace) -> dict[str, Any]:
    """Enqueue `--count` jobs in batches of 1,000 (untimed set-up)."""
    app, (task, _) = _app(args.dsn)
    async with app.open_async():
        for chunk in common.batches(args.count, 1000):
            await task.batch_defer_async(*(common.payload(i) for i in chunk))
    return {"count": args.count}


async def enqueue(args: argparse.Namespace) -> dict[str, Any]:
    """Seconds to enqueue `--count` jobs in batches of `--batch` (`batch_defer_async`)."""
    app, (task, _) = _app(args.dsn)
    async with app.open_async():

        async def send(chunk: range) -> None:
            await task.batch_defer_async(*(common.payload(i) for i in chunk))

        seconds = await common.timed_batches(args.count, args.batch, send)
    return {"seconds": seconds}


async def worker(args: argparse.Namespace) -> dict[str, Any]:
    """A procrastinate worker with `--concurrency` slots; `--mode drain` is `wait=False`."""
    app, (_, done) = _app(args.dsn, common.LatencyLog(args.latency_file))
    async with app.open_async():
        await common.barrier(args.barrier)
        await app.run_worker_async(
            queues=[common.ENTRYPOINT],
            concurrency=args.concurrency,
            wait=args.mode == "forever",
            install_signal_handlers=True,
        )
    return {"end": time.monotonic(), "jobs": done[0]}


async def produce(args: argparse.Namespace) -> dict[str, Any]:
    """Single `defer_async` calls, `--interval` apart, each stamped for the latency log."""
    app, (task, _) = _app(args.dsn)
    async with app.open_async():

        async def send() -> None:
            await task.defer_async(**common.stamp(0))

        await common.paced(args.count, args.interval, send)
    return {"count": args.count}


async def depth(args: argparse.Namespace) -> dict[str, Any]:
    """Jobs/s of `fetch_job` + `finish_job` (one job a call: procrastinate has no batch claim)."""
    app, (task, _) = _app(args.dsn)
    async with app.open_async():
        manager = app.job_manager
        worker_id = await manager.register_worker()
        timed = 0.0
        for n in range(args.calls):
            start = time.perf_counter()
            job = await manager.fetch_job([common.ENTRYPOINT], worker_id)
            assert job is not None
            await manager.finish_job(job, Status.SUCCEEDED, delete_job=False)
            timed += time.perf_counter() - start
            await task.defer_async(i=n)
        await manager.unregister_worker(worker_id)
    return {"seconds": timed, "jobs": args.calls}


if __name__ == "__main__":
    common.main(sys.modules[__name__])
