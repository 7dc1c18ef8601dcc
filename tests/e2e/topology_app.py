"""The app the topology tests serve (also with the previous release's worker): `echo` returns
the pid of the process that ran it, after `sleep` seconds if its payload says so. It opens no
connection of its own, so every connection of the process is the worker's."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from pgq_thin import App, Job

app = App()


@app.entrypoint("echo")
async def echo(job: Job) -> dict[str, Any]:
    await asyncio.sleep(job.payload.get("sleep", 0))
    return {"pid": os.getpid()}


def main() -> App:
    return app
