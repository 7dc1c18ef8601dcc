"""A local PostgreSQL started from the binaries on this machine (`pgq-thin db`).

Two uses: a project-local server for trying things (`start`, `stop`, `status`,
`running_url`, kept in ``.pgq-thin/db`` of the project, found upward from the current
directory, or in ``$PGQ_THIN_DB_DIR``), and
throwaway servers for tests (`LocalServer.throwaway`). As root, the server
binaries run as the OS user ``postgres`` (initdb and pg_ctl refuse root).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import pwd
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from pgq_thin.errors import PgqError

DB_DIR_ENV = "PGQ_THIN_DB_DIR"
STATE_FILE = "state.json"
SERVER_OS_USER = "postgres"  # runs the server when we are root
SUPERUSER = "postgres"  # the database superuser initdb creates
SOCKET_PARENT = "/tmp"  # short: unix socket paths are limited to ~107 bytes


def find_bindir() -> Path:
    """The directory holding initdb and pg_ctl: PATH, `pg_config --bindir`, /usr/lib/postgresql."""

    def usable(d: Path) -> bool:
        return all(os.access(d / exe, os.X_OK) for exe in ("initdb", "pg_ctl", "postgres"))

    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl:
        for d in (Path(initdb).resolve().parent, Path(initdb).parent):
            if usable(d):
                return d
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
            if out and usable(Path(out)):
                return Path(out)
    versions = sorted(
        (d for d in Path("/usr/lib/postgresql").glob("*/bin") if usable(d)),
        key=lambda d: [int(p) if p.isdigit() else 0 for p in d.parent.name.split(".")],
    )
    if versions:
        return versions[-1]
    raise PgqError(
        "no PostgreSQL server binaries found (initdb, pg_ctl): install the PostgreSQL server "
        "(e.g. `apt-get install postgresql`) or put its bin directory on PATH"
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _is_root() -> bool:
    return os.geteuid() == 0


def _server_account() -> pwd.struct_passwd | None:
    """The OS account that runs the server binaries (None: ourselves)."""
    if not _is_root():
        return None
    try:
        return pwd.getpwnam(SERVER_OS_USER)
    except KeyError:
        raise PgqError(
            f"running as root, but there is no OS user {SERVER_OS_USER!r} to run PostgreSQL as "
            "(initdb and pg_ctl refuse root): create it or run as an ordinary user"
        ) from None


def _give_to_server(path: Path) -> None:
    """Make `path` owned by the server's OS user (a no-op unless we are root)."""
    account = _server_account()
    if account is not None:
        os.chown(path, account.pw_uid, account.pw_gid)


def _runuser() -> str:
    """runuser (util-linux), also when /usr/sbin is not on PATH (a root shell started by sudo
    or cron often lacks it)."""
    return shutil.which("runuser") or shutil.which("runuser", path="/usr/sbin:/sbin") or "runuser"


def _reachable_by_server(path: Path) -> bool:
    """Whether the server's OS user can traverse into `path` (always true unless root)."""
    if _server_account() is None:
        return True
    cmd = [_runuser(), "-u", SERVER_OS_USER, "--", "test", "-x", str(path)]
    return subprocess.run(cmd, cwd="/", capture_output=True, check=False).returncode == 0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/comm").read_text().strip().startswith("postgres")
    return True


class PortInUse(PgqError):
    """The server could not bind its TCP port."""


@dataclass
class LocalServer:
    """One PostgreSQL cluster in `datadir`, on 127.0.0.1:`port` and a socket in `socket_dir`."""

    datadir: Path
    port: int
    socket_dir: Path
    bindir: Path = field(default_factory=find_bindir)
    owned_dir: Path | None = None  # removed by `discard` (throwaway servers)

    @classmethod
    def throwaway(cls, parent: str | Path = SOCKET_PARENT) -> Self:
        """Init and start a new server in a fresh temporary directory; `discard` removes it."""
        base = Path(tempfile.mkdtemp(prefix="pgq-", dir=parent))
        try:
            _give_to_server(base)
            server = cls(base / "data", free_port(), base, owned_dir=base)
            server.init(no_sync=True)
            server.start(pick_port=True)
        except BaseException:
            shutil.rmtree(base, ignore_errors=True)
            raise
        return server

    # --- addresses -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """postgresql://postgres@127.0.0.1:PORT/postgres"""
        return self.dsn()

    def dsn(self, dbname: str = "postgres") -> str:
        """The URL of database `dbname` on this server (TCP, trust auth)."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    @property
    def log_file(self) -> Path:
        return self.datadir / "postgres.log"

    # --- state -----------------------------------------------------------------------------

    @property
    def initialized(self) -> bool:
        return (self.datadir / "PG_VERSION").is_file()

    def postmaster(self) -> dict[str, Any] | None:
        """pid, port, socket_dir and status ('ready', 'starting', ...) of a live postmaster."""
        try:
            lines = (self.datadir / "postmaster.pid").read_text().splitlines()
            pid = int(lines[0])
        except (OSError, ValueError, IndexError):
            return None
        if not _pid_alive(pid):
            return None
        at = lines + [""] * 8
        return {
            "pid": pid,
            "port": int(at[3]) if at[3].strip().isdigit() else None,
            "socket_dir": at[4].strip() or None,
            "status": at[7].strip() or "unknown",
        }

    def is_running(self) -> bool:
        """True when the postmaster is up and accepting connections."""
        info = self.postmaster()
        return info is not None and info["status"] == "ready"

    # --- actions ---------------------------------------------------------------------------

    def _run(self, args: list[str], what: str, timeout: float = 120) -> None:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if _server_account() is not None:
            cmd = [_runuser(), "-u", SERVER_OS_USER, "--", *cmd]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        try:
            proc = subprocess.run(
                cmd,
                cwd="/",
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PgqError(f"{what} failed: {exc}") from exc
        if proc.returncode != 0:
            out = proc.stderr.strip() or proc.stdout.strip() or f"exit {proc.returncode}"
            raise PgqError(f"{what} failed: {out.splitlines()[-1]}")

    def init(self, *, no_sync: bool = False) -> None:
        """initdb: superuser `postgres`, trust auth, UTF8 (`no_sync` for throwaway clusters)."""
        self.datadir.mkdir(mode=0o700, parents=True, exist_ok=True)
        _give_to_server(self.datadir)
        if not _reachable_by_server(self.datadir):
            raise PgqError(
                f"{self.datadir} is not reachable by OS user {SERVER_OS_USER!r}: "
                f"use a data directory whose parents it can enter (set {DB_DIR_ENV})"
            )
        args = ["initdb", "-D", str(self.datadir), "-U", SUPERUSER, "--auth=trust"]
        args += ["--encoding=UTF8", "--no-locale", "--no-instructions"]
        self._run([*args, "--no-sync"] if no_sync else args, f"initdb in {self.datadir}")

    def _ensure_socket_dir(self) -> None:
        self.socket_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        _give_to_server(self.socket_dir)

    def start(self, *, pick_port: bool = False, timeout: int = 60) -> None:
        """pg_ctl start, waiting until ready; `pick_port`: move to a free port if ours is taken."""
        if self.is_running():
            return
        self._ensure_socket_dir()
        for attempt in range(5):
            offset = self.log_file.stat().st_size if self.log_file.exists() else 0
            sock = shlex.quote(str(self.socket_dir))
            opts = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {sock}"
            args = ["pg_ctl", "-D", str(self.datadir), "-l", str(self.log_file), "-w"]
            try:
                self._run(
                    [*args, "-t", str(timeout), "-o", opts, "start"], "pg_ctl start", timeout + 30
                )
                return
            except PgqError as exc:
                log = self._log_since(offset)
                if "already in use" in log and pick_port and attempt < 4:
                    self.port = free_port()
                    continue
                detail = " | ".join(log.strip().splitlines()[-3:])
                error = PortInUse if "already in use" in log else PgqError
                raise error(f"{exc} (log {self.log_file}: {detail})") from None

    def _log_since(self, offset: int) -> str:
        try:
            with self.log_file.open("rb") as f:
                f.seek(offset)
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def stop(self, mode: str = "fast") -> bool:
        """pg_ctl stop (`fast`, `smart` or `immediate`); False when it was not running."""
        if self.postmaster() is None:
            return False
        args = ["pg_ctl", "-D", str(self.datadir), "-m", mode, "-w", "-t", "60", "stop"]
        self._run(args, "pg_ctl stop", timeout=90)
        return True

    def kill(self) -> None:
        """Crash the server (immediate shutdown, no checkpoint): the next start runs recovery."""
        info = self.postmaster()
        if info is not None:
            os.kill(info["pid"], signal.SIGQUIT)
            self._wait_gone(info["pid"])

    def _wait_gone(self, pid: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)

    def restart(self) -> None:
        """Stop (fast) then start on the same port, so the DSN stays valid."""
        self.stop()
        self.start()

    def discard(self) -> None:
        """Stop immediately and remove the directory created by `throwaway`."""
        with contextlib.suppress(PgqError):
            self.stop("immediate")
        if self.owned_dir is not None:
            shutil.rmtree(self.owned_dir, ignore_errors=True)


# --- the project-local server (`pgq-thin db`) ------------------------------------------------


PROJECT_DIR = ".pgq-thin"


def db_dir(directory: str | Path | None = None) -> Path:
    """Where the local server's state lives: argument, $PGQ_THIN_DB_DIR, else `.pgq-thin/db` in
    the nearest directory upward that has a `.pgq-thin/` (as git finds `.git`), else here."""
    chosen = directory or os.environ.get(DB_DIR_ENV)
    if chosen:
        return Path(os.path.abspath(chosen))
    here = Path(os.path.abspath(Path.cwd()))
    for folder in (here, *here.parents):
        if (folder / PROJECT_DIR).is_dir():
            return folder / PROJECT_DIR / "db"
    return here / PROJECT_DIR / "db"


def _load_state(directory: Path) -> dict[str, Any] | None:
    try:
        state = json.loads((directory / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) and "datadir" in state else None


def _server_from_state(state: dict[str, Any], bindir: Path | None = None) -> LocalServer:
    return LocalServer(
        datadir=Path(state["datadir"]),
        port=int(state.get("port") or 0),
        socket_dir=Path(state.get("socket_dir") or SOCKET_PARENT),
        bindir=bindir or Path(state.get("bindir") or "/nonexistent"),
    )


def _save_state(directory: Path, server: LocalServer) -> None:
    state = {
        "datadir": str(server.datadir),
        "port": server.port,
        "socket_dir": str(server.socket_dir),
        "bindir": str(server.bindir),
    }
    tmp = directory / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(directory / STATE_FILE)


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _choose_datadir(directory: Path) -> Path:
    """`directory`/data, or a place under /var/tmp when the server's OS user can't enter it."""
    if _reachable_by_server(directory):
        return directory / "data"
    digest = hashlib.sha1(str(directory).encode()).hexdigest()[:12]
    parent = Path("/var/tmp") if Path("/var/tmp").is_dir() else Path(SOCKET_PARENT)
    return parent / f"pgq-thin-{digest}" / "data"


def _socket_dir_ok(path: Path) -> bool:
    account = _server_account()
    try:
        return path.is_dir() and path.stat().st_uid == (account.pw_uid if account else os.geteuid())
    except OSError:
        return False


def running_url(directory: str | Path | None = None) -> str | None:
    """URL of the local server when it is running, else None; cheap and never raises."""
    try:
        state = _load_state(db_dir(directory))
        if state is None:
            return None
        server = _server_from_state(state)
        info = server.postmaster()
        if info is None or info["status"] != "ready":
            return None
        server.port = info["port"] or server.port
        return server.url
    except Exception:
        return None


def start(directory: str | Path | None = None) -> str:
    """Init (first time) and start the local server; return its URL. Idempotent."""
    where = db_dir(directory)
    with _locked(where):
        url = running_url(where)
        if url:
            return url
        state = _load_state(where) or {}
        bindir = find_bindir()
        if state and (Path(state["datadir"]) / "PG_VERSION").is_file():
            server = _server_from_state(state, bindir)
        else:
            datadir = _choose_datadir(where)
            server = LocalServer(datadir, 0, Path(SOCKET_PARENT), bindir)
        if not server.initialized:
            server.init()
        if not _socket_dir_ok(server.socket_dir) or server.socket_dir == Path(SOCKET_PARENT):
            server.socket_dir = Path(tempfile.mkdtemp(prefix="pgq-", dir=SOCKET_PARENT))
        if not server.port:
            server.port = free_port()
        _save_state(where, server)
        try:
            server.start(pick_port=True)
        finally:
            _save_state(where, server)
        return server.url


def stop(directory: str | Path | None = None) -> bool:
    """Stop the local server; False when it was not running."""
    where = db_dir(directory)
    state = _load_state(where)
    if state is None:
        return False
    with _locked(where):
        server = _server_from_state(state, find_bindir())
        stopped = server.stop()
        with contextlib.suppress(OSError):
            server.socket_dir.rmdir()  # empty once stopped; `start` makes a new one
        return stopped


def status(directory: str | Path | None = None) -> dict[str, Any]:
    """directory, datadir, initialized, running, pid, port, socket_dir, url, log."""
    where = db_dir(directory)
    state = _load_state(where)
    result: dict[str, Any] = {"directory": str(where), "datadir": None, "initialized": False}
    result.update(running=False, pid=None, port=None, socket_dir=None, url=None, log=None)
    if state is None:
        return result
    server = _server_from_state(state)
    info = server.postmaster()
    result.update(datadir=str(server.datadir), initialized=server.initialized)
    result.update(port=server.port, socket_dir=str(server.socket_dir), log=str(server.log_file))
    if info is not None:
        result.update(pid=info["pid"], port=info["port"] or server.port)
        result["running"] = info["status"] == "ready"
        result["status"] = info["status"]
    result["url"] = running_url(where)
    return result
