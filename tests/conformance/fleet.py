"""Workers of three languages serving the scenarios' entrypoint `conf`, started alike.

- ``python``: `pgq-thin run python_app:main`;
- ``bash``: `tests/sql/worker.sh -j` (bash + psql);
- ``node``: `node node_app.js` on examples/node/worker.js (the npm `pg` package).

Each takes the same settings (MAX_CONCURRENT_JOBS, PGQ_BATCH_SIZE, PGQ_LEASE_DURATION, ...) and
runs in a process group of its own, so that freezing it (SIGSTOP) freezes its helpers too.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict

HERE = Path(__file__).parent
REPO = HERE.parents[1]
NODE_DIR = REPO / "examples" / "node"
KINDS = ("python", "bash", "node")
POLL = "0.2"
LIBPQ_ENV = {
    "host": "PGHOST",
    "port": "PGPORT",
    "user": "PGUSER",
    "password": "PGPASSWORD",
    "dbname": "PGDATABASE",
}


def unavailable(kind: str) -> str | None:
    """Why workers of `kind` cannot run on this machine, or None."""
    if kind == "node":
        if shutil.which("node") is None:
            return "node not found: the Node worker's scenarios are skipped (install nodejs)"
        if not (NODE_DIR / "node_modules" / "pg").is_dir():
            return "examples/node has no node_modules: run `make deps` (npm ci)"
    if kind == "bash" and (shutil.which("bash") is None or shutil.which("psql") is None):
        return "bash or psql not found"
    return None


class Worker:
    """One worker process (and its process group), logging to a file in `workdir`."""

    def __init__(self, kind: str, dsn: str, workdir: Path, name: str, **settings: str) -> None:
        self.kind = kind
        self.name = name
        self.log_path = workdir / f"{name}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "DATABASE_URL"))}
        env.update(DATABASE_URL=dsn, PGQ_POLL_INTERVAL=POLL, PGQ_SHUTDOWN_GRACE="2")
        env.update(PGQ_WORKER_ID=name, PYTHONPATH=str(REPO), **settings)
        forever = env.get("PGQ_MODE") == "forever"
        env["PGQ_MODE"] = "forever" if forever else "drain"
        if kind == "python":
            shutil.copy(HERE / "python_app.py", workdir / "python_app.py")
            mode = "forever" if forever else "drain"
            cmd = [sys.executable, "-m", "pgq_thin", "run", "python_app:main", "--mode", mode]
        elif kind == "bash":
            cmd = ["bash", str(REPO / "tests" / "sql" / "worker.sh"), "-j", "-d", dsn, "-e", "conf"]
            cmd += ["-b", env.get("MAX_CONCURRENT_JOBS", "4"), "-w", name]
            cmd += ["-l", env.get("PGQ_LEASE_DURATION", "30")] + (["-f"] if forever else [])
        else:  # node-postgres reads URIs only: give it the keyword DSN as libpq variables
            del env["DATABASE_URL"]
            params = conninfo_to_dict(dsn)
            for key, var in LIBPQ_ENV.items():
                if params.get(key) not in (None, ""):
                    env[var] = str(params[key])
            cmd = ["node", str(HERE / "node_app.js")]
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                cmd,
                cwd=workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)

    def wait(self, timeout: float = 60) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{self.name} still running after {timeout}s; log:\n{self.log()}")

    def stop(self) -> int:
        """SIGTERM, then wait for the graceful exit."""
        self.signal_group(signal.SIGCONT)
        self.proc.send_signal(signal.SIGTERM)
        return self.wait(30)

    def kill(self) -> None:
        self.signal_group(signal.SIGKILL)
        self.proc.wait()
