"""Plain-text and JSON rendering for the monitoring commands (80-column tables)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from pgq_thin.monitor import Row

WIDTH = 80

# A column: title, width (0 = what is left of WIDTH), and alignment ("<" or ">").
Column = tuple[str, int, str]


def to_json(value: Any) -> str:
    """JSON with timestamps as ISO 8601 and intervals as seconds."""
    return json.dumps(value, default=_json_default, indent=2)


def to_json_line(value: Any) -> str:
    """The same as to_json, on one line (for --watch --json)."""
    return json.dumps(value, default=_json_default, separators=(",", ":"))


def _json_default(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def duration(value: timedelta | None) -> str:
    """A compact duration: 45s, 3m12s, 2h05m, 4d03h (a negative one as 'in ...')."""
    if value is None:
        return "-"
    seconds = int(value.total_seconds())
    if seconds < 0:
        return "in " + duration(-value)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def ago(moment: datetime | None, now: datetime) -> str:
    """How long ago `moment` was ('in ...' for the future)."""
    if moment is None:
        return "-"
    text = duration(now - moment)
    return text if text.startswith("in ") else f"{text} ago"


def clip(text: str, width: int) -> str:
    """`text` cut to `width` characters, marking the cut with an ellipsis."""
    return text if len(text) <= width else text[: width - 1] + "…"


def table(columns: Sequence[Column], rows: Iterable[Sequence[object]]) -> list[str]:
    """Lines of a table no wider than WIDTH: a header, then one line per row."""
    fixed = sum(width for _, width, _ in columns) + len(columns) - 1
    widths = [width or WIDTH - fixed for _, width, _ in columns]

    def line(cells: Sequence[object]) -> str:
        out = []
        for (_, _, align), width, cell in zip(columns, widths, cells, strict=True):
            text = clip("" if cell is None else str(cell), width)
            out.append(f"{text:{align}{width}}")
        return " ".join(out).rstrip()

    return [line([title for title, _, _ in columns])] + [line(row) for row in rows]


STATS_COLUMNS: list[Column] = [
    ("ENTRYPOINT", 0, "<"),
    ("QUEUED", 8, ">"),
    ("SCHED", 7, ">"),
    ("RUN", 5, ">"),
    ("LIMIT", 5, ">"),
    ("OLDEST", 7, ">"),
    ("OK/5M", 7, ">"),
    ("ERR/5M", 6, ">"),
    ("DEAD", 6, ">"),
]


def stats_lines(stats: Row) -> list[str]:
    """The stats dashboard: one line per entrypoint, then workers and health."""
    rows = [
        [
            e["entrypoint"] + ("*" if e["paused"] else ""),
            e["queued"],
            e["scheduled"],
            e["running"],
            e["concurrency_limit"] or "-",
            duration(e["oldest_waiting"]),
            e["succeeded_5m"],
            e["failed_5m"],
            e["failed"],
        ]
        for e in stats["entrypoints"]
    ]
    lines = table(STATS_COLUMNS, rows)
    if not rows:
        lines.append("(no entrypoints yet)")
    if any(e["paused"] for e in stats["entrypoints"]):
        lines.append("* paused: no worker claims its jobs until `pgq-thin resume ENTRYPOINT`")
    if stats["schedules"]:
        lines += ["", *schedule_lines(stats["schedules"], stats["now"])]
    return [*lines, "", *health_lines(stats["health"], stats["workers"], stats["now"])]


SCHEDULE_COLUMNS: list[Column] = [
    ("SCHEDULE", 0, "<"),
    ("CRON", 15, "<"),
    ("ENTRYPOINT", 14, "<"),
    ("NEXT", 10, ">"),
    ("LAST", 10, ">"),
    ("LAST JOB", 9, "<"),
]


def schedule_lines(schedules: Sequence[Row], now: datetime) -> list[str]:
    """One line per schedule: next run, last tick, its job's state (paused ones marked)."""
    rows = [
        [
            s["name"] + ("*" if s["paused"] else ""),
            s["cron"] + ("" if s["timezone"] == "UTC" else f" {s['timezone']}"),
            s["entrypoint"],
            "paused" if s["paused"] else ago(s["next_run_at"], now),
            ago(s["last_tick_at"], now),
            s["last_job_state"] or "-",
        ]
        for s in schedules
    ]
    lines = table(SCHEDULE_COLUMNS, rows) + ([] if rows else ["(no schedules)"])
    if any(s["paused"] for s in schedules):
        lines.append("* paused: no tick fires until `pgq-thin schedule resume NAME`")
    return lines


def health_lines(health: Row, workers: Row, now: datetime) -> list[str]:
    """Workers by status, expired leases, NOTIFY queue, tuples, and the oldest transaction."""
    lines = [
        f"workers: {workers['alive']} alive, {workers['stale']} stale, "
        f"{workers['unregistered']} unregistered; expired leases: {health['expired_leases']}",
        f"tuples: jobs {health['jobs_live_tuples']} live, {health['jobs_dead_tuples']} dead;"
        f" history {health['history_live_tuples']} live, {health['history_dead_tuples']} dead",
        f"notify queue: {health['notification_queue_usage']:.1%} used",
    ]
    if health["oldest_xact_pid"] is not None:
        lines.append(
            f"oldest transaction: pid {health['oldest_xact_pid']}"
            f" ({health['oldest_xact_state'] or 'unknown'}), {health['oldest_xact_xid_age']} xids,"
            f" started {ago(health['oldest_xact_start'], now)}"
        )
    return [clip(line, WIDTH) for line in lines]


JOB_COLUMNS: list[Column] = [
    ("ID", 9, ">"),
    ("ENTRYPOINT", 18, "<"),
    ("STATE", 9, "<"),
    ("TRY", 5, ">"),
    ("PRI", 4, ">"),
    ("WHEN", 10, ">"),
    ("DETAIL", 0, "<"),
]


def job_lines(jobs: Sequence[Row], now: datetime) -> list[str]:
    """One line per job: WHEN is the due time (waiting), start (running) or finish."""
    rows = [
        [
            j["id"],
            j["entrypoint"],
            j["state"],
            f"{j['attempt']}/{j['max_attempts'] or '?'}",
            j["priority"],
            ago(j["at"], now),
            (j["detail"] or "").replace("\n", " "),
        ]
        for j in jobs
    ]
    return table(JOB_COLUMNS, rows) + ([] if rows else ["(no jobs)"])


WORKER_COLUMNS: list[Column] = [
    ("WORKER", 20, "<"),
    ("STATUS", 12, "<"),
    ("JOBS", 6, ">"),
    ("BEAT", 10, ">"),
    ("UP", 6, ">"),
    ("VERSION", 8, "<"),
    ("ENTRYPOINTS", 0, "<"),
]


def worker_lines(workers: Sequence[Row], now: datetime) -> list[str]:
    """One line per worker: running jobs (of its concurrency), last heartbeat, uptime."""
    rows = [
        [
            w["worker_id"],
            w["status"],
            f"{w['running']}/{w['concurrency']}" if w["concurrency"] else w["running"],
            ago(w["heartbeat_at"], now),
            duration(now - w["started_at"]) if w["started_at"] else "-",
            w["version"],
            ",".join(w["entrypoints"] or ()),
        ]
        for w in workers
    ]
    return table(WORKER_COLUMNS, rows) + ([] if rows else ["(no workers)"])
