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
# Latency payloads carry the enqueue moment; time.monotonic() is system-wide on Linux, so the
# producer's and the worker's clocks agree.
LATENCY_KEY = "t"


class Driver(Protocol):
    """The commands a system driver implements (all async, all given the parsed arguments)."""

    async def install(self, args: argparse.Namespace) -> dict[str, Any]: ...

    async def fill(self, args: argparse.Namespace) -> dict[str, Any]: ...

    async def enqueue(self, args: argparse.Namespace) -> dict[str, Any]: ...

    async def worker(self, args: argparse.Namespace) -> dict[str, Any]: ...

    async def produce(self, args: argparse.Namespace) -> dict[str, Any]: ...

    async def depth(self, args: argparse.Namespace) -> dict[str, Any]: ...


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
    """Appends `seconds from enqueue to handler start` per job to a file (one float a line)."""

    def __init__(self, path: str | None) -> None:
        self._file = open(path, "a", buffering=1) if path else None  # noqa: SIM115

    def record(self, enqueued_at: float | None) -> None:
        if self._file is not None and enqueued_at is not None:
            self._file.write(f"{time.monotonic() - enqueued_at:.6f}\n")


def batches(total: int, size: int) -> list[range]:
    """Ranges of job numbers [0, total) in chunks of `size`."""
    return [range(start, min(start + size, total)) for start in range(0, total, size)]


async def timed_batches(total: int, size: int, send: Callable[[range], Awaitable[None]]) -> float:
    """Seconds to send `total` jobs in batches of `size`, one transaction per batch."""
    start = time.perf_counter()
    for chunk in batches(total, size):
        await send(chunk)
    return time.perf_counter() - start


async def paced(count: int, interval: float, send: Callable[[float], Awaitable[None]]) -> None:
    """Send `count` single jobs, one every `interval` seconds, stamped with their send time."""
    start = time.monotonic()
    for n in range(count):
        await asyncio.sleep(max(0.0, start + n * interval - time.monotonic()))
        await send(time.monotonic())


def parser() -> argparse.ArgumentParser:
    """The command line shared by all drivers."""
    p = argparse.ArgumentParser(description="benchmark driver")
    p.add_argument("command", choices=["install", "fill", "enqueue", "worker", "produce", "depth"])
    p.add_argument("--dsn", required=True)
    p.add_argument("--count", type=int, default=0, help="jobs (fill, enqueue, produce)")
    p.add_argument("--batch", type=int, default=100, help="jobs per enqueue or dequeue call")
    p.add_argument("--raw", action="store_true", help="enqueue: a raw multi-row INSERT")
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
