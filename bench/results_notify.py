"""What waiting for results and tracing cost a drain: NOTIFY pgq_done sent for every finished
job (every job waited for, i.e. flagged as pgq.watch_jobs does) or for none (nobody waits, the
default), with or without a client LISTENing, and OpenTelemetry on (SDK, no-op exporter).

    .venv/bin/python bench/results_notify.py [--jobs 20000] [--rounds 3] [--workers 1,2]

Uses DATABASE_URL's server (default: the local socket), in databases of its own
(pgq_bench_results*, recreated, dropped at the end). Two measurements, `--rounds` times each:
- SQL only: pgbench running bench/pgbench/pgq_claim_complete.sql (pgq.dequeue +
  pgq.complete_many, 100 jobs a call) with as many clients as the most `--workers`, both
  variants (nobody waits, every job waited for) at the same time for `--seconds`, each in its
  own database (so that the load other work puts on the machine weighs on both alike):
  nothing but the SQL, so the notification's share of the cost is the largest it can be;
- drains: `--jobs` pre-enqueued no-op jobs per variant, in turn (each round starting from the
  next variant), by `--workers` worker processes (`sys_pgq.py worker --mode drain`, 100 jobs a
  claim).
Writes bench/results/results_notify.json and bench/results/results_notify.md (which
bench/report.py copies into bench/RESULTS.md; `--report` rewrites it from the JSON alone).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

from pgq_thin._localdb import find_bindir

HERE = Path(__file__).resolve().parent
DB = "pgq_bench_results"
PGBENCH_SCRIPT = HERE / "pgbench" / "pgq_claim_complete.sql"
JSON = HERE / "results" / "results_notify.json"
REPORT = HERE / "results" / "results_notify.md"
DRAIN_JSON = HERE / "results" / "drain.json"
NOBODY = "nobody waits"
EVERY = "every job waited for"
LISTENER = "every job waited for, 1 listener"
OTEL = "nobody waits, OpenTelemetry on"
SQL_VARIANTS = (NOBODY, EVERY)
SQL_FILL = 100_000  # jobs per variant for a pgbench run: more than it can finish
VARIANTS = (NOBODY, EVERY, LISTENER, OTEL)
# Run in the worker process before it starts: an SDK tracer provider whose spans are built,
# ended and handed to an exporter that drops them.
OTEL_SETUP = """
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

class Drop(SpanExporter):
    def export(self, spans): return SpanExportResult.SUCCESS

provider = TracerProvider()
provider.add_span_processor(BatchSpanProcessor(Drop()))
trace.set_tracer_provider(provider)
"""


def url(base: str, db: str) -> str:
    return psycopg.conninfo.make_conninfo(base, dbname=db)


def reset(base: str, db: str = DB) -> str:
    """A fresh database `db` with the schema and the bench entrypoint."""
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {db}")
    dsn = url(base, db)
    subprocess.run(
        [sys.executable, str(HERE / "sys_pgq.py"), "install", "--dsn", dsn],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pgq.set_entrypoint('bench')")
    return dsn


def fill(dsn: str, jobs: int, watched: bool) -> None:
    """`jobs` fresh jobs; watched: all flagged to NOTIFY pgq_done (as pgq.watch_jobs does)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE pgq.jobs, pgq.job_history, pgq.job_retries")
        conn.execute(
            "SELECT pgq.enqueue_many(array_fill('bench'::text, ARRAY[n]),"
            " (SELECT array_agg(jsonb_build_object('i', i)) FROM generate_series(1, n) AS i))"
            " FROM (SELECT g * 0 + 1000 AS n FROM generate_series(1, %s) AS g) AS s",
            (jobs // 1000,),
        )
        if watched:
            conn.execute("UPDATE pgq.jobs SET notify_done = true")
        conn.execute("VACUUM ANALYZE pgq.jobs")
        conn.execute("VACUUM ANALYZE pgq.job_history")


def drain(dsn: str, workers: int, variant: str) -> float:
    """Seconds from the start barrier until the last worker has drained the queue."""
    listener = None
    if variant == LISTENER:
        listener = psycopg.connect(dsn, autocommit=True)
        listener.execute("LISTEN pgq_done")
    env = dict(os.environ)
    prelude = OTEL_SETUP if variant == OTEL else ""
    code = (
        f"{prelude}\nimport sys, runpy\nsys.argv = sys.argv[1:]\n"
        "runpy.run_path(sys.argv[0], run_name='__main__')"
    )
    with tempfile.TemporaryDirectory() as barrier:
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    code,
                    str(HERE / "sys_pgq.py"),
                    "worker",
                    "--dsn",
                    dsn,
                    "--mode",
                    "drain",
                    "--batch",
                    "100",
                    "--concurrency",
                    "200",
                    "--barrier",
                    barrier,
                ],
                stdout=subprocess.PIPE,
                env=env,
                cwd=HERE,
            )
            for _ in range(workers)
        ]
        while len([p for p in Path(barrier).iterdir() if p.name.startswith("ready-")]) < workers:
            time.sleep(0.01)
        start = time.monotonic()
        (Path(barrier) / "go").touch()
        ends = []
        for proc in procs:
            out, _ = proc.communicate(timeout=600)
            ends.append(json.loads(out.decode().strip().splitlines()[-1])["end"])
    if listener is not None:
        received = sum(1 for _ in listener.notifies(timeout=0.5))
        listener.close()
        print(f"  (the listener received {received} notification(s))", file=sys.stderr)
    return max(ends) - start


def pgbench_rates(base: str, seconds: int, clients: int) -> dict[str, float]:
    """Jobs/s of bench/pgbench/pgq_claim_complete.sql (pgq.dequeue + pgq.complete_many, 100 jobs
    a call, two transactions, as a worker does) by `clients` pgbench sessions per variant, every
    variant at the same time for `seconds`, each in a database of its own: whatever else loads
    the machine meanwhile weighs on all of them alike."""
    dsns = {variant: url(base, f"{DB}_{n}") for n, variant in enumerate(SQL_VARIANTS)}
    for variant, dsn in dsns.items():
        fill(dsn, SQL_FILL, watched=variant == EVERY)
    options = ["-n", "-c", str(clients), "-j", str(clients), "-T", str(seconds)]
    runs = {
        variant: subprocess.Popen(
            [str(find_bindir() / "pgbench"), *options, "-f", str(PGBENCH_SCRIPT), dsn],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for variant, dsn in dsns.items()
    }
    rates = {}
    for variant, run in runs.items():
        out, _ = run.communicate(timeout=seconds + 120)
        tps = re.search(r"tps = ([\d.]+)", out)
        if not tps or "aborted" in out:
            raise SystemExit(f"pgbench failed:\n{out}")
        with psycopg.connect(dsns[variant]) as conn:
            left = conn.execute("SELECT count(*) FROM pgq.jobs WHERE state = 'queued'").fetchone()
        if not left or not left[0]:
            raise SystemExit(f"{variant}: the queue ran dry; raise SQL_FILL")
        rates[variant] = float(tps.group(1)) * 100
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--seconds", type=int, default=3, help="of each simultaneous pgbench run")
    parser.add_argument(
        "--report", action="store_true", help="only rewrite the report from the last results"
    )
    args = parser.parse_args()
    if args.report:
        write_report(json.loads(JSON.read_text()))
        return
    base = os.environ.get("DATABASE_URL", "dbname=postgres")
    dsn = reset(base)
    counts = [int(w) for w in args.workers.split(",")]
    rates: dict[str, dict[str, list[float]]] = {str(w): {v: [] for v in VARIANTS} for w in counts}
    started = time.strftime("%Y-%m-%d %H:%M:%S %z")
    load_before = os.getloadavg()[0]
    for n in range(len(SQL_VARIANTS)):
        reset(base, f"{DB}_{n}")
    sql_rates: dict[str, list[float]] = {v: [] for v in SQL_VARIANTS}
    for rnd in range(args.rounds):
        for variant, rate in pgbench_rates(base, args.seconds, max(counts)).items():
            sql_rates[variant].append(rate)
            print(f"round {rnd + 1}, SQL only (pgbench), {variant}: {rate:,.0f} jobs/s",
                  file=sys.stderr)  # fmt: skip
    with psycopg.connect(base, autocommit=True) as conn:
        for n in range(len(SQL_VARIANTS)):
            conn.execute(f"DROP DATABASE IF EXISTS {DB}_{n} WITH (FORCE)")
    for rnd in range(args.rounds):
        for workers in counts:
            # Each round starts from another variant, so that no variant always runs first.
            for variant in VARIANTS[rnd % len(VARIANTS) :] + VARIANTS[: rnd % len(VARIANTS)]:
                fill(dsn, args.jobs, watched=variant in (EVERY, LISTENER))
                seconds = drain(dsn, workers, variant)
                rate = args.jobs / seconds
                rates[str(workers)][variant].append(rate)
                print(f"round {rnd + 1}, {workers} worker(s), {variant}: {rate:,.0f} jobs/s",
                      file=sys.stderr)  # fmt: skip
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    result: dict[str, Any] = {
        "workload": "results_notify",
        "command": "python " + " ".join(sys.argv),
        "started": started,
        "load_average_before_after": [load_before, os.getloadavg()[0]],
        "jobs": args.jobs,
        "rounds": args.rounds,
        "jobs_per_second": rates,
        "sql_only_pgbench_jobs_per_second": sql_rates,
    }
    JSON.write_text(json.dumps(result, indent=2) + "\n")
    write_report(result)


def _ratios(rates: dict[str, list[float]], variant: str) -> list[float]:
    return [r / b for r, b in zip(rates[variant], rates[NOBODY], strict=True)]


def write_report(result: dict[str, Any]) -> None:
    """bench/results/results_notify.md, which bench/report.py puts into bench/RESULTS.md."""
    sql = sorted(_ratios(result["sql_only_pgbench_jobs_per_second"], EVERY))
    otel = {w: statistics.median(_ratios(r, OTEL)) for w, r in result["jobs_per_second"].items()}
    before, after = result["load_average_before_after"]
    current = ""
    if DRAIN_JSON.exists():  # the figure of the drain benchmark, for scale
        drain_run = json.loads(DRAIN_JSON.read_text())
        figures = ", ".join(
            f"{row['jobs_per_second']['pgq-thin']['median']:,.0f} jobs/s with {row['workers']}"
            for row in drain_run["rows"]
            if str(row["workers"]) in result["jobs_per_second"]
        )
        current = (
            f"\n- Beside the current figure: the drain benchmark (`{drain_run['command']}`,"
            f" {drain_run['started']}) measured pgq-thin at {figures} worker(s)."
        )
    text = f"""# Waiting for results: NOTIFY pgq_done and OpenTelemetry

- Command: `DATABASE_URL=dbname=postgres .venv/bin/{result["command"]}` (started
  {result["started"]}), on the server DATABASE_URL names; 1-minute load average {before:.1f}
  before, {after:.1f} after (other work shares the cores: compare the ratios, taken round by
  round, not the rates).
- "Every job waited for": every job flagged as `pgq.watch_jobs` flags it, so each finishing
  statement sends one `NOTIFY pgq_done`; "nobody waits", the default, sends none. Drains:
  {result["jobs"]:,} no-op jobs per variant, in turn, each round starting from the next
  variant. SQL only: pgbench running `pgq_claim_complete.sql`, both variants at the same time
  in databases of their own, so that other load weighs on both alike.{current}

{table(result)}

- Notifying every finished job cost {1 - statistics.median(sql):.0%} of claim + complete
  throughput in the SQL-only pairs ({1 - sql[-1]:.0%} to {1 - sql[0]:.0%} over the rounds):
  PostgreSQL holds one cluster-wide lock from a notifying transaction's pre-commit until after
  its commit is flushed, so notifying commits cannot share a flush. That is above the 3%
  allowed, so only the jobs someone waits for notify (migration 0011, `pgq.watch_jobs`).
- OpenTelemetry on (SDK, a `BatchSpanProcessor` and an exporter that drops every span, every
  attempt recorded): {", ".join(f"{v:.2f} with {w} worker(s)" for w, v in otel.items())} of
  the no-op drain's throughput, the Python SDK's cost per span; with the API but no tracer
  provider configured, pgq-thin skips its spans (about 2 us a job). Sample on a busy fleet.
"""
    REPORT.write_text(text)
    print(text)


def table(result: dict[str, Any]) -> str:
    """Median jobs/s per variant and its per-round ratio to "nobody waits"."""
    lines = [
        "| workers | variant | jobs/s, median (range) | ÷ nobody waits, per round: median (range)"
        " |",
        "|---|---|---|---|",
    ]
    groups = [
        *result["jobs_per_second"].items(),
        (
            f"SQL only, {max(map(int, result['jobs_per_second']))} pgbench clients",
            result["sql_only_pgbench_jobs_per_second"],
        ),
    ]
    for workers, by_variant in groups:
        base = by_variant[NOBODY]
        for variant, rates in by_variant.items():
            ratios = [r / b for r, b in zip(rates, base, strict=True)]
            lines.append(
                f"| {workers} | {variant} | {statistics.median(rates):,.0f} "
                f"({min(rates):,.0f}-{max(rates):,.0f}) | {statistics.median(ratios):.3f} "
                f"({min(ratios):.3f}-{max(ratios):.3f}) |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
