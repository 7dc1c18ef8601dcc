"""Queries behind the monitoring commands: the pgq views and the job-control functions.

Every function takes an autocommit connection and returns plain rows (dicts); the rules stay
in SQL (`sql/api/monitoring.sql`, `sql/api/control.sql`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, LiteralString

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from pgq_thin.errors import PgqError

Row = dict[str, Any]
Connection = psycopg.Connection[Any]

LIVE_STATES = ("scheduled", "queued", "running")
FINISHED_STATES = ("succeeded", "failed", "cancelled")
STATES = LIVE_STATES + FINISHED_STATES

_LIVE = sql.SQL(
    "SELECT j.id, j.entrypoint, j.state, j.attempt,"
    " coalesce(j.max_attempts, e.max_attempts) AS max_attempts, j.priority,"
    " CASE j.state WHEN 'running' THEN j.started_at ELSE j.run_at END AS at,"
    " CASE j.state WHEN 'running' THEN j.worker_id ELSE j.last_error END AS detail"
    " FROM pgq.jobs AS j LEFT JOIN pgq.entrypoints AS e ON e.name = j.entrypoint"
)
_FINISHED = sql.SQL(
    "SELECT h.id, h.entrypoint, h.state, h.attempt,"
    " coalesce(h.max_attempts, e.max_attempts) AS max_attempts, h.priority,"
    " h.finished_at AS at, h.error AS detail"
    " FROM pgq.job_history AS h LEFT JOIN pgq.entrypoints AS e ON e.name = h.entrypoint"
)


@contextmanager
def _schema_errors() -> Iterator[None]:
    """Turn a missing view or function into a PgqError that says what to run."""
    try:
        yield
    except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedFunction) as exc:
        raise PgqError(
            f"the pgq schema is missing or out of date ({exc.diag.message_primary}): "
            "run `pgq-thin install` or `pgq-thin upgrade`"
        ) from exc


def _rows(conn: Connection, query: LiteralString | sql.Composed, params: Any = None) -> list[Row]:
    with _schema_errors(), conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query, params)
        return cur.fetchall()


def now(conn: Connection) -> datetime:
    """The queue's clock (pgq.now())."""
    value: datetime = _rows(conn, "SELECT pgq.now() AS now")[0]["now"]
    return value


def queue_stats(conn: Connection) -> list[Row]:
    """The rows of pgq.queue_stats, one per entrypoint."""
    return _rows(conn, "SELECT * FROM pgq.queue_stats")


def health(conn: Connection) -> Row:
    """The one row of pgq.health."""
    return _rows(conn, "SELECT * FROM pgq.health")[0]


def workers(conn: Connection) -> list[Row]:
    """The rows of pgq.workers."""
    return _rows(conn, "SELECT * FROM pgq.workers")


def stats(conn: Connection) -> Row:
    """Everything `pgq-thin stats` shows: entrypoints, health, and workers counted by status,
    with the connections the live ones hold."""
    counts = {"alive": 0, "stale": 0, "unregistered": 0, "connections": 0}
    for worker in workers(conn):
        counts[worker["status"]] += 1
        if worker["status"] == "alive":
            counts["connections"] += worker["connections"] or 0
    return {
        "now": now(conn),
        "entrypoints": queue_stats(conn),
        "health": health(conn),
        "workers": counts,
    }


def list_jobs(
    conn: Connection,
    states: Sequence[str] = (),
    entrypoint: str | None = None,
    limit: int = 20,
) -> list[Row]:
    """Live and finished jobs, newest id first, optionally of some states or one entrypoint."""
    wanted = list(states or STATES)
    parts = []
    for query, alias, known in ((_LIVE, "j", LIVE_STATES), (_FINISHED, "h", FINISHED_STATES)):
        chosen = [s for s in wanted if s in known]
        if not chosen:
            continue
        where = [sql.SQL("{}.state = ANY({})").format(sql.Identifier(alias), chosen)]
        if entrypoint is not None:
            where.append(sql.SQL("{}.entrypoint = {}").format(sql.Identifier(alias), entrypoint))
        parts.append(sql.SQL("({} WHERE {})").format(query, sql.SQL(" AND ").join(where)))
    full = sql.SQL("SELECT * FROM ({}) AS jobs ORDER BY id DESC LIMIT {}").format(
        sql.SQL(" UNION ALL ").join(parts), limit
    )
    return _rows(conn, full)


def explain(conn: Connection, job_id: int) -> str:
    """pgq.explain_job: why the job is or is not running; PgqError when there is no such job."""
    row = _rows(
        conn,
        "SELECT pgq.explain_job(%(id)s) AS text, EXISTS (SELECT FROM pgq.jobs WHERE id = %(id)s)"
        " OR EXISTS (SELECT FROM pgq.job_history WHERE id = %(id)s) AS known",
        {"id": job_id},
    )[0]
    if not row["known"]:
        raise PgqError(row["text"])
    text: str = row["text"]
    return text


def retry(conn: Connection, job_id: int) -> None:
    """Re-queue a failed or cancelled job; PgqError with the reason otherwise."""
    try:
        _rows(conn, "SELECT pgq.retry(%s)", (job_id,))
    except (
        psycopg.errors.NoDataFound,
        psycopg.errors.ObjectNotInPrerequisiteState,
        psycopg.errors.UniqueViolation,
    ) as exc:
        raise PgqError(_reason(exc)) from exc


def cancel(conn: Connection, job_id: int) -> str:
    """Cancel a job: 'cancelled', or 'cancel requested' for a running one; PgqError otherwise."""
    if _rows(conn, "SELECT pgq.cancel(%s) AS done", (job_id,))[0]["done"]:
        running = _rows(conn, "SELECT 1 FROM pgq.jobs WHERE id = %s", (job_id,))
        return "cancel requested" if running else "cancelled"
    finished = _rows(conn, "SELECT state FROM pgq.job_history WHERE id = %s", (job_id,))
    if finished:
        raise PgqError(f"job {job_id} already {finished[0]['state']}")
    raise PgqError(f"no job with id {job_id}")


def set_paused(conn: Connection, entrypoint: str, paused: bool, *, create: bool = False) -> bool:
    """Pause or resume an entrypoint; returns whether it was known (had jobs or a policy).

    An unknown name is refused unless `create`: a typo would otherwise make a policy row.
    """
    known = bool(_rows(conn, "SELECT 1 FROM pgq.entrypoints WHERE name = %s", (entrypoint,)))
    if not known and not create:
        raise PgqError(
            f"entrypoint {entrypoint!r} has no jobs and no policy (a typo?): "
            f"rerun with --create to {'pause' if paused else 'resume'} it anyway"
        )
    try:
        _rows(conn, "SELECT pgq.set_entrypoint(%s, paused => %s)", (entrypoint, paused))
    except (psycopg.errors.InvalidParameterValue, psycopg.errors.NullValueNotAllowed) as exc:
        raise PgqError(_reason(exc)) from exc
    return known


def _reason(exc: psycopg.Error) -> str:
    message = exc.diag.message_primary or str(exc)
    return message.removeprefix("pgq: ")
