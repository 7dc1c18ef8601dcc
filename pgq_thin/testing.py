"""pytest plugin (entry point ``pgq_thin``): test against a real PostgreSQL with the pgq schema.

Fixtures:

- ``pgq_server`` (session): the `PgqServer` to use. The one named by DATABASE_URL, PG*
  variables or libpq defaults when it accepts a connection from a role that may create
  databases; otherwise a throwaway server started from the installed binaries, stopped at
  the end of the session. ``PGQ_THIN_TEST_SERVER=throwaway`` always starts one;
  ``PGQ_THIN_TEST_SERVER=<dsn>`` names the server to use instead of DATABASE_URL.
- ``pgq_template`` (session): name of a template database holding the installed schema.
- ``pgq_dsn`` (function): DSN of a fresh database cloned from the template, dropped after.
- ``pgq_conn`` (function): an autocommit connection to ``pgq_dsn``.
- ``throwaway_server`` (function): a started `ThrowawayServer` of the test's own, which it
  may stop, restart or kill; discarded after. Tests that restart PostgreSQL use this.

Nothing is detected or started before a fixture asks for it.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from pgq_thin._localdb import LocalServer

if TYPE_CHECKING:
    from pytest_postgresql.janitor import DatabaseJanitor

SERVER_ENV = "PGQ_THIN_TEST_SERVER"
_db_numbers = itertools.count(1)


class ThrowawayServer(LocalServer):
    """A PostgreSQL server of one test's own (see `LocalServer` for start/stop/restart/kill)."""

    def connect(self, dbname: str = "postgres") -> psycopg.Connection[tuple[Any, ...]]:
        """An autocommit connection to `dbname`."""
        return psycopg.connect(self.dsn(dbname), autocommit=True, connect_timeout=10)

    def install_schema(self, dbname: str = "postgres") -> None:
        """Install the pgq schema into `dbname`."""
        from pgq_thin import schema

        with self.connect(dbname) as conn:
            schema.install(conn)


@dataclass
class PgqServer:
    """Where test databases are created: connection parameters plus a maintenance database."""

    host: str
    port: int
    user: str
    dbname: str
    password: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # other conninfo keys (sslmode, ...)
    local: ThrowawayServer | None = None  # set when started for this session

    def dsn(self, dbname: str | None = None) -> str:
        """A complete key=value DSN for `dbname` (default: the maintenance database)."""
        params = {**self.extra, "host": self.host, "port": self.port, "user": self.user}
        if self.password:
            params["password"] = self.password
        return make_conninfo("", **params, dbname=dbname or self.dbname)

    def janitor(self, dbname: str, **kwargs: Any) -> DatabaseJanitor:
        """pytest-postgresql's janitor for `dbname` on this server."""
        from pytest_postgresql.janitor import DatabaseJanitor

        return DatabaseJanitor(
            user=self.user,
            host=self.host,
            port=self.port,
            password=self.password,
            dbname=dbname,
            maintenance_dbname=self.dbname,
            connection_timeout=10,
            **kwargs,
        )


def _existing_server() -> PgqServer | None:
    """The configured server, if it accepts us and we may create databases there."""
    choice = os.environ.get(SERVER_ENV, "")
    if choice == "throwaway":
        return None
    base = choice or os.environ.get("DATABASE_URL", "")
    try:
        with psycopg.connect(base, autocommit=True, connect_timeout=3) as conn:
            row = conn.execute(
                "SELECT rolsuper OR rolcreatedb FROM pg_roles WHERE rolname = current_user"
            ).fetchone()
            if not row or not row[0]:
                return None
            info = conn.info
            extra = {
                k: v
                for k, v in conninfo_to_dict(base).items()
                if k not in ("host", "hostaddr", "port", "user", "password", "dbname")
            }
            return PgqServer(
                info.host, info.port, info.user, info.dbname, info.password or None, extra
            )
    except psycopg.Error:
        if choice:
            raise
        return None


@pytest.fixture(scope="session")
def pgq_server() -> Iterator[PgqServer]:
    """The PostgreSQL server the pgq fixtures create their databases on."""
    existing = _existing_server()
    if existing is not None:
        yield existing
        return
    local = ThrowawayServer.throwaway()
    try:
        yield PgqServer("127.0.0.1", local.port, "postgres", "postgres", local=local)
    finally:
        local.discard()


@pytest.fixture(scope="session")
def pgq_template(pgq_server: PgqServer) -> Iterator[str]:
    """A template database (unique to this process) with the pgq schema installed."""
    from pgq_thin import schema

    name = f"pgq_tmpl_{os.getpid()}"
    janitor = pgq_server.janitor(name, as_template=True)
    janitor.drop()  # left behind by a crashed run with the same pid
    janitor.init()
    try:
        with psycopg.connect(pgq_server.dsn(name)) as conn:
            schema.install(conn)
            conn.commit()
        yield name
    finally:
        janitor.drop()


@pytest.fixture
def pgq_dsn(pgq_server: PgqServer, pgq_template: str) -> Iterator[str]:
    """DSN of a fresh database with the pgq schema, for this test only."""
    name = f"pgq_test_{os.getpid()}_{next(_db_numbers)}"
    janitor = pgq_server.janitor(name, template_dbname=pgq_template)
    janitor.drop()
    janitor.init()
    try:
        yield pgq_server.dsn(name)
    finally:
        janitor.drop()


@pytest.fixture
def pgq_conn(pgq_dsn: str) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
    """An autocommit connection to this test's database."""
    with psycopg.connect(pgq_dsn, autocommit=True) as conn:
        yield conn


@pytest.fixture
def throwaway_server() -> Iterator[ThrowawayServer]:
    """A started server of this test's own (no pgq schema: call `install_schema()`)."""
    server = ThrowawayServer.throwaway()
    try:
        yield server
    finally:
        server.discard()
