"""The dashboard's pages and actions, as a Starlette app (`create_app`).

Pages read the pgq views through `pgq_thin.monitor` and `queries`; actions call the pgq
functions (retry, cancel, set_entrypoint) and nothing else, so the database decides what is
allowed and every rule stays in SQL.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from pgq_thin import monitor
from pgq_thin._connection import describe, resolve_dsn
from pgq_thin.errors import PgqError
from pgq_thin.monitor import Connection
from pgq_thin.web import queries, render
from pgq_thin.web.queries import BadFilter, JobFilter
from pgq_thin.web.security import (
    CSRF_FIELD,
    Auth,
    Guard,
    csrf_ok,
    csrf_token,
    is_loopback,
    set_csrf_cookie,
)

HERE = Path(__file__).parent
FLASH_COOKIE = "pgq_flash"
BULK_LIMIT = 1000  # most jobs one bulk retry re-queues
CONNECT_WAIT = 3.0  # seconds a page waits for a connection before saying the database is down
# Every dashboard query is a few index probes: a slow one (a text search over a long history)
# is cancelled and shown as an error instead of holding a connection.
STATEMENT_TIMEOUT_MS = 5000


def create_app(
    dsn: str | None = None,
    *,
    read_only: bool = False,
    auth: Auth | None = None,
    poll_seconds: float = 2.0,
) -> Starlette:
    """The dashboard as an ASGI app, to serve (`pgq-thin web`) or mount in another app.

    `dsn` defaults to DATABASE_URL / the libpq variables. With `read_only`, no action is
    offered and every POST is refused (403); otherwise each action is offered only when the
    database role may call the pgq function behind it. `auth` (see `Auth.load`) makes every
    page but /healthz require credentials; mounted behind an app of your own, leave it None
    and let that app authenticate.
    """
    dashboard = Dashboard(resolve_dsn(dsn), read_only, poll_seconds)
    return dashboard.app(auth)


class Dashboard:
    """The routes, over a small connection pool opened on first use."""

    def __init__(self, dsn: str, read_only: bool, poll_seconds: float) -> None:
        self.dsn = dsn
        self.read_only = read_only
        self.poll_ms = int(poll_seconds * 1000)
        self.templates = Jinja2Templates(directory=HERE / "templates")
        self.templates.env.filters.update(duration=render.duration, json=render.pretty_json)
        self._pool: ConnectionPool[Connection] | None = None
        self._lock = threading.Lock()

    def app(self, auth: Auth | None) -> Starlette:
        routes = [
            Route("/", self.overview),
            Route("/jobs", self.jobs),
            Route("/jobs/retry-failed", self.retry_failed, methods=["POST"]),
            Route("/jobs/{job_id:int}", self.job),
            Route("/jobs/{job_id:int}/retry", self.retry, methods=["POST"]),
            Route("/jobs/{job_id:int}/cancel", self.cancel, methods=["POST"]),
            Route("/entrypoints/pause", self.pause, methods=["POST"]),
            Route("/entrypoints/resume", self.resume, methods=["POST"]),
            Route("/workers", self.workers),
            Route("/schedules", self.schedules),
            Route("/healthz", self.healthz),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ]
        errors: dict[Any, Any] = {
            HTTPException: self._http_error,
            BadFilter: self._bad_filter,
            psycopg.errors.QueryCanceled: self._too_slow,
            PoolTimeout: self._unavailable,
            psycopg.OperationalError: self._unavailable,
            PgqError: self._not_installed,
            psycopg.Error: self._sql_error,
        }
        return Starlette(
            routes=routes,
            middleware=[Middleware(Guard, auth=auth)],
            exception_handlers=errors,
            lifespan=self._lifespan,
        )

    @asynccontextmanager
    async def _lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if self._pool is not None:
                await run_in_threadpool(self._pool.close)

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        with self._lock:
            if self._pool is None:
                self._pool = ConnectionPool(
                    self.dsn,
                    min_size=1,
                    max_size=6,
                    open=False,
                    check=ConnectionPool.check_connection,
                    kwargs={
                        "autocommit": True,
                        "connect_timeout": int(CONNECT_WAIT),
                        "application_name": "pgq-thin web",
                        "options": f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
                    },
                    name="pgq-thin-web",
                )
                self._pool.open(wait=False)
        with self._pool.connection(timeout=CONNECT_WAIT) as conn:
            yield conn

    # Pages ---------------------------------------------------------------------------------

    def page(self, request: Request, template: str, status: int = 200, **context: Any) -> Response:
        """Render a page with what every page needs: links, CSRF token, flash, permissions."""
        token, new_token = csrf_token(request)
        flash = _read_flash(request)
        can = context.pop("can", None) or dict.fromkeys(queries.ACTIONS, False)
        response = self.templates.TemplateResponse(
            request,
            template,
            {
                "base": request.scope.get("root_path", ""),
                "csrf": token,
                "csrf_field": CSRF_FIELD,
                "flash": flash,
                "read_only": self.read_only,
                "can": {k: v and not self.read_only for k, v in can.items()},
                "poll_ms": self.poll_ms,
                "has_schedules": context.pop("has_schedules", False),
                **context,
            },
            status_code=status,
        )
        if new_token:
            set_csrf_cookie(response, request, token)
        if flash is not None:
            response.delete_cookie(FLASH_COOKIE, path=request.scope.get("root_path") or "/")
        return response

    def _common(self, conn: Connection) -> dict[str, Any]:
        return {
            "can": queries.allowed(conn),
            "has_schedules": queries.schedules_installed(conn),
        }

    def at_once(self, *reads: Callable[[Connection], Any]) -> list[Any]:
        """Run independent reads at the same time, each on a pooled connection of its own: the
        overview's two costly views then take the time of the slower one, not of both."""
        with ThreadPoolExecutor(len(reads), thread_name_prefix="pgq-thin-web") as threads:
            return list(threads.map(self._read, reads))

    def _read(self, read: Callable[[Connection], Any]) -> Any:
        with self.connection() as conn:
            return read(conn)

    def overview(self, request: Request) -> Response:
        current, series, common = self.at_once(monitor.stats, queries.minutes, self._common)
        charts = [
            render.bars(
                series,
                "Jobs finished per minute",
                [
                    ("succeeded", "succeeded", "ok"),
                    ("failed", "failed", "bad"),
                    ("retried", "retried", "warn"),
                ],
            ),
            render.lines(
                series,
                "p95 wait and run time (worst entrypoint)",
                [("wait_p95", "wait p95", "wait"), ("run_p95", "run p95", "run")],
            ),
        ]
        return self.page(
            request,
            "overview.html",
            stats=current,
            charts=charts,
            warnings=render.warnings(current["health"], current["now"]),
            **common,
        )

    def jobs(self, request: Request) -> Response:
        wanted = JobFilter.parse(request.query_params)
        with self.connection() as conn:
            if wanted.entrypoint is not None and not queries.entrypoint_exists(
                conn, wanted.entrypoint
            ):
                raise HTTPException(404, f"no entrypoint named {wanted.entrypoint!r}")
            found, older = queries.job_page(conn, wanted)
            now = monitor.now(conn)
            common = self._common(conn)
        return self.page(
            request,
            "jobs.html",
            jobs=found,
            now=now,
            filter=wanted,
            states=monitor.STATES,
            older=None if older is None else urlencode(wanted.query(before=older)),
            newest=None if wanted.before is None else urlencode(wanted.query(before=None)),
            bulk=wanted.state == "failed" and wanted.job_id is None,
            **common,
        )

    def job(self, request: Request) -> Response:
        job_id = _job_id(request)
        with self.connection() as conn:
            found = queries.job(conn, job_id)
            if found is None:
                raise HTTPException(404, f"no job with id {job_id} (never existed, or pruned)")
            explanation = monitor.explain(conn, job_id)
            now = monitor.now(conn)
            common = self._common(conn)
        return self.page(request, "job.html", job=found, explanation=explanation, now=now, **common)

    def workers(self, request: Request) -> Response:
        with self.connection() as conn:
            found = monitor.workers(conn)
            now = monitor.now(conn)
            common = self._common(conn)
        return self.page(request, "workers.html", workers=found, now=now, **common)

    def schedules(self, request: Request) -> Response:
        with self.connection() as conn:
            found = queries.schedules(conn)
            common = self._common(conn)
        if found is None:
            raise HTTPException(404, "periodic jobs are not installed in this database")
        return self.page(request, "schedules.html", schedules=found, **common)

    def healthz(self, _request: Request) -> Response:
        try:
            with self.connection() as conn:
                conn.execute("SELECT 1")
        except (PoolTimeout, psycopg.Error) as exc:
            return PlainTextResponse(f"database unavailable: {_message(exc)}\n", 503)
        return PlainTextResponse("ok\n")

    # Actions (POST only, CSRF-checked, refused when read-only or not granted) -----------------

    async def _form(self, request: Request) -> FormData:
        if self.read_only:
            raise HTTPException(403, "this dashboard is read-only: actions are disabled")
        form = await request.form()
        if not csrf_ok(request, form):
            raise HTTPException(
                403, "the form's CSRF token is missing or wrong: reload the page and try again"
            )
        return form

    def _may(self, conn: Connection, action: str) -> None:
        if not queries.allowed(conn)[action]:
            user = conn.info.user
            raise HTTPException(
                403,
                f"the database role {user!r} may not {action} (pgq.{queries.ACTIONS[action]}):"
                " connect as a pgq_admin member to act, or as pgq_monitor to look",
            )

    async def _act(
        self, request: Request, action: str, work: Callable[[Connection, FormData], Response]
    ) -> Response:
        form = await self._form(request)

        def run() -> Response:
            with self.connection() as conn:
                self._may(conn, action)
                try:
                    return work(conn, form)
                except psycopg.errors.InsufficientPrivilege as exc:
                    raise HTTPException(403, _message(exc)) from exc

        return await run_in_threadpool(run)

    async def retry(self, request: Request) -> Response:
        job_id = _job_id(request)

        def work(conn: Connection, _form: FormData) -> Response:
            _known_job(conn, job_id)
            try:
                monitor.retry(conn, job_id)
            except PgqError as exc:
                return _redirect(request, f"/jobs/{job_id}", ("error", str(exc)))
            return _redirect(request, f"/jobs/{job_id}", ("ok", f"job {job_id} queued again"))

        return await self._act(request, "retry", work)

    async def cancel(self, request: Request) -> Response:
        job_id = _job_id(request)

        def work(conn: Connection, _form: FormData) -> Response:
            _known_job(conn, job_id)
            try:
                outcome = monitor.cancel(conn, job_id)
            except PgqError as exc:
                return _redirect(request, f"/jobs/{job_id}", ("error", str(exc)))
            return _redirect(request, f"/jobs/{job_id}", ("ok", f"job {job_id}: {outcome}"))

        return await self._act(request, "cancel", work)

    async def pause(self, request: Request) -> Response:
        return await self._act(request, "pause", _pausing(request, True))

    async def resume(self, request: Request) -> Response:
        return await self._act(request, "pause", _pausing(request, False))

    async def retry_failed(self, request: Request) -> Response:
        def work(conn: Connection, form: FormData) -> Response:
            wanted = JobFilter.parse(form)
            if wanted.entrypoint is not None and not queries.entrypoint_exists(
                conn, wanted.entrypoint
            ):
                raise HTTPException(404, f"no entrypoint named {wanted.entrypoint!r}")
            ids = queries.failed_ids(conn, wanted.entrypoint, wanted.error, BULK_LIMIT)
            back = "/jobs?" + urlencode(
                JobFilter(state="failed", entrypoint=wanted.entrypoint, error=wanted.error).query()
            )
            if form.get("confirm") != "yes":
                return self.page(
                    request,
                    "confirm.html",
                    count=len(ids),
                    limit=BULK_LIMIT,
                    filter=wanted,
                    back=back,
                    can=queries.allowed(conn),
                )
            problems = []
            for job_id in ids:
                try:
                    monitor.retry(conn, job_id)
                except PgqError as exc:
                    problems.append(str(exc))
            done = len(ids) - len(problems)
            text = f"{done} failed job(s) queued again"
            if problems:
                text += f"; {len(problems)} could not be: {problems[0]}"
            return _redirect(request, back, ("error" if problems else "ok", text))

        return await self._act(request, "retry", work)

    # Errors ------------------------------------------------------------------------------------

    def _error_page(
        self, request: Request, status: int, title: str, message: str, **context: Any
    ) -> Response:
        return self.page(request, "error.html", status, title=title, message=message, **context)

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        titles = {400: "Bad request", 403: "Not allowed", 404: "Not found", 405: "Not allowed"}
        return self._error_page(
            request, exc.status_code, titles.get(exc.status_code, "Error"), exc.detail
        )

    async def _bad_filter(self, request: Request, exc: Exception) -> Response:
        return self._error_page(request, 400, "Bad filter", str(exc))

    async def _unavailable(self, request: Request, exc: Exception) -> Response:
        return self._error_page(
            request,
            503,
            "Database unavailable",
            f"{describe(self.dsn)} does not answer: {_message(exc)}. This page retries on its own.",
            unavailable=True,
        )

    async def _not_installed(self, request: Request, exc: Exception) -> Response:
        return self._error_page(request, 503, "Schema not ready", str(exc), unavailable=True)

    async def _too_slow(self, request: Request, _exc: Exception) -> Response:
        return self._error_page(
            request,
            503,
            "Query cancelled",
            f"the query took longer than {STATEMENT_TIMEOUT_MS // 1000} s and was cancelled:"
            " narrow the filter (an entrypoint or error text that few jobs match walks the"
            " whole history)",
        )

    async def _sql_error(self, request: Request, exc: Exception) -> Response:
        return self._error_page(request, 500, "Database error", _message(exc))


def _pausing(request: Request, paused: bool) -> Callable[[Connection, FormData], Response]:
    def work(conn: Connection, form: FormData) -> Response:
        name = form.get("entrypoint")
        if not isinstance(name, str) or not queries.entrypoint_exists(conn, name):
            raise HTTPException(404, f"no entrypoint named {name!r}")
        try:
            monitor.set_paused(conn, name, paused)
        except PgqError as exc:
            return _redirect(request, "/", ("error", str(exc)))
        return _redirect(request, "/", ("ok", f"{'paused' if paused else 'resumed'} {name}"))

    return work


def _job_id(request: Request) -> int:
    job_id: int = request.path_params["job_id"]
    if not 1 <= job_id < 2**63:
        raise HTTPException(404, f"no job with id {job_id}")
    return job_id


def _known_job(conn: Connection, job_id: int) -> None:
    if queries.job(conn, job_id) is None:
        raise HTTPException(404, f"no job with id {job_id} (never existed, or pruned)")


def _message(exc: BaseException) -> str:
    if isinstance(exc, psycopg.Error) and exc.diag.message_primary:
        return exc.diag.message_primary.removeprefix("pgq: ")
    return str(exc).strip() or type(exc).__name__


def _redirect(request: Request, path: str, flash: tuple[str, str]) -> Response:
    """303 to a page of this dashboard, carrying a one-time message in a cookie."""
    base = request.scope.get("root_path", "")
    response = RedirectResponse(base + path, status_code=303)
    kind, text = flash
    value = base64.urlsafe_b64encode(json.dumps([kind, text[:500]]).encode()).decode()
    response.set_cookie(FLASH_COOKIE, value, path=base or "/", httponly=True, samesite="strict")
    return response


def _read_flash(request: Request) -> tuple[str, str] | None:
    value = request.cookies.get(FLASH_COOKIE)
    if not value:
        return None
    try:
        kind, text = json.loads(base64.urlsafe_b64decode(value))
    except (ValueError, TypeError):
        return None
    return ("ok" if kind == "ok" else "error", str(text))


def serve(
    dsn: str | None,
    *,
    host: str = "127.0.0.1",
    port: int = 9651,
    read_only: bool = False,
    base_path: str = "",
    auth: Auth | None = None,
) -> None:
    """Serve the dashboard with uvicorn until interrupted (what `pgq-thin web` runs)."""
    import uvicorn

    if not is_loopback(host) and auth is None:
        raise PgqError(
            f"--host {host} exposes the dashboard beyond this machine: give it an auth mode"
            " (--token-file, --basic-auth-file, or PGQ_WEB_TOKEN / PGQ_WEB_BASIC_AUTH)"
        )
    base = "/" + base_path.strip("/") if base_path.strip("/") else ""
    app: Starlette = create_app(dsn, read_only=read_only, auth=auth)
    if base:
        app = Starlette(routes=[Mount(base, app=app)], lifespan=app.router.lifespan_context)
    uvicorn.run(app, host=host, port=port, log_level="info", server_header=False)
