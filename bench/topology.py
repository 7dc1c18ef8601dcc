"""Production topologies: throughput by fleet size, a 50,000-job fleet drain with workers added
and removed, and the drain and latency workloads through PgBouncer beside direct connections.

Everything runs against a throwaway PostgreSQL (initdb defaults) started by this script, with
real `pgq-thin run` worker processes serving tests/e2e/topology_app.py (no-op async handler) and
a real PgBouncer (Debian's `pgbouncer`) in front of it. Writes bench/results/topology.json and
bench/results/topology.md (bench/report.py includes it in bench/RESULTS.md).

    .venv/bin/python bench/topology.py            # about 4 minutes on 2 cores
    .venv/bin/python bench/topology.py --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pgq_thin import NewJob, Queue, schema  # noqa: E402
from pgq_thin._localdb import LocalServer  # noqa: E402
from pgq_thin.worker import DEQUEUE  # noqa: E402
from tests.e2e.pgbouncer import PgBouncer  # noqa: E402

APP = REPO / "tests" / "e2e" / "topology_app.py"
RESULTS = REPO / "bench" / "results" / "topology.json"
REPORT = RESULTS.with_suffix(".md")
READING = """
Reading it: every run kept the machine's 2 cores fully busy (other work included), so the
fleet table shows where that server saturates: at 1-2 workers already; more processes add
connections and contention for the same cores, not jobs/s. Small workers claim few jobs
per call, so a fleet of them moves fewer jobs/s than one worker with
`MAX_CONCURRENT_JOBS=100` (the PgBouncer table). Through
PgBouncer in transaction mode the worker runs without prepared statements (psycopg's would
break there) and every statement crosses one more process on the same cores; pickup with a
direct LISTEN connection stays within a few milliseconds of a direct connection, while
poll-only pickup waits for the next 0.1 s poll. Absolute rates here are depressed by the
machine's load; compare the rows of one table.
"""
CHUNK = 5_000  # jobs per enqueue_many call (the SQL caps a batch at 10,000)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cpu_busy() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine so far."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


class Bench:
    def __init__(self, server: LocalServer, workdir: Path) -> None:
        self.server = server
        self.dsn = server.dsn()
        self.workdir = workdir
        self.conn = psycopg.connect(self.dsn, autocommit=True)
        self.workers: list[subprocess.Popen[bytes]] = []

    def start(self, dsn: str, **env: str) -> subprocess.Popen[bytes]:
        full = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "DATABASE_URL"))}
        full.update(PGQ_LOG_LEVEL="WARNING", PYTHONPATH=str(REPO), DATABASE_URL=dsn, **env)
        out = (self.workdir / f"worker{len(self.workers)}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "pgq_thin", "run", "topology_app:main"],
            cwd=self.workdir, env=full, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.workers.append(proc)
        return proc

    def stop(self, procs: list[subprocess.Popen[bytes]]) -> None:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            code = proc.wait(60)
            if code != 0:
                raise SystemExit(f"a worker exited {code}; logs in {self.workdir}")

    def value(self, sql: str, *params: Any) -> Any:
        row = self.conn.execute(sql, params).fetchone()
        return row[0] if row else None

    def wait(self, check: Callable[[], bool], what: str, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise SystemExit(f"timed out waiting for {what}; logs in {self.workdir}")
            time.sleep(0.02)

    def registered(self, n: int) -> None:
        self.wait(lambda: self.value("SELECT count(*) FROM pgq.workers") == n, f"{n} workers")

    def finished(self) -> int:
        return int(self.value("SELECT count(*) FROM pgq.job_history"))

    def reset(self) -> None:
        self.conn.execute("TRUNCATE pgq.job_history, pgq.jobs")
        self.conn.execute("VACUUM ANALYZE pgq.jobs")

    def enqueue(self, n: int) -> None:
        """n jobs in one transaction: they become claimable (and notified) at once."""
        with psycopg.connect(self.dsn) as conn:
            queue = Queue(conn)
            for start in range(0, n, CHUNK):
                queue.enqueue_many([NewJob("echo", {"i": i}) for i in range(start, start + CHUNK)])
            conn.commit()

    def drain(self, n: int) -> dict[str, float]:
        """Enqueue n jobs for the running workers; jobs/s until all are finished."""
        busy0, total0 = cpu_busy()
        started = time.monotonic()
        self.enqueue(n)
        self.wait(lambda: self.finished() >= n, f"{n} jobs")
        elapsed = time.monotonic() - started
        busy1, total1 = cpu_busy()
        self.check_once(n)
        return {"jobs_per_s": n / elapsed, "cpu_busy": (busy1 - busy0) / (total1 - total0)}

    def check_once(self, n: int) -> None:
        rows = self.conn.execute(
            "SELECT state, attempt, count(*) FROM pgq.job_history GROUP BY 1, 2"
        ).fetchall()
        if rows != [("succeeded", 1, n)] or self.value("SELECT count(*) FROM pgq.jobs"):
            raise SystemExit(f"not exactly once: {rows}")

    def latency(self, n: int, gap: float) -> dict[str, float]:
        """n jobs enqueued one at a time, `gap` s apart, to an idle worker: pickup in ms
        (enqueue commit to claim, server clock) and enqueue to finish."""
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            queue = Queue(conn)
            for i in range(n):
                queue.enqueue("echo", {"i": i})
                time.sleep(gap)
        self.wait(lambda: self.finished() >= n, f"{n} latency jobs")
        rows = self.conn.execute(
            "SELECT extract(epoch FROM started_at - enqueued_at) * 1000,"
            " extract(epoch FROM finished_at - enqueued_at) * 1000 FROM pgq.job_history"
        ).fetchall()
        pickup = sorted(float(r[0]) for r in rows)
        finish = sorted(float(r[1]) for r in rows)
        return {
            "pickup_p50_ms": statistics.median(pickup),
            "pickup_p99_ms": pickup[int(0.99 * (len(pickup) - 1))],
            "finish_p50_ms": statistics.median(finish),
        }


def prepared(bench: Bench, rounds: int, calls: int) -> dict[str, float]:
    """Microseconds per empty claim (the worker's own statement) with psycopg's automatic
    prepared statements and without them (as through a transaction pooler), in turn."""
    bench.reset()
    args = (["echo"], 10, "bench", timedelta(seconds=30))
    times: dict[str, list[float]] = {"prepared": [], "unprepared": []}
    with (
        psycopg.connect(bench.dsn, autocommit=True) as on,
        psycopg.connect(bench.dsn, autocommit=True, prepare_threshold=None) as off,
    ):
        for rnd in range(rounds):
            pair = [("prepared", on), ("unprepared", off)]
            for name, conn in pair if rnd % 2 == 0 else reversed(pair):
                started = time.perf_counter()
                for _ in range(calls):
                    conn.execute(DEQUEUE, args, binary=True).fetchall()
                times[name].append((time.perf_counter() - started) / calls * 1e6)
    result = {name: statistics.median(values) for name, values in times.items()}
    log(f"empty claim: {result}")
    return result


def fleet_sizes(bench: Bench, sizes: list[int], jobs: int) -> list[dict[str, Any]]:
    """Throughput of n small workers (10 jobs at once each) draining `jobs` no-op jobs."""
    out = []
    for n in sizes:
        bench.reset()
        procs = [bench.start(bench.dsn, MAX_CONCURRENT_JOBS="10") for _ in range(n)]
        bench.registered(n)
        result = bench.drain(jobs)
        bench.stop(procs)
        log(f"fleet of {n}: {result['jobs_per_s']:,.0f} jobs/s, cpu {result['cpu_busy']:.0%}")
        out.append({"workers": n, "jobs": jobs, **result})
    return out


def fleet_churn(bench: Bench, jobs: int) -> dict[str, Any]:
    """16 workers drain `jobs` while 4 leave (SIGTERM) and 8 join, exactly once."""
    bench.reset()
    env = {"MAX_CONCURRENT_JOBS": "4", "PGQ_POOL_SIZE": "1"}
    procs = [bench.start(bench.dsn, **env) for _ in range(12)]
    bench.registered(12)
    started = time.monotonic()
    bench.enqueue(jobs)
    bench.wait(lambda: bench.finished() >= jobs // 5, "a fifth")
    for proc in procs[:4]:
        proc.send_signal(signal.SIGTERM)
    procs += [bench.start(bench.dsn, **env) for _ in range(8)]
    bench.wait(lambda: bench.finished() >= jobs, f"{jobs} jobs")
    elapsed = time.monotonic() - started
    bench.check_once(jobs)
    pids = bench.value("SELECT count(DISTINCT result->>'pid') FROM pgq.job_history")
    bench.stop(procs[:4] + procs[12:] + procs[4:12])
    log(f"fleet churn: {jobs} jobs in {elapsed:.1f}s by {pids} processes, exactly once")
    return {"jobs": jobs, "seconds": elapsed, "jobs_per_s": jobs / elapsed, "processes": pids}


def topologies(bench: Bench, rounds: int, jobs: int, latency_jobs: int) -> dict[str, Any]:
    """One worker (100 jobs at once) draining, then idle latency, per topology, in turn."""
    transaction = PgBouncer(bench.dsn, "transaction")
    session = PgBouncer(bench.dsn, "session")
    try:
        setups: dict[str, tuple[str, dict[str, str]]] = {
            "direct": (bench.dsn, {}),
            "PgBouncer transaction + direct LISTEN": (
                transaction.dsn(),
                {"PGQ_LISTEN_URL": bench.dsn},
            ),
            "PgBouncer session": (session.dsn(), {}),
            "PgBouncer transaction, poll-only": (transaction.dsn(), {}),
        }
        found: dict[str, dict[str, list[float]]] = {name: {} for name in setups}
        for rnd in range(rounds):
            order = list(setups) if rnd % 2 == 0 else list(reversed(setups))
            for name in order:
                dsn, env = setups[name]
                bench.reset()
                proc = bench.start(dsn, MAX_CONCURRENT_JOBS="100", **env)
                bench.registered(1)
                results = bench.drain(jobs)
                bench.reset()
                results.update(bench.latency(latency_jobs, 0.01))
                bench.stop([proc])
                for key, val in results.items():
                    found[name].setdefault(key, []).append(val)
                log(f"{name}: {results}")
    finally:
        transaction.stop()
        session.stop()
    return {
        name: {key: statistics.median(vals) for key, vals in metrics.items()}
        for name, metrics in found.items()
    }


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "## Production topologies (bench/topology.py)",
        "",
        f"- Command: `{result['command']}`; {result['when']}; a throwaway PostgreSQL 15 "
        "(initdb defaults, `max_connections` 100) and PgBouncer 1.18 (Debian) on the same "
        "2-core machine, shared with other work (load average before → after: "
        f"{result['load'][0]:.1f} → {result['load'][1]:.1f}).",
        "- Workers are `pgq-thin run` processes serving a no-op async handler.",
        "",
        "**Throughput by fleet size** (each worker: `MAX_CONCURRENT_JOBS=10`, 5 connections; "
        f"{result['fleet'][0]['jobs']:,} jobs enqueued in one transaction)",
        "",
        "| workers | jobs/s | machine CPU busy |",
        "|---|---|---|",
    ]
    for row in result["fleet"]:
        lines.append(f"| {row['workers']} | {row['jobs_per_s']:,.0f} | {row['cpu_busy']:.0%} |")
    churn = result["churn"]
    lines += [
        "",
        f"**Fleet with churn**: {churn['jobs']:,} jobs drained by 16 workers "
        "(`MAX_CONCURRENT_JOBS=4`, `PGQ_POOL_SIZE=1`: 3 connections each) while 4 of the first "
        f"12 stopped (SIGTERM) and 8 joined: {churn['seconds']:.1f} s, "
        f"{churn['jobs_per_s']:,.0f} jobs/s, {churn['processes']} processes ran jobs; every job "
        "succeeded at its first attempt (exactly once).",
        "",
        f"**Through PgBouncer** (one worker, `MAX_CONCURRENT_JOBS=100`; drain of "
        f"{result['drain_jobs']:,} jobs; latency: {result['latency_jobs']} jobs enqueued one "
        "at a time 10 ms apart to an idle worker, pickup = enqueue commit to claim on the "
        f"server clock; median of {result['rounds']} rounds run in turn)",
        "",
        "| topology | drain jobs/s | pickup p50 | pickup p99 | enqueue → finished p50 |",
        "|---|---|---|---|---|",
    ]
    for name, m in result["topologies"].items():
        lines.append(
            f"| {name} | {m['jobs_per_s']:,.0f} | {m['pickup_p50_ms']:.1f} ms | "
            f"{m['pickup_p99_ms']:.1f} ms | {m['finish_p50_ms']:.1f} ms |"
        )
    if "prepared" in result:
        p = result["prepared"]
        lines += [
            "",
            "**Prepared statements** (why the worker keeps psycopg's where the session is kept): "
            f"an empty claim, the worker's own statement, took {p['prepared']:.0f} µs prepared "
            f"and {p['unprepared']:.0f} µs unprepared (median of 6 alternating rounds of 1,000 "
            "calls on a direct connection).",
        ]
    return "\n".join(lines) + "\n" + READING


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one round")
    parser.add_argument(
        "--report-only", action="store_true", help=f"rewrite {REPORT.name} from {RESULTS.name}"
    )
    args = parser.parse_args()
    if args.report_only:
        REPORT.write_text(markdown(json.loads(RESULTS.read_text())))
        return
    quick = args.quick
    sizes = [1, 4] if quick else [1, 2, 4, 8, 16]
    fleet_jobs, churn_jobs = (5_000, 10_000) if quick else (30_000, 50_000)
    drain_jobs, latency_jobs, rounds = (5_000, 50, 1) if quick else (20_000, 200, 2)

    load0 = os.getloadavg()[0]
    server = LocalServer.throwaway()
    workdir = Path(tempfile.mkdtemp(prefix="pgq-topology-"))
    shutil.copy(APP, workdir)
    try:
        with psycopg.connect(server.dsn(), autocommit=True) as conn:
            schema.install(conn)
        bench = Bench(server, workdir)
        try:
            result: dict[str, Any] = {
                "command": "python bench/topology.py" + (" --quick" if quick else ""),
                "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                "fleet": fleet_sizes(bench, sizes, fleet_jobs),
                "churn": fleet_churn(bench, churn_jobs),
                "topologies": topologies(bench, rounds, drain_jobs, latency_jobs),
                "prepared": prepared(bench, 6, 200 if quick else 1000),
                "drain_jobs": drain_jobs,
                "latency_jobs": latency_jobs,
                "rounds": rounds,
            }
        finally:
            for proc in bench.workers:
                if proc.poll() is None:
                    proc.kill()
            bench.conn.close()
    finally:
        server.discard()
    result["load"] = [load0, os.getloadavg()[0]]
    if not quick:
        RESULTS.write_text(json.dumps(result, indent=2) + "\n")
        REPORT.write_text(markdown(result))
    print(markdown(result))
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
