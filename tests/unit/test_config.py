"""Worker settings: precedence of flags, environment, config file and defaults; clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from pgq_thin.cli import main
from pgq_thin.config import KEYS, Settings, load_settings
from pgq_thin.errors import PgqError


def test_defaults_when_nothing_is_set(tmp_path: Path) -> None:
    assert load_settings(env={}, cwd=tmp_path) == Settings()


def test_flags_beat_environment_beat_file(tmp_path: Path) -> None:
    (tmp_path / "pgq-thin.toml").write_text(
        'max_concurrent_jobs = 5\njob_timeout = 30\npoll_interval = 2\nlog_level = "debug"\n'
    )
    env = {"MAX_CONCURRENT_JOBS": "6", "JOB_TIMEOUT": "40", "PGQ_BATCH_SIZE": "7"}
    flags = {"max_concurrent_jobs": "8", "job_timeout": None, "batch_size": None}
    settings = load_settings(flags, env=env, cwd=tmp_path)
    assert settings.max_concurrent_jobs == 8  # flag
    assert settings.job_timeout == 40  # environment over file
    assert settings.batch_size == 7  # environment over default
    assert settings.poll_interval == 2  # file over default
    assert settings.log_level == "DEBUG"
    assert settings.shutdown_grace == Settings().shutdown_grace  # default


def test_pyproject_table_and_explicit_config_path(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\n\n[tool.pgq-thin]\nmax-concurrent-jobs = 3\n'
    )
    assert load_settings(env={}, cwd=tmp_path).max_concurrent_jobs == 3
    (tmp_path / "pgq-thin.toml").write_text("max_concurrent_jobs = 4\n")
    assert load_settings(env={}, cwd=tmp_path).max_concurrent_jobs == 4  # pgq-thin.toml first
    other = tmp_path / "worker.toml"
    other.write_text('DATABASE_URL = "postgresql:///jobs"\n')
    settings = load_settings(config_path=other, env={}, cwd=tmp_path)
    assert settings.database_url == "postgresql:///jobs"
    assert settings.max_concurrent_jobs == Settings().max_concurrent_jobs  # file not merged


def test_pyproject_without_table_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    assert load_settings(env={}, cwd=tmp_path) == Settings()


def test_job_timeout_zero_means_none(tmp_path: Path) -> None:
    assert load_settings({"job_timeout": "0"}, env={}, cwd=tmp_path).job_timeout is None
    assert load_settings(env={"JOB_TIMEOUT": "2.5"}, cwd=tmp_path).job_timeout == 2.5


@pytest.mark.parametrize(
    ("file", "env", "flags", "message"),
    [
        (
            None,
            {"MAX_CONCURRENT_JOBS": "-1"},
            {},
            "invalid max_concurrent_jobs '-1' (from environment variable MAX_CONCURRENT_JOBS)",
        ),
        (
            'job_timeout = "soon"\n',
            {},
            {},
            "invalid job_timeout 'soon' (from {dir}/pgq-thin.toml): must be a number",
        ),
        ("max_jobs = 3\n", {}, {}, "unknown key 'max_jobs' in {dir}/pgq-thin.toml"),
        (None, {}, {"batch_size": "1.5"}, "invalid batch_size '1.5' (from --batch-size)"),
        ("max_concurrent_jobs = true\n", {}, {}, "invalid max_concurrent_jobs True"),
        (None, {"PGQ_LOG_LEVEL": "loud"}, {}, "invalid log_level 'loud'"),
        ("max_concurrent_jobs = [\n", {}, {}, "cannot parse config file {dir}/pgq-thin.toml"),
        (None, {"PGQ_LISTEN": "sometimes"}, {}, "invalid listen 'sometimes' (from environment"),
        (None, {"PGQ_POOL_SIZE": "0"}, {}, "invalid pool_size '0' (from environment variable"),
        ('connect_timeout = "-1"\n', {}, {}, "invalid connect_timeout '-1' (from {dir}/"),
    ],
)
def test_invalid_values_name_key_and_source(
    tmp_path: Path, file: str | None, env: dict[str, str], flags: dict[str, str], message: str
) -> None:
    if file is not None:
        (tmp_path / "pgq-thin.toml").write_text(file)
    with pytest.raises(PgqError) as info:
        load_settings(flags, env=env, cwd=tmp_path)
    assert message.format(dir=tmp_path) in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(PgqError, match="cannot read config file"):
        load_settings(config_path=tmp_path / "nope.toml", env={}, cwd=tmp_path)


def test_run_help_names_every_environment_variable() -> None:
    result = CliRunner().invoke(main, ["run", "--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    for var, _ in KEYS.values():
        assert f"[env: {var}]" in text
    assert "--mode [forever|drain]" in text


def test_run_with_invalid_config_prints_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pgq-thin.toml").write_text("max_concurrent_jobs = -2\n")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["run", "whatever:main"])
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("pgq-thin: error: invalid max_concurrent_jobs -2 (from ")


def test_exit_when_stuck(tmp_path: Path) -> None:
    (tmp_path / "pgq-thin.toml").write_text("exit_when_stuck = false\n")
    assert load_settings(env={}, cwd=tmp_path).exit_when_stuck is False
    assert load_settings(env={"PGQ_EXIT_WHEN_STUCK": "yes"}, cwd=tmp_path).exit_when_stuck
    with pytest.raises(PgqError, match=r"exit_when_stuck 'maybe'.*must be true or false"):
        load_settings(env={"PGQ_EXIT_WHEN_STUCK": "maybe"}, cwd=tmp_path)
