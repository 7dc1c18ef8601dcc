"""App registration and how `pgq-thin run` finds the App behind MODULE:FACTORY."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pgq_thin import App, Backoff, Job
from pgq_thin.cli import main  # noqa: F401  (imports pgq_thin.cli.run in the right order)
from pgq_thin.cli.run import load_target, open_app
from pgq_thin.errors import PgqError


def test_entrypoint_registers_async_and_sync_handlers() -> None:
    app = App()

    @app.entrypoint("a", concurrency_limit=2, timeout=5, backoff=(1, 2, 60))
    async def a(job: Job) -> None:
        return None

    @app.entrypoint("b", retryable_exceptions=(KeyError,))
    def b(job: Job) -> None:
        return None

    assert app.entrypoints["a"].is_async and not app.entrypoints["b"].is_async
    assert app.entrypoints["a"].backoff == Backoff(1, 2, 60)
    assert app.entrypoints["b"].is_retryable(KeyError("x"))
    assert not app.entrypoints["b"].is_retryable(ValueError("x"))
    assert app.entrypoints["a"].is_retryable(ValueError("x"))


def test_a_jobs_stop_event_is_made_on_first_use_and_then_kept() -> None:
    now = datetime.now(UTC)
    job = Job(1, "a", {}, {}, 0, 1, None, uuid.uuid4(), now, now)
    assert not job.cancelled  # asking does not need the event
    event = job.stop_requested
    assert job.stop_requested is event and not job.cancelled
    event.set()
    assert job.cancelled


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        ("", {}, "non-empty string"),
        ("dup", {}, "registered twice"),
        ("x", {"backoff": "fast"}, "backoff must be a Backoff or a tuple"),
    ],
)
def test_entrypoint_mistakes_are_clear(name: str, kwargs: dict[str, object], message: str) -> None:
    app = App()
    app.entrypoint("dup")(lambda job: None)
    with pytest.raises(PgqError, match=message):
        app.entrypoint(name, **kwargs)(lambda job: None)  # type: ignore[arg-type]


@pytest.fixture
def module_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "factories_mod.py").write_text("from pgq_thin import App\napp = App()\n")
    yield tmp_path
    sys.modules.pop("factories_mod", None)
    if str(tmp_path) in sys.path:
        sys.path.remove(str(tmp_path))


def test_load_target_imports_from_the_current_directory(module_dir: Path) -> None:
    assert isinstance(load_target("factories_mod:app"), App)
    with pytest.raises(PgqError, match="expected MODULE:FACTORY"):
        load_target("factories_mod")
    with pytest.raises(PgqError, match="has no attribute 'main'"):
        load_target("factories_mod:main")
    with pytest.raises(PgqError, match="cannot import 'no_such_mod'"):
        load_target("no_such_mod:main")


def test_open_app_accepts_every_kind_of_factory() -> None:
    app = App()

    async def async_factory() -> App:
        return app

    @asynccontextmanager
    async def cm_factory() -> AsyncIterator[App]:
        yield app

    async def opened(target: object) -> App:
        async with open_app(target) as got:
            return got

    for target in (app, lambda: app, async_factory, cm_factory):
        assert asyncio.run(opened(target)) is app
    with pytest.raises(PgqError, match=r"the factory gave int, expected a pgq_thin\.App"):
        asyncio.run(opened(lambda: 3))


def test_periodic_declares_a_schedule_for_the_entrypoint_below() -> None:
    app = App()

    @app.periodic("*/5 * * * *")
    @app.periodic("0 6 * * *", name="morning", timezone="Europe/Berlin", payload={"k": 1})
    @app.entrypoint("cleanup")
    async def cleanup(job: Job) -> None:
        return None

    assert cleanup.__name__ == "cleanup"  # the handler itself, still
    assert sorted(app.periodics) == ["cleanup", "morning"]
    morning = app.periodics["morning"]
    assert (morning.entrypoint, morning.cron, morning.timezone, morning.payload) == (
        "cleanup", "0 6 * * *", "Europe/Berlin", {"k": 1})  # fmt: skip
    assert app.periodics["cleanup"].catch_up == "latest"


def test_periodic_mistakes_are_clear() -> None:
    app = App()

    async def loose(job: Job) -> None:
        return None

    with pytest.raises(PgqError, match=r"goes above @app.entrypoint\(...\): 'loose'"):
        app.periodic("@daily")(loose)
    app.entrypoint("e")(loose)
    app.periodic("@daily")(loose)
    with pytest.raises(PgqError, match="schedule 'e' is declared twice"):
        app.periodic("@hourly")(loose)
