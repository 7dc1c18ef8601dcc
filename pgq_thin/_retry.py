"""Helpers every part of the worker shares: transient errors, reconnect backoff, log fields."""

from __future__ import annotations

import json

import psycopg

from pgq_thin._logging import LogFields
from pgq_thin.app import Job

# Errors after which the same call may succeed on a new connection.
TRANSIENT = (psycopg.OperationalError, psycopg.InterfaceError)
RETRY_MIN, RETRY_MAX = 0.05, 2.0  # backoff bounds while the database is unreachable, seconds


def kv(job: Job, **extra: object) -> LogFields:
    """`id=… entrypoint=… attempt=…` plus extras, quoting values that need it (the fields
    themselves ride along for JSON logs)."""
    pairs = {"id": job.id, "entrypoint": job.entrypoint, "attempt": job.attempt, **extra}
    parts = []
    for key, value in pairs.items():
        text = str(value)
        if not text or any(c in text for c in ' "=\n'):
            text = json.dumps(text)
        parts.append(f"{key}={text}")
    return LogFields(" ".join(parts), pairs)


class Retry:
    """Exponential backoff while the database is unreachable."""

    def __init__(self) -> None:
        self.delay = RETRY_MIN

    def next(self) -> float:
        delay, self.delay = self.delay, min(self.delay * 2, RETRY_MAX)
        return delay

    def reset(self) -> None:
        self.delay = RETRY_MIN
