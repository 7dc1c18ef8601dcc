"""OpenTelemetry through a real worker: run in this process, so that the SDK's in-memory
exporter sees the producer's spans and the worker's alike."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.util._once import Once

from pgq_thin import App, AsyncQueue, Job, NewJob, Queue, Settings, WaitResult, Worker
from tests.e2e.harness import Conn

EXPORTER = InMemorySpanExporter()
PROVIDER = TracerProvider()
PROVIDER.add_span_processor(SimpleSpanProcessor(EXPORTER))


def _unset_tracer_provider() -> None:
    """Back to no provider, as OpenTelemetry's own tests do (it offers no public way)."""
    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace._TRACER_PROVIDER = None


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """The in-memory exporter of a tracer provider set for this test only: other tests in this
    process must not find their jobs' headers traced."""
    _unset_tracer_provider()
    trace.set_tracer_provider(PROVIDER)
    EXPORTER.clear()
    yield EXPORTER
    EXPORTER.clear()
    _unset_tracer_provider()


def current_span_id() -> str:
    return format(trace.get_current_span().get_span_context().span_id, "016x")


def traced_app(dsn: str) -> App:
    """Handlers that return the id of the span current while they run, or end otherwise."""
    app = App()
    app.entrypoint("ok_sync")(lambda job: current_span_id())

    @app.entrypoint("ok_async")
    async def ok_async(job: Job) -> str:
        return current_span_id()

    @app.entrypoint("flaky", max_attempts=3, backoff=(0, 1, 0, 0))
    async def flaky(job: Job) -> str:
        if job.attempt == 1:
            raise RuntimeError("first try fails")
        return current_span_id()

    @app.entrypoint("doomed", max_attempts=1)
    async def doomed(job: Job) -> None:
        raise ValueError("never works")

    @app.entrypoint("slow", max_attempts=1, timeout=0.3)
    async def slow(job: Job) -> None:
        await asyncio.sleep(30)

    @app.entrypoint("cancel_me")
    async def cancel_me(job: Job) -> None:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            await conn.execute("SELECT pgq.cancel(%s)", (job.id,))
        await asyncio.sleep(30)

    return app


def serve_until_done(dsn: str, app: App, ids: list[int]) -> WaitResult:
    """A worker serves until a producer's wait for `ids` returns."""

    async def run() -> WaitResult:
        worker = Worker(app, Settings(database_url=dsn, lease_duration=3, poll_interval=0.2))
        serving = asyncio.create_task(worker.run())
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            result = await AsyncQueue(conn).wait(ids, timeout=60)
        worker.request_stop()
        assert await asyncio.wait_for(serving, 30) == 0
        return result

    return asyncio.run(run())


def consumer_spans(spans: InMemorySpanExporter) -> dict[tuple[int, int], ReadableSpan]:
    found = {}
    for span in spans.get_finished_spans():
        if span.kind == SpanKind.CONSUMER:
            attrs = span.attributes or {}
            found[
                int(str(attrs["messaging.message.id"])), int(str(attrs["pgq_thin.job.attempt"]))
            ] = span
    return found


def test_consumer_spans_are_linked_to_the_producer_and_tell_each_outcome(
    db: Conn, pgq_dsn: str, spans: InMemorySpanExporter
) -> None:
    names = ["ok_sync", "ok_async", "flaky", "doomed", "slow", "cancel_me"]
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("request") as request:
        ids = Queue(db).enqueue_many([NewJob(name) for name in names])
    job = dict(zip(names, ids, strict=True))
    [create] = [s for s in spans.get_finished_spans() if s.kind == SpanKind.PRODUCER]
    assert create.name == "create" and create.parent is not None
    assert create.parent.span_id == request.get_span_context().span_id
    assert (create.attributes or {})["messaging.batch.message_count"] == len(names)
    headers = db.execute("SELECT headers FROM pgq.jobs WHERE id = %s", (ids[0],)).fetchone()
    assert headers is not None and headers[0]["traceparent"].split("-")[2] == format(
        create.context.span_id, "016x"
    )

    result = serve_until_done(pgq_dsn, traced_app(pgq_dsn), ids)
    consumed = consumer_spans(spans)
    expected = {
        (job["ok_sync"], 1): ("succeeded", StatusCode.OK),
        (job["ok_async"], 1): ("succeeded", StatusCode.OK),
        (job["flaky"], 1): ("retried", StatusCode.ERROR),
        (job["flaky"], 2): ("succeeded", StatusCode.OK),
        (job["doomed"], 1): ("failed", StatusCode.ERROR),
        (job["slow"], 1): ("timed out", StatusCode.ERROR),
        (job["cancel_me"], 1): ("cancelled", StatusCode.UNSET),
    }
    assert {
        key: ((s.attributes or {})["pgq_thin.job.outcome"], s.status.status_code)
        for key, s in consumed.items()
    } == expected
    for (job_id, attempt), span in consumed.items():
        name = names[ids.index(job_id)]
        assert span.name == f"process {name}"
        assert span.context.trace_id == create.context.trace_id
        assert span.parent is not None and span.parent.span_id == create.context.span_id
        assert [link.context.span_id for link in span.links] == [create.context.span_id]
        assert span.attributes == {
            "messaging.system": "pgq-thin",
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.destination.name": name,
            "messaging.message.id": str(job_id),
            "pgq_thin.job.attempt": attempt,
            "pgq_thin.job.outcome": expected[job_id, attempt][0],
        }
    assert consumed[job["doomed"], 1].status.description == "ValueError: never works"
    assert consumed[job["flaky"], 1].status.description == "RuntimeError: first try fails"
    # The handler ran inside its attempt's span (in the event loop and in a thread).
    for name, attempt in (("ok_sync", 1), ("ok_async", 1), ("flaky", 2)):
        span_id = format(consumed[job[name], attempt].context.span_id, "016x")
        assert result.jobs[job[name]].result == span_id


def test_a_malformed_traceparent_starts_a_new_trace_quietly(
    db: Conn, pgq_dsn: str, spans: InMemorySpanExporter, caplog: pytest.LogCaptureFixture
) -> None:
    bad: list[dict[str, Any]] = [
        {"traceparent": "00-not-a-trace-01"},
        {"traceparent": 7, "tracestate": ["x"]},
        {"traceparent": "00-00000000000000000000000000000000-0000000000000000-01"},
    ]
    # Outside any span the producer still records a create span; the caller's headers win.
    ids = Queue(db).enqueue_many([NewJob("ok_async", headers=h) for h in bad])
    stored = db.execute("SELECT headers FROM pgq.jobs ORDER BY id").fetchall()
    assert [row[0]["traceparent"] for row in stored] == [h["traceparent"] for h in bad]
    [create] = [s for s in spans.get_finished_spans() if s.kind == SpanKind.PRODUCER]

    with caplog.at_level(logging.DEBUG, logger="opentelemetry"):
        result = serve_until_done(pgq_dsn, traced_app(pgq_dsn), ids)
    assert result.all_succeeded
    consumed = consumer_spans(spans)
    assert sorted(consumed) == [(i, 1) for i in ids]
    traces = {span.context.trace_id for span in consumed.values()}
    assert len(traces) == len(ids) and create.context.trace_id not in traces
    for span in consumed.values():
        assert span.parent is None and list(span.links) == []
        assert span.status.status_code == StatusCode.OK
    assert [r for r in caplog.records if r.name.startswith("opentelemetry")] == []
