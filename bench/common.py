"""What every system driver shares: the command line, the start barrier, the latency log.

A driver (`sys_*.py`) runs in the interpreter that has its system installed (the project venv
for pgq-thin, `bench/.peers/` for the peers), so this module needs only the standard library.
Each command prints one JSON object on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

ENTRYPOINT = "bench"
# The SQL floor's minimal table: the raw references insert into it.
FLOOR_SCHEMA = Path(__file__).resolve().parent / "pgbench" / "floor_schema.sql"
# Latency payloads carry the enqueue moment; time.monotonic() is system-wide on Linux, so the
# producer's and the worker's clocks agree. A scheduled job's payload carries its due time
# instead (DUE_KEY, time.time(): the one clock the producer, the worker and the server share),
# and the log records how late it started.
LATENCY_KEY = "t"
DUE_KEY = "due"


class Driver(Protocol):
    """The commands a system driver implements (all async, all given the parsed arguments)."""

    async def install(self, args: argparse.Namespace) -> dict[str, Any]: ...

    async def fill(self, args: argparse.Namespace) -> dict[str, Any]: ...

    async def enqueue(self, args: argparse.Namespace) -> dict[str, Any]: ...

    async def worker(self, args: argparse.Namespace) -> dict[str, Any]: ...

    async def produce(self, args: argparse.Namespace) -> dict[str, Any]: ...

    async def depth(self, args: argparse.Namespace) -> dict[str, Any]: ...

    # pgq-thin and PgQueuer also have `single` (one job per commit on the caller's connection);
    # procrastinate defers through a connector of its own, so it has none.


def log(message: str) -> None:
    """A progress line on stderr."""
    print(message, file=sys.stderr, flush=True)


def payload(i: int) -> dict[str, int]:
    """The small JSON payload every system enqueues."""
    return {"i": i}


async def barrier(directory: str | None) -> None:
    """Announce readiness in `directory`, then wait for the orchestrator's `go` file."""
    if directory is None:
        return
    path = Path(directory)
    (path / f"ready-{os.getpid()}").touch()
    go = path / "go"
    while not go.exists():
        await asyncio.sleep(0.001)


class LatencyLog:
    """Appends, per job, the seconds from its enqueue call (or its due time) to its handler's
    start to a file, one float a line."""

    def __init__(self, path: str | None) -> None:
        self._file = open(path, "a", buffering=1) if path else None  # noqa: SIM115

    def record(self, payload: dict[str, Any]) -> None:
        if self._file is None:
            return
        if DUE_KEY in payload:
            self._file.write(f"{time.time() - payload[DUE_KEY]:.6f}\n")
        elif LATENCY_KEY in payload:
            self._file.write(f"{time.monotonic() - payload[LATENCY_KEY]:.6f}\n")


def stamp(ahead: float) -> dict[str, float]:
    """A latency job's payload: its enqueue moment, or its due time `ahead` seconds from now."""
    return {DUE_KEY: time.time() + ahead} if ahead else {LATENCY_KEY: time.monotonic()}


def batches(total: int, size: int) -> list[range]:
    """Ranges of job numbers [0, total) in chunks of `size`."""
    return [range(start, min(start + size, total)) for start in range(0, total, size)]


async def timed_batches(total: int, size: int, send: Callable[[range], Awaitable[None]]) -> float:
    """Seconds to send `total` jobs in batches of `size`, one transaction per batch."""
    start = time.perf_counter()
    for chunk in batches(total, size):
        await send(chunk)
    return time.perf_counter() - start


async def paced(count: int, interval: float, send: Callable[[], Awaitable[None]]) -> None:
    """Call `send` `count` times, one every `interval` seconds."""
    start = time.monotonic()
    for n in range(count):
        await asyncio.sleep(max(0.0, start + n * interval - time.monotonic()))
        await send()


async def timed_singles(count: int, send: Callable[[int], Awaitable[None]]) -> float:
    """Seconds to send `count` single jobs back to back."""
    start = time.perf_counter()
    for i in range(count):
        await send(i)
    return time.perf_counter() - start


def parser() -> argparse.ArgumentParser:
    """The command line shared by all drivers."""
    p = argparse.ArgumentParser(description="benchmark driver")
    p.add_argument(
        "command", choices=["install", "fill", "enqueue", "worker", "produce", "depth", "single"]
    )
    p.add_argument("--dsn", required=True)
    p.add_argument("--count", type=int, default=0, help="jobs (fill, enqueue, produce)")
    p.add_argument("--batch", type=int, default=100, help="jobs per enqueue or dequeue call")
    p.add_argument("--raw", action="store_true", help="enqueue/single: raw INSERTs (+ NOTIFY)")
    p.add_argument("--sync", action="store_true", help="single: the blocking client")
    p.add_argument("--autocommit", action="store_true", help="single: each call commits on its own")
    p.add_argument(
        "--floor", action="store_true", help="single: the driver's transaction, SELECT 1 in it"
    )
    p.add_argument("--ahead", type=float, default=0.0, help="produce: jobs due this many s ahead")
    p.add_argument("--work-ms", type=float, default=0.0, help="worker: each job sleeps this long")
    p.add_argument(
        "--one-connection", action="store_true", help="worker: PgQueuer on one connection"
    )
    p.add_argument("--mode", choices=["drain", "forever"], default="drain")
    p.add_argument("--concurrency", type=int, default=200, help="jobs a worker runs at once")
    p.add_argument("--barrier", help="directory of the start barrier")
    p.add_argument("--latency-file", help="worker: record enqueue-to-start latencies here")
    p.add_argument("--interval", type=float, default=0.01, help="produce: seconds between jobs")
    p.add_argument("--calls", type=int, default=200, help="depth: dequeue+complete calls")
    return p


def main(driver: Driver) -> None:
    """Run the command named on the command line and print its JSON result."""
    args = parser().parse_args()
    command: Callable[[argparse.Namespace], Awaitable[dict[str, Any]]] = getattr(
        driver, args.command
    )
    result = asyncio.run(command(args))
    print(json.dumps(result), flush=True)
