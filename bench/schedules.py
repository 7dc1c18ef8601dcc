"""Schedules: pgq.fire_schedules with 10,000 schedules due in one call, and what 10,000
schedules that are not due cost dequeue (claim + complete throughput, dequeue time, and the
time of a dequeue that finds nothing; rounds alternate with and without them in one run).

    .venv/bin/python bench/schedules.py [--rounds 3] [--seconds 5] [--clients 4]

Uses bench/sql_floor.py's database setup (as `pgq_bench_schedules`, created and dropped), its
pgbench claim + complete script and its dequeue timing. Results go to
bench/results/schedules.json and schedules.md (the report bench/report.py includes).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import sql_floor  # bench/ is the script's directory, so on the path

HERE = Path(__file__).resolve().parent
sql_floor.DB = "pgq_bench_schedules"  # its own database: sql_floor.py may run at the same time
N = 10_000
# Schedules created at T0; at T0 + 1 minute every one of them is due.
T0 = "2030-01-01 00:00:00+00"
CREATE = (
    "SELECT count(pgq.schedule('s' || g, %s, 'target' || (g %% 10), jsonb_build_object('n', g)))"
    " FROM generate_series(1, %s) AS g"
)


def set_schedules(conn: psycopg.Connection[tuple[object, ...]], cron: str | None) -> None:
    """N schedules on `cron` created at T0 (none if cron is None); the queue emptied."""
    conn.execute("TRUNCATE pgq.schedules, pgq.jobs, pgq.job_history")
    if cron is not None:
        conn.execute("SELECT set_config('pgq.now', %s, false)", (T0,))
        conn.execute(CREATE, (cron, N))
        conn.execute("RESET pgq.now")
    conn.execute("VACUUM ANALYZE pgq.schedules")


def fire_ms(conn: psycopg.Connection[tuple[object, ...]]) -> float:
    """One pgq.fire_schedules call with N schedules due: milliseconds (and all N fired)."""
    set_schedules(conn, "* * * * *")
    conn.execute("SELECT set_config('pgq.now', '2030-01-01 00:01:00.5+00', false)")
    start = time.perf_counter()
    row = conn.execute("SELECT pgq.fire_schedules(%s)", (N,)).fetchone()
    elapsed = time.perf_counter() - start
    conn.execute("RESET pgq.now")
    assert row == (N,), row
    return elapsed * 1000


def empty_dequeue_us(conn: psycopg.Connection[tuple[object, ...]], calls: int = 2000) -> float:
    """Median time of a dequeue that finds nothing (where the schedule probe weighs most)."""
    conn.execute("TRUNCATE pgq.jobs")
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        conn.execute("SELECT count(*) FROM pgq.dequeue(ARRAY['bench'], 100, 'bench')").fetchone()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()

    load_at_start = os.getloadavg()[0]
    sql_floor.reset_database()
    dsn = sql_floor.bench_dsn()
    with psycopg.connect(dsn, autocommit=True) as conn:
        fire = [fire_ms(conn) for _ in range(args.rounds)]
    print(f"fire_schedules({N} due): {fire} ms", file=sys.stderr)

    rates: dict[str, list[float]] = {"none": [], "10k_not_due": []}
    dequeue: dict[str, list[float]] = {"none": [], "10k_not_due": []}
    empty: dict[str, list[float]] = {"none": [], "10k_not_due": []}
    for rnd in range(args.rounds):
        for case, cron in (("none", None), ("10k_not_due", "0 0 1 1 *")):
            with psycopg.connect(dsn, autocommit=True) as conn:
                set_schedules(conn, cron)
                empty[case].append(empty_dequeue_us(conn))
            sql_floor.fill("pgq", args.seconds * 120)
            rates[case].append(sql_floor.pgbench("pgq", args.clients, args.seconds))
            dequeue[case].append(sql_floor.dequeue_ms(1_000))
            print(
                f"round {rnd + 1} {case}: {rates[case][-1]:,.0f} jobs/s,"
                f" dequeue(100) {dequeue[case][-1]:.3f} ms, empty dequeue {empty[case][-1]:.0f} us",
                file=sys.stderr,
            )
    ratios = [s / n for s, n in zip(rates["10k_not_due"], rates["none"], strict=True)]
    result = {
        "command": " ".join(["python", "bench/schedules.py", *sys.argv[1:]]),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "fire_schedules_10k_due_ms": fire,
        "claim_complete_jobs_per_second": rates,
        "throughput_ratio_10k_not_due_vs_none": ratios,
        "dequeue_100_ms_median_at_1k_depth": dequeue,
        "empty_dequeue_us_median": empty,
        "note": "2-core machine shared with other agents' work: compare rounds side by side",
    }
    with psycopg.connect(sql_floor.admin_dsn(), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {sql_floor.DB}")
    (HERE / "results" / "schedules.json").write_text(json.dumps(result, indent=2) + "\n")
    (HERE / "results" / "schedules.md").write_text(report(result, load_at_start))
    print(json.dumps(result, indent=2))


def report(result: dict[str, Any], load_at_start: float) -> str:
    """bench/results/schedules.md: what bench/report.py puts into bench/RESULTS.md."""
    fire = result["fire_schedules_10k_due_ms"]
    rates = result["claim_complete_jobs_per_second"]
    dequeue = result["dequeue_100_ms_median_at_1k_depth"]
    empty = result["empty_dequeue_us_median"]
    lines = [
        "# Schedules: firing 10,000 at once, and what idle ones cost a claim",
        "",
        f"- Command: `.venv/bin/{result['command']}`"
        f" ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}).",
        f"- Machine: {result['machine']['cpus']} cores, PostgreSQL on the same machine; 1-minute"
        f" load average {load_at_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"
        " (other work shares the cores: compare within a round).",
        f"- `pgq.fire_schedules(10000)` with 10,000 schedules due (`* * * * *`, payloads,"
        f" 10 entrypoints), one call: {', '.join(f'{ms:.0f}' for ms in fire)} ms"
        f" (median {statistics.median(fire):.0f} ms; target: under 1 s).",
        "- Rounds alternate: no schedules, then 10,000 schedules none due (`0 0 1 1 *`).",
        "  Claim + complete: pgbench, 100 jobs per transaction; dequeue(100) at 1,000 queued:"
        " median of 200 calls; an empty dequeue (finds nothing, where the schedule probe"
        " weighs most): median of 2,000 calls.",
        "",
        "| round | schedules | claim + complete jobs/s | dequeue(100) ms | empty dequeue µs |",
        "|---:|---|---:|---:|---:|",
    ]
    for i in range(len(rates["none"])):
        for case, label in (("none", "none"), ("10k_not_due", "10,000 not due")):
            lines.append(
                f"| {i + 1} | {label} | {rates[case][i]:,.0f} | {dequeue[case][i]:.2f}"
                f" | {empty[case][i]:.0f} |"
            )
    ratio = statistics.median(result["throughput_ratio_10k_not_due_vs_none"])
    lines += [
        "",
        f"Median throughput ratio (10,000 not due / none, per round): {ratio:.2f}.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
