"""`pgq-thin web` is a command of the CLI without the extra; only running it needs the extra."""

from __future__ import annotations

import subprocess
import sys

BLOCK_WEB = "import sys; sys.modules['starlette'] = None; "


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCK_WEB + code], capture_output=True, text=True, timeout=60
    )


def test_the_cli_works_without_the_web_extra() -> None:
    done = run("from pgq_thin.cli import main; main(['--help'])")
    assert done.returncode == 0, done.stderr
    assert "web" in done.stdout and "Serve the web dashboard" in done.stdout
    done = run("from pgq_thin.cli import main; main(['web', '--help'])")
    assert done.returncode == 0, done.stderr
    assert "--read-only" in done.stdout and "--base-path" in done.stdout


def test_running_it_without_the_extra_says_what_to_install() -> None:
    done = run("from pgq_thin.cli import main; main(['web'])")
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "pgq-thin: error: the web dashboard needs starlette: pip install 'pgq-thin[web]'"
    )
