"""How `pgq-thin run` logs: text (the default) or one JSON object per line (PGQ_LOG_FORMAT=json).

Job events (the worker's `job started`, `job succeeded`, ... lines) carry their fields as a
`LogFields` argument, so the JSON lines get them as keys without parsing text. A handler's own
records carry the running job's id and entrypoint (set by `job_context` in the job's task), in
both formats. PGQ_LOG_JOBS=failures drops job events below WARNING: a busy fleet keeps every
failure without a line per successful job.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Protocol

FORMATS = ("text", "json")
JOB_LINES = ("all", "failures")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# The error of a try that ran out of time, as pgq.reap and the worker record it (the worker's
# log line says "timeout after Ns").
TIMEOUT = "timeout"


class JobLike(Protocol):
    """What logs and traces read of a job (pgq_thin.app.Job has it)."""

    @property
    def id(self) -> int: ...

    @property
    def entrypoint(self) -> str: ...

    @property
    def attempt(self) -> int: ...


_current: ContextVar[JobLike | None] = ContextVar("pgq_thin_job", default=None)
_worker_id: str | None = None


class LogFields(str):
    """The `key=value` text of a job event, which also keeps the fields themselves."""

    fields: dict[str, object]

    def __new__(cls, text: str, fields: dict[str, object]) -> LogFields:
        self = super().__new__(cls, text)
        self.fields = fields
        return self


def job_context(job: JobLike) -> None:
    """Records logged from now on in this task (or a handler thread started from it) name `job`.
    Set once at the start of the job's own task: the task runs in a copy of the context, so
    the setting ends with it and needs no reset."""
    _current.set(job)


def set_worker_id(worker_id: str) -> None:
    """The worker id every JSON line carries."""
    global _worker_id
    _worker_id = worker_id


def outcome_name(answer: str, error: str = "") -> str:
    """The outcome of a try as logs and traces name it: succeeded, retried, failed, timed out,
    cancelled, or the worker's other answers (released, stale, refused) as they are."""
    timed_out = error == TIMEOUT or error.startswith(f"{TIMEOUT} after ")
    if timed_out and answer in ("queued", "failed", "stale"):
        return "timed out"
    return "retried" if answer == "queued" else answer


def _fields(record: logging.LogRecord) -> dict[str, object] | None:
    args = record.args if isinstance(record.args, tuple) else ()
    for arg in args:
        if isinstance(arg, LogFields):
            return arg.fields
    return None


class _JobLines(logging.Filter):
    """With PGQ_LOG_JOBS=failures, drops job events below WARNING."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or _fields(record) is None


class TextFormatter(logging.Formatter):
    """The classic line; a record logged while a job runs (not a job event) ends with its id."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        job = _current.get()
        if job is None or _fields(record) is not None:
            return text
        head, sep, tail = text.partition("\n")  # a traceback stays below the line
        return f"{head} [job_id={job.id} entrypoint={job.entrypoint}]{sep}{tail}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, job fields, worker id."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = _fields(record)
        job = _current.get()
        if fields is not None:
            doc.update(_job_fields(fields, doc["message"]))
        elif job is not None:
            doc.update(job_id=job.id, entrypoint=job.entrypoint, attempt=job.attempt)
        if _worker_id is not None:
            doc["worker_id"] = _worker_id
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


# Job events whose outcome is in their message rather than their fields.
_EVENT_OUTCOMES = {"job succeeded": "succeeded", "job released": "released"}


def _job_fields(fields: dict[str, object], message: str) -> dict[str, object]:
    """A job event's fields as JSON keys: job_id, duration in seconds, outcome by name."""
    out = {("job_id" if k == "id" else k): v for k, v in fields.items()}
    duration = out.get("duration")
    if isinstance(duration, str) and duration.endswith("s"):
        out["duration"] = float(duration[:-1])
    answer = out.get("outcome")
    if isinstance(answer, str):
        out["outcome"] = outcome_name(answer, str(out.get("error", "")))
    else:
        event = message.split(" id=", 1)[0]
        if event in _EVENT_OUTCOMES:
            out["outcome"] = _EVENT_OUTCOMES[event]
        elif event.startswith("job timed out"):
            out["outcome"] = "timed out"
    return out


def setup(level: str, log_format: str = "text", jobs: str = "all") -> None:
    """The root logger's one handler, on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    if jobs == "failures":
        handler.addFilter(_JobLines())
    logging.basicConfig(level=level, handlers=[handler], force=True)
