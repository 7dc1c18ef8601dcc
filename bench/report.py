"""Write bench/RESULTS.md from the results files in bench/results/ (run.py calls this).

.venv/bin/python bench/report.py
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PGQ, PGQUEUER = "pgq-thin", "pgqueuer"
FLOOR, RAW = "SQL floor (pgbench)", "raw multi-row INSERT"

DRIVEN = """\
- **pgq-thin**: `pgq_thin.worker.Worker` (the runtime behind `pgq-thin run`), `batch_size`
  100, `max_concurrent_jobs` 200, log level WARNING; enqueue through `AsyncQueue.enqueue_many`
  (batches) and `AsyncQueue.enqueue` (single jobs, latency, lateness: each followed by
  `commit()` on a default psycopg 3 connection, as a user's code does). *pgq-thin SQL only*
  is `bench/pgbench/pgq_claim_complete.sql` (`pgq.dequeue` 100 + `pgq.complete_many`) under
  pgbench, no Python in the loop.
- **PgQueuer**: schema by `pgq install`; `PgQueuer(AsyncpgPoolDriver)` with `batch_size` 100,
  `max_concurrent_tasks` 200, `mode=drain` for drains; enqueue through `Queries.enqueue` with
  lists, or one job a call on a plain asyncpg connection (each call commits on its own) for
  single jobs, latency and lateness (`execute_after`; the latency workloads' worker runs on
  one connection, `AsyncpgDriver`, as PgQueuer's README has it); depth through `Queries.dequeue` +
  `Queries.log_jobs`.
- **procrastinate**: schema by its schema manager (what `procrastinate schema --apply` runs);
  `App.run_worker_async(concurrency=50, wait=False)` for drains; enqueue through
  `Task.batch_defer_async` / `defer_async` (psycopg 3); depth through `JobManager.fetch_job` +
  `finish_job`, one job a call (it has no batch claim). Its drains use fewer jobs (see the
  config) since it runs about 0.5k jobs/s here; the rate is what is compared.
- **SQL floor**: `bench/pgbench/floor_claim_delete.sql` (claim 100 with `UPDATE … FOR UPDATE
  SKIP LOCKED`, then `DELETE`) on a minimal table, pgbench with one client per worker process.
- **raw INSERT + NOTIFY**: `WITH job AS (INSERT INTO floor.jobs (payload) VALUES ($1)
  RETURNING id) SELECT job.id, pg_notify('floor', $2) FROM job`, one job per commit, through
  psycopg 3 (as pgq-thin) and asyncpg (as PgQueuer).
- **raw multi-row INSERT**: one `INSERT INTO floor.jobs (payload) VALUES (…), (…), …` per
  batch, same payloads, psycopg 3.
- Handlers are no-ops (latency handlers append one number to a file). Drain workers start
  behind a barrier: the clock starts when every process has imported its system and built its
  app, releases them at once, and stops when the last one returns (connecting is timed).
- Every measurement starts from emptied (`TRUNCATE`) and checkpointed tables; jobs enqueued
  before a timed drain or depth run are vacuumed and analysed first. Rounds run the systems in
  turn (A B C, then C B A, …). Ratios are per round: pgq-thin's round *i* over the other's
  round *i*; the tables show their median and range.
"""


def load(results: Path) -> dict[str, dict[str, Any]]:
    out = {}
    for name in ("drain", "enqueue", "single", "latency", "lateness", "depth", "churn", "horizon"):
        path = results / f"{name}.json"
        if path.exists():
            out[name] = json.loads(path.read_text())
    return out


def rate(s: dict[str, Any]) -> str:
    return f"{s['median']:,.0f} ({s['min']:,.0f}-{s['max']:,.0f})"


def ratio(s: dict[str, Any], pct: bool = False) -> str:
    if pct:
        return f"{s['median']:.0%} ({s['min']:.0%}-{s['max']:.0%})"
    return f"{s['median']:.2f}x ({s['min']:.2f}-{s['max']:.2f})"


def verdict(ok: bool) -> str:
    return "**pass**" if ok else "**FAIL**"


def mib(n: int) -> str:
    return f"{n / 2**20:.2f} MiB"


def targets(r: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["| target | measured (median of rounds, range) | result |", "|---|---|---|"]
    for row in r.get("drain", {}).get("rows", []):
        w, over = row["workers"], row["pgq_thin_over"]
        lines.append(
            f"| drain, {w} worker(s): ≥ 3x PgQueuer | {ratio(over[PGQUEUER])} "
            f"| {verdict(over[PGQUEUER]['median'] >= 3)} |"
        )
        lines.append(
            f"| drain, {w} worker(s): ≥ 40% of the SQL floor | {ratio(over[FLOOR], True)} "
            f"| {verdict(over[FLOOR]['median'] >= 0.4)} |"
        )
    for row in r.get("enqueue", {}).get("rows", []):
        b, over = row["batch"], row["pgq_thin_over"]
        lines.append(
            f"| batch enqueue, batches of {b:,}: ≥ 1.5x PgQueuer | {ratio(over[PGQUEUER])} "
            f"| {verdict(over[PGQUEUER]['median'] >= 1.5)} |"
        )
        lines.append(
            f"| batch enqueue, batches of {b:,}: ≥ 60% of a raw multi-row INSERT "
            f"| {ratio(over[RAW], True)} | {verdict(over[RAW]['median'] >= 0.6)} |"
        )
    if "single" in r:
        lines += single_targets(r["single"])
    if "latency" in r:
        mine = r["latency"]["systems"][PGQ]
        for q, limit in ((50, 2.5), (99, 6.0)):
            value = mine[f"p{q}_ms"]
            lines.append(
                f"| idle latency p{q} ≤ {limit:g} ms ({mine['jobs']:,} jobs) | {value:.2f} ms "
                f"| {verdict(value <= limit)} |"
            )
        for q in (50, 99):
            over = r["latency"]["systems"][f"pgq_thin_over_p{q}"][PGQUEUER]
            lines.append(
                f"| idle latency p{q} below PgQueuer's (per round) | {ratio(over)} of it "
                f"| {verdict(over['median'] < 1)} |"
            )
    if "lateness" in r:
        mine = r["lateness"]["systems"][PGQ]
        ahead = r["lateness"]["config"]["lateness_ahead"]
        lines.append(
            f"| a job due {ahead:g} s ahead starts within 5 ms of it, p99 ({mine['jobs']:,} jobs) "
            f"| {mine['p99_ms']:.2f} ms late | {verdict(mine['p99_ms'] <= 5)} |"
        )
    if "horizon" in r:
        lines += horizon_targets(r["horizon"])
    short = " (short run: smaller than the target's size)"
    if "depth" in r:
        small, large = r["depth"]["config"]["depths"]
        s = r["depth"]["systems"][PGQ]["large_over_small"]
        lines.append(
            f"| dequeue+complete rate at {large:,} queued within 15% of {small:,}"
            f"{short if large < 1_000_000 else ''} | {ratio(s, True)} of it "
            f"| {verdict(s['median'] >= 0.85)} |"
        )
    if "churn" in r:
        c = r["churn"]
        jobs, base = c["config"]["churn_jobs"], c["config"]["churn_baseline"]
        lines.append(
            f"| hot table (heap + indexes) after {jobs:,} jobs ≤ 2x after {base:,}"
            f"{short if jobs < 1_000_000 else ''} | {c['total_growth']:.2f}x "
            f"| {verdict(c['total_growth'] <= 2)} |"
        )
    return lines


SINGLE_MINE = ("pgq-thin AsyncQueue.enqueue", "pgq-thin Queue.enqueue")
SINGLE_RAW = "raw INSERT + NOTIFY (psycopg)"


def single_targets(data: dict[str, Any]) -> list[str]:
    lines = []
    for mine in SINGLE_MINE:
        over = data["over"][mine]
        lines += [
            f"| single enqueue, `{mine.split()[1]}`: ≥ 1.3x PgQueuer's `Queries.enqueue` "
            f"| {ratio(over[PGQUEUER])} | {verdict(over[PGQUEUER]['median'] >= 1.3)} |",
            f"| single enqueue, `{mine.split()[1]}`: ≥ 80% of a raw INSERT + NOTIFY (psycopg) "
            f"| {ratio(over[SINGLE_RAW], True)} | {verdict(over[SINGLE_RAW]['median'] >= 0.8)} |",
        ]
    gap = data["idle_call_gap_ms"]
    lines.append(
        "| `SELECT pgq.enqueue(...)` within 0.2 ms of a raw INSERT + NOTIFY at idle (p50 per "
        f"round, difference) | {gap['median']:+.3f} ms ({gap['min']:+.3f} to {gap['max']:+.3f}) "
        f"| {verdict(gap['median'] <= 0.2)} |"
    )
    return lines


def horizon_windows(data: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The windows wholly inside the held transaction, and the samples after it ended."""
    start, end = data["hold"]
    width = data["config"]["horizon_window"]
    held = [w for w in data["windows"] if w["start"] >= start and w["start"] + width <= end]
    after = [s for s in data["samples"] if s["t"] >= end]
    return held, after


def horizon_targets(data: dict[str, Any]) -> list[str]:
    held, after = horizon_windows(data)
    rate, width = data["offered_per_second"], data["config"]["horizon_window"]
    worst = min(w["finished"] / (rate * width) for w in held)
    pickup = max(w["pickup_p99_s"] for w in held)
    end = data["hold"][1]
    soon = [s for s in after if s["t"] <= end + 30]
    cleaned = min(s["dead_rows"] for s in soon)
    settled = [s for s in after if s["t"] >= end + 30]
    # Growth is a new high: VACUUM truncates the heap's empty tail pages and the load refills
    # them, so the size moves by a few pages either way while the table stays the same.
    clean = [s["table_bytes"] for s in soon if s["dead_rows"] < 1000]
    grew = max(s["table_bytes"] for s in settled) - max(clean) if settled and clean else 0
    hold = end - data["hold"][0]
    return [
        f"| held horizon ({hold:g} s): every {width:g} s window finishes ≥ 90% of the "
        f"{rate:,} jobs/s offered | worst window {worst:.0%} | {verdict(worst >= 0.9)} |",
        f"| held horizon: pickup p99 < 1 s in every window | worst {pickup:.3f} s "
        f"| {verdict(pickup < 1)} |",
        f"| held horizon: dead rows < 1,000 within 30 s after it ends | lowest {cleaned:,} "
        f"| {verdict(cleaned < 1000)} |",
        f"| held horizon: the minute after does not grow the table past its cleaned-up size "
        f"(largest sample after the first 30 s minus the largest once dead rows < 1,000) "
        f"| {grew / 2**20:+.2f} MiB | {verdict(bool(clean) and grew <= 0)} |",
    ]


def single_table(data: dict[str, Any]) -> list[str]:
    mine = SINGLE_MINE[0]
    lines = [
        f"| system | jobs/s, median (range) | {mine} ÷ system, per round |",
        "|---|---|---|",
    ]
    for name, s in sorted(data["jobs_per_second"].items(), key=lambda kv: -kv[1]["median"]):
        over = data["over"][mine].get(name)
        lines.append(f"| {name} | {rate(s)} | {ratio(over) if over else '—'} |")
    lines += [
        "",
        "At idle (autocommit, one call every 10 ms, in turn), median per round:",
        "",
        "| statement | ms, median of rounds (range) |",
        "|---|---|",
    ]
    for name, s in data["idle_call_ms"].items():
        lines.append(f"| `{name}` | {s['median']:.3f} ({s['min']:.3f}-{s['max']:.3f}) |")
    return lines


def horizon_table(data: dict[str, Any]) -> list[str]:
    start, end = data["hold"]
    samples = {round(s["t"] / data["config"]["horizon_window"]): s for s in data["samples"]}
    lines = [
        "| window from (s) | held | offered | finished | pickup p99 s | dead rows | table MiB "
        "| backlog |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for w in data["windows"]:
        s = samples.get(round(w["start"] / data["config"]["horizon_window"]), {})
        held = "yes" if start <= w["start"] < end else ""
        lines.append(
            f"| {w['start']:g} | {held} | {w['offered']:,} | {w['finished']:,} "
            f"| {w['pickup_p99_s']:.3f} | {s.get('dead_rows', 0):,} "
            f"| {s.get('table_bytes', 0) / 2**20:.1f} | {s.get('backlog', 0):,} |"
        )
    return lines


def per_system_table(rows: list[dict[str, Any]], key: str, label: str) -> list[str]:
    lines = []
    for row in rows:
        lines += [
            f"**{label} {row[key]:,}**",
            "",
            "| system | jobs/s, median (range) | pgq-thin ÷ system, per round |",
            "|---|---|---|",
        ]
        for name, s in sorted(row["jobs_per_second"].items(), key=lambda kv: -kv[1]["median"]):
            over = row["pgq_thin_over"].get(name)
            lines.append(f"| {name} | {rate(s)} | {ratio(over) if over else '—'} |")
        lines.append("")
    return lines


def latency_table(data: dict[str, Any]) -> list[str]:
    lines = [
        "| system | jobs | p50 ms | p95 ms | p99 ms | max ms | p50 per round, median (range) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, s in data["systems"].items():
        if name.startswith("pgq_thin_over"):
            continue
        p50 = s["per_round"]["p50_ms"]
        lines.append(
            f"| {name} | {s['jobs']:,} | {s['p50_ms']:.2f} | {s['p95_ms']:.2f} "
            f"| {s['p99_ms']:.2f} | {s['max_ms']:.2f} "
            f"| {p50['median']:.2f} ({p50['min']:.2f}-{p50['max']:.2f}) |"
        )
    return lines


def depth_table(data: dict[str, Any]) -> list[str]:
    small, large = data["config"]["depths"]
    lines = [
        f"| system | jobs/s at {small:,} queued | at {large:,} queued | ratio, per round |",
        "|---|---|---|---|",
    ]
    for name, s in data["systems"].items():
        by = s["jobs_per_second"]
        lines.append(
            f"| {name} | {rate(by[str(small)])} | {rate(by[str(large)])} "
            f"| {ratio(s['large_over_small'], True)} |"
        )
    return lines


def churn_table(data: dict[str, Any]) -> list[str]:
    lines = [
        "| jobs through | heap | indexes | heap + indexes | dead tuples | autovacuums so far |",
        "|---|---|---|---|---|---|",
    ]
    before = data["snapshots"]["0"]["autovacuum_count"]
    for jobs, s in data["snapshots"].items():
        lines.append(
            f"| {int(jobs):,} | {mib(s['heap_bytes'])} | {mib(s['index_bytes'])} "
            f"| {mib(s['total_bytes'])} | {s['n_dead_tup']:,} "
            f"| {s['autovacuum_count'] - before} |"
        )
    last = list(data["snapshots"].values())[-1]
    lines += [
        "",
        "Indexes at the end: "
        + ", ".join(f"`{k}` {mib(v)}" for k, v in last["indexes"].items())
        + f"; history table {mib(last['history_bytes'])}. "
        f"{int(list(data['snapshots'])[-1]):,} jobs in {data['seconds']:.0f} s.",
    ]
    return lines


def machine(r: dict[str, dict[str, Any]]) -> list[str]:
    first = next(iter(r.values()))
    m = first["machine"]
    settings = ", ".join(f"`{k}` = {v}" for k, v in m["settings"].items())
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    loads = "; ".join(
        f"{name} {d['load_average_1min']['before']:.1f} → {d['load_average_1min']['after']:.1f}"
        for name, d in r.items()
    )
    when = ", ".join(f"{name} {d['started']} ({d['seconds']:.0f} s)" for name, d in r.items())
    commands = sorted({f"`{d['command']}`" for d in r.values()})
    return [
        f"- Command: {' and '.join(commands)} (`make bench` runs `bench/run.py`, "
        "`make bench BENCH=full` runs `bench/run.py --full`); "
        f"sizes: `{first['config']['name']}`, {first['config']['rounds']} round(s) each.",
        f"- Machine: {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB; "
        f"PostgreSQL {m['postgres']} on the same machine ({m['server']}), "
        f"{m['connection']}.",
        f"- PostgreSQL settings: {settings}.",
        f"- Versions: {versions}.",
        f"- Run: {when}.",
        f"- 1-minute load average before → after each workload: {loads}. Other work on the "
        "machine shares its 2 cores; compare the ratios (taken round by round) rather than "
        "absolute rates.",
    ]


def sections(r: dict[str, dict[str, Any]]) -> list[tuple[str, str, list[str]]]:
    """(title, what was run, tables) of each workload present, in the report's order."""
    out = []
    if "drain" in r:
        cfg = r["drain"]["config"]
        out.append(
            (
                "1. Drain pre-enqueued no-op jobs",
                f"{cfg['drain_jobs']:,} jobs a round "
                f"(procrastinate: {cfg['drain_jobs_procrastinate']:,}).",
                per_system_table(r["drain"]["rows"], "workers", "Worker processes:"),
            )
        )
    if "enqueue" in r:
        out.append(
            (
                "2. Batch enqueue",
                f"{r['enqueue']['config']['enqueue_jobs']:,} jobs a round, one producer, "
                "one transaction per batch.",
                per_system_table(r["enqueue"]["rows"], "batch", "Batch size:"),
            )
        )
    if "latency" in r:
        cfg = r["latency"]["config"]
        out.append(
            (
                "3. Idle latency, enqueue → handler start",
                f"One idle worker; {cfg['latency_jobs']:,} single enqueues a round (each committed "
                f"as in section 6), {cfg['latency_interval'] * 1000:g} ms apart; percentiles over "
                "all rounds.",
                latency_table(r["latency"]),
            )
        )
    if "depth" in r:
        out.append(
            (
                "4. Dequeue + complete rate by queue depth",
                f"{r['depth']['config']['depth_calls']} calls of 100 jobs (procrastinate: 1 job) "
                "at a constant depth: each call's jobs are replaced, untimed, before the next.",
                depth_table(r["depth"]),
            )
        )
    if "churn" in r:
        out.append(
            (
                "5. Churn: hot-table size as jobs flow through (pgq-thin)",
                f"A producer keeps about 2,000 jobs waiting for "
                f"{r['churn']['config']['churn_workers']} pgq-thin worker processes; autovacuum as "
                "the server has it (see its settings above). Sizes are taken each time the hot "
                "table has emptied.",
                churn_table(r["churn"]),
            )
        )
    if "single" in r:
        out.append(
            (
                "6. Single enqueue, one job per commit on the caller's connection",
                f"{r['single']['config']['single_jobs']:,} jobs a round, back to back: psycopg's "
                "default connection (a transaction: the call, then `commit()`), asyncpg's (each "
                "call commits on its own), as a user's code has them.",
                single_table(r["single"]),
            )
        )
    if "lateness" in r:
        cfg = r["lateness"]["config"]
        out.append(
            (
                "7. Scheduled jobs: how late a job due 1 s ahead starts",
                f"One idle worker; {cfg['lateness_jobs']:,} jobs a round, enqueued "
                f"{cfg['lateness_interval'] * 1000:g} ms apart, each due "
                f"{cfg['lateness_ahead']:g} s after its enqueue; latency = handler start minus "
                "due time (wall clock).",
                latency_table(r["lateness"]),
            )
        )
    if "horizon" in r:
        cfg, (opened, ended) = r["horizon"]["config"], r["horizon"]["hold"]
        out.append(
            (
                "8. A transaction holding the cleanup horizon (pgq-thin)",
                f"One worker process (16 jobs of 1 ms at once, batches of 16) offered "
                f"{cfg['horizon_rate']:,} jobs/s (batches of 10 every 10 ms); another connection "
                f"holds a REPEATABLE READ snapshot from {opened:g} s to {ended:g} s. Finished and "
                "pickup (claim time minus enqueue time) from the history, per window of finishing "
                "time; dead rows, table size (heap + indexes) and backlog sampled at each window's "
                "start.",
                horizon_table(r["horizon"]),
            )
        )
    return out


def analysis(path: Path) -> list[str]:
    """The hand-written reading of the targets (bench/ANALYSIS.md), if there is one."""
    if not path.exists():
        return []
    return ["## What limits the misses", "", *path.read_text().rstrip().splitlines(), ""]


def topic_sections(results: Path) -> list[str]:
    """The reports of the topic benchmarks (bench/results/*.md, each written by its own script),
    their headings one level down."""
    lines: list[str] = []
    for path in sorted(results.glob("*.md")):
        text = path.read_text().rstrip().splitlines()
        lines += [f"#{line}" if line.startswith("#") else line for line in text] + [""]
    return lines


def write(results: Path, out: Path) -> None:
    """Render every results file present into `out`."""
    r = load(results)
    if not r:
        raise SystemExit(f"no results in {results}")
    lines = [
        "# Benchmarks",
        "",
        "Generated by `bench/report.py` from `bench/results/*.json`; do not edit by hand.",
        "",
        *machine(r),
        "",
        "## Targets",
        "",
        *targets(r),
        "",
        *analysis(HERE / "ANALYSIS.md"),
    ]
    for title, intro, table in sections(r):
        lines += [f"## {title}", "", intro, "", *table, ""]
    lines += topic_sections(results)
    lines += ["## How each system is driven", "", DRIVEN]
    out.write_text("\n".join(lines))


if __name__ == "__main__":
    write(HERE / "results", HERE / "RESULTS.md")
