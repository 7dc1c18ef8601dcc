"""The hook a worker reports each job to; the base does nothing, so the hot path pays nothing.

`pgq_thin.metrics.PrometheusObserver` counts what it hears; pass one as `Worker(observer=...)`
(`pgq-thin run --metrics-port N` does).
"""

from __future__ import annotations

from pgq_thin._outcomes import Outcome
from pgq_thin.app import Job


class JobObserver:
    """Hears of each job a worker runs; this base ignores everything."""

    def started(self, job: Job) -> None:
        """A claimed job's handler starts now."""

    def stuck(self, slots: int) -> None:
        """`slots` of the worker's slots are now held by `def` handler threads that outlived
        their job (0 once they all returned)."""

    def finished(self, outcome: Outcome, answer: str) -> None:
        """The outcome is written; `answer` is the database's: 'succeeded', what pgq.fail
        returned ('queued' = retried, 'failed', 'cancelled', 'stale'), 'released' or 'refused'."""
