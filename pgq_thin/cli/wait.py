"""`pgq-thin wait`: block until jobs finish; the exit status says how they ended."""

from __future__ import annotations

import dataclasses
import json
import sys
from typing import Any

import click

from pgq_thin._connection import connect
from pgq_thin.cli import render
from pgq_thin.cli._common import clear_errors, database_option
from pgq_thin.producer import Queue
from pgq_thin.results import JobStatus, WaitResult

# Exit statuses: every job succeeded, one failed (or was cancelled, or is unknown), time ran out.
ALL_SUCCEEDED, SOME_FAILED, TIMED_OUT = 0, 1, 2
DEFAULT_TIMEOUT = 30.0

timeout_option = click.option(
    "--timeout",
    type=float,
    default=DEFAULT_TIMEOUT,
    show_default=True,
    metavar="SECONDS",
    help="Stop waiting after this long (exit status 2); must be > 0.",
)


def _line(status: JobStatus) -> str:
    text = f"job {status.id}: {status.state} (attempt {status.attempt})"
    if status.finished and status.error:
        text += f": {status.error.splitlines()[0]}"
    elif status.succeeded and status.result is not None:
        text += f" result={json.dumps(status.result)}"
    return text if status.finished else f"{text}, still pending"


def report(result: WaitResult, job_ids: list[int], as_json: bool) -> int:
    """Print each job's status in the order asked; return the exit status."""
    if as_json:
        rows: list[dict[str, Any]] = [
            dataclasses.asdict(result.jobs[i]) if i in result.jobs else {"id": i, "state": None}
            for i in dict.fromkeys(job_ids)
        ]
        click.echo(render.to_json(rows))
    else:
        for job_id in dict.fromkeys(job_ids):
            status = result.jobs.get(job_id)
            click.echo(_line(status) if status else f"job {job_id}: unknown (no such job)")
    if result.timed_out:
        return TIMED_OUT
    return ALL_SUCCEEDED if result.all_succeeded else SOME_FAILED


def wait_for(dsn: str | None, job_ids: list[int], timeout: float, as_json: bool) -> int:
    """Wait on a connection of its own; print; return the exit status."""
    with connect(dsn, autocommit=True) as conn:
        result = Queue(conn).wait(job_ids, timeout=timeout)
    return report(result, job_ids, as_json)


@click.command()
@database_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@timeout_option
@click.argument("job_ids", metavar="ID...", nargs=-1, required=True, type=click.IntRange(min=1))
@clear_errors
def wait(dsn: str | None, as_json: bool, timeout: float, job_ids: tuple[int, ...]) -> None:
    """Wait until jobs finish and print how each ended. Exit status: 0 all succeeded, 1 any
    failed, was cancelled or does not exist, 2 the timeout came first."""
    sys.exit(wait_for(dsn, list(job_ids), timeout, as_json))
