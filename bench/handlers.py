"""Drain rate of the worker before and after a change, for `async def` and plain `def` handlers.

    .venv/bin/python bench/handlers.py [--jobs 20000] [--rounds 3] [--base REV] [--out FILE]

Runs the worker of this tree and that of `--base` (a git revision, extracted with `git
archive`) in turn on one scratch database of the server DATABASE_URL names (the local socket
by default): each round and handler kind, both trees drain the same number of no-op jobs
(`Worker`, mode drain, max_concurrent_jobs 200, batch_size 100, log level WARNING) from
emptied, vacuumed tables; the clock runs from `Worker.run()` to its return. Rounds alternate
which tree goes first. Besides jobs/s it reports the worker process's CPU time per job (all its
threads), which other load on a shared machine disturbs far less than wall-clock rates. Prints
a JSON report (per round, and this/base ratios taken round by round); `--out` also writes it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

from pgq_thin import NewJob, Queue, schema

ROOT = Path(__file__).resolve().parents[1]
# What each drain runs, in a fresh interpreter with the tree under test first on sys.path.
DRAIN = """
import asyncio, json, logging, sys, time
import pgq_thin
from pgq_thin import App
from pgq_thin.config import Settings
from pgq_thin.worker import Worker
logging.basicConfig(level="WARNING")
dsn, kind = sys.argv[1], sys.argv[2]
app = App()
if kind == "async":
    async def bench(job): return None
else:
    def bench(job): return None
app.entrypoint("bench")(bench)
settings = Settings(database_url=dsn, max_concurrent_jobs=200, batch_size=100, log_level="WARNING")
async def main():
    worker = Worker(app, settings, mode="drain")
    started, cpu = time.monotonic(), time.process_time()
    code = await worker.run()
    return code, time.monotonic() - started, time.process_time() - cpu
code, seconds, cpu = asyncio.run(main())
print(json.dumps({"code": code, "seconds": seconds, "cpu": cpu, "module": pgq_thin.__file__}))
"""


def extract(rev: str, into: Path) -> Path:
    """`pgq_thin/` of git revision `rev` under `into`."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev, "pgq_thin"], check=True, capture_output=True
    ).stdout
    tar = into / "tree.tar"
    tar.write_bytes(archive)
    with tarfile.open(tar) as t:
        t.extractall(into, filter="data")
    return into


def fill(dsn: str, jobs: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE pgq.jobs, pgq.job_history, pgq.job_retries")
        queue = Queue(conn)
        for start in range(0, jobs, 5000):
            queue.enqueue_many([NewJob("bench", {"i": i}) for i in range(start, start + 5000)])
        conn.execute("VACUUM ANALYZE pgq.jobs")
        conn.execute("CHECKPOINT")


def drain(dsn: str, tree: Path, kind: str) -> tuple[float, float]:
    """Wall-clock and CPU seconds (all of the worker's threads) of one drain."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run(
        [sys.executable, "-c", DRAIN, dsn, kind],
        check=True,
        capture_output=True,
        env=env,
        cwd=tree,  # `-c` puts the current directory first on sys.path
    ).stdout
    report = json.loads(out)
    assert report["code"] == 0 and report["module"].startswith(str(tree)), report
    return float(report["seconds"]), float(report["cpu"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--base", default="ef04428")
    parser.add_argument("--out")
    args = parser.parse_args()
    server = os.environ.get("DATABASE_URL", "host=/var/run/postgresql")
    name = f"pgq_bench_handlers_{os.getpid()}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    dsn = psycopg.conninfo.make_conninfo(server, dbname=name)
    report: dict[str, Any] = {"jobs": args.jobs, "base": args.base, "rounds": []}
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            schema.install(conn)
        with tempfile.TemporaryDirectory() as tmp:
            trees = {"this": ROOT, "base": extract(args.base, Path(tmp))}
            load = os.getloadavg()[0]
            for n in range(args.rounds):
                order = ["this", "base"] if n % 2 == 0 else ["base", "this"]
                for kind in ("async", "def"):
                    for tree in order:
                        fill(dsn, args.jobs)
                        seconds, cpu = drain(dsn, trees[tree], kind)
                        rate, cpu_us = args.jobs / seconds, cpu / args.jobs * 1e6
                        report["rounds"].append(
                            {"round": n, "kind": kind, "tree": tree, "rate": rate, "cpu_us": cpu_us}
                        )
                        line = f"round {n} {kind:5} {tree:4} {rate:8.0f} jobs/s"
                        print(f"{line} {cpu_us:6.1f} us CPU a job", file=sys.stderr)
            report["load_before_after"] = [load, os.getloadavg()[0]]
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    summary: dict[str, Any] = {}
    for kind in ("async", "def"):
        for metric in ("rate", "cpu_us"):
            values = {
                tree: [
                    r[metric] for r in report["rounds"] if (r["kind"], r["tree"]) == (kind, tree)
                ]
                for tree in ("this", "base")
            }
            ratios = [a / b for a, b in zip(values["this"], values["base"], strict=True)]
            summary[f"{kind} {metric}"] = {
                "this_median": statistics.median(values["this"]),
                "base_median": statistics.median(values["base"]),
                "this_over_base_median": statistics.median(ratios),
                "this_over_base_range": [min(ratios), max(ratios)],
            }
    report["summary"] = summary
    report["when"] = time.strftime("%Y-%m-%d %H:%M:%S %z")
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
