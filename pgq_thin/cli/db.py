"""`pgq-thin db ...`: the local PostgreSQL for trying things (see `pgq_thin._localdb`)."""

from __future__ import annotations

import click

from pgq_thin._localdb import db_dir, running_url, start, status, stop
from pgq_thin.cli._common import clear_errors
from pgq_thin.errors import PgqError


@click.group()
def db() -> None:
    """A local PostgreSQL for trying things: data in .pgq-thin/db of the nearest directory
    upward that has a .pgq-thin/ (else here), or in $PGQ_THIN_DB_DIR."""


@db.command("start")
@clear_errors
def db_start() -> None:
    """Start the local server (initialising it the first time) and print its URL."""
    url = start()
    click.echo(url)
    click.echo(
        "pgq-thin commands run anywhere in this project use it; for other programs: "
        f"export DATABASE_URL='{url}'",
        err=True,
    )


@db.command("stop")
@clear_errors
def db_stop() -> None:
    """Stop the local server."""
    click.echo("stopped" if stop() else "not running")


@db.command("status")
@clear_errors
def db_status() -> None:
    """Show where the local server lives and whether it runs (exit 3 when it does not)."""
    info = status()
    state = "running" if info["running"] else ("stopped" if info["initialized"] else "not created")
    if info.get("status") and not info["running"]:
        state = info["status"]
    click.echo(f"state:      {state}" + (f" (pid {info['pid']})" if info["pid"] else ""))
    for key in ("url", "directory", "datadir", "socket_dir", "log"):
        if info[key]:
            click.echo(f"{key + ':':<11} {info[key]}")
    if not info["running"]:
        raise SystemExit(3)


@db.command("url")
@clear_errors
def db_url() -> None:
    """Print the local server's URL (exit 1 when it does not run, so
    `export DATABASE_URL=$(pgq-thin db url)` cannot set an empty value unnoticed)."""
    url = running_url()
    if url is None:
        raise PgqError(f"the local database in {db_dir()} is not running: `pgq-thin db start`")
    click.echo(url)
