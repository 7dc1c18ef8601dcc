"""The worker's connections: where each one goes, how many there are, and waiting for them.

A worker holds `Connections.count` connections (its budget):

- `pool_size` pooled ones (PGQ_POOL_SIZE, default 3) for claims and outcomes, to
  DATABASE_URL. They keep no session settings (the claim's `synchronous_commit` is local to
  its transaction) and no session locks, so a transaction pooler (PgBouncer's `pool_mode =
  transaction`) may run each transaction on another server connection. Whether DATABASE_URL
  keeps a session is tested at start: a NOTIFY sent from a second connection must reach a
  listener within PROBE_WAIT (a transaction pooler hands it to whichever client holds the
  server connection then). If it does not, psycopg's automatic prepared statements (after 5
  runs of a statement) are off; where it does they stay, as they save the planning of every
  claim (an empty claim costs a quarter to a half less prepared: bench/topology.py).
- one LISTEN connection (pgq_jobs, pgq_cancel): to PGQ_LISTEN_URL when set (straight to
  PostgreSQL while claims go through the pooler; it must pass the same test), else to
  DATABASE_URL when it keeps a session. Without notifications (PGQ_LISTEN=off, or a
  transaction pooler and no PGQ_LISTEN_URL) the worker polls every POLL_ONLY seconds.
- one for the heartbeat thread (pgq_thin/_liveness.py), to DATABASE_URL, without prepared
  statements: leases are renewed even while the event loop is blocked.
- one maintenance connection (VACUUM under a session advisory lock, pgq.prune) to the same
  session-keeping DSN; through a transaction pooler with no PGQ_LISTEN_URL the VACUUM is left
  to autovacuum (its one-worker-at-a-time lock needs a session), pruning stays.

At start the worker waits, with backoff, for a database that is down, starting up, not
resolvable yet or without the pgq schema, up to PGQ_CONNECT_TIMEOUT seconds; for a full server
(too many connections) without limit, as at run time. A configuration error (unknown database
or role, failed authentication, a statement pooler) stops it at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, ClassVar, Literal

import psycopg
from psycopg_pool import AsyncConnectionPool

from pgq_thin._connection import describe, libpq_failure, resolve_dsn
from pgq_thin._maintenance import Maintenance
from pgq_thin._retry import TRANSIENT, Retry
from pgq_thin.config import Settings
from pgq_thin.errors import PgqError, one_line

log = logging.getLogger("pgq_thin.worker")

Conn = psycopg.AsyncConnection[Any]
Kind = Literal["config", "full", "down"]

POOL_NAME = "pgq-thin"
POOL_TIMEOUT = 5.0  # seconds a claim, heartbeat or outcome waits for a pooled connection
RECONNECT_TIMEOUT = 10.0  # a pool slot failing this long is dropped, and regrown when needed
CONNECT_TIMEOUT = 10  # libpq's, per attempt
PROBE_WAIT = 1.0  # seconds a NOTIFY may take to reach a session-keeping listener
POLL_ONLY = 0.1  # poll interval without notifications (PGQ_POLL_INTERVAL when shorter)
LISTEN_CHECK = 10.0  # seconds between liveness checks of an idle LISTEN connection

INSTALLED = "SELECT to_regclass('pgq.migrations') IS NOT NULL"
PROBE = "SELECT pg_notify('pgq_probe', %s)"
# What libpq and PgBouncer say when only a configuration change helps, and when the server is
# up but has no connection slot left.
CONFIG_ERRORS = (
    "does not exist",
    "authentication failed",
    "no pg_hba.conf entry",
    "no password supplied",
    "no such database",
    "no such user",
    "for connection option",
    "invalid connection option",
)
FULL = ("too many clients", "connection slots are reserved", "no more connections allowed")
STATEMENT_POOLING = "statement pooling"  # in PgBouncer's refusal of a transaction block
NOT_INSTALLED = "pgq is not installed"


def kind(why: str) -> Kind:
    """config: exit at once; full: wait without limit; down: wait up to the connect timeout."""
    if any(marker in why for marker in CONFIG_ERRORS):
        return "config"
    return "full" if any(marker in why for marker in FULL) else "down"


def _problem(dsn: str, what: str, why: str) -> str:
    """One line: what is wrong with `dsn`, the setting it came from, and what to do."""
    if why == NOT_INSTALLED:
        return f"pgq is not installed in {describe(dsn)} ({what}): run `pgq-thin install`"
    return f"cannot connect to {describe(dsn)} ({what}): {why}{_hint(why)}"


def _hint(why: str) -> str:
    return " (max_connections exhausted?)" if kind(why) == "full" else ""


class Outage:
    """Logs what failed and why once per outage, and once when it works again."""

    def __init__(self, what: str, again: str) -> None:
        self.what = what  # "listener connection lost"
        self.again = again  # "listening again"
        self.why: str | None = None

    def failed(self, why: str, meanwhile: str = "") -> None:
        if self.why is None:
            log.warning("%s: %s%s; retrying with backoff%s", self.what, why, _hint(why), meanwhile)
        self.why = why

    def ended(self) -> None:
        if self.why is not None:
            log.info("%s", self.again)
        self.why = None


class _PooledConnection(psycopg.AsyncConnection[Any]):
    """A pool connection whose failures to connect are logged once per outage."""

    outage: ClassVar[Outage]

    @classmethod
    async def connect(cls, conninfo: str = "", **kwargs: Any) -> _PooledConnection:
        try:
            conn = await super().connect(conninfo, **kwargs)
        except psycopg.OperationalError as exc:
            cls.outage.failed(libpq_failure(exc))
            raise
        cls.outage.ended()
        return conn


class _QuietPool(logging.Filter):
    """Drops the pool's own warnings about our connections (one per failed attempt, one per
    connection found broken): Outage says what happened once."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        ours = bool(args) and (args[0] == POOL_NAME or isinstance(args[0], _PooledConnection))
        return not (ours and "connect" in str(record.msg))


logging.getLogger("psycopg.pool").addFilter(_QuietPool())


class Connections:
    """A worker's pool, LISTEN and maintenance connections, opened by `open`."""

    def __init__(self, settings: Settings, application_name: str) -> None:
        self.settings = settings
        self.dsn = resolve_dsn(settings.database_url)
        self.kwargs: dict[str, Any] = {
            "autocommit": True,
            "prepare_threshold": None,
            "application_name": application_name,
            "connect_timeout": CONNECT_TIMEOUT,
        }
        self.pool_kwargs = dict(self.kwargs)  # prepared statements only where a session is kept
        pooled = type(
            "PooledConnection",
            (_PooledConnection,),
            {"outage": Outage("cannot open a pooled connection", "pooled connections open again")},
        )
        self.pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            self.dsn,
            min_size=settings.pool_size,
            max_size=settings.pool_size,
            kwargs=self.pool_kwargs,
            connection_class=pooled,
            open=False,
            timeout=POOL_TIMEOUT,
            reconnect_timeout=RECONNECT_TIMEOUT,
            name=POOL_NAME,
        )
        self.session_dsn: str | None = None  # keeps a session: LISTEN and maintenance go there
        self.listening: str | None = None  # the LISTEN connection's DSN; None: poll only
        self.poll_interval = settings.poll_interval
        self._listener: Conn | None = None  # opened at start, handed to `listen`
        self._deadline = 0.0

    # --- start-up -------------------------------------------------------------------------

    async def open(self, setup: Callable[[Conn], Awaitable[None]]) -> None:
        """Wait for the database, run `setup` in one transaction, open the pool, find a
        session-keeping connection for LISTEN and maintenance, and log the plan."""
        self._deadline = time.monotonic() + self.settings.connect_timeout
        retry = Retry()
        outage = Outage("start-up interrupted", "start-up resumed")
        while True:
            try:
                await self._open(setup)
                break
            except TRANSIENT as exc:  # the server went away or filled up meanwhile
                outage.failed(libpq_failure(exc))
                await asyncio.sleep(retry.next())
        outage.ended()
        log.info("connections: %s", self.plan())

    async def _open(self, setup: Callable[[Conn], Awaitable[None]]) -> None:
        conn = listener = await self._ready(self.dsn, "DATABASE_URL", schema=True)
        try:
            try:
                async with conn.transaction():
                    await conn.execute("SELECT 1")
            except psycopg.errors.ProtocolViolation as exc:
                if STATEMENT_POOLING not in str(exc):
                    raise
                raise PgqError(
                    f"{describe(self.dsn)} (DATABASE_URL) is a pooler in statement mode, which "
                    "refuses the transactions a worker needs: use pool_mode = transaction or "
                    "session"
                ) from exc
            async with conn.transaction():
                await setup(conn)
            session = await self._keeps_session(conn)
            if session:  # psycopg's default: prepare a statement after its 5th run
                self.pool_kwargs.pop("prepare_threshold", None)
            else:
                self.pool_kwargs["prepare_threshold"] = None
            await self.pool.open()
            url = self.settings.listen_url
            if url:
                listener = await self._ready(url, "PGQ_LISTEN_URL", schema=False)
                if not await self._keeps_session(listener):
                    raise PgqError(
                        f"{describe(url)} (PGQ_LISTEN_URL) gets no notification sent through "
                        "DATABASE_URL: point it straight at the same PostgreSQL database, "
                        "not at a transaction pooler"
                    )
                self.session_dsn = url
            elif session:
                self.session_dsn = self.dsn
            if self.settings.listen == "auto" and self.session_dsn is not None:
                self.listening, self._listener = self.session_dsn, listener
            else:
                self.poll_interval = min(self.settings.poll_interval, POLL_ONLY)
        finally:
            for opened in {conn, listener} - {self._listener}:
                await opened.close()

    async def _ready(self, dsn: str, what: str, *, schema: bool) -> Conn:
        """A connection to `dsn` (with the pgq schema), waiting for it as the settings say."""
        retry = Retry()
        waiting: str | None = None
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(dsn, **self.kwargs)
            except psycopg.ProgrammingError as exc:
                raise PgqError(f"invalid {what}: {one_line(exc)}") from exc
            except psycopg.OperationalError as exc:
                why = libpq_failure(exc)
                if kind(why) == "config":
                    raise PgqError(_problem(dsn, what, why)) from exc
            else:
                cur = await conn.execute(INSTALLED) if schema else None
                if cur is None or await cur.fetchone() == (True,):
                    return conn
                await conn.close()
                why = NOT_INSTALLED
            left = self._deadline - time.monotonic()
            if kind(why) == "down" and left <= 0:
                limit = self.settings.connect_timeout
                waited = f" (waited {limit:g}s, PGQ_CONNECT_TIMEOUT)" if limit else ""
                raise PgqError(_problem(dsn, what, why) + waited)
            if why != waiting:
                waiting = why
                until = "until it can" if kind(why) == "full" else f"for up to {left:.0f}s"
                log.warning("waiting: %s; retrying %s", _problem(dsn, what, why), until)
            delay = retry.next()
            await asyncio.sleep(delay if kind(why) == "full" else min(delay, max(left, 0.0)))

    async def _keeps_session(self, listener: Conn) -> bool:
        """Whether a NOTIFY sent from another connection to DATABASE_URL reaches `listener`."""
        token = uuid.uuid4().hex
        await listener.execute("LISTEN pgq_probe")
        async with await psycopg.AsyncConnection.connect(self.dsn, **self.kwargs) as conn:
            await conn.execute(PROBE, (token,))
        arrived = False
        async for note in listener.notifies(timeout=PROBE_WAIT):
            if note.payload == token:
                arrived = True
                break
        await listener.execute("UNLISTEN pgq_probe")
        return arrived

    def plan(self) -> str:
        """The connections this worker holds, for the log."""
        s = self.settings
        prepared = "" if "prepare_threshold" in self.pool_kwargs else ", prepared statements"
        parts = [
            f"{s.pool_size} pooled: claims, outcomes (DATABASE_URL{prepared})",
            "1 heartbeat thread (DATABASE_URL)",
        ]
        if self.listening is not None:
            source = "PGQ_LISTEN_URL" if self.listening == s.listen_url else "DATABASE_URL"
            parts.append(f"1 LISTEN ({source})")
        if self._maintains():
            source = "PGQ_LISTEN_URL" if s.listen_url else "DATABASE_URL"
            parts.append(f"1 maintenance ({source})")
        text = f"{', '.join(parts)}: {self.count} in all"
        if self.listening is None:
            why = (
                "PGQ_LISTEN=off"
                if s.listen == "off"
                else "DATABASE_URL drops LISTEN (a transaction pooler?): set PGQ_LISTEN_URL to a "
                "direct connection for instant pickup"
            )
            text += f"; poll-only mode, every {self.poll_interval:g}s: {why}"
        return text

    @property
    def count(self) -> int:
        """Connections held: the pool, the heartbeat thread's, LISTEN, maintenance."""
        listen = self.listening is not None
        return self.settings.pool_size + 1 + listen + self._maintains()

    def _maintains(self) -> bool:
        """Whether the maintenance loop has anything to do (and so holds a connection)."""
        s = self._maintenance_settings()
        return bool(s.vacuum_interval or s.prune_interval or s.reap_interval)

    # --- running --------------------------------------------------------------------------

    async def listen(
        self, on_notify: Callable[[str, str], None], on_listening: Callable[[bool], None]
    ) -> None:
        """LISTEN on pgq_jobs and pgq_cancel until cancelled, reconnecting after a lost
        connection; `on_listening(again)` runs each time it (re)starts, `again` after a lost
        connection. Returns at once if poll-only."""
        if self.listening is None:
            return
        conn, self._listener = self._listener, None
        outage = Outage("listener connection lost", "listening again on pgq_jobs, pgq_cancel")
        retry = Retry()
        again = False
        while True:
            try:
                if conn is None:
                    conn = await psycopg.AsyncConnection.connect(self.listening, **self.kwargs)
                async with conn:
                    await conn.execute("LISTEN pgq_jobs")
                    await conn.execute("LISTEN pgq_cancel")
                    outage.ended()
                    retry.reset()
                    on_listening(again)
                    again = True
                    while True:
                        async for note in conn.notifies(timeout=LISTEN_CHECK):
                            on_notify(note.channel, note.payload)
                        await conn.execute("SELECT 1")
            except TRANSIENT as exc:
                conn = None
                poll = f"; polling every {self.settings.poll_interval:g}s meanwhile"
                outage.failed(libpq_failure(exc), poll)
                await asyncio.sleep(retry.next())

    def _maintenance_settings(self) -> Settings:
        """VACUUM only where there is a session for its one-worker-at-a-time lock."""
        s = self.settings
        return replace(s, vacuum_interval=0.0) if self.session_dsn is None else s

    def maintenance(self) -> Maintenance:
        """The maintenance loop, on the session-keeping connection when there is one."""
        settings = self._maintenance_settings()
        if settings.vacuum_interval != self.settings.vacuum_interval:
            log.info(
                "maintenance: VACUUM of pgq.jobs left to autovacuum: its one-worker-at-a-time "
                "lock needs a session, and DATABASE_URL does not keep one (set PGQ_LISTEN_URL "
                "to a direct connection)"
            )
        return Maintenance(
            self.session_dsn or self.dsn, settings, session=self.session_dsn is not None
        )

    async def close(self) -> None:
        """Close the pool, and the LISTEN connection if `listen` never took it."""
        await self.pool.close()
        if self._listener is not None:
            await self._listener.close()
            self._listener = None
