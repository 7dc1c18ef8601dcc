"""`pgq-thin run` (serve an App's entrypoints) and `pgq-thin enqueue` (add one job)."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import logging
import os
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime
from typing import Any, TypeVar

import click
import psycopg

from pgq_thin import _logging
from pgq_thin._connection import connect
from pgq_thin.app import App
from pgq_thin.cli._common import clear_errors
from pgq_thin.cli.wait import timeout_option, wait_for
from pgq_thin.config import Settings, env_var, load_settings
from pgq_thin.errors import PgqError
from pgq_thin.observer import JobObserver
from pgq_thin.producer import Queue
from pgq_thin.results import check_timeout
from pgq_thin.worker import Worker

F = TypeVar("F", bound=Callable[..., Any])

DEFAULTS = Settings()

# Setting -> (metavar, help); each flag's help adds its default and environment variable.
SETTING_FLAGS = {
    "database_url": ("URL", "PostgreSQL URL or DSN (libpq PG* variables also work)."),
    "max_concurrent_jobs": ("N", "Jobs this worker runs at once."),
    "job_timeout": (
        "SECONDS",
        "Seconds a job may run before it fails with 'timeout' "
        "(0 = none; an entrypoint's own timeout wins).",
    ),
    "batch_size": ("N", "Most jobs claimed in one pgq.claim call."),
    "poll_interval": ("SECONDS", "Polling period when no NOTIFY arrives."),
    "shutdown_grace": (
        "SECONDS",
        "On SIGINT/SIGTERM, how long running jobs may finish "
        "before they are released to the queue.",
    ),
    "lease_duration": (
        "SECONDS",
        "Lease per claim, renewed every third of it; a crashed worker's jobs run again after it.",
    ),
    "log_level": ("LEVEL", "DEBUG, INFO, WARNING or ERROR."),
    "log_format": ("FORMAT", "text, or json: one JSON object per line."),
    "log_jobs": (
        "WHICH",
        "all, or failures: no per-job start/success lines (failures are always logged).",
    ),
    "metrics_port": (
        "PORT",
        "Serve Prometheus /metrics on this port (needs pgq-thin[metrics]; none = off).",
    ),
    "reap_interval": (
        "SECONDS",
        "How often one worker runs pgq.reap() (timeouts, lapsed leases) even when none claims.",
    ),
    "vacuum_interval": (
        "SECONDS",
        "How often one worker VACUUMs the hot table pgq.jobs (0 = leave it to autovacuum).",
    ),
    "prune_interval": (
        "SECONDS",
        "How often pgq.prune() removes history older than the retention (0 = never).",
    ),
    "exit_when_stuck": (
        "BOOL",
        "Exit (status 70) when every slot is held by a `def` handler that outlived its job.",
    ),
    "pool_size": (
        "N",
        "Pooled connections for claims, heartbeats and outcomes (1 for a small worker); a "
        "worker holds this plus one LISTEN and one maintenance connection.",
    ),
    "listen": (
        "auto|off",
        "auto: LISTEN for new jobs where it works (PGQ_LISTEN_URL, else DATABASE_URL unless a "
        "transaction pooler drops it); off: poll only, every 0.1s at most.",
    ),
    "listen_url": (
        "URL",
        "A direct connection for LISTEN and maintenance while DATABASE_URL goes through a "
        "transaction pooler (PgBouncer).",
    ),
    "connect_timeout": (
        "SECONDS",
        "At start, how long to wait for a database that is down or without the pgq schema "
        "(0 = fail at once); a full server is waited for without limit.",
    ),
}


def _show(value: object) -> str:
    return "none" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def setting_options(func: F) -> F:
    """Add one `--flag` per setting (all strings, validated by pgq_thin.config)."""
    for key, (metavar, text) in reversed(SETTING_FLAGS.items()):
        flag = "--" + key.replace("_", "-")
        default = getattr(DEFAULTS, key)
        shown = "" if key in ("database_url", "listen_url") else f" [default: {_show(default)}]"
        func = click.option(
            flag, key, metavar=metavar, help=f"{text}{shown} [env: {env_var(key)}]"
        )(func)
    return func


def load_target(spec: str) -> object:
    """Import MODULE:ATTRIBUTE, with the current directory on sys.path."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise PgqError(f"expected MODULE:FACTORY (e.g. consumer:main), got {spec!r}")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not f"{module_name}.".startswith(f"{exc.name}."):
            raise  # the module exists but an import inside it failed: show the traceback
        raise PgqError(f"cannot import {module_name!r} from {cwd}: {exc}") from exc
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise PgqError(f"module {module_name!r} has no attribute {attribute!r}") from None


@asynccontextmanager
async def open_app(target: object) -> AsyncIterator[App]:
    """The App from a factory: an App, or a callable returning one, an awaitable of one,
    or an async context manager yielding one."""
    value = target() if callable(target) else target
    if inspect.isawaitable(value):
        value = await value
    if hasattr(value, "__aenter__") and hasattr(value, "__aexit__"):
        async with value as entered:
            yield _expect_app(entered)
    else:
        yield _expect_app(value)


def _expect_app(value: object) -> App:
    if not isinstance(value, App):
        raise PgqError(f"the factory gave {type(value).__name__}, expected a pgq_thin.App")
    return value


@click.command()
@click.argument("factory", metavar="MODULE:FACTORY")
@click.option(
    "--mode",
    type=click.Choice(["forever", "drain"]),
    default="forever",
    show_default=True,
    help="drain: exit once no job is claimable for the app's entrypoints and none is "
    "running (jobs due later, such as retries in backoff, are left for the next run).",
)
@click.option(
    "--config",
    "config_path",
    metavar="PATH",
    help="Config file (default: ./pgq-thin.toml, else [tool.pgq-thin] in ./pyproject.toml).",
)
@setting_options
@clear_errors
def run(factory: str, mode: str, config_path: str | None, **flags: str | None) -> None:
    """Serve the App that MODULE:FACTORY gives (a function, sync or async, or an async
    context manager) until SIGINT/SIGTERM: running jobs get the shutdown grace, then those
    whose handler stops go back to the queue. A second signal exits at once.

    Settings, highest first: flags, environment variables, the config file, defaults.
    """
    settings = load_settings(flags, config_path=config_path)
    _logging.setup(settings.log_level, settings.log_format, settings.log_jobs)
    target = load_target(factory)

    async def serve(observer: JobObserver | None) -> int:
        async with open_app(target) as app:
            worker = Worker(
                app, settings, mode="drain" if mode == "drain" else "forever", observer=observer
            )
            _logging.set_worker_id(worker.worker_id)
            worker.install_signal_handlers()
            return await worker.run()

    with metrics_endpoint(settings) as observer:
        code = asyncio.run(serve(observer))
    # Handler threads, and threads a handler started, cannot be interrupted: don't wait.
    lingering = [t.name for t in threading.enumerate() if t.is_alive() and not t.daemon]
    lingering.remove(threading.current_thread().name)
    if lingering:
        logging.getLogger("pgq_thin.worker").warning(
            "exiting with %d thread(s) still running: %s", len(lingering), ", ".join(lingering)
        )
        logging.shutdown()
        os._exit(code)
    sys.exit(code)


@contextmanager
def metrics_endpoint(settings: Settings) -> Iterator[JobObserver | None]:
    """With a metrics port: /metrics served meanwhile, and the observer that feeds it."""
    if settings.metrics_port is None:
        yield None
        return
    from pgq_thin import metrics  # prometheus-client is an optional extra

    try:
        server = metrics.serve(settings.metrics_port, settings.database_url)
    except OSError as exc:
        raise PgqError(f"cannot serve metrics on port {settings.metrics_port}: {exc}") from None
    logging.getLogger("pgq_thin.metrics").info(
        "serving Prometheus metrics on port %d at /metrics", settings.metrics_port
    )
    try:
        yield metrics.PrometheusObserver()
    finally:
        server.shutdown()


def _json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise PgqError(f"invalid JSON {what}: {exc}") from None


def _run_at(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise PgqError(
            f"invalid --run-at {text!r}: expected ISO 8601, e.g. 2030-01-31T12:00:00+00:00"
        ) from None
    return moment if moment.tzinfo else moment.astimezone()  # naive: local time


def _payload_text(payload: str) -> str:
    """The JSON text of the payload argument: itself, `-` for stdin, or `@PATH` for a file
    (a shell argument fails past ~128 KiB; the payload limit is 1 MiB)."""
    if payload == "-":
        return sys.stdin.read()
    if payload.startswith("@"):
        try:
            with open(payload[1:], encoding="utf-8") as file:
                return file.read()
        except OSError as exc:
            raise PgqError(f"cannot read the payload from {payload[1:]}: {exc.strerror}") from None
        except UnicodeDecodeError as exc:
            raise PgqError(f"the payload in {payload[1:]} is not UTF-8: {exc.reason}") from None
    return payload


def _inserted_now(conn: psycopg.Connection[Any], job_id: int) -> bool | None:
    """Whether this transaction inserted job `job_id` (None when this role cannot read jobs)."""
    try:
        with conn.transaction():
            row = conn.execute(
                "SELECT xmin = pg_current_xact_id()::xid FROM pgq.jobs WHERE id = %s", (job_id,)
            ).fetchone()
    except psycopg.errors.InsufficientPrivilege:
        return None
    return bool(row and row[0])


@click.command()
@click.argument("entrypoint")
@click.argument("payload", metavar="[JSON | - | @FILE]", required=False)
@click.option("--priority", type=int, default=0, show_default=True, help="Higher runs first.")
@click.option("--delay", type=float, metavar="SECONDS", help="Run no sooner than this from now.")
@click.option("--run-at", metavar="ISO-8601", help="Run no sooner than this time.")
@click.option("--dedupe-key", metavar="KEY", help="If a live job has this key, return its id.")
@click.option("--max-attempts", type=click.IntRange(min=1), metavar="N", help="Tries in all.")
@click.option("--headers", metavar="JSON", help="A JSON object of headers.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.option(
    "--wait",
    "wait_done",
    is_flag=True,
    help="Then wait until the job finishes; exit status as `pgq-thin wait`.",
)
@timeout_option
@click.option(
    "--database-url",
    "-d",
    "dsn",
    metavar="URL",
    help=f"{SETTING_FLAGS['database_url'][1]} [env: DATABASE_URL]",
)
@clear_errors
def enqueue(
    entrypoint: str,
    payload: str | None,
    priority: int,
    delay: float | None,
    run_at: str | None,
    dedupe_key: str | None,
    max_attempts: int | None,
    headers: str | None,
    wait_done: bool,
    timeout: float,
    as_json: bool,
    dsn: str | None,
) -> None:
    """Enqueue one job for ENTRYPOINT and print its id. The payload is JSON text, `-` to read
    it from stdin, or `@FILE` to read it from a file.

    With --dedupe-key, a live job that has the key already is returned instead (and said so).
    With --wait, then wait until the job finishes and print how it ended (exit status as
    `pgq-thin wait`).
    """
    if delay is not None and run_at is not None:
        raise PgqError("give --delay or --run-at, not both")
    if wait_done:
        check_timeout(timeout)  # before anything is enqueued
    body = _json(_payload_text(payload), "payload") if payload is not None else None
    header_map = _json(headers, "--headers") if headers is not None else None
    if header_map is not None and not isinstance(header_map, dict):
        raise PgqError("--headers must be a JSON object")
    url = load_settings({"database_url": dsn}).database_url
    with connect(url) as conn:
        try:
            job_id = Queue(conn).enqueue(
                entrypoint,
                body,
                priority=priority,
                run_at=_run_at(run_at) if run_at is not None else None,
                delay=delay,
                dedupe_key=dedupe_key,
                headers=header_map,
                max_attempts=max_attempts,
            )
        except (psycopg.errors.UndefinedFunction, psycopg.errors.InvalidSchemaName) as exc:
            raise PgqError("pgq is not installed in this database: run `pgq-thin install`") from exc
        except psycopg.Error as exc:
            raise PgqError(f"enqueue failed: {exc.diag.message_primary or exc}") from exc
        created = True if dedupe_key is None else _inserted_now(conn, job_id)
        conn.commit()
    if as_json:
        click.echo(json.dumps({"id": job_id, "entrypoint": entrypoint, "created": created}))
    else:
        click.echo(job_id)
    if created is False and not as_json:
        click.echo(
            f"pgq-thin: job {job_id} already has dedupe key {dedupe_key!r}: the existing job "
            "was returned, nothing was enqueued",
            err=True,
        )
    if wait_done:
        sys.exit(wait_for(url, [job_id], timeout, as_json))
