"""Waiting, tracing and logging parts that need no database."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pgq_thin._logging import outcome_name
from pgq_thin.config import load_settings
from pgq_thin.errors import PgqError
from pgq_thin.results import _ids, _Wait

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("timeout", [0, -1, 0.0, float("nan"), float("inf"), float("-inf")])
def test_a_timeout_must_be_positive_and_finite(timeout: float) -> None:
    with pytest.raises(PgqError, match=r"^timeout must be a number of seconds > 0 \(or None\)"):
        _Wait([1], timeout, 1.0)


def test_a_wait_asks_each_id_once_and_reads_what_was_notified() -> None:
    wait = _Wait([3, 1, 3, 2], None, 3600)
    assert wait.ids == [3, 1, 2]
    wait.seen([(1, "e", "running", 1, None, None, None), (3, "e", "queued", 0, None, None, None)])
    assert wait.to_read(["1,7", "9"]) == [1]  # only the notified pending ids
    assert wait.to_read(["check status"]) == [1, 3]  # not ids: everything pending
    assert _ids("12,13") == [12, 13] and _ids("") is None
    result = wait.result()
    assert (result.pending, result.unknown, result.timed_out) == ((3, 1), (2,), True)


@pytest.mark.parametrize(
    ("answer", "error", "name"),
    [
        ("succeeded", "", "succeeded"),
        ("queued", "RuntimeError: x", "retried"),
        ("failed", "boom", "failed"),
        ("queued", "timeout", "timed out"),
        ("failed", "timeout after 5s", "timed out"),
        ("stale", "timeout", "timed out"),
        ("cancelled", "cancelled", "cancelled"),
        ("released", "", "released"),
    ],
)
def test_outcomes_are_named_alike_in_logs_and_traces(answer: str, error: str, name: str) -> None:
    assert outcome_name(answer, error) == name


def test_log_settings() -> None:
    env = {"PGQ_LOG_FORMAT": "JSON", "PGQ_LOG_JOBS": "failures"}
    settings = load_settings(env=env, cwd=REPO / "tests")
    assert (settings.log_format, settings.log_jobs) == ("json", "failures")
    with pytest.raises(PgqError, match=r"invalid log_format 'xml' .* must be one of text, json"):
        load_settings({"log_format": "xml"}, env={}, cwd=REPO / "tests")


def run_python(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_opentelemetry_is_imported_only_when_tracing_is_used() -> None:
    loaded = "sorted({m.split('.')[0] for m in sys.modules if m.startswith('opentelemetry')})"
    assert run_python(f"import sys, pgq_thin, pgq_thin.worker, pgq_thin.cli; print({loaded})") == (
        "[]"
    )
    # Installed, but no tracer provider configured: no span, no header.
    unconfigured = (
        "from pgq_thin import NewJob, producer, _tracing\n"
        "print(producer._params([NewJob('a')])['headers'], _tracing.producer_context(['a'], 1))"
    )
    assert run_python(unconfigured) == "None {}"
    # Not installed (a None in sys.modules makes its import fail): nothing changes.
    blocked = (
        "import sys; sys.modules['opentelemetry'] = None\n"
        "from pgq_thin import NewJob, _tracing, producer\n"
        "print(producer._params([NewJob('a', headers={'k': 1}), NewJob('b')])['headers'].obj,"
        " type(_tracing.for_worker()).__name__)"
    )
    assert run_python(blocked) == "[{'k': 1}, {}] Tracing"
