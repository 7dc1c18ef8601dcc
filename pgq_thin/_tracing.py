"""OpenTelemetry across the queue (the optional extra `pgq-thin[otel]`).

The producer puts the W3C trace context (`traceparent`, `tracestate`, through the globally
configured propagator) of a `create` span into each job's headers; the worker runs each attempt
in a `process` span, a child of and linked to that context, current while the handler runs, and
ended once the database has answered how the attempt ended (the SQL decides retry or dead
letter). Without opentelemetry installed nothing here imports it and both hooks do nothing; with
the API but no tracer provider configured, they skip their spans.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterator
from contextlib import AbstractContextManager, contextmanager
from functools import cache
from typing import Any, Protocol

from pgq_thin._logging import JobLike, outcome_name
from pgq_thin._version import __version__

SYSTEM = "pgq-thin"
ATTEMPT = "pgq_thin.job.attempt"
OUTCOME = "pgq_thin.job.outcome"
ERRORS = ("retried", "failed", "timed out", "refused")  # outcomes whose span status is ERROR


class _Job(JobLike, Protocol):
    @property
    def headers(self) -> dict[str, Any]: ...

    @property
    def lease_token(self) -> uuid.UUID: ...


class _Outcome(Protocol):
    @property
    def job(self) -> Any: ...

    @property
    def error(self) -> str: ...

    @property
    def summary(self) -> str: ...


@cache
def _tracer() -> Any:
    """opentelemetry's tracer for pgq-thin, or None when it is not installed."""
    try:
        from opentelemetry import trace
    except ImportError:
        return None
    return trace.get_tracer("pgq_thin", __version__)


@cache
def _trace() -> Any:
    """opentelemetry.trace, imported once (an import statement per job costs ~1 us)."""
    from opentelemetry import trace

    return trace


def _configured() -> bool:
    """Whether a tracer provider (an SDK) is set: without one every span would be a no-op,
    and skipping them saves their cost (~17 us a job here). Asked per batch, not cached: a
    provider may be set (or, in tests, unset) at any time."""
    trace = _trace()
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


@cache
def _text_headers() -> Any:
    """A propagation getter that sees only string headers (a job's headers are any JSON)."""
    from opentelemetry.propagators.textmap import Getter

    class TextHeaders(Getter[dict[str, Any]]):
        def get(self, carrier: dict[str, Any], key: str) -> list[str] | None:
            value = carrier.get(key)
            return [value] if isinstance(value, str) else None

        def keys(self, carrier: dict[str, Any]) -> list[str]:
            return list(carrier)

    return TextHeaders()


def producer_context(entrypoints: Collection[str], count: int) -> dict[str, str]:
    """The trace context (`traceparent`, ...) of a `create` span for a batch of `count` jobs;
    empty when OpenTelemetry is not installed or nothing is traced."""
    tracer = _tracer()
    if tracer is None or not count or not _configured():
        return {}
    from opentelemetry import propagate, trace

    names = set(entrypoints)
    attributes: dict[str, Any] = {
        "messaging.system": SYSTEM,
        "messaging.operation.type": "create",
        "messaging.operation.name": "create",
    }
    if len(names) == 1:
        attributes["messaging.destination.name"] = next(iter(names))
    if count > 1:
        attributes["messaging.batch.message_count"] = count
    name = f"create {next(iter(names))}" if len(names) == 1 else "create"
    carrier: dict[str, str] = {}
    with tracer.start_as_current_span(name, kind=trace.SpanKind.PRODUCER, attributes=attributes):
        propagate.inject(carrier)
    return carrier


def with_context(context: dict[str, str], headers: dict[str, Any] | None) -> Any:
    """A job's headers with the trace context added (headers the caller set win)."""
    return {**context, **(headers or {})} if context else headers


class Tracing:
    """A worker's tracing hooks; this base does nothing (OpenTelemetry is not installed)."""

    def claimed(self) -> None:
        """A batch was claimed: its jobs are traced if a tracer provider is set now."""

    def attempt(self, job: _Job) -> AbstractContextManager[None] | None:
        """The context in which the attempt's span is current (the handler runs inside), or
        None when the attempt is not traced."""
        return None

    def settled(self, outcome: _Outcome, answer: str) -> None:
        """The database answered how the attempt ended: its span ends."""


class _Spans(Tracing):
    """One consumer span per attempt, by lease token until the outcome is written."""

    def __init__(self, tracer: Any) -> None:
        self._tracer = tracer
        self._spans: dict[uuid.UUID, Any] = {}
        self._on = False  # a tracer provider was set at the last claim

    def claimed(self) -> None:
        # Asked once a batch: without a provider set, OpenTelemetry looks in os.environ each time.
        self._on = _configured()

    def attempt(self, job: _Job) -> AbstractContextManager[None] | None:
        # Untraced, no generator is made and driven: that is most of a no-op job's cost here.
        return self._span(job) if self._on else None

    @contextmanager
    def _span(self, job: _Job) -> Iterator[None]:
        from opentelemetry import propagate, trace

        # A missing or malformed traceparent extracts nothing: the span starts a new trace.
        parent = propagate.extract(job.headers, getter=_text_headers())
        producer = trace.get_current_span(parent).get_span_context()
        links = [trace.Link(producer)] if producer.is_valid else []
        span = self._tracer.start_span(
            f"process {job.entrypoint}",
            context=parent,
            kind=trace.SpanKind.CONSUMER,
            links=links,
            attributes={
                "messaging.system": SYSTEM,
                "messaging.operation.type": "process",
                "messaging.operation.name": "process",
                "messaging.destination.name": job.entrypoint,
                "messaging.message.id": str(job.id),
                ATTEMPT: job.attempt,
            },
        )
        self._spans[job.lease_token] = span
        with trace.use_span(span, record_exception=False, set_status_on_exception=False):
            yield

    def settled(self, outcome: _Outcome, answer: str) -> None:
        span = self._spans.pop(outcome.job.lease_token, None)
        if span is None:
            return
        from opentelemetry.trace import Status, StatusCode

        name = outcome_name(answer, outcome.error)
        span.set_attribute(OUTCOME, name)
        if name == "succeeded":
            span.set_status(Status(StatusCode.OK))
        elif name in ERRORS:
            span.set_status(Status(StatusCode.ERROR, outcome.summary or outcome.error or name))
        span.end()


def for_worker() -> Tracing:
    """The worker's hooks: spans when opentelemetry is installed, else the no-op base."""
    tracer = _tracer()
    return Tracing() if tracer is None else _Spans(tracer)
