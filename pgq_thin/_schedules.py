"""An app's declared schedules (`@app.periodic`), stored at worker start.

pgq.register_schedules upserts them and pauses the ones this app declared before for its
entrypoints and no longer declares; each of those gets a warning. Firing is the database's
(dequeue and every worker's upkeep loop call pgq.fire_schedules).
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from pgq_thin._retry import TRANSIENT
from pgq_thin.app import App
from pgq_thin.errors import PgqError

log = logging.getLogger("pgq_thin.worker")

REGISTER = """
SELECT * FROM pgq.register_schedules(%s, %s, %s, %s, %s::jsonb[], %s, %s::integer[], %s::jsonb[],
                                     %s::integer[], %s)
"""


async def register(conn: psycopg.AsyncConnection[Any], app: App) -> None:
    """Store the app's schedules; warn about each one it no longer declares (now paused)."""
    ps = list(app.periodics.values())
    params = (
        sorted(app.entrypoints),
        [p.name for p in ps],
        [p.cron for p in ps],
        [p.entrypoint for p in ps],
        [Jsonb({} if p.payload is None else p.payload) for p in ps],
        [p.timezone for p in ps],
        [p.priority for p in ps],
        [Jsonb(p.headers or {}) for p in ps],
        [p.max_attempts for p in ps],
        [p.catch_up for p in ps],
    )
    try:
        cur = await conn.execute(REGISTER, params)
        paused = [row[0] for row in await cur.fetchall()]
    except TRANSIENT:
        raise  # the database went away: the caller waits and tries again
    except psycopg.errors.UndefinedFunction as exc:
        raise PgqError("the pgq schema predates schedules: run `pgq-thin upgrade`") from exc
    except psycopg.Error as exc:
        raise PgqError((exc.diag.message_primary or str(exc)).removeprefix("pgq: ")) from exc
    for name in paused:
        log.warning(
            "schedule %r is no longer declared by this app: paused, not deleted "
            "(`pgq-thin schedule remove %s` deletes it)",
            name, name,
        )  # fmt: skip
    if ps:
        log.info("schedules: %s", ", ".join(f"{p.name} ({p.cron})" for p in ps))
