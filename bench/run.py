"""Benchmarks: pgq-thin side by side with PgQueuer, procrastinate and the pure-SQL floor.

    .venv/bin/python bench/run.py [--full] [--only drain,enqueue,latency,depth,churn]
                                  [--rounds N] [--server throwaway|env]

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
        "TRUNCATE pgqueuer, pgqueuer_log, pgqueuer_statistics",
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
    latency_jobs: int
    latency_interval: float
    depths: tuple[int, int]
    depth_calls: int
    churn_jobs: int
    churn_baseline: int
    churn_workers: int


SHORT = Config(
    name="short",
    rounds=3,
    drain_jobs=10_000,
    drain_jobs_procrastinate=2_000,
    workers=(1, 4),
    enqueue_jobs=50_000,
    enqueue_batches=(100, 1000),
    latency_jobs=500,
    latency_interval=0.01,
    depths=(1_000, 100_000),
    depth_calls=200,
    churn_jobs=100_000,
    churn_baseline=10_000,
    churn_workers=2,
)
FULL = replace(
    SHORT,
    name="full",
    drain_jobs=50_000,
    drain_jobs_procrastinate=10_000,
    workers=(1, 2, 4),
    latency_jobs=1000,
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


def latency_once(system: System, cfg: Config) -> list[float]:
    """Enqueue-to-handler-start latencies (ms) of single jobs sent to one idle worker."""
    reset(system)
    with tempfile.NamedTemporaryFile(suffix=".lat") as file:
        with Workers(system, 1, "--mode", "forever", "--latency-file", file.name) as ws:
            ws.go()
            time.sleep(0.5)  # let the worker settle into waiting
            interval = str(cfg.latency_interval)
            driver(system, "produce", "--count", str(cfg.latency_jobs), "--interval", interval)
            deadline = time.monotonic() + 30
            while len(Path(file.name).read_text().splitlines()) < cfg.latency_jobs:
                if time.monotonic() > deadline:
                    raise SystemExit(f"{system.name}: not every latency job ran")
                time.sleep(0.05)
            ws.stop()
            ws.results()
        return [float(x) * 1000 for x in Path(file.name).read_text().split()]


def latency(cfg: Config) -> dict[str, Any]:
    samples: dict[str, list[list[float]]] = {}
    for rnd in range(cfg.rounds):
        for system in in_turn(rnd, list(SYSTEMS.values())):
            values = sorted(latency_once(system, cfg))
            samples.setdefault(system.name, []).append(values)
            common.log(
                f"latency round {rnd + 1}: {system.name} p50 {percentile(values, 50):.2f} ms "
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


WORKLOADS: dict[str, Callable[[Config], dict[str, Any]]] = {
    "drain": drain,
    "enqueue": enqueue,
    "latency": latency,
    "depth": depth,
    "churn": churn,
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
