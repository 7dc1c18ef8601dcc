"""`pgq-thin run --metrics-port N`: /metrics scraped over HTTP from a running worker.

The worker serves tests/e2e/worker_app.py (see tests/e2e/harness.py for the harness).
"""

from __future__ import annotations

import signal
import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pgq_thin.config import load_settings
from pgq_thin.errors import PgqError
from tests.e2e.harness import Conn, Start, enqueue, finished, wait_for

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def scrape(port: int) -> Samples | None:
    """Every sample of /metrics by (name, sorted labels); None while nothing listens."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as response:
            text = response.read().decode()
    except (urllib.error.URLError, ConnectionError):
        return None
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def ep(name: str, **labels: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted({"entrypoint": name, **labels}.items()))


def test_counters_and_gauges_move_as_the_worker_runs_jobs(db: Conn, start_worker: Start) -> None:
    enqueue(db, "elsewhere", [{}] * 3)  # no worker serves it: only the gauges see it
    port = free_port()
    policy = {
        name: {"max_attempts": 2, "backoff": [0, 1, 0, 0]} for name in ("async_job", "sync_job")
    }
    # sync_job's timeout is the worker's own (JOB_TIMEOUT), so no reaper races the worker.
    worker = start_worker("--metrics-port", str(port), JOB_TIMEOUT="0.3", policy=policy)
    before = wait_for(lambda: scrape(port), "/metrics to answer")
    assert before[("pgq_queue_up", ())] == 1
    assert before[("pgq_queue_jobs", ep("elsewhere", state="queued"))] == 3
    assert ("pgq_jobs_started_total", ep("async_job")) not in before

    ids = enqueue(db, "async_job", [{}, {}, {}, {"fatal": True}, {"fail_until": 1}])
    ids += enqueue(db, "sync_job", [{"sleep": 60}])  # times out twice: retried, then failed
    wait_for(lambda: finished(db, ids), "every job to finish")
    expected = {
        ("pgq_jobs_started_total", ep("async_job")): 6,
        ("pgq_jobs_succeeded_total", ep("async_job")): 4,
        ("pgq_jobs_failed_total", ep("async_job")): 1,
        ("pgq_jobs_retried_total", ep("async_job")): 1,
        ("pgq_jobs_started_total", ep("sync_job")): 2,
        ("pgq_jobs_timed_out_total", ep("sync_job")): 2,
        ("pgq_jobs_retried_total", ep("sync_job")): 1,
        ("pgq_jobs_failed_total", ep("sync_job")): 1,
        ("pgq_job_run_seconds_count", ep("async_job", outcome="succeeded")): 4,
        ("pgq_job_run_seconds_count", ep("async_job", outcome="failed")): 1,
        ("pgq_job_run_seconds_count", ep("async_job", outcome="retried")): 1,
        ("pgq_job_run_seconds_count", ep("sync_job", outcome="retried")): 1,
        ("pgq_job_run_seconds_count", ep("sync_job", outcome="failed")): 1,
        ("pgq_queue_jobs", ep("async_job", state="failed")): 1,
        ("pgq_queue_jobs", ep("sync_job", state="failed")): 1,
        ("pgq_queue_jobs", ep("elsewhere", state="queued")): 3,
    }

    def settled() -> Samples | None:
        after = scrape(port)
        ok = after is not None and all(after.get(key) == value for key, value in expected.items())
        return after if ok else None

    after = wait_for(settled, "the counters to reach the expected values", timeout=15)
    assert ("pgq_jobs_timed_out_total", ep("async_job")) not in after
    assert ("pgq_jobs_succeeded_total", ep("sync_job")) not in after
    assert after[("pgq_job_run_seconds_sum", ep("sync_job", outcome="failed"))] > 0
    worker.send(signal.SIGTERM)
    assert worker.wait() == 0, worker.log()
    assert f"serving Prometheus metrics on port {port} at /metrics" in worker.log()


def test_a_taken_port_is_one_clear_error(start_worker: Start) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        worker = start_worker("--metrics-port", str(port))
        assert worker.wait() == 1
    lines = worker.log().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"pgq-thin: error: cannot serve metrics on port {port}: "
    )


def test_metrics_port_setting(tmp_path: Path) -> None:
    assert load_settings(env={}, cwd=tmp_path).metrics_port is None
    assert load_settings(env={"PGQ_METRICS_PORT": "9650"}, cwd=tmp_path).metrics_port == 9650
    assert load_settings({"metrics_port": "off"}, env={}, cwd=tmp_path).metrics_port is None
    for bad in ("0", "70000", "http"):
        with pytest.raises(PgqError, match="invalid metrics_port"):
            load_settings({"metrics_port": bad}, env={}, cwd=tmp_path)


def test_stuck_slots_gauge(db: Conn, start_worker: Start) -> None:
    port = free_port()
    policy = {"hostile_sync": {"max_attempts": 1, "timeout": 0.3}}
    worker = start_worker("--metrics-port", str(port), policy=policy)
    assert wait_for(lambda: scrape(port), "/metrics to answer")[("pgq_worker_stuck_slots", ())] == 0
    enqueue(db, "hostile_sync", [{"do": "busy"}])  # never returns, ignores job.cancelled
    wait_for(
        lambda: (scrape(port) or {}).get(("pgq_worker_stuck_slots", ())) == 1,
        "the gauge to count the stuck slot",
    )
    worker.send(signal.SIGTERM)
    assert worker.wait() == 0, worker.log()
    assert "exiting with 1 thread(s) still running: pgq-handler" in worker.log()
