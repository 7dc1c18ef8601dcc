"""Schedule commands: `schedules` (the list), `schedule add|remove|pause|resume|run-now`.

Each is one pgq.* call (sql/api/schedule.sql); the database validates and answers.
"""

from __future__ import annotations

import json
from typing import Any

import click
import psycopg
from psycopg.types.json import Jsonb

from pgq_thin import monitor
from pgq_thin._connection import connect
from pgq_thin.cli import render
from pgq_thin.cli._common import clear_errors, database_option
from pgq_thin.errors import PgqError

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
name_argument = click.argument("name")


def _call(dsn: str | None, query: Any, params: tuple[Any, ...]) -> Any:
    """The one value of a pgq.* call; its error as a PgqError."""
    with connect(dsn, autocommit=True) as conn:
        try:
            row = conn.execute(query, params).fetchone()
        except psycopg.Error as exc:
            raise PgqError((exc.diag.message_primary or str(exc)).removeprefix("pgq: ")) from exc
    return row[0] if row else None


def _json(_ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    if value is None:
        return None
    try:
        return Jsonb(json.loads(value))
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}") from exc


@click.command("schedules")
@database_option
@json_option
@clear_errors
def schedules(dsn: str | None, as_json: bool) -> None:
    """List schedules: cron, next run, last tick and how its job did."""
    with connect(dsn, autocommit=True) as conn:
        found = monitor.schedule_stats(conn)
        now = monitor.now(conn)
    click.echo(render.to_json(found) if as_json else "\n".join(render.schedule_lines(found, now)))


@click.group("schedule")
def schedule() -> None:
    """Add, remove, pause, resume or run a schedule (periodic job)."""


@schedule.command("add")
@database_option
@name_argument
@click.argument("cron")
@click.argument("entrypoint")
@click.option("--payload", callback=_json, help="The jobs' payload, as JSON.  [default: {}]")
@click.option("--headers", callback=_json, help="Extra job headers, a JSON object.")
@click.option("--timezone", "-z", default="UTC", show_default=True, help="IANA time zone.")
@click.option("--priority", type=int, default=0, show_default=True)
@click.option("--max-attempts", type=click.IntRange(min=1), help="Default: the entrypoint's.")
@click.option(
    "--catch-up",
    type=click.Choice(["latest", "all", "none"]),
    default="latest",
    show_default=True,
    help="After downtime: the newest missed tick, each (at most 1000), or none.",
)
@clear_errors
def add(
    dsn: str | None,
    name: str,
    cron: str,
    entrypoint: str,
    payload: Any,
    headers: Any,
    timezone: str,
    priority: int,
    max_attempts: int | None,
    catch_up: str,
) -> None:
    """Create or replace schedule NAME: enqueue ENTRYPOINT on CRON (quote it)."""
    next_run = _call(
        dsn,
        "SELECT pgq.schedule(%s, %s, %s, payload => %s, timezone => %s, priority => %s,"
        " headers => %s, max_attempts => %s, catch_up => %s)",
        (name, cron, entrypoint, payload or Jsonb({}), timezone, priority,
         headers or Jsonb({}), max_attempts, catch_up),
    )  # fmt: skip
    click.echo(f"schedule {name}: next run {next_run.isoformat()}")


@schedule.command("remove")
@database_option
@name_argument
@clear_errors
def remove(dsn: str | None, name: str) -> None:
    """Delete schedule NAME (jobs it enqueued stay)."""
    if not _call(dsn, "SELECT pgq.unschedule(%s)", (name,)):
        raise PgqError(f"no schedule named {name!r}")
    click.echo(f"schedule {name} removed")


@schedule.command("pause")
@database_option
@name_argument
@clear_errors
def pause(dsn: str | None, name: str) -> None:
    """Stop firing schedule NAME until it is resumed."""
    if not _call(dsn, "SELECT pgq.pause_schedule(%s)", (name,)):
        raise PgqError(f"no schedule named {name!r}")
    click.echo(f"schedule {name} paused")


@schedule.command("resume")
@database_option
@name_argument
@clear_errors
def resume(dsn: str | None, name: str) -> None:
    """Fire schedule NAME again from now on (ticks missed while paused do not fire)."""
    next_run = _call(dsn, "SELECT pgq.resume_schedule(%s)", (name,))
    if next_run is None:
        raise PgqError(f"no schedule named {name!r}")
    click.echo(f"schedule {name} resumed: next run {next_run.isoformat()}")


@schedule.command("run-now")
@database_option
@name_argument
@clear_errors
def run_now(dsn: str | None, name: str) -> None:
    """Enqueue schedule NAME's job now (its timing is unchanged)."""
    job_id = _call(dsn, "SELECT pgq.run_schedule(%s)", (name,))
    click.echo(f"schedule {name}: enqueued job {job_id}")
