"""Drain throughput of this tree against an earlier revision, side by side in one run.

    .venv/bin/python bench/regression.py [--rev f7e1b76] [--jobs 40000] [--workers 1,4]
        [--rounds 4]

The revision is checked out into a temporary git worktree, and a throwaway PostgreSQL is
started. Each round drains `--jobs` pre-enqueued no-op async jobs (100 a claim, 100 at once)
with each worker count, the two trees in turn (each round starting from the other one), each
time in a fresh database holding that tree's schema. A worker process imports its tree's
pgq_thin before the clock starts; its start-up (connections, registration), the drain and its
shutdown are timed, as `bench/run.py` times a drain. Writes bench/results/regression.json and
bench/results/regression.md (which bench/report.py copies into bench/RESULTS.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
JSON = HERE / "results" / "regression.json"
REPORT = HERE / "results" / "regression.md"
ENTRYPOINT = "noop"


def child(dsn: str, go: str) -> None:
    """A worker of the tree on PYTHONPATH: waits for `go` to exist, then drains."""
    from pgq_thin import App, Job
    from pgq_thin.config import Settings

    try:
        from pgq_thin.worker import Worker
    except ImportError:  # 0.1 and the first 0.2 commits named it consumer
        from pgq_thin.consumer import Worker  # type: ignore[import-not-found,no-redef]

    app = App()

    @app.entrypoint(ENTRYPOINT)
    async def noop(job: Job) -> None:
        return None

    settings = Settings(database_url=dsn, max_concurrent_jobs=100, batch_size=100)
    worker = Worker(app, settings, mode="drain")
    while not os.path.exists(go):
        time.sleep(0.001)
    sys.exit(asyncio.run(worker.run()))


def drain(tree: Path, admin: str, dsn: str, jobs: int, workers: int) -> float:
    """Seconds for `workers` processes of `tree` to drain `jobs` jobs in a fresh database."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    setup = (
        "import sys, psycopg\n"
        "from pgq_thin import NewJob, Queue, schema\n"
        "with psycopg.connect(sys.argv[1]) as conn:\n"
        "    schema.install(conn); conn.commit()\n"
        "with psycopg.connect(sys.argv[1], autocommit=True) as conn:\n"
        "    for s in range(0, int(sys.argv[2]), 1000):\n"
        f"        Queue(conn).enqueue_many([NewJob({ENTRYPOINT!r}, {{'i': i}})"
        " for i in range(s, s + 1000)])\n"
        "    conn.execute('VACUUM ANALYZE pgq.jobs')\n"
    )
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS pgq_regression WITH (FORCE)")
        conn.execute("CREATE DATABASE pgq_regression")
    subprocess.run([sys.executable, "-c", setup, dsn, str(jobs)], env=env, check=True, cwd=tree)
    go = Path(tempfile.mkdtemp()) / "go"
    argv = [sys.executable, __file__, "--child", dsn, str(go)]
    procs = [subprocess.Popen(argv, env=env, cwd=tree) for _ in range(workers)]
    time.sleep(2)  # imported and waiting
    start = time.perf_counter()
    go.touch()
    codes = [p.wait() for p in procs]
    seconds = time.perf_counter() - start
    go.unlink()
    with psycopg.connect(dsn) as conn:
        left = conn.execute("SELECT count(*) FROM pgq.jobs").fetchone()
    if any(codes) or not left or left[0]:
        raise SystemExit(f"{tree}: workers exited {codes}, {left} job(s) left")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", default="f7e1b76", help="the revision to compare against")
    parser.add_argument("--jobs", type=int, default=40000)
    parser.add_argument("--workers", default="1,4")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--child", nargs=2, metavar=("DSN", "GO"), help=argparse.SUPPRESS)
    parser.add_argument("--report", action="store_true", help="only rewrite the report")
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    if args.report:
        write_report(json.loads(JSON.read_text()))
        return
    sys.path.insert(0, str(REPO))
    from pgq_thin._localdb import LocalServer

    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    old = Path(tempfile.mkdtemp(prefix="pgq-regression-")) / args.rev
    subprocess.run(["git", "worktree", "add", "--detach", str(old), args.rev], cwd=REPO,
                   check=True, capture_output=True)  # fmt: skip
    trees = {args.rev: old, head: REPO}
    counts = [int(w) for w in args.workers.split(",")]
    rates: dict[str, dict[str, list[float]]] = {str(w): {t: [] for t in trees} for w in counts}
    server = LocalServer.throwaway()
    started = time.strftime("%Y-%m-%d %H:%M:%S %z")
    load_before = os.getloadavg()[0]
    try:
        for rnd in range(args.rounds):
            for workers in counts:
                order = list(trees) if rnd % 2 == 0 else list(reversed(trees))
                for name in order:
                    seconds = drain(
                        trees[name], server.dsn(), server.dsn("pgq_regression"), args.jobs, workers
                    )
                    rates[str(workers)][name].append(args.jobs / seconds)
                    print(f"round {rnd + 1}, {workers} worker(s), {name}: "
                          f"{args.jobs / seconds:,.0f} jobs/s", file=sys.stderr)  # fmt: skip
    finally:
        server.discard()
        subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=REPO, check=False)
        shutil.rmtree(old.parent, ignore_errors=True)
    result = {
        "workload": "regression",
        "command": "python " + " ".join(["bench/regression.py", *sys.argv[1:]]),
        "started": started,
        "load_average_before_after": [load_before, os.getloadavg()[0]],
        "revisions": {"old": args.rev, "new": head},
        "jobs": args.jobs,
        "rounds": args.rounds,
        "jobs_per_second": rates,
    }
    JSON.write_text(json.dumps(result, indent=2) + "\n")
    write_report(result)


def write_report(result: dict[str, Any]) -> None:
    """bench/results/regression.md, which bench/report.py puts into bench/RESULTS.md."""
    old, new = result["revisions"]["old"], result["revisions"]["new"]
    before, after = result["load_average_before_after"]
    lines = [
        f"## Drain against {old}: nothing else slower",
        "",
        f"`{result['command']}` ({result['started']}, 1-minute load {before:.1f} → "
        f"{after:.1f}): {result['jobs']:,} no-op async jobs drained by each worker count, "
        f"{old} and {new} in turn, {result['rounds']} rounds; start-up and shutdown timed "
        "with the drain.",
        "",
        f"| workers | {old} jobs/s, median (range) | {new} jobs/s, median (range) "
        f"| {new} ÷ {old}, per round, median (range) |",
        "|---|---|---|---|",
    ]
    for workers, by_tree in result["jobs_per_second"].items():
        a, b = by_tree[old], by_tree[new]
        ratios = [y / x for x, y in zip(a, b, strict=True)]
        lines.append(
            f"| {workers} | {_spread(a)} | {_spread(b)} | {statistics.median(ratios):.2f}x "
            f"({min(ratios):.2f}-{max(ratios):.2f}) |"
        )
    REPORT.write_text("\n".join(lines) + "\n")


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):,.0f} ({min(values):,.0f}-{max(values):,.0f})"


if __name__ == "__main__":
    main()
