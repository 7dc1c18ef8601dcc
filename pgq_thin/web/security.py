"""Who may see the dashboard and how its pages defend themselves.

- Auth: a bearer token or a user:password pair (basic auth), from the environment or a file,
  compared in constant time. A token also works as the password of basic auth (any user name),
  so a browser can log in with it.
- CSRF: a random token in an HttpOnly, SameSite=Strict cookie that every form repeats; a POST
  whose form does not carry the cookie's value is refused.
- Headers: a Content-Security-Policy that allows only the package's own script and styles,
  and Server-Timing (how long the response took to start).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pgq_thin.errors import PgqError

TOKEN_ENV = "PGQ_WEB_TOKEN"
BASIC_ENV = "PGQ_WEB_BASIC_AUTH"
CSRF_COOKIE = "pgq_csrf"
CSRF_FIELD = "csrf"
REALM = 'Basic realm="pgq-thin", charset="UTF-8"'
HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        b" connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
]


@dataclass(frozen=True)
class Auth:
    """Credentials a request must present: a bearer token, or a basic-auth user and password."""

    token: str | None = None
    user: str | None = None
    password: str | None = None

    @classmethod
    def load(
        cls,
        token_file: str | Path | None = None,
        basic_file: str | Path | None = None,
        environ: dict[str, str] | None = None,
    ) -> Auth | None:
        """From the files, else from PGQ_WEB_TOKEN / PGQ_WEB_BASIC_AUTH ("user:password")."""
        env = os.environ if environ is None else environ
        token = _read(token_file) if token_file else env.get(TOKEN_ENV) or None
        basic = _read(basic_file) if basic_file else env.get(BASIC_ENV) or None
        if token and basic:
            raise PgqError("choose one auth mode: a bearer token or basic auth, not both")
        if token:
            return cls(token=token)
        if basic:
            user, colon, password = basic.partition(":")
            if not colon or not user or not password:
                raise PgqError("basic auth must be given as user:password")
            return cls(user=user, password=password)
        return None

    def admits(self, header: str | None) -> bool:
        """Whether an Authorization header carries these credentials (constant time)."""
        scheme, _, value = (header or "").partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer" and self.token is not None:
            return _same(value.strip(), self.token)
        if scheme != "basic":
            return False
        try:
            user, _, password = (
                base64.b64decode(value.strip(), validate=True).decode().partition(":")
            )
        except (binascii.Error, UnicodeDecodeError):
            return False
        if self.token is not None:
            return _same(password, self.token)
        return _same(user, self.user or "") & _same(password, self.password or "")


def _read(path: str | Path) -> str:
    try:
        text = Path(path).read_text().strip()
    except OSError as exc:
        raise PgqError(f"cannot read {path}: {exc.strerror}") from exc
    if not text:
        raise PgqError(f"{path} is empty")
    return text


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps the dashboard on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Guard:
    """ASGI middleware: refuse requests without the credentials (except /healthz, which says
    only whether the database answers), and add the security headers to every response."""

    def __init__(self, app: ASGIApp, auth: Auth | None) -> None:
        self.app = app
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        own_path = scope["path"].removeprefix(scope.get("root_path", ""))
        if (
            self.auth is not None
            and own_path != "/healthz"
            and not self.auth.admits(request.headers.get("authorization"))
        ):
            refusal = Response(
                "authentication required\n",
                status_code=401,
                media_type="text/plain",
                headers={"WWW-Authenticate": REALM},
            )
            await refusal(scope, receive, self._with_headers(send))
            return
        await self.app(scope, receive, self._with_headers(send))

    @staticmethod
    def _with_headers(send: Send) -> Send:
        """Add the security headers, and the time taken so far as Server-Timing (what
        bench/web_render.py reads)."""
        started = time.perf_counter()

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                took = f"app;dur={(time.perf_counter() - started) * 1000:.1f}".encode()
                message["headers"] = [
                    *message.get("headers", []),
                    *HEADERS,
                    (b"server-timing", took),
                ]
            await send(message)

        return sending


def csrf_token(request: Request) -> tuple[str, bool]:
    """The request's CSRF token, and whether it is new (then the response must set it)."""
    current = request.cookies.get(CSRF_COOKIE)
    if current and len(current) == 43:
        return current, False
    return secrets.token_urlsafe(32), True


def set_csrf_cookie(response: Response, request: Request, token: str) -> None:
    response.set_cookie(
        CSRF_COOKIE,
        token,
        path=request.scope.get("root_path") or "/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def csrf_ok(request: Request, form: FormData) -> bool:
    """Whether the form repeats the cookie's CSRF token (compared in constant time)."""
    cookie = request.cookies.get(CSRF_COOKIE, "")
    given = form.get(CSRF_FIELD, "")
    return bool(cookie) and isinstance(given, str) and _same(given, cookie)
