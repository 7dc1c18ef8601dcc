"""Install, upgrade, verify and remove the `pgq` schema from the files in `sql/`.

Migrations (`sql/migrations/NNNN_name.sql`) run once each, in order; the function and view
files (`sql/api/*.sql`) are re-applied by every install and upgrade. Everything one call does
happens in one transaction, under an advisory lock, so concurrent installers are safe and a
failure leaves the database as it was.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from pgq_thin.errors import PgqError

# Serializes installers (any two-int key not used by the queue functions).
INSTALL_LOCK = (1886418288, 1)


@dataclass(frozen=True)
class Migration:
    """One migration file: its version number and path."""

    version: int
    path: Path


def sql_dir() -> Path:
    """The `sql/` directory: shipped inside the wheel, or beside the package in a checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "sql", here.parent / "sql"):
        if (candidate / "migrations").is_dir():
            return candidate
    raise PgqError(f"the SQL files of pgq-thin are missing (looked in {here / 'sql'})")


def migrations(root: Path | None = None) -> list[Migration]:
    """The migration files in version order."""
    found = []
    for path in sorted((root or sql_dir()).glob("migrations/*.sql")):
        match = re.match(r"(\d+)_", path.name)
        if not match:
            raise PgqError(f"migration file name must start with a number: {path.name}")
        found.append(Migration(int(match.group(1)), path))
    return found


def api_files(root: Path | None = None) -> list[Path]:
    """The function and view files, in the order they are applied."""
    return sorted((root or sql_dir()).glob("api/*.sql"))


def latest_version(root: Path | None = None) -> int:
    """The schema version this package installs."""
    return migrations(root)[-1].version


def applied_versions(conn: psycopg.Connection[Any]) -> set[int]:
    """Versions already applied in the database (empty when pgq is not installed)."""
    row = conn.execute("SELECT to_regclass('pgq.migrations') IS NOT NULL").fetchone()
    if not row or not row[0]:
        return set()
    return {int(r[0]) for r in conn.execute("SELECT version FROM pgq.migrations")}


def pending(conn: psycopg.Connection[Any], root: Path | None = None) -> list[Migration]:
    """Migrations not applied yet; refuses a database newer than this package."""
    applied = applied_versions(conn)
    latest = latest_version(root)
    if applied and max(applied) > latest:
        raise PgqError(
            f"the database has pgq schema version {max(applied)}, newer than this pgq-thin "
            f"knows ({latest}): upgrade the pgq-thin package"
        )
    return [m for m in migrations(root) if m.version not in applied]


def plan(conn: psycopg.Connection[Any], root: Path | None = None) -> list[str]:
    """What an install/upgrade would run, one file per line."""
    steps = [f"migration {m.path.name}" for m in pending(conn, root)]
    steps += [f"re-apply {p.parent.name}/{p.name}" for p in api_files(root)]
    return steps


def install_sql(from_version: int = 0, root: Path | None = None) -> str:
    """The SQL script that installs (or upgrades from `from_version`), for psql users."""
    parts = ["BEGIN;", f"SELECT pg_advisory_xact_lock{INSTALL_LOCK};"]
    for m in migrations(root):
        if m.version > from_version:
            parts.append(f"-- {m.path.name}\n{m.path.read_text()}")
    for path in api_files(root):
        parts.append(f"-- api/{path.name}\n{path.read_text()}")
    parts += ["SELECT pgq.record_install();", "COMMIT;"]
    return "\n".join(parts) + "\n"


def install(conn: psycopg.Connection[Any], root: Path | None = None) -> list[str]:
    """Apply pending migrations and re-apply the API in one transaction; returns what ran."""
    ran: list[str] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", INSTALL_LOCK)
        for m in pending(conn, root):
            _run_file(conn, m.path)
            ran.append(m.path.name)
        for path in api_files(root):
            _run_file(conn, path)
        conn.execute("SELECT pgq.record_install()")
    return ran


def _run_file(conn: psycopg.Connection[Any], path: Path) -> None:
    try:
        conn.execute(path.read_bytes())
    except psycopg.Error as exc:
        raise PgqError(
            f"{path.parent.name}/{path.name} failed, nothing was changed: "
            f"{str(exc).strip().splitlines()[0]}"
        ) from exc


def verify(conn: psycopg.Connection[Any], root: Path | None = None) -> list[str]:
    """Problems with the installed schema; empty when present, current and unaltered."""
    applied = applied_versions(conn)
    if not applied:
        return ["pgq is not installed in this database: run `pgq-thin install`"]
    latest = latest_version(root)
    problems = []
    if max(applied) < latest:
        problems.append(
            f"schema version {max(applied)} is older than {latest}: run `pgq-thin upgrade`"
        )
    elif max(applied) > latest:
        problems.append(
            f"schema version {max(applied)} is newer than this pgq-thin ({latest}): "
            "upgrade the pgq-thin package"
        )
    row = conn.execute(
        "SELECT (SELECT fingerprint FROM pgq.installation), pgq.fingerprint()"
    ).fetchone()
    if row is None or row[0] is None:
        problems.append("no install fingerprint recorded: run `pgq-thin upgrade`")
    elif row[0] != row[1]:
        problems.append(
            "the pgq schema was altered since it was installed (fingerprint "
            f"{row[1]} != recorded {row[0]}): run `pgq-thin upgrade` to restore it"
        )
    return problems


def uninstall(conn: psycopg.Connection[Any]) -> bool:
    """Drop everything pgq-thin created; False when there was nothing to drop."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", INSTALL_LOCK)
        row = conn.execute("SELECT to_regnamespace('pgq') IS NOT NULL").fetchone()
        if not row or not row[0]:
            return False
        conn.execute("DROP SCHEMA pgq CASCADE")
    return True
