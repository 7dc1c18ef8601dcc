"""The worker's logs: JSON lines, the job's context on a handler's own records, and
PGQ_LOG_JOBS=failures."""

from __future__ import annotations

import json
from typing import Any

from tests.e2e.harness import Conn, Start, enqueue


def run_drain(db: Conn, start_worker: Start, *args: str, **env: str) -> tuple[list[int], str, int]:
    """A drain of two logging no-op jobs (async, def) and a failing one: (their ids, the log,
    the worker's pid)."""
    ids = enqueue(db, "noop_async", [{"log": True}]) + enqueue(db, "noop_sync", [{"log": True}])
    ids += enqueue(db, "async_job", [{"fatal": True}])
    worker = start_worker("--mode", "drain", *args, WORKER_APP_NOOP="1", **env)
    assert worker.wait() == 0, worker.log()
    return ids, worker.log(), worker.proc.pid


def test_json_logs_parse_line_by_line_and_carry_the_jobs_fields(
    db: Conn, start_worker: Start
) -> None:
    [quick, threaded, fatal], text, pid = run_drain(db, start_worker, PGQ_LOG_FORMAT="json")
    lines: list[dict[str, Any]] = [json.loads(line) for line in text.splitlines()]
    assert {"time", "level", "logger", "message", "worker_id"} <= set(lines[0])
    worker_ids = {line["worker_id"] for line in lines}
    assert len(worker_ids) == 1 and worker_ids.pop().endswith(f":{pid}")

    def about(job_id: int, logger: str = "pgq_thin.worker") -> list[dict[str, Any]]:
        return [x for x in lines if x.get("job_id") == job_id and x["logger"] == logger]

    for job_id, entrypoint in ((quick, "noop_async"), (threaded, "noop_sync")):
        [own] = about(job_id, "worker_app")  # the handler's own line, in its thread too
        assert own["message"] == f"handler of {entrypoint} says hello"
        assert (own["entrypoint"], own["attempt"], own["level"]) == (entrypoint, 1, "INFO")
        started, succeeded = about(job_id)
        assert started["message"].startswith("job started")
        assert succeeded["outcome"] == "succeeded" and isinstance(succeeded["duration"], float)
        assert (succeeded["entrypoint"], succeeded["attempt"]) == (entrypoint, 1)
    [_, failed] = about(fatal)
    assert (failed["level"], failed["outcome"], failed["attempt"]) == ("ERROR", "failed", 1)
    assert failed["error"] == "worker_app.Fatal: no point retrying"


def test_text_logs_name_the_job_and_failures_only_keeps_the_failures(
    db: Conn, start_worker: Start
) -> None:
    [quick, threaded, fatal], text, _ = run_drain(db, start_worker, "--log-jobs", "failures")
    assert f" [job_id={quick} entrypoint=noop_async]" in text
    assert f"INFO worker_app: handler of noop_sync says hello [job_id={threaded} " in text
    assert "job started" not in text and "job succeeded" not in text
    assert f"ERROR pgq_thin.worker: job failed id={fatal} entrypoint=async_job" in text
    assert "pgq-thin worker" in text and "started:" in text  # other lines stay
