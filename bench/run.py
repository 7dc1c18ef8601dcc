"""Benchmarks: pgq-thin side by side with PgQueuer, procrastinate and the pure-SQL floor.

    .venv/bin/python bench/run.py [--full] [--rounds N] [--server throwaway|env]
        [--only drain,enqueue,single,latency,lateness,depth,churn,horizon]

`make bench` runs the short version (a few minutes), `make bench BENCH=full` the full one.
By default the run starts a PostgreSQL of its own from the installed binaries, with initdb's
default settings (autovacuum on), and discards it at the end; `--server env` uses the one
DATABASE_URL / PG* name instead (a role that may create databases). Either way pgq-thin and
the SQL floor share the database pgq_bench (as in sql_floor.py), each peer has its own
(pgq_bench_pgqueuer, pgq_bench_procrastinate), and the peers are installed into bench/.peers/,
never into the project's environment. Each workload runs its systems in turn, round after
round, and writes bench/results/<workload>.json; bench/RESULTS.md is then generated from every
results file present. Needs `pgbench`."""

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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from functools import cache, partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

import common
import psycopg
import report
import sql_floor
from psycopg.types.json import Jsonb

from pgq_thin import NewJob, Queue
from pgq_thin._localdb import LocalServer

HERE = Path(__file__).resolve().parent
PEERS = HERE / ".peers"
PEER_REQUIREMENTS = HERE / "peers-requirements.txt"
RESULTS = HERE / "results"


@dataclass(frozen=True)
class System:
    """A queue under test: where its driver runs and how its tables are emptied."""

    name: str
    python: Path
    script: str
    db: str
    truncate: str
    worker_args: tuple[str, ...]

    def dsn(self) -> str:
        return database_url(self.db)


PEER_PYTHON = PEERS / "bin" / "python"
SYSTEMS = {
    "pgq-thin": System(
        "pgq-thin",
        Path(sys.executable),
        "sys_pgq.py",
        sql_floor.DB,
        "TRUNCATE pgq.jobs, pgq.job_history, floor.jobs",
        ("--batch", "100", "--concurrency", "200"),
    ),
    "pgqueuer": System(
        "pgqueuer",
        PEER_PYTHON,
        "sys_pgqueuer.py",
        "pgq_bench_pgqueuer",
        "TRUNCATE pgqueuer, pgqueuer_log, pgqueuer_statistics, floor.jobs",
        ("--batch", "100", "--concurrency", "200"),
    ),
    "procrastinate": System(
        "procrastinate",
        PEER_PYTHON,
        "sys_procrastinate.py",
        "pgq_bench_procrastinate",
        "TRUNCATE procrastinate_jobs, procrastinate_workers CASCADE",
        ("--concurrency", "50"),
    ),
}
PGQ, PGQUEUER, PROCRASTINATE = (SYSTEMS[n] for n in SYSTEMS)


@dataclass(frozen=True)
class Config:
    """Sizes of one run; `short` keeps `make bench` to a few minutes."""

    name: str
    rounds: int
    drain_jobs: int
    drain_jobs_procrastinate: int  # it drains ~0.5k jobs/s here: fewer jobs, same rate
    workers: tuple[int, ...]
    enqueue_jobs: int
    enqueue_batches: tuple[int, ...]
    single_jobs: int
    idle_calls: int
    latency_jobs: int
    latency_interval: float
    lateness_jobs: int
    lateness_interval: float
    lateness_ahead: float
    depths: tuple[int, int]
    depth_calls: int
    churn_jobs: int
    churn_baseline: int
    churn_workers: int
    horizon_rate: int  # jobs/s offered
    horizon_before: float  # seconds of load before the transaction opens,
    horizon_hold: float  # while it is held,
    horizon_after: float  # and after it ends
    horizon_window: float


SHORT = Config(
    name="short",
    rounds=3,
    drain_jobs=10_000,
    drain_jobs_procrastinate=2_000,
    workers=(1, 4),
    enqueue_jobs=50_000,
    enqueue_batches=(100, 1000),
    single_jobs=2_000,
    idle_calls=300,
    latency_jobs=500,
    latency_interval=0.01,
    lateness_jobs=50,
    lateness_interval=0.1,
    lateness_ahead=1.0,
    depths=(1_000, 100_000),
    depth_calls=200,
    churn_jobs=100_000,
    churn_baseline=10_000,
    churn_workers=2,
    horizon_rate=1_000,
    horizon_before=10,
    horizon_hold=60,
    horizon_after=60,
    horizon_window=5,
)
FULL = replace(
    SHORT,
    name="full",
    drain_jobs=50_000,
    drain_jobs_procrastinate=10_000,
    workers=(1, 2, 4),
    single_jobs=5_000,
    idle_calls=1_000,
    latency_jobs=1000,
    lateness_jobs=200,
    depths=(1_000, 1_000_000),
    depth_calls=300,
    churn_jobs=1_000_000,
)


# --- databases -----------------------------------------------------------------------------


@cache
def server_address() -> tuple[str, int, str, str | None]:
    """Host, port, user and password of the server DATABASE_URL / PG* point at."""
    with psycopg.connect(sql_floor.admin_dsn()) as conn:
        info = conn.info
        return info.host, info.port, info.user, info.password


def database_url(db: str) -> str:
    """A URL for `db` on that server (asyncpg reads URLs, not libpq keyword strings)."""
    host, port, user, password = server_address()
    auth = quote(user) + (":" + quote(password) if password else "")
    return f"postgresql://{auth}@/{db}?host={quote(host)}&port={port}"


def sql(system: System, statement: str) -> None:
    with psycopg.connect(system.dsn(), autocommit=True) as conn:
        conn.execute(statement)


def reset(system: System) -> None:
    """Empty the system's tables and checkpoint, so no round inherits another's work.

    No ANALYZE: statistics of an empty table would mislead plans cached as the table fills.
    """
    with psycopg.connect(system.dsn(), autocommit=True) as conn:
        conn.execute(system.truncate)
        conn.execute("CHECKPOINT")


def prepare_databases() -> None:
    common.log("creating the databases and installing each system's schema with its own tooling")
    sql_floor.reset_database()
    with psycopg.connect(sql_floor.admin_dsn(), autocommit=True) as conn:
        for system in (PGQUEUER, PROCRASTINATE):
            conn.execute(f"DROP DATABASE IF EXISTS {system.db}")
            conn.execute(f"CREATE DATABASE {system.db}")
    for system in (PGQUEUER, PROCRASTINATE):
        driver(system, "install")


@contextmanager
def server(kind: str) -> Iterator[str]:
    """Point DATABASE_URL at the server to use; yields how RESULTS.md should name it."""
    if kind == "env":
        try:
            yield "the server DATABASE_URL / PG* name, as configured"
        finally:
            with psycopg.connect(sql_floor.admin_dsn(), autocommit=True) as conn:
                for system in SYSTEMS.values():
                    conn.execute(f"DROP DATABASE IF EXISTS {system.db}")
        return
    common.log("starting a throwaway PostgreSQL with initdb's default settings")
    local = LocalServer.throwaway()
    os.environ["DATABASE_URL"] = (
        f"postgresql://postgres@/postgres?host={quote(str(local.socket_dir))}&port={local.port}"
    )
    try:
        yield "a throwaway server started by the run, initdb's default settings"
    finally:
        local.discard()


def ensure_peers() -> None:
    """Create bench/.peers/ with the pinned peers, unless it already has them."""
    stamp = PEERS / "installed.txt"
    wanted = PEER_REQUIREMENTS.read_text()
    if stamp.exists() and stamp.read_text() == wanted:
        return
    common.log(f"installing the peers into {PEERS}")
    if not PEER_PYTHON.exists():
        subprocess.run([sys.executable, "-m", "venv", str(PEERS)], check=True)
    subprocess.run(
        [str(PEER_PYTHON), "-m", "pip", "install", "-q", "-r", str(PEER_REQUIREMENTS)], check=True
    )
    stamp.write_text(wanted)


# --- drivers -------------------------------------------------------------------------------


def command(system: System, name: str, *args: str) -> list[str]:
    return [str(system.python), str(HERE / system.script), name, "--dsn", system.dsn(), *args]


def driver(system: System, name: str, *args: str) -> dict[str, Any]:
    """Run one driver command to completion and return its JSON result."""
    out = subprocess.run(command(system, name, *args), capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{system.name} {name} failed:\n{out.stderr}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


class Workers:
    """Worker processes of one system, started together behind a barrier, then released."""

    def __init__(self, system: System, count: int, *args: str) -> None:
        self.system = system
        self.barrier = Path(tempfile.mkdtemp(prefix="pgq-bench-"))
        self.procs = [
            subprocess.Popen(
                command(
                    system, "worker", *system.worker_args, "--barrier", str(self.barrier), *args
                ),
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(count)
        ]

    def __enter__(self) -> Workers:
        deadline = time.monotonic() + 60
        while len(list(self.barrier.glob("ready-*"))) < len(self.procs):
            if any(p.poll() is not None for p in self.procs) or time.monotonic() > deadline:
                self.__exit__()
                raise SystemExit(f"{self.system.name}: a worker did not start")
            time.sleep(0.002)
        return self

    def go(self) -> float:
        """Release the workers; returns the moment (time.monotonic())."""
        moment = time.monotonic()
        (self.barrier / "go").touch()
        return moment

    def stop(self) -> None:
        """Ask the workers to shut down gracefully (SIGTERM)."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

    def results(self) -> list[dict[str, Any]]:
        """Wait for every worker to exit; their JSON results."""
        out = []
        for proc in self.procs:
            stdout, _ = proc.communicate(timeout=900)
            if proc.returncode != 0:
                raise SystemExit(f"{self.system.name} worker exited with {proc.returncode}")
            out.append(json.loads(stdout.strip().splitlines()[-1]))
        return out

    def __exit__(self, *_: object) -> None:
        self.stop()
        for proc in self.procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.barrier, ignore_errors=True)


# --- statistics ----------------------------------------------------------------------------


def summary(values: list[float]) -> dict[str, Any]:
    """Median and spread of per-round values."""
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "values": values,
    }


def ratios(mine: list[float], theirs: list[float]) -> dict[str, Any]:
    """Per-round ratios (round i of one system against round i of the other)."""
    return summary([a / b for a, b in zip(mine, theirs, strict=True)])


def percentile(sorted_values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation."""
    k = (len(sorted_values) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def in_turn(rnd: int, items: list[Any]) -> list[Any]:
    """The systems of round `rnd`: A B C, then C B A, so drift favours no one."""
    return items if rnd % 2 == 0 else items[::-1]


# --- workloads -----------------------------------------------------------------------------


def floor_drain(kind: str, clients: int, jobs: int) -> float:
    """Jobs/s of pgbench draining `jobs` pre-enqueued jobs: the floor, or pgq-thin from SQL."""
    sql_floor.fill(kind, jobs // 1000)
    sql(PGQ, "CHECKPOINT")
    per_client = -(-jobs // (100 * clients))
    rate = sql_floor.pgbench(kind, clients, transactions=per_client)
    table = "floor.jobs" if kind == "floor" else "pgq.jobs"
    with psycopg.connect(PGQ.dsn()) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    left = row[0] if row else 0
    # pgbench counts 100 jobs a transaction; scale by the jobs actually claimed.
    return rate * (jobs - left) / (per_client * clients * 100)


def system_drain(system: System, count: int, jobs: int) -> float:
    """Jobs/s of `count` worker processes draining `jobs` pre-enqueued no-op jobs."""
    reset(system)
    driver(system, "fill", "--count", str(jobs))
    sql(system, "VACUUM ANALYZE")
    sql(system, "CHECKPOINT")
    with Workers(system, count, "--mode", "drain") as ws:
        start = ws.go()
        done = ws.results()
    handled = sum(r["jobs"] for r in done)
    if handled < jobs:
        raise SystemExit(f"{system.name} drained {handled} of {jobs} jobs")
    return jobs / (max(r["end"] for r in done) - start)


def drain_jobs(cfg: Config, system: System) -> int:
    return cfg.drain_jobs_procrastinate if system is PROCRASTINATE else cfg.drain_jobs


DRAIN_FLOOR, DRAIN_PGQ_SQL = "SQL floor (pgbench)", "pgq-thin SQL only (pgbench)"


def drain(cfg: Config) -> dict[str, Any]:
    rows = []
    for count in cfg.workers:
        rates: dict[str, list[float]] = {}
        for rnd in range(cfg.rounds):
            runs: list[tuple[str, Callable[[], float]]] = [
                (DRAIN_FLOOR, partial(floor_drain, "floor", count, cfg.drain_jobs)),
                (DRAIN_PGQ_SQL, partial(floor_drain, "pgq", count, cfg.drain_jobs)),
                *(
                    (s.name, partial(system_drain, s, count, drain_jobs(cfg, s)))
                    for s in SYSTEMS.values()
                ),
            ]
            for name, run in in_turn(rnd, runs):
                rates.setdefault(name, []).append(run())
                common.log(
                    f"drain workers={count} round {rnd + 1}: {name} {rates[name][-1]:,.0f} jobs/s"
                )
        rows.append(
            {
                "workers": count,
                "jobs_per_second": {k: summary(v) for k, v in rates.items()},
                "pgq_thin_over": {
                    k: ratios(rates[PGQ.name], v) for k, v in rates.items() if k != PGQ.name
                },
            }
        )
    return {"rows": rows}


RAW = "raw multi-row INSERT"


def enqueue(cfg: Config) -> dict[str, Any]:
    rows = []
    for batch in cfg.enqueue_batches:
        rates: dict[str, list[float]] = {}
        for rnd in range(cfg.rounds):
            runs = [(RAW, PGQ, ("--raw",)), *((s.name, s, ()) for s in SYSTEMS.values())]
            for name, system, extra in in_turn(rnd, runs):
                reset(system)
                args = ("--count", str(cfg.enqueue_jobs), "--batch", str(batch), *extra)
                seconds = driver(system, "enqueue", *args)["seconds"]
                rates.setdefault(name, []).append(cfg.enqueue_jobs / seconds)
                common.log(
                    f"enqueue batch={batch} round {rnd + 1}: {name} {rates[name][-1]:,.0f} jobs/s"
                )
        rows.append(
            {
                "batch": batch,
                "jobs_per_second": {k: summary(v) for k, v in rates.items()},
                "pgq_thin_over": {
                    k: ratios(rates[PGQ.name], v) for k, v in rates.items() if k != PGQ.name
                },
            }
        )
    return {"rows": rows}


SINGLE_SYSTEMS = [  # (name, system, driver flags); ratios are taken against the first
    ("pgq-thin AsyncQueue.enqueue", PGQ, ()),
    ("pgq-thin Queue.enqueue", PGQ, ("--sync",)),
    ("raw INSERT + NOTIFY (psycopg)", PGQ, ("--raw",)),
    ("pgqueuer", PGQUEUER, ()),
    ("raw INSERT + NOTIFY (asyncpg)", PGQUEUER, ("--raw",)),
    # What limits the first two: the same call on an autocommit connection (one round trip),
    # and psycopg's transaction with no job in it (BEGIN, SELECT 1, COMMIT).
    ("pgq-thin AsyncQueue.enqueue, autocommit", PGQ, ("--autocommit",)),
    ("psycopg transaction alone (SELECT 1)", PGQ, ("--floor",)),
]
RAW_NOTIFY = """
WITH job AS (INSERT INTO floor.jobs (payload) VALUES (%s) RETURNING id)
SELECT job.id, pg_notify('floor', 'bench') FROM job
"""
IDLE_CALLS = {
    "SELECT pgq.enqueue(...)": "SELECT pgq.enqueue('bench', %s)",
    "raw INSERT + NOTIFY": RAW_NOTIFY,
}


def idle_calls(count: int) -> dict[str, float]:
    """Median ms of each statement of IDLE_CALLS at idle: autocommit, 10 ms apart, in turn."""
    reset(PGQ)
    times: dict[str, list[float]] = {name: [] for name in IDLE_CALLS}
    with psycopg.connect(PGQ.dsn(), autocommit=True) as conn:
        for i in range(count):
            for name, statement in in_turn(i, list(IDLE_CALLS.items())):
                time.sleep(0.01)
                start = time.perf_counter()
                conn.execute(statement, (Jsonb(common.payload(i)),)).fetchall()
                times[name].append((time.perf_counter() - start) * 1000)
    return {name: statistics.median(values) for name, values in times.items()}


def single(cfg: Config) -> dict[str, Any]:
    """Single enqueues, one job per commit on the caller's connection, back to back; and the
    SQL call alone at idle."""
    rates: dict[str, list[float]] = {}
    calls: dict[str, list[float]] = {}
    for rnd in range(cfg.rounds):
        for name, system, extra in in_turn(rnd, SINGLE_SYSTEMS):
            reset(system)
            seconds = driver(system, "single", "--count", str(cfg.single_jobs), *extra)["seconds"]
            rates.setdefault(name, []).append(cfg.single_jobs / seconds)
            common.log(f"single round {rnd + 1}: {name} {rates[name][-1]:,.0f} jobs/s")
        for name, ms in idle_calls(cfg.idle_calls).items():
            calls.setdefault(name, []).append(ms)
            common.log(f"idle call round {rnd + 1}: {name} {ms:.3f} ms")
    mine = [name for name, _, _ in SINGLE_SYSTEMS if name.startswith("pgq-thin")]
    (sql, raw) = IDLE_CALLS
    return {
        "jobs_per_second": {k: summary(v) for k, v in rates.items()},
        "over": {m: {k: ratios(rates[m], v) for k, v in rates.items() if k != m} for m in mine},
        "idle_call_ms": {k: summary(v) for k, v in calls.items()},
        "idle_call_gap_ms": summary([a - b for a, b in zip(calls[sql], calls[raw], strict=True)]),
    }


def latency_once(system: System, count: int, interval: float, ahead: float = 0.0) -> list[float]:
    """Latencies (ms) of single jobs sent to one idle worker: enqueue call to handler start,
    or, for jobs due `ahead` seconds later, due time to handler start."""
    reset(system)
    with tempfile.NamedTemporaryFile(suffix=".lat") as file:
        latency = ("--mode", "forever", "--latency-file", file.name, "--one-connection")
        with Workers(system, 1, *latency) as ws:
            ws.go()
            time.sleep(0.5)  # let the worker settle into waiting
            args = ("--count", str(count), "--interval", str(interval), "--ahead", str(ahead))
            driver(system, "produce", *args)
            deadline = time.monotonic() + ahead + 30
            while len(Path(file.name).read_text().splitlines()) < count:
                if time.monotonic() > deadline:
                    raise SystemExit(f"{system.name}: not every latency job ran")
                time.sleep(0.05)
            ws.stop()
            ws.results()
        return [float(x) * 1000 for x in Path(file.name).read_text().split()]


def percentiles(
    cfg: Config, label: str, systems: list[System], once: Callable[[System], list[float]]
) -> dict[str, Any]:
    """Per-system percentiles of `once` over the rounds (pooled, and per round)."""
    samples: dict[str, list[list[float]]] = {}
    for rnd in range(cfg.rounds):
        for system in in_turn(rnd, systems):
            values = sorted(once(system))
            samples.setdefault(system.name, []).append(values)
            common.log(
                f"{label} round {rnd + 1}: {system.name} p50 {percentile(values, 50):.2f} ms "
                f"p99 {percentile(values, 99):.2f} ms"
            )
    out: dict[str, Any] = {}
    for name, rounds in samples.items():
        pooled = sorted(v for r in rounds for v in r)
        out[name] = {
            "jobs": len(pooled),
            **{f"p{q}_ms": percentile(pooled, q) for q in (50, 95, 99)},
            "max_ms": pooled[-1],
            "per_round": {
                f"p{q}_ms": summary([percentile(r, q) for r in rounds]) for q in (50, 95, 99)
            },
        }
    for q in (50, 99):
        out[f"pgq_thin_over_p{q}"] = {
            name: ratios(
                [percentile(r, q) for r in samples[PGQ.name]],
                [percentile(r, q) for r in rounds],
            )
            for name, rounds in samples.items()
            if name != PGQ.name
        }
    return {"systems": out}


def latency(cfg: Config) -> dict[str, Any]:
    once = partial(latency_once, count=cfg.latency_jobs, interval=cfg.latency_interval)
    return percentiles(cfg, "latency", list(SYSTEMS.values()), once)


def lateness(cfg: Config) -> dict[str, Any]:
    """How late a job due `lateness_ahead` seconds after its enqueue starts (procrastinate's
    driver enqueues through its own connector and is left out)."""
    once = partial(
        latency_once,
        count=cfg.lateness_jobs,
        interval=cfg.lateness_interval,
        ahead=cfg.lateness_ahead,
    )
    return percentiles(cfg, "lateness", [PGQ, PGQUEUER], once)


def depth(cfg: Config) -> dict[str, Any]:
    rates: dict[str, dict[int, list[float]]] = {}
    for rnd in range(cfg.rounds):
        for queued in cfg.depths:
            for system in in_turn(rnd, list(SYSTEMS.values())):
                reset(system)
                driver(system, "fill", "--count", str(queued))
                sql(system, "VACUUM ANALYZE")
                args = ("--calls", str(cfg.depth_calls), "--batch", "100")
                result = driver(system, "depth", *args)
                rate = result["jobs"] / result["seconds"]
                rates.setdefault(system.name, {}).setdefault(queued, []).append(rate)
                common.log(f"depth {queued:,} round {rnd + 1}: {system.name} {rate:,.0f} jobs/s")
    small, large = cfg.depths
    return {
        "systems": {
            name: {
                "jobs_per_second": {str(d): summary(v) for d, v in by_depth.items()},
                "large_over_small": ratios(by_depth[large], by_depth[small]),
            }
            for name, by_depth in rates.items()
        }
    }


SIZES = """
SELECT pg_relation_size('pgq.jobs') AS heap_bytes,
       pg_indexes_size('pgq.jobs') AS index_bytes,
       pg_total_relation_size('pgq.jobs') AS total_bytes,
       pg_total_relation_size('pgq.job_history') AS history_bytes,
       s.n_live_tup, s.n_dead_tup, s.autovacuum_count, s.autoanalyze_count
FROM pg_stat_user_tables AS s WHERE s.relid = 'pgq.jobs'::regclass
"""
INDEX_SIZES = """
SELECT i.indexrelid::regclass::text, pg_relation_size(i.indexrelid)
FROM pg_index AS i WHERE i.indrelid = 'pgq.jobs'::regclass ORDER BY 1
"""
QUEUED = "SELECT count(*) FROM pgq.jobs WHERE state = 'queued'"
BACKLOG = 2000  # the producer keeps at most about this many jobs waiting


def sizes(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    cur = conn.execute(SIZES)
    row = cur.fetchone()
    assert row is not None and cur.description is not None
    out = dict(zip([c.name for c in cur.description], row, strict=True))
    out["indexes"] = dict(conn.execute(INDEX_SIZES).fetchall())
    return out


def churn(cfg: Config) -> dict[str, Any]:
    """Hot-table sizes as jobs flow through (producer + pgq-thin workers, autovacuum as is)."""
    reset(PGQ)
    snapshots: dict[str, Any] = {}
    produced = 0
    started = time.monotonic()
    with (
        Workers(PGQ, cfg.churn_workers, "--mode", "forever") as ws,
        psycopg.connect(PGQ.dsn(), autocommit=True) as conn,
    ):
        ws.go()
        queue = Queue(conn)
        snapshots["0"] = sizes(conn)
        shown = time.monotonic()
        # Sizes at the baseline, along the way (does it level off?) and at the end.
        total = cfg.churn_jobs
        milestones = sorted({cfg.churn_baseline, total // 10, total // 4, total // 2, total})
        for milestone in milestones:
            while produced < milestone:
                row = conn.execute(QUEUED).fetchone()
                if row and row[0] > BACKLOG:
                    time.sleep(0.002)
                    continue
                queue.enqueue_many(
                    NewJob(common.ENTRYPOINT, common.payload(i))
                    for i in range(produced, produced + 100)
                )
                produced += 100
                if time.monotonic() - shown > 5:
                    shown = time.monotonic()
                    rate = produced / (shown - started)
                    common.log(f"churn: {produced:,} jobs enqueued ({rate:,.0f} jobs/s)")
            while conn.execute("SELECT EXISTS (SELECT 1 FROM pgq.jobs)").fetchone() != (False,):
                time.sleep(0.05)
            snapshots[str(milestone)] = sizes(conn)
            now = snapshots[str(milestone)]
            common.log(
                f"churn: {milestone:,} jobs through; hot table heap {now['heap_bytes']:,} B, "
                f"indexes {now['index_bytes']:,} B, autovacuums {now['autovacuum_count']}"
            )
        ws.stop()
        ws.results()
    base, end = snapshots[str(cfg.churn_baseline)], snapshots[str(cfg.churn_jobs)]
    return {
        "seconds": time.monotonic() - started,
        "snapshots": snapshots,
        "total_growth": end["total_bytes"] / base["total_bytes"],
        "heap_growth": end["heap_bytes"] / base["heap_bytes"],
        "index_growth": end["index_bytes"] / base["index_bytes"],
    }


HORIZON_SAMPLE = """
SELECT pgq.now(), pg_stat_get_dead_tuples('pgq.jobs'::regclass),
       pg_total_relation_size('pgq.jobs'),
       (SELECT count(*) FROM pgq.jobs WHERE state = 'queued')
"""
# Per window of the run (from its start): jobs offered, jobs finished, pickup p99 (claim time
# minus due time) of the jobs finished in it.
HORIZON_WINDOWS = """
WITH done AS (
    SELECT floor(extract(epoch FROM h.finished_at - %(t0)s) / %(w)s)::int AS n,
           h.started_at - h.enqueued_at AS pickup
    FROM pgq.job_history AS h
), offered AS (
    SELECT floor(extract(epoch FROM e.enqueued_at - %(t0)s) / %(w)s)::int AS n
    FROM (SELECT enqueued_at FROM pgq.job_history UNION ALL SELECT enqueued_at FROM pgq.jobs) AS e
)
SELECT n, (SELECT count(*) FROM offered AS o WHERE o.n = d.n), count(*),
       extract(epoch FROM percentile_cont(0.99) WITHIN GROUP (ORDER BY d.pickup))::float8
FROM done AS d GROUP BY n ORDER BY n
"""


def horizon(cfg: Config) -> dict[str, Any]:
    """A transaction held open on another connection while `horizon_rate` jobs/s (batches of
    10 every 10 ms) go to one pgq-thin worker running 16 jobs of 1 ms at once: per window,
    jobs offered and finished, pickup p99, dead rows, table size and backlog."""
    reset(PGQ)
    sql(PGQ, "VACUUM pgq.jobs")
    hold_at = cfg.horizon_before
    release_at = hold_at + cfg.horizon_hold
    end_at = release_at + cfg.horizon_after
    samples: list[dict[str, Any]] = []
    batch = 10
    period = batch / cfg.horizon_rate
    worker = ("--mode", "forever", "--concurrency", "16", "--batch", "16", "--work-ms", "1")
    with (
        Workers(PGQ, 1, *worker) as ws,
        psycopg.connect(PGQ.dsn(), autocommit=True) as conn,
        psycopg.connect(PGQ.dsn()) as holder,
    ):
        ws.go()
        queue = Queue(conn)
        t0 = conn.execute("SELECT pgq.now()").fetchone()
        started = time.monotonic()
        next_send = next_sample = started
        held = False
        produced = 0
        while (now := time.monotonic() - started) < end_at:
            if not held and hold_at <= now < release_at:
                holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
                holder.execute("SELECT count(*) FROM pgq.entrypoints")  # takes the snapshot
                held = True
                common.log(f"horizon: transaction opened at {now:.1f} s")
            elif held and now >= release_at:
                holder.rollback()
                held = False
                common.log(f"horizon: transaction ended at {now:.1f} s")
            if time.monotonic() >= next_sample:
                row = conn.execute(HORIZON_SAMPLE).fetchone()
                assert row is not None
                samples.append(
                    {"t": now, "dead_rows": row[1], "table_bytes": row[2], "backlog": row[3]}
                )
                common.log(
                    f"horizon {now:5.1f} s: dead {row[1]:,}, {row[2] / 2**20:.1f} MiB, "
                    f"backlog {row[3]:,}{' (held)' if held else ''}"
                )
                next_sample += cfg.horizon_window
            queue.enqueue_many(
                NewJob(common.ENTRYPOINT, common.payload(i))
                for i in range(produced, produced + batch)
            )
            produced += batch
            next_send += period
            time.sleep(max(0.0, next_send - time.monotonic()))
        time.sleep(2)  # let the last window's jobs finish
        ws.stop()
        ws.results()
        health = conn.execute("SELECT * FROM pgq.health").fetchone()
        windows = conn.execute(
            HORIZON_WINDOWS, {"t0": t0[0] if t0 else None, "w": cfg.horizon_window}
        ).fetchall()
    return {
        "offered_per_second": cfg.horizon_rate,
        "hold": [hold_at, release_at],
        "end": end_at,
        "produced": produced,
        "samples": samples,
        "windows": [
            {"start": n * cfg.horizon_window, "offered": o, "finished": f, "pickup_p99_s": p}
            for n, o, f, p in windows
            if n * cfg.horizon_window < end_at
        ],
        "health_at_end": str(health),
    }


WORKLOADS: dict[str, Callable[[Config], dict[str, Any]]] = {
    "drain": drain,
    "enqueue": enqueue,
    "single": single,
    "latency": latency,
    "lateness": lateness,
    "depth": depth,
    "churn": churn,
    "horizon": horizon,
}
# --- the run -------------------------------------------------------------------------------


SETTINGS = (
    "shared_buffers", "synchronous_commit", "fsync", "wal_level", "max_wal_size",
    "checkpoint_timeout", "work_mem", "autovacuum", "autovacuum_naptime",
    "autovacuum_vacuum_scale_factor", "autovacuum_vacuum_cost_limit", "max_connections",
)  # fmt: skip


def machine() -> dict[str, Any]:
    """Cores, CPU, memory, PostgreSQL version and settings, and the versions under test."""
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "?",
    )
    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    with psycopg.connect(sql_floor.admin_dsn()) as conn:
        version = conn.execute("SHOW server_version").fetchone()
        settings = dict(
            conn.execute(
                "SELECT name, current_setting(name) FROM pg_settings "
                "WHERE name = ANY (%s) ORDER BY name",
                (list(SETTINGS),),
            ).fetchall()
        )
    peers = subprocess.run(
        [
            str(PEER_PYTHON),
            "-c",
            "import importlib.metadata as m, json; print(json.dumps({n: m.version(n) for n in "
            "('pgqueuer', 'procrastinate', 'asyncpg', 'psycopg')}))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    commit = subprocess.run(
        ["git", "describe", "--always", "--dirty"], capture_output=True, text=True, cwd=HERE
    ).stdout.strip()
    host = server_address()[0]
    return {
        "connection": "unix socket" if host.startswith("/") else f"TCP to {host}",
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(pages / 2**30, 1),
        "postgres": version[0] if version else "?",
        "settings": settings,
        "versions": {"pgq-thin": commit, **json.loads(peers)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="the full sizes (default: short)")
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(WORKLOADS)}")
    parser.add_argument("--rounds", type=int, help="rounds per workload (overrides the size)")
    parser.add_argument(
        "--server",
        choices=["throwaway", "env"],
        default="throwaway",
        help="throwaway: a server of the run's own with default settings (default); "
        "env: the one DATABASE_URL / PG* name",
    )
    args = parser.parse_args()
    cfg = FULL if args.full else SHORT
    if args.rounds:
        cfg = replace(cfg, rounds=args.rounds)
    names = args.only.split(",") if args.only else list(WORKLOADS)
    unknown = set(names) - set(WORKLOADS)
    if unknown:
        parser.error(f"unknown workload(s): {', '.join(sorted(unknown))}")

    ensure_peers()
    with server(args.server) as where:
        prepare_databases()
        about = {**machine(), "server": where}
        command_line = " ".join(["python", "bench/run.py", *sys.argv[1:]])
        RESULTS.mkdir(exist_ok=True)
        for name in names:
            common.log(f"== {name} ({cfg.name})")
            load_before = os.getloadavg()[0]
            started = time.monotonic()
            data = WORKLOADS[name](cfg)
            result = {
                "workload": name,
                "command": command_line,
                "config": asdict(cfg),
                "machine": about,
                "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
                "seconds": round(time.monotonic() - started, 1),
                "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]},
                **data,
            }
            (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    report.write(RESULTS, HERE / "RESULTS.md")
    common.log(f"wrote {HERE / 'RESULTS.md'}")


if __name__ == "__main__":
    main()
