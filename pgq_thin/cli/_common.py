"""What every command shares: one-line errors and the --database-url option."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click

from pgq_thin.errors import PgqError

F = TypeVar("F", bound=Callable[..., Any])


def clear_errors(func: F) -> F:
    """Turn a PgqError into one line on stderr and exit status 1."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except PgqError as exc:
            click.echo(f"pgq-thin: error: {exc}", err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


def database_option(func: F) -> F:
    """The --database-url/-d option (a typed function, so modules importing it type-check)."""
    return click.option(
        "--database-url",
        "-d",
        "dsn",
        metavar="URL",
        help="PostgreSQL URL or DSN [env: DATABASE_URL; libpq PG* variables also work].",
    )(func)
