"""How the dashboard shows values: durations, JSON, health warnings and SVG charts.

Charts are drawn here as SVG, so the page needs no chart library and works offline. Every
number is formatted by Python; no untrusted text reaches the SVG except through escaping.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from markupsafe import Markup, escape

from pgq_thin.monitor import Row

WIDTH, HEIGHT, PAD = 600, 160, 28


def duration(value: timedelta | float | None) -> str:
    """A short human duration: 850ms, 12s, 4m05s, 3h02m, 2d04h."""
    if value is None:
        return "-"
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if seconds < 0:
        return "-" + duration(-seconds)
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{seconds:.0f}s"
    whole = int(seconds)
    for unit, size, sub, subsize in (("d", 86400, "h", 3600), ("h", 3600, "m", 60)):
        if whole >= size:
            return f"{whole // size}{unit}{(whole % size) // subsize:02d}{sub}"
    return f"{whole // 60}m{whole % 60:02d}s"


def ago(moment: datetime | None, now: datetime) -> str:
    return "-" if moment is None else f"{duration(now - moment)} ago"


def pretty_json(value: Any) -> str:
    return "null" if value is None else json.dumps(value, indent=2, ensure_ascii=False)


def warnings(health: Row, now: datetime) -> list[str]:
    """What pgq.health says needs attention, each with what to do about it."""
    found = []
    if health["expired_leases"]:
        found.append(
            f"{health['expired_leases']} running job(s) hold an expired lease: their workers died"
            " or stalled. Running workers reap them (pgq.reap); if none runs, start one."
        )
    for table in ("jobs", "history"):
        live, dead = health[f"{table}_live_tuples"], health[f"{table}_dead_tuples"]
        if dead > 10_000 and dead > live:
            name = "pgq.jobs" if table == "jobs" else "pgq.job_history"
            found.append(
                f"{name} holds {dead} dead rows for {live} live ones: vacuum is not keeping up."
                f" Check autovacuum, or run VACUUM {name}."
            )
    started = health["oldest_xact_start"]
    if health["oldest_xact_pid"] is not None and (
        (health["oldest_xact_xid_age"] or 0) > 100_000
        or (started is not None and now - started > timedelta(minutes=5))
    ):
        found.append(
            f"Session {health['oldest_xact_pid']} ({health['oldest_xact_state']}) has kept a"
            f" transaction open for {duration(now - started) if started else '?'}"
            f" ({health['oldest_xact_xid_age']} transactions old): it holds back vacuum of"
            f" every table. End it, e.g. SELECT pg_terminate_backend({health['oldest_xact_pid']})."
        )
    if (health["notification_queue_usage"] or 0) > 0.5:
        found.append(
            "The NOTIFY queue is over half full: a session that LISTENs does not read its"
            " notifications. Find it in pg_stat_activity and end it."
        )
    return found


def _scale(top: float) -> float:
    """A round upper bound for an axis (1, 2, 5 times a power of ten)."""
    if top <= 0:
        return 1.0
    step = 1.0
    while step * 10 <= top:
        step *= 10
    while step > top:
        step /= 10
    for factor in (1, 2, 5, 10):
        if step * factor >= top:
            return step * factor
    return step * 10


def _frame(title: str, top: str, legend: list[tuple[str, str]], body: list[str]) -> Markup:
    keys = "".join(f'<tspan class="{cls}">&#9632;</tspan> {escape(name)} ' for name, cls in legend)
    return Markup(
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img"'
        f' aria-label="{escape(title)}"><title>{escape(title)}</title>'
        f'<text class="axis" x="2" y="12">{escape(top)}</text>'
        f'<text class="axis" x="2" y="{HEIGHT - PAD + 4}">0</text>'
        f'<line class="base" x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH}" y2="{HEIGHT - PAD}"/>'
        f'<text class="axis" x="{PAD}" y="{HEIGHT - 6}">-60 min</text>'
        f'<text class="axis" x="{WIDTH}" y="{HEIGHT - 6}" text-anchor="end">now</text>'
        f'<text class="legend" x="{WIDTH}" y="12" text-anchor="end">{keys}</text>'
        + "".join(body)
        + "</svg>"
    )


def bars(series: list[Row], title: str, stacks: list[tuple[str, str, str]]) -> Markup:
    """Stacked bars per minute; `stacks` is (key, label, css class), bottom first."""
    top = _scale(max((sum(row[key] for key, _, _ in stacks) for row in series), default=0))
    step = (WIDTH - PAD) / max(len(series), 1)
    usable = HEIGHT - PAD - 16
    body = []
    for i, row in enumerate(series):
        base = float(HEIGHT - PAD)
        for key, label, cls in stacks:
            if not row[key]:
                continue
            tall = usable * row[key] / top
            base -= tall
            body.append(
                f'<rect class="{cls}" x="{PAD + i * step + 1:.1f}" y="{base:.1f}"'
                f' width="{max(step - 2, 1):.1f}" height="{tall:.1f}">'
                f"<title>{row['minute']:%H:%M} {escape(label)}: {row[key]}</title></rect>"
            )
    return _frame(title, f"{top:g}/min", [(label, cls) for _, label, cls in stacks], body)


def lines(series: list[Row], title: str, keys: list[tuple[str, str, str]]) -> Markup:
    """One polyline per key (seconds), gaps where a minute has no value."""
    values = [row[key] for row in series for key, _, _ in keys if row[key] is not None]
    top = _scale(max(values, default=0))
    step = (WIDTH - PAD) / max(len(series), 1)
    usable = HEIGHT - PAD - 16
    body = []
    for key, _, cls in keys:
        runs: list[list[str]] = [[]]
        for i, row in enumerate(series):
            if row[key] is None:
                runs.append([])
                continue
            y = HEIGHT - PAD - usable * row[key] / top
            runs[-1].append(f"{PAD + (i + 0.5) * step:.1f},{y:.1f}")
        for points in runs:
            if len(points) == 1:
                x, y = points[0].split(",")
                body.append(f'<circle class="{cls}" cx="{x}" cy="{y}" r="2"/>')
            elif points:
                body.append(f'<polyline class="{cls}" points="{" ".join(points)}"/>')
    return _frame(title, duration(top), [(label, cls) for _, label, cls in keys], body)
