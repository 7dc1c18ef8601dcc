"""A worker's upkeep loop: pgq.reap() every second, VACUUM the hot table every half second,
pgq.prune() every minute, pgq.fire_schedules() every half second.

Timeouts and lapsed leases are recorded by pgq.reap, which pgq.claim also runs; a worker at
full capacity never dequeues, so one worker at a time (the holder of a session advisory lock
on its own connection, as for VACUUM) also reaps on a short cadence: a hung job times out
even when nobody claims.

Finished jobs leave dead tuples in pgq.jobs, and the space the table and its indexes hold
grows with the jobs run between two vacuums (bench/run.py --only churn). Autovacuum at its
defaults looks once a minute, so one worker at a time (the holder of a session advisory lock
on its own connection) runs a plain VACUUM of pgq.jobs whenever its dead tuples pass 100 + 10%
of the live ones. VACUUM cannot run in a transaction or a function, hence a client-side loop.
PostgreSQL lets only the table's owner, the database owner or a superuser vacuum it: any
other role gets one warning at start and the loop leaves vacuuming to autovacuum.

The worker that reaps also fires due schedules on its own cadence, so a tick fires on time
even while every worker is busy (claims fire them too, when a probe finds one due; each tick
fires once whoever calls).

While a transaction holds the cleanup horizon back (an open analytics query, a session left
`idle in transaction`), VACUUM can remove nothing it has not already removed: when one leaves
the table as dead as it found it, the vacuuming worker stands down until the session holding
the oldest snapshot or transaction id changes, and records so with pgq.report_vacuum (shown by
pgq.health; pgq.claim then claims past the jobs it already took). Meanwhile it runs ANALYZE
each time the table doubles, so that the planner, which VACUUM kept informed, still knows it.

Every worker calls pgq.prune() (which lets one caller at a time in) until it returns 0;
the retention is the database's (pgq.configure). Errors are logged and retried at the next
tick; they never stop the worker.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import psycopg

from pgq_thin._retry import TRANSIENT
from pgq_thin.config import Settings
from pgq_thin.errors import one_line

log = logging.getLogger("pgq_thin.maintenance")

APPLICATION_NAME = "pgq-thin maintenance"
VACUUM_LOCK = (1886418288, 3)  # pgq's advisory key space: 1 install, 2 prune, 3 vacuum, 4 reap
REAP_LOCK = (1886418288, 4)
PRUNE_BATCH = 10_000

TRY_LOCK = "SELECT pg_try_advisory_lock(%s, %s)"
# Worth a VACUUM: dead tuples past 100 + 10% of the live ones (a deep backlog is not rescanned
# every tick for the few jobs finished since the last one).
NEEDS_VACUUM = """
SELECT pg_stat_get_dead_tuples(t.oid) > 100 + pg_stat_get_live_tuples(t.oid) / 10
FROM (SELECT 'pgq.jobs'::regclass::oid) AS t(oid)
"""
DEAD = "SELECT pg_stat_get_dead_tuples('pgq.jobs'::regclass)"
VACUUM = "VACUUM pgq.jobs"
# The session of this database whose snapshot or transaction id is oldest (the one holding the
# horizon), with that id: the horizon is held as long as the oldest id stays the same (sessions
# whose snapshots were taken while nothing ran share it).
HOLDER = """
SELECT a.pid, coalesce(a.backend_xid, a.backend_xmin)::text
FROM pg_catalog.pg_stat_activity AS a
WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()
  AND (a.backend_xid IS NOT NULL OR a.backend_xmin IS NOT NULL)
ORDER BY greatest(age(a.backend_xid), age(a.backend_xmin)) DESC, a.xact_start, a.pid
LIMIT 1
"""
REPORT_VACUUM = "SELECT pgq.report_vacuum(%s)"
# The table outgrew twice the size its statistics know: plans made from them (the hot path's are
# made once per session) would read it whole where an index finds a few rows.
GROWN = """
SELECT pg_relation_size(c.oid) > 2 * 8192 * greatest(c.relpages, 8)
FROM pg_catalog.pg_class AS c WHERE c.oid = 'pgq.jobs'::regclass
"""
ANALYZE = "ANALYZE pgq.jobs"
PRUNE = "SELECT pgq.prune(%s)"
REAP = "SELECT pgq.reap()"
FIRE = "SELECT pgq.fire_schedules(%s)"
FIRE_INTERVAL = 0.5  # seconds: a tick fires at most this late while a worker runs
FIRE_BATCH = 1000
# Who may VACUUM a table in PostgreSQL 15: a superuser, its owner, or the database's owner
# (membership counts as in pg_has_role ... 'USAGE').
MAY_VACUUM = """
SELECT r.rolsuper OR pg_has_role(c.relowner, 'USAGE') OR pg_has_role(d.datdba, 'USAGE')
FROM pg_catalog.pg_class AS c, pg_catalog.pg_roles AS r, pg_catalog.pg_database AS d
WHERE c.oid = 'pgq.jobs'::regclass AND r.rolname = current_user
  AND d.datname = current_database()
"""

Conn = psycopg.AsyncConnection[Any]


class Maintenance:
    """Runs pgq.reap(), VACUUM of pgq.jobs, pgq.prune() and pgq.fire_schedules() each on its
    interval (0 turns one off)."""

    def __init__(self, dsn: str, settings: Settings, *, session: bool = True) -> None:
        self.dsn = dsn
        # Without a session (a transaction pooler) no session lock is held: every worker reaps
        # (pgq.reap skips what another is reaping).
        self._session = session
        self.intervals = {
            "reap": settings.reap_interval,
            "vacuum": settings.vacuum_interval,
            "prune": settings.prune_interval,
            "schedules": FIRE_INTERVAL,
        }
        self._tasks = {
            "reap": self._reap,
            "vacuum": self._vacuum,
            "prune": self._prune,
            "schedules": self._fire,
        }
        self._conn: Conn | None = None
        self._checked = False  # whether this role may vacuum was looked up
        self._vacuumer = False  # holds the vacuum lock on the current connection
        self._reaper = False  # holds the reap lock on the current connection
        self._held_by: tuple[int, str] | None = None  # (pid, xid) VACUUM stood down for
        self._reported = False  # whether pgq.vacuum_state says so (a past worker's may not)
        self._failing: set[str] = set()  # tasks whose last run failed (one warning each)

    def _enabled(self) -> list[str]:
        return [name for name, every in self.intervals.items() if every]

    async def run(self) -> None:
        """Until cancelled (or every task is off): each task when it is due, on one connection."""
        if not self._enabled():
            return
        log.info(
            "maintenance: pgq.reap() every %s, VACUUM pgq.jobs every %s, pgq.prune() every %s, "
            "pgq.fire_schedules() every %s",
            *(f"{every:g}s" if every else "never" for every in self.intervals.values()),
        )
        due = dict.fromkeys(self.intervals, 0.0)
        try:
            while enabled := self._enabled():
                for name in enabled:
                    if due[name] <= time.monotonic():
                        due[name] = time.monotonic() + self.intervals[name]
                        await self._guarded(name)
                pending = [due[name] for name in self._enabled()]
                if pending:
                    await asyncio.sleep(max(0.0, min(pending) - time.monotonic()))
        finally:
            await self._drop_connection()

    async def _guarded(self, name: str) -> None:
        """One run of a task; a failure is logged once until the task works again."""
        try:
            await self._tasks[name](await self._connection())
        except psycopg.errors.InsufficientPrivilege as exc:
            log.warning("maintenance: %s disabled: %s", name, one_line(exc))
            self.intervals[name] = 0.0
        except psycopg.Error as exc:
            if name not in self._failing:
                log.warning("maintenance: %s failed: %s; retrying", name, one_line(exc))
                self._failing.add(name)
            if isinstance(exc, TRANSIENT):
                await self._drop_connection()  # reconnect next time
        else:
            if name in self._failing:
                log.info("maintenance: %s works again", name)
                self._failing.discard(name)

    async def _connection(self) -> Conn:
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(
                self.dsn,
                autocommit=True,
                connect_timeout=10,
                application_name=APPLICATION_NAME,
                prepare_threshold=None,  # through a transaction pooler too (pgq_thin/_pools.py)
            )
            self._vacuumer = self._reaper = False
        return self._conn

    async def _drop_connection(self) -> None:
        if self._conn is not None:
            await self._conn.close()
        self._conn = None

    async def _vacuum(self, conn: Conn) -> None:
        """VACUUM pgq.jobs if enough of it is dead and this worker is the one that vacuums."""
        if not self._checked:
            allowed = await _fetch(conn, MAY_VACUUM)
            self._checked = True
            if not allowed:
                log.warning(
                    "maintenance: VACUUM of pgq.jobs disabled: role %r may not vacuum it (only "
                    "its owner, the database owner or a superuser may), so only autovacuum "
                    "cleans the hot table (set PGQ_VACUUM_INTERVAL=0 to silence this)",
                    conn.info.user,
                )
                self.intervals["vacuum"] = 0.0
                return
        if not self._vacuumer:
            self._vacuumer = bool(await _fetch(conn, TRY_LOCK, VACUUM_LOCK))
            if not self._vacuumer:
                return  # another worker vacuums
        if not await _fetch(conn, NEEDS_VACUUM):
            await self._stand_down(conn, None)
            return
        held = self._held_by
        if held is not None and (holder := await _row(conn, HOLDER)) and holder[1] == held[1]:
            # Still held: a VACUUM could remove nothing, but the table grows, and VACUUM is
            # what kept its size known to the planner.
            if await _fetch(conn, GROWN):
                await conn.execute(ANALYZE)
            return
        dead = await _fetch(conn, DEAD)
        started = time.monotonic()
        await conn.execute(VACUUM)
        log.debug("maintenance: vacuumed pgq.jobs in %.3fs", time.monotonic() - started)
        # What VACUUM could not remove stays counted as dead: about as dead as before means held.
        futile = await _fetch(conn, NEEDS_VACUUM) and await _fetch(conn, DEAD) > 0.9 * dead
        await self._stand_down(conn, await _row(conn, HOLDER) if futile else None)

    async def _stand_down(self, conn: Conn, holder: tuple[int, str] | None) -> None:
        """Record a change of whether VACUUM stands down (for `holder`) or runs (None)."""
        if holder == self._held_by and self._reported:
            return
        if holder is not None:
            log.info(
                "maintenance: VACUUM of pgq.jobs stands down while session %d holds the "
                "cleanup horizon (see pgq.health)",
                holder[0],
            )
        elif self._held_by is not None:
            log.info("maintenance: the cleanup horizon moved on; VACUUM of pgq.jobs runs again")
        await conn.execute(REPORT_VACUUM, (None if holder is None else holder[0],))
        self._held_by, self._reported = holder, True

    async def _reaps(self, conn: Conn) -> bool:
        """Whether this worker is the one that reaps and fires schedules (the others rely on
        it; without a session every worker does, and the functions skip what another holds)."""
        if not self._reaper and self._session:
            self._reaper = bool(await _fetch(conn, TRY_LOCK, REAP_LOCK))
        return self._reaper or not self._session

    async def _reap(self, conn: Conn) -> None:
        """pgq.reap(), by the one worker that reaps."""
        if not await self._reaps(conn):
            return
        reaped = await _fetch(conn, REAP)
        if reaped:
            log.debug("maintenance: reaped %d job(s)", reaped)

    async def _prune(self, conn: Conn) -> None:
        """pgq.prune() until it has nothing left (or another worker is pruning)."""
        total = 0
        while removed := await _fetch(conn, PRUNE, (PRUNE_BATCH,)):
            total += removed
        if total:
            log.info("maintenance: pruned %d row(s) older than the history retention", total)

    async def _fire(self, conn: Conn) -> None:
        """pgq.fire_schedules() until no due schedule is left, by the worker that reaps: a fleet
        calls it twice a second in all, not twice a second per worker (claims fire too)."""
        if not await self._reaps(conn):
            return
        while await _fetch(conn, FIRE, (FIRE_BATCH,)) == FIRE_BATCH:
            pass


async def _row(conn: Conn, query: str) -> tuple[Any, ...] | None:
    """The first row, if any."""
    cur = await conn.execute(query)
    return await cur.fetchone()


async def _fetch(conn: Conn, query: str, params: tuple[Any, ...] | None = None) -> Any:
    """The first column of the first row."""
    cur = await conn.execute(query, params)
    row = await cur.fetchone()
    return row[0] if row else None
