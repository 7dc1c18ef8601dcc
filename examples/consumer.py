"""A small pgq-thin app: `pgq-thin run consumer:main` (from this directory).

- `greet` succeeds at once (async handler);
- `flaky` fails on its first attempt and succeeds on the retry (plain `def`, in a thread);
- `slow` runs past its half-second timeout on every attempt and ends in `failed`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from pgq_thin import App, Backoff, Job

app = App()


@app.entrypoint("greet")
async def greet(job: Job) -> dict[str, Any]:
    """Say hello; the returned dict is stored as the job's result."""
    return {"greeting": f"hello, {job.payload.get('name', 'world')}"}


@app.entrypoint("flaky", max_attempts=3, backoff=Backoff(base=0, jitter=0))
def flaky(job: Job) -> str:
    """Fail the first attempt, succeed on the retry."""
    if job.attempt == 1:
        raise ConnectionError("the upstream service is warming up")
    time.sleep(0.05)
    return f"ok on attempt {job.attempt}"


@app.entrypoint("slow", timeout=0.5, max_attempts=2, backoff=Backoff(base=0, jitter=0))
async def slow(job: Job) -> None:
    """Take longer than the timeout allows."""
    await asyncio.sleep(30)


def main() -> App:
    """The factory `pgq-thin run consumer:main` calls."""
    return app
