"""Plain-text and JSON rendering for the monitoring commands: tables as wide as the terminal
(80 columns at least, and when the output is not a terminal)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal, NamedTuple

from pgq_thin.monitor import Row

WIDTH = 80  # the narrowest table; wider when the terminal is
FLEX_MIN = 12  # the flexible column keeps this much when a name column widens


class Column(NamedTuple):
    """A table column: width 0 takes what the others leave; a `name` column (entrypoints,
    workers) widens to fit its longest value when there is room, and is elided in the middle
    otherwise, so two long names that differ only at their end still look different."""

    title: str
    width: int
    align: Literal["<", ">"]
    name: bool = False


def terminal_size() -> tuple[int, int]:
    """(columns, lines) of the terminal ($COLUMNS/$LINES first), at least 80 columns."""
    size = shutil.get_terminal_size((WIDTH, 24))
    return max(size.columns, WIDTH), size.lines


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


def elide(text: str, width: int) -> str:
    """`text` shortened to `width` characters by an ellipsis in the middle (both ends kept)."""
    if len(text) <= width:
        return text
    tail = (width - 1) // 2
    return text[: width - 1 - tail] + "…" + text[len(text) - tail :]


def table(
    columns: Sequence[Column], rows: Iterable[Sequence[object]], width: int = WIDTH
) -> list[str]:
    """Lines of a table no wider than `width`: a header, then one line per row."""
    cells = [["" if cell is None else str(cell) for cell in row] for row in rows]
    widths = [c.width for c in columns]
    spare = width - sum(widths) - (len(columns) - 1)
    spare -= FLEX_MIN if any(c.width == 0 for c in columns) else 0
    for i, column in enumerate(columns):
        if column.name and column.width:
            grow = min(max((len(row[i]) for row in cells), default=0) - column.width, spare)
            if grow > 0:
                widths[i] += grow
                spare -= grow
    flex = width - sum(widths) - (len(columns) - 1)
    widths = [w or flex for w in widths]

    def line(values: Sequence[str]) -> str:
        out = []
        for column, size, text in zip(columns, widths, values, strict=True):
            shown = elide(text, size) if column.name else clip(text, size)
            out.append(f"{shown:{column.align}{size}}")
        return " ".join(out).rstrip()

    return [line([c.title for c in columns])] + [line(row) for row in cells]


STATS_COLUMNS = [
    Column("ENTRYPOINT", 0, "<", name=True),
    Column("QUEUED", 8, ">"),
    Column("SCHED", 7, ">"),
    Column("RUN", 5, ">"),
    Column("LIMIT", 5, ">"),
    Column("OLDEST", 7, ">"),
    Column("OK/5M", 7, ">"),
    Column("ERR/5M", 6, ">"),
    Column("DEAD", 6, ">"),
]


def stats_lines(stats: Row, width: int = WIDTH, height: int | None = None) -> list[str]:
    """The stats dashboard: one line per entrypoint, then workers and health.

    Within `height` lines the busiest entrypoints are shown (in name order) and the others
    summarised in one line, so the header stays on screen.
    """
    entrypoints = stats["entrypoints"]
    paused = any(e["paused"] for e in entrypoints)
    health = health_lines(stats["health"], stats["workers"], stats["now"], width)
    hidden: list[Row] = []
    if height is not None:
        room = max(height - 2 - len(health) - int(paused), 1)  # header, blank line
        if len(entrypoints) > room:
            ranked = sorted(entrypoints, key=_busyness, reverse=True)
            hidden = ranked[room - 1 :]
            entrypoints = [e for e in entrypoints if e not in hidden]
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
        for e in entrypoints
    ]
    lines = table(STATS_COLUMNS, rows, width)
    if hidden:
        totals = ", ".join(f"{sum(e[k] for e in hidden)} {k}" for k in SUMMED)
        lines.append(clip(f"… {len(hidden)} more entrypoints: {totals}", width))
    if not rows:
        lines.append("(no entrypoints yet)")
    if paused:
        lines.append("* paused: no worker claims its jobs until `pgq-thin resume ENTRYPOINT`")
    return [*lines, "", *health]


SUMMED = ("queued", "scheduled", "running", "failed")


def _busyness(entrypoint: Row) -> tuple[int, ...]:
    return tuple(int(entrypoint[k] or 0) for k in (*SUMMED, "failed_5m", "succeeded_5m"))


def health_lines(health: Row, workers: Row, now: datetime, width: int = WIDTH) -> list[str]:
    """Workers by status, expired leases, NOTIFY queue, tuples, and the oldest transaction."""
    lines = [
        f"workers: {workers['alive']} alive, {workers['stale']} stale, "
        f"{workers['unregistered']} unregistered, {workers['connections']} connections; "
        f"expired leases: {health['expired_leases']}",
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
    return [clip(line, width) for line in lines]


JOB_COLUMNS = [
    Column("ID", 9, ">"),
    Column("ENTRYPOINT", 18, "<", name=True),
    Column("STATE", 9, "<"),
    Column("TRY", 5, ">"),
    Column("PRI", 4, ">"),
    Column("WHEN", 10, ">"),
    Column("DETAIL", 0, "<"),
]


def job_lines(jobs: Sequence[Row], now: datetime, width: int = WIDTH) -> list[str]:
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
    return table(JOB_COLUMNS, rows, width) + ([] if rows else ["(no jobs)"])


WORKER_COLUMNS = [
    Column("WORKER", 17, "<", name=True),
    Column("STATUS", 12, "<"),
    Column("JOBS", 6, ">"),
    Column("CONN", 4, ">"),
    Column("BEAT", 9, ">"),
    Column("UP", 6, ">"),
    Column("VERSION", 8, "<"),
    Column("ENTRYPOINTS", 0, "<"),
]


def worker_lines(workers: Sequence[Row], now: datetime, width: int = WIDTH) -> list[str]:
    """One line per worker: running jobs (of its concurrency), connections held, last
    heartbeat, uptime."""
    rows = [
        [
            w["worker_id"],
            w["status"],
            f"{w['running']}/{w['concurrency']}" if w["concurrency"] else w["running"],
            w["connections"],
            ago(w["heartbeat_at"], now),
            duration(now - w["started_at"]) if w["started_at"] else "-",
            w["version"],
            ",".join(w["entrypoints"] or ()),
        ]
        for w in workers
    ]
    return table(WORKER_COLUMNS, rows, width) + ([] if rows else ["(no workers)"])
