"""The `pgq-thin` command line."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from pgq_thin import schema
from pgq_thin._connection import connect, describe, resolve_dsn
from pgq_thin._version import __version__
from pgq_thin.cli._common import clear_errors, database_option
from pgq_thin.cli.db import db
from pgq_thin.cli.monitor import cancel, explain, jobs, pause, resume, retry, stats, workers
from pgq_thin.cli.run import enqueue, run
from pgq_thin.cli.web import web
from pgq_thin.errors import PgqError


@click.group()
@click.version_option(__version__, prog_name="pgq-thin")
def main() -> None:
    """pgq-thin: a PostgreSQL job queue whose rules live in SQL."""


def _role_grant(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> Any:
    """Parse each ROLE:KIND of --grant-to into (role, kind)."""
    pairs = []
    for value in values:
        role, _, kind = value.rpartition(":")
        if not role or kind not in schema.GROUP_ROLES:
            raise click.BadParameter(
                f"{value!r}: expected ROLE:KIND, KIND one of {', '.join(schema.GROUP_ROLES)}"
            )
        pairs.append((role, kind))
    return pairs


@main.command()
@database_option
@click.option(
    "--grant-to",
    "grant_to",
    multiple=True,
    metavar="ROLE:KIND",
    callback=_role_grant,
    help="Also make login role ROLE a member of pgq_KIND (producer, worker, monitor, admin). "
    "Repeatable.",
)
@clear_errors
def install(dsn: str | None, grant_to: list[tuple[str, str]]) -> None:
    """Install the pgq schema (or bring it up to date)."""
    with connect(dsn) as conn:
        ran = schema.install(conn, grant_to=grant_to)
        version = schema.latest_version()
    if ran:
        click.echo(f"installed pgq schema version {version} ({', '.join(ran)})")
    else:
        click.echo(f"pgq schema version {version} was already installed; functions re-applied")
    for role, kind in grant_to:
        click.echo(f"granted {schema.group_role(kind)} to {role}")


@main.command()
@database_option
@click.option("--plan", is_flag=True, help="Print what would run, change nothing.")
@clear_errors
def upgrade(dsn: str | None, plan: bool) -> None:
    """Apply pending migrations and re-apply the functions and views."""
    with connect(dsn) as conn:
        if plan:
            for step in schema.plan(conn):
                click.echo(step)
            return
        ran = schema.install(conn)
    version = schema.latest_version()
    done = f"applied {', '.join(ran)}" if ran else "no pending migrations"
    click.echo(f"pgq schema at version {version}: {done}; functions re-applied")


@main.command()
@database_option
@click.option("--yes", is_flag=True, help="Really drop schema pgq and every job in it.")
@clear_errors
def uninstall(dsn: str | None, yes: bool) -> None:
    """Remove schema pgq (all jobs are lost), and the pgq roles nothing else uses."""
    if not yes:
        raise PgqError("uninstall drops schema pgq and every job in it: rerun with --yes")
    with connect(dsn) as conn:
        removal = schema.uninstall(conn)
    if removal.schema_dropped:
        click.echo("pgq schema removed")
    else:
        click.echo("pgq was not installed; nothing to remove")
    for role in removal.roles_dropped:
        click.echo(f"role {role} dropped")
    for note in removal.roles_kept:
        click.echo(f"pgq-thin: kept role {note}", err=True)


@main.command()
@database_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts (exit status alike).")
@clear_errors
def verify(dsn: str | None, as_json: bool) -> None:
    """Exit 0 when the schema is installed, current and unaltered."""
    resolved = resolve_dsn(dsn)
    with connect(resolved) as conn:
        problems = schema.verify(conn)
    if as_json:
        report = {
            "ok": not problems,
            "schema_version": schema.latest_version(),
            "problems": problems,
        }
        click.echo(json.dumps({**report, "database": describe(resolved)}, indent=2))
        if problems:
            sys.exit(1)
    elif problems:
        raise PgqError("; ".join(problems))
    else:
        click.echo(f"ok: pgq schema version {schema.latest_version()} on {describe(resolved)}")


@main.command("sql")
@click.option(
    "--from-version",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Print the upgrade from this installed version (0 = fresh install).",
)
@clear_errors
def sql_command(from_version: int) -> None:
    """Print the install/upgrade SQL, for `psql -v ON_ERROR_STOP=1 -f -`."""
    click.echo(schema.install_sql(from_version), nl=False)


for command in (db, run, enqueue, stats, jobs, explain, retry, cancel, workers, pause, resume, web):
    main.add_command(command)
