"""A small pgq-thin app: `pgq-thin run consumer:main` (from this directory).

- `greet` succeeds at once (async handler);
- `flaky` fails on its first attempt and succeeds on the retry (plain `def`, in a thread);
- `slow` runs past its one-second timeout on every attempt and ends in `failed` (so the
  demo runs long enough for a tick of `every-second` to fire);
- `tick` runs once a second on the schedule `every-second` the database fires.
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


@app.entrypoint("slow", timeout=1, max_attempts=2, backoff=Backoff(base=0, jitter=0))
async def slow(job: Job) -> None:
    """Take longer than the timeout allows."""
    await asyncio.sleep(30)


@app.periodic("* * * * * *", name="every-second")
@app.entrypoint("tick")
async def tick(job: Job) -> str:
    """Enqueued by the schedule above, once per tick for all workers together."""
    return f"ran for the tick of {job.headers['tick']}"


def main() -> App:
    """The factory `pgq-thin run consumer:main` calls."""
    return app
