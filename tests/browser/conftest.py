"""Fixtures for the dashboard tests: `pgq-thin web` servers started by the test, and pages of
a real browser (Playwright driving Debian's chromium) looking at them.

The tests skip, saying why, where Playwright or /usr/bin/chromium is missing (`make deps`
installs chromium as root).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import db, start_worker
from tests.e2e.harness import REPO

__all__ = ["db", "start_worker"]

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = REPO / "build" / "screenshots"


class WebServer:
    """`pgq-thin web` on a free loopback port, logging to a file."""

    def __init__(self, dsn: str, args: list[str], env: dict[str, str], log_path: Path) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(("PGQ_", "PG"))}
        full_env.update(env, DATABASE_URL=dsn, PYTHONPATH=str(REPO))
        with log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pgq_thin", "web", "--port", str(self.port), *args],
                env=full_env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._wait_listening()

    def _wait_listening(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"pgq-thin web exited with {self.proc.returncode}:\n{self.log()}")
            try:
                urllib.request.urlopen(self.url + "/healthz", timeout=2).close()
                return
            except urllib.error.HTTPError:
                return  # it answers (401 or 503 is an answer)
            except OSError:
                time.sleep(0.05)
        pytest.fail(f"pgq-thin web did not listen within {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


Serve = Callable[..., WebServer]


@pytest.fixture
def serve(pgq_dsn: str, tmp_path: Path) -> Iterator[Serve]:
    """Start `pgq-thin web *args` (on this test's database unless `dsn` is given)."""
    started: list[WebServer] = []

    def start(*args: str, dsn: str = pgq_dsn, **env: str) -> WebServer:
        server = WebServer(dsn, list(args), env, tmp_path / f"web{len(started)}.log")
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless chromium per test module: closed at the module's end, because Playwright's
    sync API keeps an event loop running in this thread while it is open (asyncio.run() in
    later tests would fail)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("Playwright for Python is not installed (pip install -e '.[test]')")
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (make deps, as root)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield chromium
        chromium.close()


@pytest.fixture
def new_page(browser: Any) -> Iterator[Callable[..., Any]]:
    """Open a page in a fresh browser context; every dialog it raises is recorded in
    `page.dialogs` (and dismissed), so a test can assert that no script ran."""
    contexts: list[Any] = []

    def open_page(width: int = 1280, height: int = 800, **options: Any) -> Any:
        context = browser.new_context(viewport={"width": width, "height": height}, **options)
        context.set_default_timeout(15_000)
        contexts.append(context)
        page = context.new_page()
        page.dialogs = []

        def dialog(d: Any) -> None:
            page.dialogs.append(d.message)
            d.dismiss()

        page.on("dialog", dialog)
        return page

    yield open_page
    for context in contexts:
        context.close()
