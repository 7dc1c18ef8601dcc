"""The conformance scenarios' entrypoint `conf`, served by `pgq-thin run python_app:main`.

The same handler as node_app.js and `worker.sh -j`: record `start` in table `events`, sleep
`payload.sleep` seconds (stopping when the worker says so), raise while
`attempt <= payload.fail_until`, record `end`, return {"value": payload.value, "attempt": n}.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import psycopg

from pgq_thin import App, Job

DSN = os.environ["DATABASE_URL"]
RECORD = "INSERT INTO events (job_id, attempt, event, worker) VALUES (%s, %s, %s, %s)"
LABEL = f"python-{os.getpid()}"


async def _record(job: Job, event: str) -> None:
    async with await psycopg.AsyncConnection.connect(DSN, autocommit=True) as conn:
        await conn.execute(RECORD, (job.id, job.attempt, event, LABEL))


def main() -> App:
    app = App()

    @app.entrypoint("conf")
    async def conf(job: Job) -> Any:
        await _record(job, "start")
        await asyncio.sleep(float(job.payload.get("sleep", 0)))
        if job.attempt <= int(job.payload.get("fail_until", 0)):
            raise RuntimeError(f"failing attempt {job.attempt}")
        await _record(job, "end")
        return {"value": job.payload.get("value"), "attempt": job.attempt}

    return app
