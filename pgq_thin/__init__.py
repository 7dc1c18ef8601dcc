"""pgq-thin: a PostgreSQL job queue whose rules live in SQL."""

from pgq_thin.app import App, Backoff, Job
from pgq_thin.producer import AsyncQueue, NewJob, Queue

__version__ = "0.2.0.dev0"
__all__ = ["App", "AsyncQueue", "Backoff", "Job", "NewJob", "Queue", "__version__"]
