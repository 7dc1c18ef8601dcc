"""The worker before and after a change: drain rate per handler kind, and delayed-job lateness.

    .venv/bin/python bench/handlers.py [--jobs 10000] [--rounds 6] [--base REV] [--delayed 40]
                                       [--out bench/results/handlers]

Runs the worker of this tree and that of `--base` (a git revision, extracted with `git
archive`) in turn on one scratch database of the server DATABASE_URL names (the local socket
by default): each round and handler kind, both trees drain the same number of no-op jobs
(`Worker`, mode drain, max_concurrent_jobs 200, batch_size 100, log level WARNING) from
emptied, vacuumed tables; the clock runs from `Worker.run()` to its return. Rounds alternate
which tree goes first. Besides jobs/s it reports the worker process's CPU time per job (all its
threads), which other load on a shared machine disturbs far less than wall-clock rates. Writes
`<out>.json` (every round) and `<out>.md` (the summary bench/report.py puts in RESULTS.md).

Lateness: each tree's worker (poll interval 1 s, the default) runs while `--delayed` jobs are
enqueued one every 0.25 s, each with run_at = now() + 1 s; a job's lateness is when its
handler started minus its run_at (both read from this machine's clock). Reported as p50, p99
and max per tree.
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


LATENESS = """
import asyncio, json, logging, sys, time
import psycopg
from pgq_thin import App
from pgq_thin.config import Settings
from pgq_thin.worker import Worker
logging.basicConfig(level="WARNING")
dsn, count = sys.argv[1], int(sys.argv[2])
ENQUEUE = (
    "SELECT pgq.enqueue('late', jsonb_build_object('due', extract(epoch FROM t.due)),"
    " run_at => t.due) FROM (SELECT now() + interval '1 second') AS t(due)"
)
app = App()
late = []
@app.entrypoint("late")
async def handler(job):
    late.append(time.time() - job.payload["due"])
async def main():
    worker = Worker(app, Settings(database_url=dsn, log_level="WARNING"))
    run = asyncio.create_task(worker.run())
    await asyncio.sleep(1)
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        for _ in range(count):
            await conn.execute(ENQUEUE)
            await asyncio.sleep(0.25)
        while len(late) < count:
            await asyncio.sleep(0.1)
    worker.request_stop()
    await run
asyncio.run(main())
print(json.dumps(late))
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


def run_in(tree: Path, script: str, *args: str) -> Any:
    """What `script` prints (JSON), run with `tree`'s pgq_thin."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run(
        [sys.executable, "-c", script, *args],
        check=True,
        capture_output=True,
        env=env,
        cwd=tree,  # `-c` puts the current directory first on sys.path
    ).stdout
    return json.loads(out)


def drain(dsn: str, tree: Path, kind: str) -> tuple[float, float]:
    """Wall-clock and CPU seconds (all of the worker's threads) of one drain."""
    report = run_in(tree, DRAIN, dsn, kind)
    assert report["code"] == 0 and report["module"].startswith(str(tree)), report
    return float(report["seconds"]), float(report["cpu"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--base", default="main")
    parser.add_argument("--delayed", type=int, default=40)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "handlers"))
    args = parser.parse_args()
    server = os.environ.get("DATABASE_URL", "host=/var/run/postgresql")
    name = f"pgq_bench_handlers_{os.getpid()}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    dsn = psycopg.conninfo.make_conninfo(server, dbname=name)
    base = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", args.base],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    command = " ".join(["bench/handlers.py", *sys.argv[1:]])
    report: dict[str, Any] = {"command": command, "jobs": args.jobs, "base": base, "rounds": []}
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
            report["lateness_ms"] = {}
            for tree in ("this", "base"):
                fill(dsn, 0)
                late = sorted(
                    1000 * x for x in run_in(trees[tree], LATENESS, dsn, str(args.delayed))
                )
                report["lateness_ms"][tree] = {
                    "p50": statistics.median(late),
                    "p99": late[min(len(late) - 1, round(0.99 * (len(late) - 1)))],
                    "max": late[-1],
                }
                print(f"lateness {tree}: {report['lateness_ms'][tree]}", file=sys.stderr)
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
    Path(f"{args.out}.json").write_text(json.dumps(report, indent=2) + "\n")
    Path(f"{args.out}.md").write_text(markdown(report))
    print(markdown(report))


def markdown(report: dict[str, Any]) -> str:
    """The summary for bench/RESULTS.md."""
    s, late = report["summary"], report["lateness_ms"]
    load = report["load_before_after"]
    lines = [
        "# Worker: heartbeat thread and stall detector, delayed-job lateness",
        "",
        f"- Command: `.venv/bin/python {report['command']}` ({report['when']}); this tree "
        f"against {report['base']} (`--base`), {report['jobs']:,} no-op jobs a drain, "
        f"{len(report['rounds']) // 4} rounds alternating which goes first.",
        f"- 1-minute load average {load[0]:.1f} → {load[1]:.1f}: other work shares the 2 "
        "cores, so wall-clock rates swing; CPU time a job (the worker process, all threads) "
        "is the steadier measure. Ratios are this/base, taken round by round.",
        "",
        "| handlers | jobs/s this | jobs/s base | ratio (range) | CPU µs a job this | base |"
        " ratio (range) |",
        "|---|---:|---:|---|---:|---:|---|",
    ]
    for kind in ("async", "def"):
        rate, cpu = s[f"{kind} rate"], s[f"{kind} cpu_us"]
        lines.append(
            f"| `{kind}` | {rate['this_median']:,.0f} | {rate['base_median']:,.0f} | "
            f"{_ratio(rate)} | {cpu['this_median']:.1f} | {cpu['base_median']:.1f} | "
            f"{_ratio(cpu)} |"
        )
    lines += [
        "",
        "Delayed-job lateness (a job with run_at = now() + 1 s, from its run_at to its "
        "handler's start; poll interval 1 s):",
        "",
        "| worker | p50 ms | p99 ms | max ms |",
        "|---|---:|---:|---:|",
    ]
    for tree in ("this", "base"):
        row = late[tree]
        lines.append(f"| {tree} | {row['p50']:.1f} | {row['p99']:.1f} | {row['max']:.1f} |")
    return "\n".join(lines) + "\n"


def _ratio(summary: dict[str, Any]) -> str:
    low, high = summary["this_over_base_range"]
    return f"{summary['this_over_base_median']:.2f} ({low:.2f}-{high:.2f})"


if __name__ == "__main__":
    main()
