"""Worker settings: command-line flags > environment > config file > defaults."""

from __future__ import annotations

import logging
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from pgq_thin.errors import PgqError

CONFIG_FILE = "pgq-thin.toml"
PYPROJECT = "pyproject.toml"
PYPROJECT_TABLE = "tool.pgq-thin"


@dataclass(frozen=True)
class Settings:
    """Everything a worker needs to know, with the defaults used when nothing says otherwise."""

    database_url: str | None = None
    max_concurrent_jobs: int = 10
    job_timeout: float | None = None
    batch_size: int = 100
    poll_interval: float = 1.0
    shutdown_grace: float = 10.0
    lease_duration: float = 30.0
    log_level: str = "INFO"
    log_format: str = "text"
    log_jobs: str = "all"
    metrics_port: int | None = None
    reap_interval: float = 1.0
    vacuum_interval: float = 0.5
    prune_interval: float = 60.0
    exit_when_stuck: bool = True
    # Connection keys (pgq_thin/_pools.py: where each connection goes, how many).
    pool_size: int = 3
    listen: str = "auto"
    listen_url: str | None = None
    connect_timeout: float = 60.0


Value = str | int | float


def _number(raw: Value, kind: type[int] | type[float]) -> int | float:
    if isinstance(raw, bool):
        raise ValueError("must be a number")
    try:
        number = kind(raw)
    except (TypeError, ValueError):
        whole = "a whole number" if kind is int else "a number"
        raise ValueError(f"must be {whole}") from None
    if kind is int and isinstance(raw, float) and raw != number:
        raise ValueError("must be a whole number")
    if number != number or number in (float("inf"), float("-inf")):
        raise ValueError("must be a finite number")
    return number


def _positive_int(raw: Value) -> int:
    number = int(_number(raw, int))
    if number < 1:
        raise ValueError("must be a whole number >= 1")
    return number


def _positive_seconds(raw: Value) -> float:
    number = float(_number(raw, float))
    if number <= 0:
        raise ValueError("must be a number of seconds > 0")
    return number


def _non_negative_seconds(raw: Value) -> float:
    number = float(_number(raw, float))
    if number < 0:
        raise ValueError("must be a number of seconds >= 0")
    return number


def _off(raw: Value) -> bool:
    """Whether an optional setting was turned off ("none" or "off")."""
    return isinstance(raw, str) and raw.strip().lower() in ("none", "off")


def _timeout(raw: Value) -> float | None:
    if _off(raw):
        return None
    return _non_negative_seconds(raw) or None


def _port(raw: Value) -> int | None:
    if _off(raw):
        return None
    number = int(_number(raw, int))
    if not 1 <= number <= 65535:
        raise ValueError("must be a TCP port from 1 to 65535 (or none)")
    return number


def _bool(raw: Value) -> bool:
    text = str(raw).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be true or false")


def _text(raw: Value) -> str:
    if not isinstance(raw, str):
        raise ValueError("must be a string")
    return raw


def _listen(raw: Value) -> str:
    mode = _text(raw).strip().lower()
    if mode not in ("auto", "off"):
        raise ValueError("must be auto (LISTEN where it works) or off (poll only)")
    return mode


def _log_level(raw: Value) -> str:
    level = _text(raw).upper()
    if level not in logging.getLevelNamesMapping() or level == "NOTSET":
        raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
    return level


def _choice(*options: str) -> Callable[[Value], str]:
    def parse(raw: Value) -> str:
        value = _text(raw).strip().lower()
        if value not in options:
            raise ValueError(f"must be one of {', '.join(options)}")
        return value

    return parse


# Setting name -> (environment variable, parser).
KEYS: dict[str, tuple[str, Callable[[Value], object]]] = {
    "database_url": ("DATABASE_URL", _text),
    "max_concurrent_jobs": ("MAX_CONCURRENT_JOBS", _positive_int),
    "job_timeout": ("JOB_TIMEOUT", _timeout),
    "batch_size": ("PGQ_BATCH_SIZE", _positive_int),
    "poll_interval": ("PGQ_POLL_INTERVAL", _positive_seconds),
    "shutdown_grace": ("PGQ_SHUTDOWN_GRACE", _non_negative_seconds),
    "lease_duration": ("PGQ_LEASE_DURATION", _positive_seconds),
    "log_level": ("PGQ_LOG_LEVEL", _log_level),
    "log_format": ("PGQ_LOG_FORMAT", _choice("text", "json")),
    "log_jobs": ("PGQ_LOG_JOBS", _choice("all", "failures")),
    "metrics_port": ("PGQ_METRICS_PORT", _port),
    "reap_interval": ("PGQ_REAP_INTERVAL", _non_negative_seconds),
    "vacuum_interval": ("PGQ_VACUUM_INTERVAL", _non_negative_seconds),
    "prune_interval": ("PGQ_PRUNE_INTERVAL", _non_negative_seconds),
    "exit_when_stuck": ("PGQ_EXIT_WHEN_STUCK", _bool),
    "pool_size": ("PGQ_POOL_SIZE", _positive_int),
    "listen": ("PGQ_LISTEN", _listen),
    "listen_url": ("PGQ_LISTEN_URL", _text),
    "connect_timeout": ("PGQ_CONNECT_TIMEOUT", _non_negative_seconds),
}


def env_var(key: str) -> str:
    """The environment variable that sets `key`."""
    return KEYS[key][0]


def _parse(key: str, raw: Value, source: str) -> object:
    try:
        return KEYS[key][1](raw)
    except ValueError as exc:
        raise PgqError(f"invalid {key} {raw!r} (from {source}): {exc}") from None


def _read_toml(path: Path) -> dict[str, object]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise PgqError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise PgqError(f"cannot parse config file {path}: {exc}") from None


def _file_values(path: Path) -> tuple[dict[str, object], str] | None:
    """The settings table of a config file, and how to name it in messages."""
    data = _read_toml(path)
    if path.name != PYPROJECT:
        return data, str(path)
    tool = data.get("tool", {})
    table = tool.get("pgq-thin") if isinstance(tool, dict) else None
    if table is None:
        return None
    if not isinstance(table, dict):
        raise PgqError(f"[{PYPROJECT_TABLE}] in {path} must be a table")
    return table, f"{path} [{PYPROJECT_TABLE}]"


def find_config_file(cwd: Path) -> Path | None:
    """`pgq-thin.toml`, else a `pyproject.toml` with a `[tool.pgq-thin]` table, in `cwd`."""
    if (cwd / CONFIG_FILE).is_file():
        return cwd / CONFIG_FILE
    pyproject = cwd / PYPROJECT
    if pyproject.is_file() and _file_values(pyproject) is not None:
        return pyproject
    return None


def load_settings(
    flags: Mapping[str, str | None] | None = None,
    *,
    config_path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Settings:
    """Merge the layers into Settings; any invalid value raises PgqError naming key and source.

    `flags` maps setting names to command-line values (None: not given); `config_path`
    overrides the search for a config file in `cwd`.
    """
    env = os.environ if env is None else env
    cwd = Path.cwd() if cwd is None else cwd
    values: dict[str, object] = {}

    path = Path(config_path) if config_path is not None else find_config_file(cwd)
    found = _file_values(path) if path is not None else None
    if found is not None:
        table, source = found
        for name, raw in table.items():
            key = name.lower().replace("-", "_")
            if key not in KEYS:
                raise PgqError(f"unknown key {name!r} in {source} (known: {', '.join(KEYS)})")
            if not isinstance(raw, str | int | float):  # a TOML boolean is an int
                raise PgqError(f"invalid {key} (from {source}): must be a string or number")
            values[key] = _parse(key, raw, source)

    for key, (var, _) in KEYS.items():
        raw_env = env.get(var, "")
        if raw_env.strip():
            values[key] = _parse(key, raw_env, f"environment variable {var}")

    for key, raw_flag in (flags or {}).items():
        if raw_flag is not None:
            values[key] = _parse(key, raw_flag, "--" + key.replace("_", "-"))

    return Settings(**values)  # type: ignore[arg-type]
