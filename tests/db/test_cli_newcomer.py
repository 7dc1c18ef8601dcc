"""The command line a newcomer meets, tried as one would: real `pgq-thin` processes against a
real PostgreSQL, with the terminal size given through $COLUMNS/$LINES."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from pgq_thin._localdb import free_port
from pgq_thin.testing import ThrowawayServer
from tests.db.test_monitoring import T0, at, claim

Conn = psycopg.Connection[Any]
CLI = str(Path(sys.executable).with_name("pgq-thin"))


def cli(
    *args: str,
    status: int = 0,
    stdin: str | None = None,
    cwd: Path | None = None,
    **env: str,
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "DATABASE_URL"))}
    done = subprocess.run(
        [CLI, *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**base, "COLUMNS": "80", "LINES": "24", **env},
        timeout=120,
    )
    assert done.returncode == status, (done.stdout, done.stderr)
    return done


def test_db_commands_find_the_project_database_from_any_directory(tmp_path: Path) -> None:
    project, deep = tmp_path / "project", tmp_path / "project" / "src" / "app"
    deep.mkdir(parents=True)
    url = cli("db", "start", cwd=project).stdout.strip()
    status = cli("db", "status", cwd=deep).stdout
    # tmp_path is closed to the server's OS user, so the data may live under /var/tmp.
    found = re.search(r"^datadir: +(.+)$", status, flags=re.M)
    assert found
    datadir = Path(found.group(1))
    try:
        assert status.startswith("state:      running")
        assert f"directory:  {project / '.pgq-thin' / 'db'}" in status
        assert cli("db", "url", cwd=deep).stdout == f"{url}\n"
        cli("install", cwd=deep)  # the local database, found upward, is the default target
    finally:
        try:
            assert cli("db", "stop", cwd=deep).stdout == "stopped\n"
        finally:
            if not datadir.is_relative_to(tmp_path):
                shutil.rmtree(datadir.parent, ignore_errors=True)
    stopped = cli("db", "url", cwd=deep, status=1)
    assert stopped.stdout == ""  # so `export DATABASE_URL=$(pgq-thin db url)` fails visibly
    assert "is not running: `pgq-thin db start`" in stopped.stderr
    assert cli("db", "status", cwd=deep, status=3).stdout.startswith("state:      not created")


def test_enqueue_reads_the_payload_from_stdin_or_a_file(
    pgq_conn: Conn, pgq_dsn: str, tmp_path: Path
) -> None:
    big = {"blob": "x" * 300_000}  # past what one shell argument may hold (~128 KiB)
    by_stdin = cli("enqueue", "big", "-", "-d", pgq_dsn, stdin=json.dumps(big)).stdout
    path = tmp_path / "payload.json"
    path.write_text(json.dumps({"from": "file"}))
    by_file = cli("enqueue", "big", f"@{path}", "--json", "-d", pgq_dsn).stdout
    stored = dict(pgq_conn.execute("SELECT id, payload FROM pgq.jobs").fetchall())
    assert stored[int(by_stdin)] == big
    created = json.loads(by_file)
    assert created == {"id": created["id"], "entrypoint": "big", "created": True}
    assert stored[created["id"]] == {"from": "file"}
    missing = cli("enqueue", "big", "@/nonexistent.json", "-d", pgq_dsn, status=1)
    assert missing.stderr == (
        "pgq-thin: error: cannot read the payload from /nonexistent.json: "
        "No such file or directory\n"
    )


def test_a_duplicate_dedupe_key_says_the_existing_job_was_returned(pgq_dsn: str) -> None:
    first = cli("enqueue", "mail", "--dedupe-key", "order-7", "-d", pgq_dsn)
    assert first.stderr == ""
    again = cli("enqueue", "mail", "--dedupe-key", "order-7", "-d", pgq_dsn)
    assert again.stdout == first.stdout
    job = first.stdout.strip()
    assert again.stderr == (
        f"pgq-thin: job {job} already has dedupe key 'order-7': the existing job was returned, "
        "nothing was enqueued\n"
    )
    as_json = json.loads(cli("enqueue", "mail", "--dedupe-key", "order-7", "--json",
                             "-d", pgq_dsn).stdout)  # fmt: skip
    assert as_json == {"id": int(job), "entrypoint": "mail", "created": False}


def test_verify_json(pgq_conn: Conn, pgq_dsn: str) -> None:
    ok = json.loads(cli("verify", "--json", "-d", pgq_dsn).stdout)
    assert ok["ok"] is True and ok["problems"] == []
    pgq_conn.execute("CREATE INDEX my_idx ON pgq.jobs (priority)")
    bad = json.loads(cli("verify", "--json", "-d", pgq_dsn, status=1).stdout)
    assert bad["ok"] is False
    assert [p.split(":")[0] for p in bad["problems"]] == [
        "the tables of schema pgq were changed since pgq-thin installed them (a column, index or "
        "constraint added or removed)"
    ]


def enqueue_names(conn: Conn, names: list[str]) -> None:
    conn.execute(
        "SELECT pgq.enqueue_many(%s, array_fill('{}'::jsonb, ARRAY[%s]))", (names, len(names))
    )


def test_stats_keeps_names_apart_and_fits_the_terminal(pgq_conn: Conn, pgq_dsn: str) -> None:
    long = "billing.invoices.send_reminder_email_to_customer_"
    names = [f"{long}{tail}" for tail in ("eu", "us")] + [f"task_{n:02d}" for n in range(33)]
    enqueue_names(pgq_conn, names + [names[1]] * 3)

    narrow = cli("stats", "-d", pgq_dsn).stdout.splitlines()
    shown = [line.split()[0] for line in narrow if line.startswith("billing")]
    assert len(shown) == 2 and shown[0] != shown[1]  # elided in the middle: the ends differ
    assert all("…" in name and name.endswith(("_eu", "_us")) for name in shown)
    assert all(len(line) <= 80 for line in narrow)

    wide = cli("stats", "-d", pgq_dsn, COLUMNS="140").stdout.splitlines()
    assert [line.split()[0] for line in wide if line.startswith("billing")] == names[:2]
    assert max(len(line) for line in wide) > 80

    proc = subprocess.Popen(
        [CLI, "stats", "--watch", "0.2", "-d", pgq_dsn],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "80", "LINES": "24"},
    )
    assert proc.stdout is not None
    frames: list[list[str]] = []
    for line in proc.stdout:
        if line.startswith("pgq-thin stats "):
            frames.append([])
            if len(frames) == 3:
                break
        frames[-1].append(line.rstrip("\n"))
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=30)
    frame = frames[1]
    assert len(frame) <= 23  # 24 lines, the last one the cursor's
    assert frame[3].startswith("ENTRYPOINT ")  # the header stays on screen
    rows = [line for line in frame[4:] if line.startswith(("billing", "task_"))]
    (summary,) = [line for line in frame if line.startswith("… ")]
    hidden = 35 - len(rows)
    assert (
        summary == f"… {hidden} more entrypoints: {hidden} queued, 0 scheduled, 0 running, 0 failed"
    )
    assert any(line.startswith("billing") and " 4 " in line for line in rows)  # the busiest


def test_jobs_and_workers_use_the_terminal_width(pgq_conn: Conn, pgq_dsn: str) -> None:
    name = "reports.quarterly.regenerate_all_customer_dashboards"
    enqueue_names(pgq_conn, [name])
    pgq_conn.execute("SELECT pgq.register_worker('worker-on-a-host-with-a-long-name-7', %s)",
                     ([name],))  # fmt: skip
    assert name in cli("jobs", "-d", pgq_dsn, COLUMNS="150").stdout
    assert "worker-on-a-host-with-a-long-name-7" in cli("workers", "-d", pgq_dsn,
                                                       COLUMNS="150").stdout  # fmt: skip
    narrow = cli("jobs", "-d", pgq_dsn).stdout.splitlines()
    assert all(len(line) <= 80 for line in narrow)
    shown = narrow[1].split()[1]
    assert shown.startswith("reports.") and "…" in shown and shown.endswith("_dashboards")


def test_connection_errors_keep_libpq_reason(throwaway_server: ThrowawayServer) -> None:
    refused = cli("stats", "-d", f"postgresql://x@127.0.0.1:{free_port()}/db", status=1)
    assert ": Connection refused (is the server running on that host" in refused.stderr
    assert refused.stderr.count("\n") == 1

    hba = throwaway_server.datadir / "pg_hba.conf"
    hba.write_text("host all pw_user 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
    with throwaway_server.connect() as conn:
        conn.execute("CREATE ROLE pw_user LOGIN PASSWORD 'right'")
        conn.execute("SELECT pg_reload_conf()")
    dsn = make_conninfo(throwaway_server.dsn(), user="pw_user", password="wrong")
    denied = cli("stats", "-d", dsn, status=1)
    assert denied.stderr.endswith(': password authentication failed for user "pw_user"\n')
    assert "wrong" not in denied.stderr


def test_explain_of_an_invalid_or_unknown_id(pgq_dsn: str) -> None:
    past = cli("explain", str(2**63), "-d", pgq_dsn, status=2)
    assert "Invalid value for 'ID'" in past.stderr and "schema" not in past.stderr
    cli("cancel", str(2**63), "-d", pgq_dsn, status=2)
    unknown = cli("explain", "424242", "-d", pgq_dsn, status=1)
    assert unknown.stderr.startswith("pgq-thin: error: job 424242: no such job")


def test_explain_does_not_show_an_expired_lease_as_running(pgq_conn: Conn, pgq_dsn: str) -> None:
    at(pgq_conn, T0)
    pgq_conn.execute("SELECT pgq.set_entrypoint('mail', timeout => '1 hour')")
    pgq_conn.execute("SELECT pgq.enqueue('mail')")
    ((job, _),) = claim(pgq_conn, "mail", 1, "w1")  # a 5-minute lease

    def explain(minutes: int) -> str:
        moment = T0.replace(minute=minutes).isoformat()
        dsn = make_conninfo(pgq_dsn, options=f"-c pgq.now={moment} -c TimeZone=UTC")
        return cli("explain", str(job), "-d", dsn).stdout

    assert (
        explain(1) == f"job {job}: running (attempt 1) on worker w1 until 2030-01-01 12:05:00+00\n"
    )
    assert explain(6) == (
        f"job {job}: attempt 1 on worker w1 lost its lease at 2030-01-01 12:05:00+00 (the worker "
        "stopped renewing it); the next pgq.reap() records it as worker lost (retry or failed "
        "by policy)\n"
    )
    pgq_conn.execute(
        "UPDATE pgq.jobs SET timeout_at = %s WHERE id = %s", (T0.replace(minute=3), job)
    )
    assert explain(4) == (
        f"job {job}: attempt 1 on worker w1 timed out at 2030-01-01 12:03:00+00; the next "
        "pgq.reap() records it (retry or failed by policy)\n"
    )


def test_pause_of_an_unknown_name_asks_for_create_and_a_policy_can_go(
    pgq_conn: Conn, pgq_dsn: str
) -> None:
    typo = cli("pause", "mial", "-d", pgq_dsn, status=1)
    assert typo.stderr == (
        "pgq-thin: error: entrypoint 'mial' has no jobs and no policy (a typo?): rerun with "
        "--create to pause it anyway\n"
    )
    cli("resume", "mial", "-d", pgq_dsn, status=1)
    assert pgq_conn.execute("SELECT count(*) FROM pgq.entrypoints").fetchone() == (0,)
    created = cli("pause", "mial", "--create", "-d", pgq_dsn).stdout
    assert created == "paused mial (new; SELECT pgq.remove_entrypoint('mial') removes it)\n"
    assert cli("resume", "mial", "-d", pgq_dsn).stdout == "resumed mial\n"

    assert pgq_conn.execute("SELECT pgq.remove_entrypoint('mial')").fetchone() == (True,)
    assert pgq_conn.execute("SELECT pgq.remove_entrypoint('mial')").fetchone() == (False,)
    pgq_conn.execute("SELECT pgq.enqueue('mail')")
    with pytest.raises(psycopg.errors.ObjectInUse, match="mail still has 1 live job"):
        pgq_conn.execute("SELECT pgq.remove_entrypoint('mail')")
