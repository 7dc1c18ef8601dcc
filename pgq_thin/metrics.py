"""Prometheus metrics (optional extra: ``pip install 'pgq-thin[metrics]'``).

`serve` exposes ``/metrics``; a worker given a `PrometheusObserver` (``pgq-thin run
--metrics-port N``) reports each job through two hooks:

- ``job_started(entrypoint)`` when a claimed job's handler starts;
- ``job_finished(entrypoint, outcome, seconds, timed_out=False)`` when it ended, with the
  outcome the database gave: ``"succeeded"`` (pgq.complete returned true) or what pgq.fail
  returned (``"queued"`` = retried, ``"failed"``, ``"cancelled"``, ``"stale"``), or
  ``"released"`` (shutdown) / ``"refused"``; ``timed_out`` when the handler ran out of time.

The gauge ``pgq_worker_stuck_slots`` counts slots held by plain ``def`` handlers still running
after their job ended (a timeout they ignored): above 0 the worker is unhealthy. Counters
``pgq_jobs_{started,succeeded,failed,retried,timed_out}_total{entrypoint}`` and the
histogram ``pgq_job_run_seconds{entrypoint,outcome}`` count this process's jobs; the gauges
``pgq_queue_jobs{entrypoint,state}``, ``pgq_queue_oldest_waiting_seconds{entrypoint}`` and
``pgq_queue_paused{entrypoint}`` are read from pgq.queue_stats at each scrape, for the whole
queue (``pgq_queue_up`` is 0 when that read failed); ``pgq_schedule_last_success_timestamp``,
``pgq_schedule_lateness_seconds`` and ``pgq_schedule_paused`` (by ``schedule``) from
pgq.schedule_stats.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from wsgiref.simple_server import WSGIServer

import psycopg

from pgq_thin import monitor
from pgq_thin._connection import connect
from pgq_thin._outcomes import TIMEOUT, Outcome
from pgq_thin.app import Job
from pgq_thin.errors import PgqError
from pgq_thin.observer import JobObserver

try:
    from prometheus_client import (
        REGISTRY,
        CollectorRegistry,
        Counter,
        Gauge,
        Histogram,
        start_http_server,
    )
    from prometheus_client.core import GaugeMetricFamily, Metric
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise PgqError("metrics need prometheus-client: pip install 'pgq-thin[metrics]'") from exc

log = logging.getLogger(__name__)

STARTED = Counter("pgq_jobs_started", "Jobs whose handler started.", ["entrypoint"])
SUCCEEDED = Counter("pgq_jobs_succeeded", "Jobs completed successfully.", ["entrypoint"])
FAILED = Counter("pgq_jobs_failed", "Jobs dead-lettered as failed.", ["entrypoint"])
RETRIED = Counter("pgq_jobs_retried", "Failed tries scheduled to run again.", ["entrypoint"])
TIMED_OUT = Counter("pgq_jobs_timed_out", "Tries that ran out of time.", ["entrypoint"])
RUN_SECONDS = Histogram(
    "pgq_job_run_seconds",
    "Handler run time by outcome.",
    ["entrypoint", "outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)
STUCK = Gauge(
    "pgq_worker_stuck_slots",
    "Slots held by plain def handlers still running after their job ended (0 = healthy).",
)
_COUNTED = {"succeeded": SUCCEEDED, "failed": FAILED, "queued": RETRIED}
_OUTCOME_LABELS = {"queued": "retried"}


def job_started(entrypoint: str) -> None:
    """Count a job whose handler starts now."""
    STARTED.labels(entrypoint).inc()


def job_finished(entrypoint: str, outcome: str, seconds: float, *, timed_out: bool = False) -> None:
    """Count a finished try: outcome 'succeeded', or pgq.fail's result ('queued' = retried)."""
    counter = _COUNTED.get(outcome)
    if counter is not None:
        counter.labels(entrypoint).inc()
    if timed_out:
        TIMED_OUT.labels(entrypoint).inc()
    RUN_SECONDS.labels(entrypoint, _OUTCOME_LABELS.get(outcome, outcome)).observe(seconds)


class PrometheusObserver(JobObserver):
    """Feeds a worker's jobs to the counters and the histogram."""

    def started(self, job: Job) -> None:
        """Count the start."""
        job_started(job.entrypoint)

    def stuck(self, slots: int) -> None:
        """The worker's stuck slots: alert on anything above 0."""
        STUCK.set(slots)

    def finished(self, outcome: Outcome, answer: str) -> None:
        """Count the outcome the database gave; 'timeout' is the error of a try out of time."""
        timed_out = outcome.kind == "fail" and outcome.error == TIMEOUT
        job_finished(outcome.job.entrypoint, answer, outcome.duration, timed_out=timed_out)


class QueueCollector:
    """Gauges from pgq.queue_stats, read at each scrape over a short-lived connection."""

    def __init__(self, dsn: str | None = None) -> None:
        self.dsn = dsn

    def collect(self) -> Iterator[Metric]:
        """Depth per state, oldest wait and pause per entrypoint, and whether the read worked."""
        up = GaugeMetricFamily("pgq_queue_up", "1 if pgq.queue_stats could be read.")
        try:
            with connect(self.dsn, autocommit=True) as conn:
                rows = monitor.queue_stats(conn)
                schedules = monitor.schedule_stats(conn)
        except (PgqError, psycopg.Error) as exc:
            log.warning("metrics: cannot read pgq.queue_stats: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        depth = GaugeMetricFamily(
            "pgq_queue_jobs",
            "Jobs by state (failed: dead letters kept).",
            labels=["entrypoint", "state"],
        )
        oldest = GaugeMetricFamily(
            "pgq_queue_oldest_waiting_seconds",
            "Longest wait of a ready job.",
            labels=["entrypoint"],
        )
        paused = GaugeMetricFamily("pgq_queue_paused", "1 if paused.", labels=["entrypoint"])
        for row in rows:
            name = row["entrypoint"]
            for state in ("queued", "scheduled", "running", "failed"):
                depth.add_metric([name, state], row[state])
            wait = row["oldest_waiting"]
            oldest.add_metric([name], wait.total_seconds() if wait is not None else 0.0)
            paused.add_metric([name], 1.0 if row["paused"] else 0.0)
        up.add_metric([], 1)
        yield from (up, depth, oldest, paused, *_schedule_gauges(schedules))


def _schedule_gauges(rows: list[monitor.Row]) -> tuple[Metric, ...]:
    """Per schedule: when its job last succeeded, how late its pending tick is, paused."""
    success = GaugeMetricFamily(
        "pgq_schedule_last_success_timestamp",
        "Unix time the schedule's last job succeeded (0: never).",
        labels=["schedule"],
    )
    lateness = GaugeMetricFamily(
        "pgq_schedule_lateness_seconds",
        "How long the schedule's pending tick is overdue (0 while not due).",
        labels=["schedule"],
    )
    paused = GaugeMetricFamily("pgq_schedule_paused", "1 if paused.", labels=["schedule"])
    for row in rows:
        name = row["name"]
        last = row["last_success_at"]
        success.add_metric([name], last.timestamp() if last is not None else 0.0)
        lateness.add_metric([name], row["lateness"].total_seconds())
        paused.add_metric([name], 1.0 if row["paused"] else 0.0)
    return success, lateness, paused


def serve(port: int, dsn: str | None = None, addr: str = "0.0.0.0") -> WSGIServer:
    """Serve /metrics on `port` in a daemon thread; `shutdown()` on the result stops it."""
    registry = CollectorRegistry()
    registry.register(REGISTRY)
    registry.register(QueueCollector(dsn))
    server, _thread = start_http_server(port, addr, registry=registry)
    return server
