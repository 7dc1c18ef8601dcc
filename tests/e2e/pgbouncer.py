"""A real PgBouncer (Debian's `pgbouncer`) of one test's own, in front of a PostgreSQL server.

Run as the OS user `postgres` when we are root (like the throwaway servers), on a free port,
with trust authentication and every database of the server behind it (`* = host=… port=…`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from pgq_thin._localdb import SERVER_OS_USER, free_port

MISSING = "pgbouncer is not installed: run `make deps` (Debian package pgbouncer)"  # skips


def _binary() -> str:
    found = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin:/sbin")
    if found is None:
        pytest.skip(MISSING)
    return found


class PgBouncer:
    """`pool_mode` pooling (session, transaction or statement) in front of `server_dsn`'s server."""

    def __init__(self, server_dsn: str, pool_mode: str, pool_size: int = 20) -> None:
        server = conninfo_to_dict(server_dsn)
        self.server_dsn = server_dsn
        self.dir = Path(tempfile.mkdtemp(prefix="pgb-", dir="/tmp"))
        self.port = free_port()
        users = {str(server.get("user") or "root"), "root", "postgres"}
        (self.dir / "users.txt").write_text("".join(f'"{u}" ""\n' for u in sorted(users)))
        target = f"host={server.get('host', '127.0.0.1')} port={server.get('port', 5432)}"
        (self.dir / "pgbouncer.ini").write_text(
            f"[databases]\n* = {target}\n[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {self.dir}/users.txt\n"
            f"pool_mode = {pool_mode}\ndefault_pool_size = {pool_size}\nmax_client_conn = 2000\n"
            "ignore_startup_parameters = extra_float_digits\n"
            f"logfile = {self.dir}/pgbouncer.log\npidfile = {self.dir}/pgbouncer.pid\n"
        )
        if os.geteuid() == 0:
            for path in (self.dir, *self.dir.iterdir()):
                shutil.chown(path, SERVER_OS_USER)
        cmd = [_binary(), "-d", str(self.dir / "pgbouncer.ini")]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", SERVER_OS_USER, "--", *cmd]
        subprocess.run(cmd, check=True, cwd="/", capture_output=True, timeout=30)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def dsn(self, dbname: str | None = None) -> str:
        """The server DSN (or its database `dbname`) through this PgBouncer."""
        params = conninfo_to_dict(self.server_dsn)
        params.update(host="127.0.0.1", port=self.port)
        if dbname:
            params["dbname"] = dbname
        return make_conninfo("", **params)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 15
        while True:
            try:
                with psycopg.connect(self.dsn(), connect_timeout=2, autocommit=True) as c:
                    c.execute("SELECT 1")
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return (self.dir / "pgbouncer.log").read_text(errors="replace")
        return ""

    def stop(self) -> None:
        """Shut down at once (SIGTERM) and remove the directory."""
        with contextlib.suppress(OSError, ValueError):
            pid = int((self.dir / "pgbouncer.pid").read_text())
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                os.kill(pid, 0)  # ProcessLookupError (an OSError) once it is gone
                time.sleep(0.05)
        shutil.rmtree(self.dir, ignore_errors=True)
