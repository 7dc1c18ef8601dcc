"""Claim + complete from SQL alone against the pure-SQL floor, and dequeue time by queue depth.

    .venv/bin/python bench/sql_floor.py [--rounds 3] [--seconds 10] [--clients 4]

Needs a PostgreSQL reachable through DATABASE_URL / PG* variables (it creates and drops the
database `pgq_bench`) and the `pgbench` binary. Results go to bench/results/sql_floor.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psycopg

from pgq_thin import schema
from pgq_thin._localdb import find_bindir

HERE = Path(__file__).resolve().parent
DB = "pgq_bench"
FILL_SQL = {
    "pgq": "SELECT count(*) FROM (SELECT pgq.enqueue_many(array_fill('bench'::text, ARRAY[1000]), "
    "array_fill('{}'::jsonb, ARRAY[1000])) FROM generate_series(1, %s)) AS x",
    "floor": "INSERT INTO floor.jobs (payload) SELECT '{}' FROM generate_series(1, %s * 1000)",
}
REFILL_SQL = (
    "SELECT pgq.enqueue_many(array_fill('bench'::text, ARRAY[100]), "
    "array_fill('{}'::jsonb, ARRAY[100]))"
)
SCRIPTS = {"pgq": "pgq_claim_complete.sql", "floor": "floor_claim_delete.sql"}


def admin_dsn() -> str:
    return os.environ.get("DATABASE_URL", "")


def bench_dsn() -> str:
    info = psycopg.conninfo.conninfo_to_dict(admin_dsn())
    info["dbname"] = DB
    return psycopg.conninfo.make_conninfo(**info)  # type: ignore[arg-type]


def reset_database() -> None:
    with psycopg.connect(admin_dsn(), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB}")
        conn.execute(f"CREATE DATABASE {DB}")
    with psycopg.connect(bench_dsn()) as conn:
        schema.install(conn)
        conn.execute((HERE / "pgbench" / "floor_schema.sql").read_text())
        conn.commit()


def fill(system: str, thousands: int) -> None:
    with psycopg.connect(bench_dsn(), autocommit=True) as conn:
        conn.execute("TRUNCATE pgq.jobs, pgq.job_history, floor.jobs")
        conn.execute(FILL_SQL[system] % thousands)
        conn.execute("VACUUM ANALYZE")


def pgbench(system: str, clients: int, seconds: int = 0, transactions: int = 0) -> float:
    """Jobs per second (100 per pgbench transaction), for `seconds` or `transactions` a client."""
    out = subprocess.run(
        [
            str(find_bindir() / "pgbench"),
            "-n",
            "-c",
            str(clients),
            "-j",
            str(min(clients, os.cpu_count() or 1)),
            *(["-t", str(transactions)] if transactions else ["-T", str(seconds)]),
            "-f",
            str(HERE / "pgbench" / SCRIPTS[system]),
            bench_dsn(),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    tps = re.search(r"tps = ([\d.]+)", out)
    if not tps or "aborted" in out:
        raise SystemExit(f"pgbench failed for {system}:\n{out}")
    return float(tps.group(1)) * 100


def dequeue_ms(depth: int, calls: int = 200) -> float:
    """Median time of dequeue(100) with `depth` jobs queued (completions are not timed)."""
    fill("pgq", max(depth // 1000, 1))
    times = []
    with psycopg.connect(bench_dsn(), autocommit=True) as conn:
        for _ in range(calls):
            start = time.perf_counter()
            rows = conn.execute(
                "SELECT id, lease_token FROM pgq.dequeue(ARRAY['bench'], 100, 'bench')"
            ).fetchall()
            times.append(time.perf_counter() - start)
            conn.execute(
                "SELECT pgq.complete_many(%s, %s)", ([r[0] for r in rows], [r[1] for r in rows])
            )
            # Keep the depth constant.
            conn.execute(REFILL_SQL)
    return statistics.median(times) * 1000


def explain(depth: int) -> str:
    fill("pgq", max(depth // 1000, 1))
    with psycopg.connect(bench_dsn(), autocommit=True) as conn:
        conn.execute("LOAD 'auto_explain'")
        for name, value in [
            ("log_min_duration", "0"),
            ("log_nested_statements", "on"),
            ("log_analyze", "on"),
            ("log_buffers", "on"),
            ("log_level", "notice"),
        ]:
            conn.execute(f"SET auto_explain.{name} = {value}")
        notices: list[str] = []
        conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        conn.execute("SELECT count(*) FROM pgq.dequeue(ARRAY['bench'], 100, 'bench')")
    return "\n\n".join(n for n in notices if "jobs_claim_idx" in n or "Update on jobs" in n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()

    reset_database()
    # Enough jobs for the whole run at ~100k jobs/s.
    thousands = args.seconds * 120
    rates: dict[str, list[float]] = {"pgq": [], "floor": []}
    for rnd in range(args.rounds):
        for system in ("pgq", "floor"):
            fill(system, thousands)
            rates[system].append(pgbench(system, args.clients, args.seconds))
            print(f"round {rnd + 1} {system}: {rates[system][-1]:,.0f} jobs/s", file=sys.stderr)
    ratios = [p / f for p, f in zip(rates["pgq"], rates["floor"], strict=True)]
    depth = {str(d): dequeue_ms(d) for d in (1_000, 1_000_000)}
    result = {
        "command": " ".join(["python", "bench/sql_floor.py", *sys.argv[1:]]),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "clients": args.clients,
        "seconds": args.seconds,
        "jobs_per_second": rates,
        "ratio_per_round": ratios,
        "ratio_median": statistics.median(ratios),
        "dequeue_ms_median_by_depth": depth,
        "depth_slowdown": depth["1000000"] / depth["1000"] - 1,
        "explain_1k": explain(1_000),
        "explain_1m": explain(1_000_000),
    }
    with psycopg.connect(bench_dsn()) as conn:
        row = conn.execute("SELECT version()").fetchone()
        result["postgres"] = row[0] if row else "?"
    with psycopg.connect(admin_dsn(), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB}")
    out = HERE / "results" / "sql_floor.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if not k.startswith("explain")}, indent=2))


if __name__ == "__main__":
    main()
