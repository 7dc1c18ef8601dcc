"""Find the database to talk to and open connections to it."""

from __future__ import annotations

import os
from typing import Any

import psycopg

from pgq_thin._localdb import running_url
from pgq_thin.errors import PgqError, one_line

LIBPQ_VARS = ("PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGUSER", "PGSERVICE")

NO_DATABASE = (
    "no database configured: set DATABASE_URL (or PGHOST/PGDATABASE/...), "
    "or start a local one with `pgq-thin db start`"
)


def resolve_dsn(dsn: str | None = None) -> str:
    """Return the connection string: explicit, DATABASE_URL, libpq variables, or local db."""
    if dsn:
        return dsn
    if os.environ.get("DATABASE_URL"):
        return os.environ["DATABASE_URL"]
    if any(os.environ.get(name) for name in LIBPQ_VARS):
        return ""
    url = running_url()
    if url:
        return url
    raise PgqError(NO_DATABASE)


def describe(dsn: str) -> str:
    """The DSN without its password, for logs and banners."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "<invalid DSN>"
    info.pop("password", None)
    return " ".join(f"{k}={v}" for k, v in sorted(info.items())) or "(libpq defaults)"


def _libpq_lines(exc: BaseException) -> tuple[list[str], list[str]]:
    """libpq's reasons, each once, without the server address it repeats, and its hints."""
    reasons: list[str] = []
    hints: list[str] = []
    for line in (part.strip() for part in str(exc).splitlines()):
        if " failed: " in line:
            reason = " ".join(line.rsplit(" failed: ", 1)[1].removeprefix("FATAL:").split())
            reasons += [] if reason in reasons else [reason]
        elif line:
            hints.append(line[0].lower() + line[1:])
    return reasons, hints


def libpq_reason(exc: BaseException) -> str:
    """libpq's reason on one line: what failed ("Connection refused", "password authentication
    failed for user ...") without the server address it repeats, then its hint, if any."""
    reasons, hints = _libpq_lines(exc)
    if not reasons:
        return str(exc).strip().replace("\n", " ") or type(exc).__name__
    return "; ".join(reasons) + (f" ({'; '.join(hints)})" if hints else "")


def libpq_failure(exc: BaseException) -> str:
    """What a failed connection attempt says, without libpq's framing or hints: the short
    form a retry loop logs and classifies."""
    reasons, _ = _libpq_lines(exc)
    return "; ".join(reasons) or " ".join(one_line(exc).split()) or type(exc).__name__


def connect(dsn: str | None = None, *, autocommit: bool = False) -> psycopg.Connection[Any]:
    """Open a connection, turning libpq failures into one clear PgqError line."""
    resolved = resolve_dsn(dsn)
    try:
        return psycopg.connect(resolved, autocommit=autocommit, connect_timeout=10)
    except psycopg.OperationalError as exc:
        raise PgqError(f"cannot connect to {describe(resolved)}: {libpq_reason(exc)}") from exc
    except psycopg.ProgrammingError as exc:
        raise PgqError(f"invalid database URL: {str(exc).strip()}") from exc
