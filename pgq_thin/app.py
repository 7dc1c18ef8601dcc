"""The App: entrypoints (named handlers) and the policy each one registers in the database."""

from __future__ import annotations

import inspect
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from pgq_thin.errors import PgqError

Handler = Callable[["Job"], Any]
H = TypeVar("H", bound=Handler)


@dataclass(frozen=True)
class Job:
    """A claimed job, as returned by `pgq.claim`, handed to its handler."""

    id: int
    entrypoint: str
    payload: Any
    headers: dict[str, Any]
    priority: int
    attempt: int
    max_attempts: int | None
    lease_token: uuid.UUID
    lease_expires_at: datetime
    enqueued_at: datetime
    timeout_at: datetime | None = None  # when the database times the job out (None: no timeout)

    @property
    def stop_requested(self) -> threading.Event:
        """Set once the worker wants the handler to stop; a `def` handler may wait on it.

        Made on first use, as most jobs never need one.
        """
        event: threading.Event | None = self.__dict__.get("_stop_requested")
        if event is None:  # setdefault is atomic: a handler thread and the worker share one
            event = self.__dict__.setdefault("_stop_requested", threading.Event())
        return event

    @property
    def cancelled(self) -> bool:
        """True once the worker wants the handler to stop (timeout, cancel, shutdown, lost lease).

        Async handlers are cancelled outright; plain `def` handlers in threads may poll this.
        """
        event: threading.Event | None = self.__dict__.get("_stop_requested")
        return event is not None and event.is_set()


@dataclass(frozen=True)
class Backoff:
    """Retry delay policy: base * factor^(attempt-1), jittered by +-jitter, capped at max (seconds).

    None leaves the value stored in the database unchanged.
    """

    base: float | None = None
    factor: float | None = None
    max: float | None = None
    jitter: float | None = None


@dataclass(frozen=True)
class Entrypoint:
    """A handler and its policy. None means: keep what the database has (or the worker default)."""

    name: str
    handler: Handler
    is_async: bool
    concurrency_limit: int | None = None
    timeout: float | None = None
    max_attempts: int | None = None
    backoff: Backoff | None = None
    retryable_exceptions: tuple[type[BaseException], ...] | None = None

    def is_retryable(self, exc: BaseException) -> bool:
        """Whether a failure with `exc` may be retried (all are, unless a tuple was given)."""
        return self.retryable_exceptions is None or isinstance(exc, self.retryable_exceptions)


def _backoff(value: Backoff | tuple[float | None, ...] | None, name: str) -> Backoff | None:
    if value is None or isinstance(value, Backoff):
        return value
    if isinstance(value, tuple) and 1 <= len(value) <= 4:
        return Backoff(*value)
    raise PgqError(
        f"entrypoint {name!r}: backoff must be a Backoff or a tuple (base, factor, max, jitter)"
    )


class App:
    """A set of entrypoints that `pgq-thin run` serves."""

    def __init__(self) -> None:
        self.entrypoints: dict[str, Entrypoint] = {}

    def entrypoint(
        self,
        name: str,
        *,
        concurrency_limit: int | None = None,
        timeout: float | None = None,
        max_attempts: int | None = None,
        backoff: Backoff | tuple[float | None, ...] | None = None,
        retryable_exceptions: tuple[type[BaseException], ...] | None = None,
    ) -> Callable[[H], H]:
        """Register the decorated `async def` or plain `def` handler for jobs named `name`.

        `concurrency_limit` holds across all workers (0 = unlimited); `timeout` in seconds
        (0 = none; None = the worker's JOB_TIMEOUT); `backoff` as `Backoff` or its tuple.
        With `retryable_exceptions`, any other exception dead-letters the job at once.
        """
        if not isinstance(name, str) or not name.strip():
            raise PgqError(f"entrypoint name must be a non-empty string, got {name!r}")
        if name in self.entrypoints:
            raise PgqError(f"entrypoint {name!r} is registered twice")
        policy = _backoff(backoff, name)

        def register(handler: H) -> H:
            if not callable(handler):
                raise PgqError(f"entrypoint {name!r}: handler must be callable")
            self.entrypoints[name] = Entrypoint(
                name=name,
                handler=handler,
                is_async=inspect.iscoroutinefunction(handler),
                concurrency_limit=concurrency_limit,
                timeout=timeout,
                max_attempts=max_attempts,
                backoff=policy,
                retryable_exceptions=retryable_exceptions,
            )
            return handler

        return register
