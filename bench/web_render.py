"""Server time of the web dashboard's pages at scale (a measurement, not a test).

1,000,000 history rows spread over the 7 days of retention (2% failed, 1% cancelled, 20,000
retry-log rows), 100,000 queued jobs, 5,000 scheduled and 50 running in 10 entrypoints; then
`pgq-thin web` is started and each page is fetched `--rounds` times. The server time is the
response's Server-Timing header (the request handled, the page rendered, queries included);
the wall time adds HTTP on loopback. Target: the overview and a jobs page under 100 ms.

    .venv/bin/python bench/web_render.py [--rounds 30] [--keep] [--out bench/results/web_render.md]

It creates (and drops, unless --keep) database pgq_web_bench on the server that DATABASE_URL
or the libpq variables name.
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo

from pgq_thin import monitor, schema
from pgq_thin._connection import resolve_dsn
from pgq_thin.web import queries

REPO = Path(__file__).resolve().parents[1]
DBNAME = "pgq_web_bench"
FILL = [
    "SET synchronous_commit = off",
    "INSERT INTO pgq.entrypoints (name, concurrency_limit)"
    " SELECT 'ep' || i, CASE WHEN i = 1 THEN 8 END FROM generate_series(1, 10) AS i",
    # History in finishing order (ids ascending with finish time, as in production).
    """INSERT INTO pgq.job_history (id, entrypoint, state, priority, attempt, worker_id,
           enqueued_at, started_at, finished_at, error, result, payload, headers)
       SELECT i, 'ep' || (1 + i % 10),
              CASE WHEN i % 50 = 0 THEN 'failed' WHEN i % 100 = 1 THEN 'cancelled'
                   ELSE 'succeeded' END,
              0, 1 + (i % 50 = 0)::int * 4, 'w' || (i % 4), t - interval '2 seconds',
              t - interval '0.5 seconds', t,
              CASE WHEN i % 50 = 0 THEN 'RuntimeError: boom ' || i END,
              CASE WHEN i % 50 <> 0 THEN '{"ok": true}'::jsonb END, '{"n": 1}', '{}'
       FROM generate_series(1, 1000000) AS i,
            LATERAL (SELECT now() - interval '7 days' + i * interval '7 days' / 1000000) AS x(t)""",
    """INSERT INTO pgq.job_retries (job_id, entrypoint, attempt, failed_at, error)
       SELECT i, 'ep' || (1 + i % 10), a, t - interval '1 second' * (5 - a), 'RuntimeError: flaky'
       FROM generate_series(50, 1000000, 250) AS i, generate_series(1, 4) AS a,
            LATERAL (SELECT now() - interval '7 days' + i * interval '7 days' / 1000000) AS x(t)""",
    """INSERT INTO pgq.jobs (id, entrypoint, state, priority, run_at, enqueued_at, payload)
       OVERRIDING SYSTEM VALUE
       SELECT 1000000 + i, 'ep' || (1 + i % 10), 'queued', i % 3,
              now() - interval '1 hour' + i * interval '30 ms', now() - interval '1 hour',
              '{"n": 1}'
       FROM generate_series(1, 100000) AS i""",
    """INSERT INTO pgq.jobs (id, entrypoint, state, priority, run_at, enqueued_at, payload)
       OVERRIDING SYSTEM VALUE
       SELECT 1100000 + i, 'ep' || (1 + i % 10), 'scheduled', 0, now() + i * interval '1 s',
              now(), '{}'
       FROM generate_series(1, 5000) AS i""",
    """INSERT INTO pgq.jobs (id, entrypoint, state, priority, run_at, enqueued_at, payload,
           attempt, lease_token, lease_expires_at, timeout_at, worker_id, started_at)
       OVERRIDING SYSTEM VALUE
       SELECT 1200000 + i, 'ep' || (1 + i % 10), 'running', 0, now(), now(), '{}', 1,
              gen_random_uuid(), now() + interval '30 s', now() + interval '5 min',
              'w' || (i % 4), now()
       FROM generate_series(1, 50) AS i""",
    "SELECT setval('pgq.jobs_id_seq', 1300000)",
    "SELECT pgq.register_worker('w' || i, ARRAY['ep1', 'ep2'], 16, 'host', 100 + i, 'bench')"
    " FROM generate_series(0, 3) AS i",
]
PAGES = [
    ("overview", "/"),
    ("jobs, first page", "/jobs"),
    ("jobs, deep page (before=500000)", "/jobs?before=500000"),
    ("jobs, state=succeeded, deep", "/jobs?state=succeeded&before=300000"),
    ("jobs, state=failed", "/jobs?state=failed"),
    ("jobs, state=queued", "/jobs?state=queued"),
    ("jobs, entrypoint=ep3", "/jobs?entrypoint=ep3"),
    ("jobs, error contains 'boom 99'", "/jobs?error=boom%2099"),
    ("jobs, 500 per page", "/jobs?limit=500"),
    ("job detail (failed, with retries)", "/jobs/500050"),
    ("workers", "/workers"),
]


def fill(dsn: str) -> float:
    started = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True) as conn:
        schema.install(conn)
        for statement in FILL:
            conn.execute(statement)  # type: ignore[arg-type]
        # As autovacuum leaves the tables: analyzed, visibility map set, BRIN summarized.
        conn.execute("VACUUM ANALYZE pgq.jobs, pgq.job_history, pgq.job_retries, pgq.entrypoints")
    return time.perf_counter() - started


def views_alone(dsn: str, rounds: int) -> list[float]:
    """The overview's queries one after another on a direct connection, without the web server
    (the page runs its two costly views at once, on two connections)."""
    took = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        for i in range(rounds + 3):
            started = time.perf_counter()
            monitor.stats(conn)
            queries.minutes(conn)
            queries.allowed(conn)
            if i >= 3:
                took.append((time.perf_counter() - started) * 1000)
    return took


def measure(url: str, rounds: int) -> tuple[list[float], list[float]]:
    server, wall = [], []
    for i in range(rounds + 3):
        started = time.perf_counter()
        with urllib.request.urlopen(url, timeout=30) as answer:
            answer.read()
            timing = answer.headers["Server-Timing"]
        took = (time.perf_counter() - started) * 1000
        if i >= 3:  # the first requests warm the pool and the caches
            server.append(float(timing.split("dur=")[1]))
            wall.append(took)
    return server, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--keep", action="store_true", help="Keep the database afterwards.")
    parser.add_argument("--out", type=Path, help="Also write the report (markdown) here.")
    args = parser.parse_args()

    base = resolve_dsn(None)
    dsn = make_conninfo(base, dbname=DBNAME)
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {DBNAME}")
        admin.execute(f"CREATE DATABASE {DBNAME}")
    web = None
    try:
        print(f"filling {DBNAME} ...", file=sys.stderr)
        filled = fill(dsn)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        web = subprocess.Popen(
            [sys.executable, "-m", "pgq_thin", "web", "--port", str(port), "-d", dsn],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        root = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                urllib.request.urlopen(root + "/healthz", timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        load = os.getloadavg()[0]
        print(f"filled in {filled:.0f} s; measuring", file=sys.stderr)
        lines = [
            "# Web dashboard: server time per page",
            "",
            f"- Command: `.venv/bin/python bench/web_render.py --rounds {args.rounds}`"
            f" ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, fill took {filled:.0f} s).",
            "- Data: 1,000,000 history rows over 7 days (2% failed, 1% cancelled), 20,000"
            " retry-log rows, 100,000 queued, 5,000 scheduled, 50 running; 10 entrypoints;"
            " tables vacuumed and analyzed.",
            f"- Machine: {os.cpu_count()} cores, {platform.python_version()}, PostgreSQL on the"
            f" same machine; 1-minute load average {load:.1f} at the start (other work shares"
            " the cores).",
            "- Server time: the Server-Timing header (handler, queries and template); wall: the"
            " HTTP round trip on loopback. Median and p95 of the rounds after 3 warm-ups.",
            "",
            "| page | server median ms | server p95 ms | wall median ms | < 100 ms |",
            "|---|---:|---:|---:|---|",
        ]
        for name, path in PAGES:
            server, wall = measure(root + path, args.rounds)
            p95 = statistics.quantiles(server, n=20)[-1]
            median = statistics.median(server)
            lines.append(
                f"| {name} (`{path}`) | {median:.1f} | {p95:.1f} |"
                f" {statistics.median(wall):.1f} | {'yes' if median < 100 else '**no**'} |"
            )
            print(lines[-1], file=sys.stderr)
            if path == "/":
                floor = views_alone(dsn, args.rounds)
                lines.append(
                    f"| the overview's queries one after another on one connection, no web server |"
                    f" {statistics.median(floor):.1f} |"
                    f" {statistics.quantiles(floor, n=20)[-1]:.1f} | - | - |"
                )
        lines.append(f"\n1-minute load average at the end: {os.getloadavg()[0]:.1f}.")
        report = "\n".join(lines) + "\n"
        print(report)
        if args.out:
            args.out.write_text(report)
    finally:
        if web is not None:
            web.terminate()
            web.wait(10)
        if not args.keep:
            with psycopg.connect(base, autocommit=True) as admin:
                admin.execute(f"DROP DATABASE IF EXISTS {DBNAME}")


if __name__ == "__main__":
    main()
