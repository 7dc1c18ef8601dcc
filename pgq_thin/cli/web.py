"""`pgq-thin web`: the web dashboard (needs the extra: pip install 'pgq-thin[web]')."""

from __future__ import annotations

import click

from pgq_thin.cli._common import clear_errors, database_option
from pgq_thin.errors import PgqError

WEB_PACKAGES = ("starlette", "jinja2", "uvicorn", "multipart", "python_multipart")


@click.command()
@database_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=9651, show_default=True, help="Port."
)
@click.option("--read-only", is_flag=True, help="Offer no action and refuse every POST.")
@click.option(
    "--base-path",
    default="",
    metavar="PATH",
    help="Serve under this path prefix, e.g. /pgq behind a reverse proxy.",
)
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False),
    help="Require this file's bearer token [env: PGQ_WEB_TOKEN holds the token itself].",
)
@click.option(
    "--basic-auth-file",
    type=click.Path(dir_okay=False),
    help="Require basic auth with this file's user:password [env: PGQ_WEB_BASIC_AUTH].",
)
@clear_errors
def web(
    dsn: str | None,
    host: str,
    port: int,
    read_only: bool,
    base_path: str,
    token_file: str | None,
    basic_auth_file: str | None,
) -> None:
    """Serve the web dashboard (listens on 127.0.0.1 unless told otherwise, with auth)."""
    try:
        from pgq_thin import web as dashboard
    except ImportError as exc:
        missing = (exc.name or "").partition(".")[0]
        if missing not in WEB_PACKAGES:
            raise
        raise PgqError(f"the web dashboard needs {missing}: pip install 'pgq-thin[web]'") from exc
    auth = dashboard.Auth.load(token_file, basic_auth_file)
    dashboard.serve(dsn, host=host, port=port, read_only=read_only, base_path=base_path, auth=auth)
