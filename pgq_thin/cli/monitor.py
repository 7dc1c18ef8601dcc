"""Monitoring commands: stats (a live dashboard with --watch), jobs, explain, retry, cancel,
workers, pause and resume."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import datetime

import click

from pgq_thin import monitor
from pgq_thin._connection import connect, describe, resolve_dsn
from pgq_thin.cli import render
from pgq_thin.cli._common import clear_errors, database_option
from pgq_thin.errors import PgqError

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
# Job ids are bigint: a larger number is not an id (rather than an error of the database's).
JOB_ID = click.IntRange(min=1, max=2**63 - 1)
job_ids_argument = click.argument("job_ids", metavar="ID...", nargs=-1, required=True, type=JOB_ID)


@click.command()
@database_option
@json_option
@click.option(
    "--watch",
    metavar="SECONDS",
    type=click.FloatRange(min=0.1),
    help="Redraw every SECONDS as a live dashboard until Ctrl-C (with --json: one line each).",
)
@clear_errors
def stats(dsn: str | None, as_json: bool, watch: float | None) -> None:
    """Per entrypoint: queued, scheduled, running, limit, oldest wait, recent outcomes."""
    resolved = resolve_dsn(dsn)
    if watch is None:
        with connect(resolved, autocommit=True) as conn:
            current = monitor.stats(conn)
        width, _ = render.terminal_size()
        text = render.to_json(current) if as_json else "\n".join(render.stats_lines(current, width))
        click.echo(text)
        return
    try:
        while True:
            click.echo(_frame(resolved, as_json, watch))
            time.sleep(watch)
    except KeyboardInterrupt:
        pass


def _frame(dsn: str, as_json: bool, every: float) -> str:
    """One redraw of `stats --watch`; a database error is shown, and retried next time."""
    width, height = render.terminal_size()
    try:
        with connect(dsn, autocommit=True) as conn:
            current = monitor.stats(conn)
    except PgqError as exc:
        if as_json:
            return render.to_json_line({"error": str(exc)})
        body = [f"error: {exc}", "retrying..."]
    else:
        if as_json:
            return render.to_json_line(current)
        # The title, the database and a blank line above; the cursor's line below.
        body = render.stats_lines(current, width, height - 4)
    click.clear()
    title = f"pgq-thin stats  {datetime.now():%H:%M:%S}  every {every:g}s, Ctrl-C quits"
    return "\n".join([title, render.clip(describe(dsn), width), "", *body])


@click.command()
@database_option
@json_option
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice(monitor.STATES),
    help="Only jobs in this state (repeatable).",
)
@click.option("--entrypoint", "-e", help="Only jobs of this entrypoint.")
@click.option(
    "--limit", type=click.IntRange(min=1), default=20, show_default=True, help="Most jobs shown."
)
@clear_errors
def jobs(
    dsn: str | None, as_json: bool, states: tuple[str, ...], entrypoint: str | None, limit: int
) -> None:
    """List jobs, newest first (live ones and those kept in history)."""
    with connect(dsn, autocommit=True) as conn:
        found = monitor.list_jobs(conn, states, entrypoint, limit)
        now = monitor.now(conn)
    if as_json:
        click.echo(render.to_json(found))
    else:
        click.echo("\n".join(render.job_lines(found, now, render.terminal_size()[0])))


@click.command()
@database_option
@json_option
@click.argument("job_id", metavar="ID", type=JOB_ID)
@clear_errors
def explain(dsn: str | None, as_json: bool, job_id: int) -> None:
    """Why a job is or is not running (exit 1 when there is no such job)."""
    with connect(dsn, autocommit=True) as conn:
        text = monitor.explain(conn, job_id)
    click.echo(render.to_json({"id": job_id, "explanation": text}) if as_json else text)


@click.command()
@database_option
@json_option
@job_ids_argument
@clear_errors
def retry(dsn: str | None, as_json: bool, job_ids: tuple[int, ...]) -> None:
    """Re-queue failed or cancelled jobs with a fresh attempt budget."""

    def one(conn: monitor.Connection, job_id: int) -> str:
        monitor.retry(conn, job_id)
        return "queued"

    _each(dsn, as_json, job_ids, one)


@click.command()
@database_option
@json_option
@job_ids_argument
@clear_errors
def cancel(dsn: str | None, as_json: bool, job_ids: tuple[int, ...]) -> None:
    """Cancel jobs; a running one stops when its worker learns of it."""
    _each(dsn, as_json, job_ids, monitor.cancel)


def _each(
    dsn: str | None,
    as_json: bool,
    job_ids: tuple[int, ...],
    action: Callable[[monitor.Connection, int], str],
) -> None:
    """Apply `action` to each job; report each outcome; exit 1 if any of them failed."""
    results = []
    with connect(dsn, autocommit=True) as conn:
        for job_id in job_ids:
            try:
                results.append({"id": job_id, "outcome": action(conn, job_id), "error": None})
            except PgqError as exc:
                results.append({"id": job_id, "outcome": None, "error": str(exc)})
    if as_json:
        click.echo(render.to_json(results))
    for result in results:
        if result["error"] is not None:
            click.echo(f"pgq-thin: error: {result['error']}", err=True)
        elif not as_json:
            click.echo(f"job {result['id']}: {result['outcome']}")
    if any(result["error"] is not None for result in results):
        sys.exit(1)


@click.command()
@database_option
@json_option
@clear_errors
def workers(dsn: str | None, as_json: bool) -> None:
    """Registered workers (alive or stale) and unregistered holders of running jobs."""
    with connect(dsn, autocommit=True) as conn:
        found = monitor.workers(conn)
        now = monitor.now(conn)
    if as_json:
        click.echo(render.to_json(found))
    else:
        click.echo("\n".join(render.worker_lines(found, now, render.terminal_size()[0])))


def _pause_command(paused: bool) -> click.Command:
    verb = "paused" if paused else "resumed"

    @database_option
    @json_option
    @click.option(
        "--create",
        is_flag=True,
        help="Also for an entrypoint with no jobs and no policy yet (not a typo).",
    )
    @click.argument("entrypoint")
    @clear_errors
    def command(dsn: str | None, as_json: bool, create: bool, entrypoint: str) -> None:
        with connect(dsn, autocommit=True) as conn:
            known = monitor.set_paused(conn, entrypoint, paused, create=create)
        if as_json:
            click.echo(render.to_json({"entrypoint": entrypoint, "paused": paused, "known": known}))
            return
        literal = "'" + entrypoint.replace("'", "''") + "'"
        note = "" if known else f" (new; SELECT pgq.remove_entrypoint({literal}) removes it)"
        click.echo(f"{verb} {entrypoint}{note}")

    help_text = (
        "Stop workers from claiming an entrypoint's jobs (running ones finish)."
        if paused
        else "Let workers claim a paused entrypoint's jobs again."
    )
    return click.command("pause" if paused else "resume", help=help_text)(command)


pause = _pause_command(True)
resume = _pause_command(False)
