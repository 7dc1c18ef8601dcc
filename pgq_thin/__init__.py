"""pgq-thin: a PostgreSQL job queue whose rules live in SQL.

The public surface is what this module exports; modules whose names start with `_` are
internal and may change in any release.
"""

from pgq_thin._version import __version__
from pgq_thin.app import App, Backoff, Job
from pgq_thin.config import Settings
from pgq_thin.errors import PgqError
from pgq_thin.observer import JobObserver
from pgq_thin.producer import AsyncQueue, NewJob, Queue
from pgq_thin.results import JobStatus, WaitResult
from pgq_thin.worker import Worker

__all__ = [
    "App",
    "AsyncQueue",
    "Backoff",
    "Job",
    "JobObserver",
    "JobStatus",
    "NewJob",
    "PgqError",
    "Queue",
    "Settings",
    "WaitResult",
    "Worker",
    "__version__",
]
