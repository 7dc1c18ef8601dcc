"""Install, upgrade, verify and remove the `pgq` schema from the files in `sql/`.

`sql/preflight.sql` runs first and refuses a schema pgq that pgq-thin did not create (SkyTools
PgQ, or anything else named pgq). Migrations (`sql/migrations/NNNN_name.sql`) run once each, in
order; the function and view files (`sql/api/*.sql`) are re-applied by every install and
upgrade, `roles.sql` last (it creates the cluster-wide group roles if absent, refuses roles of
those names that pgq-thin did not create, and sets the privileges of every object).
Everything one call does happens in one transaction, under an advisory lock, so concurrent
installers are safe and a failure leaves the database as it was.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from pgq_thin.errors import PgqError, one_line

# Serializes installers (any two-int key not used by the queue functions).
INSTALL_LOCK = (1886418288, 1)
# The group roles sql/api/roles.sql creates, by kind; pgq_admin is a member of the others
# (so it comes first: uninstall drops it before finding members of theirs).
GROUP_ROLES = {
    "admin": "pgq_admin",
    "producer": "pgq_producer",
    "worker": "pgq_worker",
    "monitor": "pgq_monitor",
}
ROLES_FILE = "roles.sql"
PREFLIGHT_FILE = "preflight.sql"
INSTALLER_FILE = "install.psql"
# A role pgq-thin created carries a comment starting with this (sql/api/roles.sql).
ROLE_MARK = "pgq-thin:"
# What to do about a schema pgq that sql/preflight.sql says pgq-thin did not create.
ELSEWHERE = "pgq-thin leaves it alone: install pgq-thin into another database"


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
    """The function and view files in the order they are applied: by name, roles.sql last."""
    files = (root or sql_dir()).glob("api/*.sql")
    return sorted(files, key=lambda p: (p.name == ROLES_FILE, p.name))


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
    _preflight(conn, root or sql_dir(), ELSEWHERE)
    steps = [f"migration {m.path.name}" for m in pending(conn, root)]
    steps += [f"re-apply {p.parent.name}/{p.name}" for p in api_files(root)]
    return steps


def install_sql(from_version: int = 0, root: Path | None = None) -> str:
    """sql/install.psql with each `\\ir` replaced by the file it names, for `psql -f -`.

    Like install.psql it applies only the migrations a database lacks, so it also upgrades;
    `from_version` leaves out the migrations up to that version.
    """
    root = root or sql_dir()
    latest = latest_version(root)
    if from_version > latest:
        raise PgqError(
            f"--from-version {from_version} is newer than the schema of this pgq-thin "
            f"({latest}): upgrade the pgq-thin package"
        )

    def include(match: re.Match[str]) -> str:
        name = match.group(1)
        number = re.match(r"migrations/(\d+)_", name)
        if number and int(number.group(1)) <= from_version:
            return f"-- {name}: left out (--from-version {from_version})"
        return f"-- {name}\n{(root / name).read_text().rstrip()}"

    return re.sub(r"^\\ir (\S+)$", include, (root / INSTALLER_FILE).read_text(), flags=re.M)


def install(
    conn: psycopg.Connection[Any],
    root: Path | None = None,
    grant_to: Sequence[tuple[str, str]] = (),
) -> list[str]:
    """Apply pending migrations and re-apply the API in one transaction; returns what ran.

    `grant_to` holds (login role, kind) pairs: each role is made a member of that group role.
    Refuses a schema pgq that pgq-thin did not create, and migrations over tables that were
    changed since they were installed (sql/preflight.sql and pgq._record_install decide).
    """
    root = root or sql_dir()
    ran: list[str] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", INSTALL_LOCK)
        _preflight(conn, root, ELSEWHERE)
        for m in pending(conn, root):
            _run_file(conn, m.path)
            ran.append(m.path.name)
        for path in api_files(root):
            _run_file(conn, path)
        try:
            conn.execute("SELECT pgq._record_install()")
        except psycopg.errors.ObjectNotInPrerequisiteState as exc:
            raise PgqError(f"{exc.diag.message_primary}: {exc.diag.message_hint}") from None
        for role, kind in grant_to:
            grant(conn, role, kind)
    return ran


def _preflight(conn: psycopg.Connection[Any], root: Path, advice: str) -> None:
    """Run sql/preflight.sql: a schema pgq pgq-thin did not create becomes one PgqError line."""
    try:
        with conn.transaction():
            conn.execute((root / PREFLIGHT_FILE).read_bytes())
    except psycopg.errors.DuplicateSchema as exc:
        raise PgqError(f"{exc.diag.message_primary}: {advice}") from None


def _tables_changed(conn: psycopg.Connection[Any]) -> bool:
    """Whether the tables differ from the fingerprint recorded when migrations last ran."""
    row = conn.execute(
        "SELECT to_regprocedure('pgq.tables_fingerprint()') IS NOT NULL"
        " AND EXISTS (SELECT FROM pg_attribute WHERE attrelid = to_regclass('pgq.installation')"
        " AND attname = 'tables_fingerprint')"
    ).fetchone()
    if not row or not row[0]:
        return False  # installed before 0010: nothing recorded to compare with
    row = conn.execute(
        "SELECT tables_fingerprint IS DISTINCT FROM pgq.tables_fingerprint()"
        " AND tables_fingerprint IS NOT NULL FROM pgq.installation"
    ).fetchone()
    return bool(row and row[0])


def group_role(kind: str) -> str:
    """The group role of a kind (producer, worker, monitor, admin)."""
    try:
        return GROUP_ROLES[kind]
    except KeyError:
        raise PgqError(f"unknown role kind {kind!r}: use one of {', '.join(GROUP_ROLES)}") from None


def grant(conn: psycopg.Connection[Any], role: str, kind: str) -> None:
    """Make `role` (an application's login role) a member of the group role of `kind`."""
    statement = sql.SQL("GRANT {} TO {}").format(
        sql.Identifier(group_role(kind)), sql.Identifier(role)
    )
    try:
        conn.execute(statement)
    except psycopg.Error as exc:
        raise PgqError(f"cannot grant {group_role(kind)} to {role}: {one_line(exc)}") from exc


def _run_file(conn: psycopg.Connection[Any], path: Path) -> None:
    try:
        conn.execute(path.read_bytes())
    except psycopg.Error as exc:
        raise PgqError(
            f"{path.parent.name}/{path.name} failed, nothing was changed: {one_line(exc)}"
        ) from exc


def verify(conn: psycopg.Connection[Any], root: Path | None = None) -> list[str]:
    """Problems with the installed schema; empty when present, current and unaltered."""
    try:
        _preflight(conn, root or sql_dir(), ELSEWHERE)
    except PgqError as exc:
        return [str(exc)]
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
    elif _tables_changed(conn):
        problems.append(
            "the tables of schema pgq were changed since pgq-thin installed them (a column, "
            "index or constraint added or removed): `pgq-thin upgrade` does not undo that; compare "
            "`SELECT * FROM pgq.describe_schema()` with a fresh install's and revert it by hand"
        )
    elif row[0] != row[1]:
        problems.append(
            "the pgq schema was altered since it was installed (fingerprint "
            f"{row[1]} != recorded {row[0]}): run `pgq-thin upgrade` to restore it"
        )
    return problems


@dataclass(frozen=True)
class Removal:
    """What uninstall did: the schema, the group roles dropped, and each role kept with why."""

    schema_dropped: bool
    roles_dropped: list[str]
    roles_kept: list[str]


def uninstall(conn: psycopg.Connection[Any], root: Path | None = None) -> Removal:
    """Drop schema pgq, then each group role pgq-thin created that has no members or grants.

    Refuses a schema pgq that pgq-thin did not create, and one that objects outside it depend
    on (a view over pgq.jobs, say): DROP ... CASCADE would take them too. Roles are
    cluster-wide: one still granted privileges in another database (where pgq is installed
    too), with members, or not created by pgq-thin is kept, and `roles_kept` says why.
    """
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", INSTALL_LOCK)
        _preflight(conn, root or sql_dir(), "pgq-thin dropped nothing")
        row = conn.execute("SELECT to_regnamespace('pgq') IS NOT NULL").fetchone()
        installed = bool(row and row[0])
        if installed:
            outside = _dependents_outside(conn)
            if outside:
                raise PgqError(
                    f"objects outside schema pgq depend on it ({', '.join(outside)}): drop them "
                    "first; pgq-thin dropped nothing"
                )
            conn.execute("DROP SCHEMA pgq CASCADE")
        dropped: list[str] = []
        kept: list[str] = []
        for role in GROUP_ROLES.values():
            reason = _drop_role(conn, role)
            if reason is None:
                dropped.append(role)
            elif reason:
                kept.append(f"{role}: {reason}")
    return Removal(installed, dropped, kept)


def _dependents_outside(conn: psycopg.Connection[Any]) -> list[str]:
    """Objects outside schema pgq (views, functions, extensions...) that depend on one in it."""
    rows = conn.execute(
        """
        WITH inside(classid, objid) AS (
            SELECT 'pg_namespace'::regclass, 'pgq'::regnamespace::oid
            UNION ALL SELECT 'pg_class'::regclass, oid FROM pg_class
                WHERE relnamespace = 'pgq'::regnamespace
            UNION ALL SELECT 'pg_type'::regclass, oid FROM pg_type
                WHERE typnamespace = 'pgq'::regnamespace
            UNION ALL SELECT 'pg_proc'::regclass, oid FROM pg_proc
                WHERE pronamespace = 'pgq'::regnamespace
        )
        SELECT DISTINCT
            coalesce('view ' || v.oid::regclass, pg_describe_object(d.classid, d.objid, 0))
        FROM pg_depend AS d
        JOIN inside AS i ON (d.refclassid, d.refobjid) = (i.classid, i.objid)
        CROSS JOIN LATERAL pg_identify_object(d.classid, d.objid, d.objsubid) AS o
        LEFT JOIN pg_rewrite AS r ON d.classid = 'pg_rewrite'::regclass AND r.oid = d.objid
        LEFT JOIN pg_class AS v ON v.oid = r.ev_class
        WHERE d.deptype = 'n'
          AND coalesce(v.relnamespace::regnamespace::text, o.schema) IS DISTINCT FROM 'pgq'
        ORDER BY 1
        """
    ).fetchall()
    return [r[0] for r in rows]


def _drop_role(conn: psycopg.Connection[Any], role: str) -> str | None:
    """Drop a group role; None when dropped, '' when absent, else why it was kept."""
    row = conn.execute(
        "SELECT ARRAY(SELECT m.member::regrole::text FROM pg_auth_members AS m"
        " WHERE m.roleid = r.oid ORDER BY 1), shobj_description(r.oid, 'pg_authid')"
        " FROM pg_roles AS r WHERE r.rolname = %s",
        (role,),
    ).fetchone()
    if row is None:
        return ""
    if not (row[1] or "").startswith(ROLE_MARK):
        return "pgq-thin did not create it"
    if row[0]:
        return f"it has members ({', '.join(row[0])})"
    try:
        with conn.transaction():
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
    except psycopg.errors.DependentObjectsStillExist as exc:
        detail = (exc.diag.message_detail or "").replace("\n", "; ")
        return f"objects in other databases depend on it ({detail})"
    except psycopg.errors.InsufficientPrivilege as exc:
        return exc.diag.message_primary or str(exc)
    return None
