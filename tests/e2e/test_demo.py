"""`make demo` as a newcomer meets it: it ends by printing the commands to try next, and each
works as printed, from the checkout, with nothing on PATH."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = REPO / ".venv" / "bin"


@pytest.mark.skipif(
    Path(sys.executable).parent != VENV_BIN or shutil.which("make") is None,
    reason="runs the checkout's own .venv (make venv) through make",
)
def test_demo_prints_next_commands_that_work_as_printed(pgq_dsn: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "PGQ_"))}
    env["DATABASE_URL"] = pgq_dsn  # has the schema: the demo's install re-applies, as on a rerun
    env["PATH"] = "/usr/bin:/bin"  # pgq-thin is not on it
    # -o: do not rebuild the venv the test runs in.
    demo = subprocess.run(
        ["make", "-s", "-o", ".venv/.installed", "demo"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert demo.returncode == 0, demo.stderr
    lines = demo.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("next, from this directory"))
    assert "source .venv/bin/activate" in lines[start]
    commands = [line.strip() for line in lines[start + 1 :]]
    assert commands[0] == ".venv/bin/pgq-thin stats"
    assert len(commands) == 4  # no `db stop`: the demo used DATABASE_URL, not a local database
    for command in commands:
        done = subprocess.run(
            ["bash", "-c", command], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, (command, done.stdout, done.stderr)
