"""What the dashboard reads beyond `pgq_thin.monitor`: a keyset page of jobs, one job with its
retry log, the chart series, and which pgq functions the connection may call.

Each query reads the pgq views and tables through their indexes; the rules stay in SQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, LiteralString

from psycopg import sql
from psycopg.rows import dict_row

from pgq_thin import monitor
from pgq_thin.monitor import Connection, Row

PAGE_SIZES = range(1, 501)
DEFAULT_PAGE = 50
ACTIONS = {"retry": "retry", "cancel": "cancel", "pause": "set_entrypoint"}


class BadFilter(ValueError):
    """A malformed filter value; `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class JobFilter:
    """The /jobs filters and the keyset cursor (ids below `before`, newest first)."""

    state: str | None = None
    entrypoint: str | None = None
    job_id: int | None = None
    error: str | None = None
    before: int | None = None
    limit: int = DEFAULT_PAGE

    @classmethod
    def parse(cls, params: Any) -> JobFilter:
        """From query parameters; BadFilter naming the field for a malformed value."""
        state = params.get("state") or None
        if state is not None and state not in monitor.STATES:
            raise BadFilter("state", f"must be one of {', '.join(monitor.STATES)}")
        return cls(
            state=state,
            entrypoint=params.get("entrypoint") or None,
            job_id=_positive(params, "id"),
            error=params.get("error") or None,
            before=_positive(params, "before"),
            limit=_positive(params, "limit", PAGE_SIZES) or DEFAULT_PAGE,
        )

    def query(self, **changes: Any) -> dict[str, str]:
        """These filters as query parameters (without empty ones), with `changes` applied."""
        values = {
            "state": self.state,
            "entrypoint": self.entrypoint,
            "id": self.job_id,
            "error": self.error,
            "before": self.before,
            "limit": None if self.limit == DEFAULT_PAGE else self.limit,
        }
        values.update(changes)
        return {k: str(v) for k, v in values.items() if v is not None}


def _positive(params: Any, field: str, allowed: range | None = None) -> int | None:
    text = params.get(field) or None
    if text is None:
        return None
    try:
        value = int(text)
    except ValueError:
        raise BadFilter(field, f"{text!r} is not a whole number") from None
    if allowed is not None and value not in allowed:
        raise BadFilter(field, f"must be between {allowed.start} and {allowed.stop - 1}")
    if not 1 <= value < 2**63:
        raise BadFilter(field, "must be a positive job id")
    return value


def rows(conn: Connection, query: LiteralString | sql.Composed, params: Any = None) -> list[Row]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query, params)
        return cur.fetchall()


_PAGE_PARTS = (
    (
        "j",
        monitor.LIVE_STATES,
        "last_error",
        sql.SQL(
            "SELECT j.id, j.entrypoint, j.state, j.attempt, j.priority,"
            " CASE j.state WHEN 'running' THEN j.started_at ELSE j.run_at END AS at,"
            " j.worker_id, j.last_error AS error FROM pgq.jobs AS j"
        ),
    ),
    (
        "h",
        monitor.FINISHED_STATES,
        "error",
        sql.SQL(
            "SELECT h.id, h.entrypoint, h.state, h.attempt, h.priority, h.finished_at AS at,"
            " h.worker_id, h.error FROM pgq.job_history AS h"
        ),
    ),
)


def job_page(conn: Connection, wanted: JobFilter) -> tuple[list[Row], int | None]:
    """One page of jobs, newest id first, and the cursor of the next (older) page if any.

    Each table is walked backwards along its primary key from the cursor, so a page costs the
    same on the first and the thousandth page, however long the history.
    """
    parts = []
    for alias, states, error_column, select in _PAGE_PARTS:
        if wanted.state is not None and wanted.state not in states:
            continue
        column = sql.Identifier(alias, "id")
        where: list[sql.Composable] = [sql.SQL("true")]
        if wanted.state is not None:
            where.append(sql.SQL("{} = {}").format(sql.Identifier(alias, "state"), wanted.state))
        if wanted.entrypoint is not None:
            where.append(
                sql.SQL("{} = {}").format(sql.Identifier(alias, "entrypoint"), wanted.entrypoint)
            )
        if wanted.job_id is not None:
            where.append(sql.SQL("{} = {}").format(column, wanted.job_id))
        if wanted.before is not None:
            where.append(sql.SQL("{} < {}").format(column, wanted.before))
        if wanted.error is not None:
            where.append(
                sql.SQL("strpos(lower({}), lower({})) > 0").format(
                    sql.Identifier(alias, error_column), wanted.error
                )
            )
        parts.append(
            sql.SQL("({} WHERE {} ORDER BY {} DESC LIMIT {})").format(
                select, sql.SQL(" AND ").join(where), column, wanted.limit + 1
            )
        )
    found = rows(
        conn,
        sql.SQL("SELECT * FROM ({}) AS page ORDER BY id DESC LIMIT {}").format(
            sql.SQL(" UNION ALL ").join(parts), wanted.limit + 1
        ),
    )
    if len(found) > wanted.limit:
        return found[: wanted.limit], found[wanted.limit - 1]["id"]
    return found, None


_JOB = """
SELECT j.id, j.entrypoint, j.state, j.priority, j.attempt,
       coalesce(j.max_attempts, e.max_attempts) AS max_attempts, j.dedupe_key, j.worker_id,
       j.enqueued_at, j.run_at, j.started_at, NULL::timestamptz AS finished_at,
       j.lease_expires_at, j.timeout_at, j.cancel_requested, j.last_error AS error,
       NULL::jsonb AS result, j.payload, j.headers
FROM pgq.jobs AS j LEFT JOIN pgq.entrypoints AS e ON e.name = j.entrypoint
WHERE j.id = %(id)s
UNION ALL
SELECT h.id, h.entrypoint, h.state, h.priority, h.attempt,
       coalesce(h.max_attempts, e.max_attempts), h.dedupe_key, h.worker_id,
       h.enqueued_at, NULL, h.started_at, h.finished_at,
       NULL, NULL, false, h.error, h.result, h.payload, h.headers
FROM pgq.job_history AS h LEFT JOIN pgq.entrypoints AS e ON e.name = h.entrypoint
WHERE h.id = %(id)s
"""

# The retry log has no index on job_id: the BRIN index on failed_at narrows the read to the
# job's lifetime (a job's failed tries all come after it was first enqueued).
_ATTEMPTS = """
SELECT r.attempt, r.failed_at, r.error FROM pgq.job_retries AS r
WHERE r.job_id = %(id)s AND r.failed_at >= %(since)s
ORDER BY r.failed_at, r.attempt
"""


def job(conn: Connection, job_id: int) -> Row | None:
    """One job, live or finished, with its retry log (`attempts`), or None."""
    found = rows(conn, _JOB, {"id": job_id})
    if not found:
        return None
    current = found[0]
    current["attempts"] = rows(conn, _ATTEMPTS, {"id": job_id, "since": current["enqueued_at"]})
    return current


def entrypoint_exists(conn: Connection, name: str) -> bool:
    return bool(rows(conn, "SELECT 1 FROM pgq.entrypoints WHERE name = %s", (name,)))


def allowed(conn: Connection) -> dict[str, bool]:
    """Which actions this connection's role may run: EXECUTE on the pgq function behind each."""
    found = rows(
        conn,
        "SELECT p.proname AS name, bool_or(has_function_privilege(p.oid, 'EXECUTE')) AS ok"
        " FROM pg_catalog.pg_proc AS p"
        " WHERE p.pronamespace = 'pgq'::regnamespace AND p.proname = ANY(%s) GROUP BY 1",
        (list(ACTIONS.values()),),
    )
    granted = {row["name"]: row["ok"] for row in found}
    return {action: bool(granted.get(function)) for action, function in ACTIONS.items()}


def failed_ids(
    conn: Connection, entrypoint: str | None, error: str | None, limit: int
) -> list[int]:
    """Ids of dead-lettered jobs (pgq.failed_jobs) matching the filter, newest first."""
    found = rows(
        conn,
        "SELECT id FROM pgq.failed_jobs"
        " WHERE (%(e)s::text IS NULL OR entrypoint = %(e)s)"
        " AND (%(q)s::text IS NULL OR strpos(lower(error), lower(%(q)s)) > 0)"
        " LIMIT %(n)s",
        {"e": entrypoint, "q": error, "n": limit},
    )
    return [row["id"] for row in found]


def minutes(conn: Connection) -> list[Row]:
    """pgq.throughput summed over entrypoints for each of the last 60 minutes (oldest first).

    p95 is the worst entrypoint's: percentiles of different entrypoints do not add up.
    """
    found = rows(
        conn,
        "SELECT date_trunc('minute', pgq.now()) AS now, t.minute,"
        " sum(t.succeeded)::bigint AS succeeded, sum(t.failed)::bigint AS failed,"
        " sum(t.retried)::bigint AS retried,"
        " extract(epoch FROM max(t.wait_p95))::float8 AS wait_p95,"
        " extract(epoch FROM max(t.run_p95))::float8 AS run_p95"
        " FROM (SELECT 1) AS one LEFT JOIN pgq.throughput AS t ON true GROUP BY 1, 2",
    )
    now: datetime = found[0]["now"]
    by_minute = {row["minute"]: row for row in found if row["minute"] is not None}
    series = []
    for back in range(59, -1, -1):
        minute = now - timedelta(minutes=back)
        row = by_minute.get(minute, {})
        series.append(
            {
                "minute": minute,
                **{k: row.get(k) or 0 for k in ("succeeded", "failed", "retried")},
                **{k: row.get(k) for k in ("wait_p95", "run_p95")},
            }
        )
    return series


def schedules_installed(conn: Connection) -> bool:
    """Whether periodic jobs (view pgq.schedule_stats) exist in this database."""
    return bool(rows(conn, "SELECT to_regclass('pgq.schedule_stats') IS NOT NULL AS ok")[0]["ok"])


def schedules(conn: Connection) -> list[Row] | None:
    """The rows of pgq.schedule_stats, or None where periodic jobs are not installed."""
    if not schedules_installed(conn):
        return None
    return rows(conn, "SELECT * FROM pgq.schedule_stats")
