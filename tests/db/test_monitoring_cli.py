"""The monitoring commands and the Prometheus endpoint, against the scripted history of
test_monitoring.py. The commands' sessions get the queue's clock through the DSN
(`options=-c pgq.now=...`), so their output is exact.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from click.testing import CliRunner, Result
from prometheus_client.parser import text_string_to_metric_families
from psycopg.conninfo import make_conninfo

from pgq_thin import metrics
from pgq_thin.cli import main
from tests.db.test_monitoring import T0, build_scenario, claim

Conn = psycopg.Connection[Any]
NOW = T0 + timedelta(minutes=5)
CLI = str(Path(sys.executable).with_name("pgq-thin"))
TABLES = ("stats", "jobs", "workers")  # commands whose output must fit 80 columns


def dsn_at(dsn: str, moment: datetime = NOW) -> str:
    """`dsn` with the queue's clock set to `moment` for every session opened with it."""
    return make_conninfo(dsn, options=f"-c pgq.now={moment.isoformat()} -c TimeZone=UTC")


def cli(dsn: str, *args: str, code: int = 0) -> Result:
    result = CliRunner().invoke(main, [*args, "-d", dsn_at(dsn)])
    assert result.exit_code == code, (result.stdout, result.stderr)
    if args[0] in TABLES and "--json" not in args:
        assert all(len(line) <= 80 for line in result.stdout.splitlines()), result.stdout
    return result


def test_stats_table(pgq_conn: Conn, pgq_dsn: str) -> None:
    build_scenario(pgq_conn)
    lines = cli(pgq_dsn, "stats").stdout.splitlines()
    assert lines[:4] == [
        "ENTRYPOINT              QUEUED   SCHED   RUN LIMIT  OLDEST   OK/5M ERR/5M   DEAD",
        "mail                         2       1     0     2   5m00s       2      1      1",
        "report                       1       0     0     -   5m00s       0      0      0",
        "",
    ]
    assert lines[4] == (
        "workers: 1 alive, 1 stale, 0 unregistered, 5 connections; expired leases: 0"
    )
    assert lines[5].startswith("tuples: jobs ")
    assert lines[6] == "notify queue: 0.0% used"


def test_stats_json_parses(pgq_conn: Conn, pgq_dsn: str) -> None:
    build_scenario(pgq_conn)
    stats = json.loads(cli(pgq_dsn, "stats", "--json").stdout)
    assert datetime.fromisoformat(stats["now"]) == NOW
    assert stats["workers"] == {"alive": 1, "stale": 1, "unregistered": 0, "connections": 5}
    assert stats["entrypoints"][0] == {
        "entrypoint": "mail",
        "queued": 2,
        "scheduled": 1,
        "running": 0,
        "failed": 1,
        "succeeded_5m": 2,
        "failed_5m": 1,
        "oldest_waiting": 300.0,
        "concurrency_limit": 2,
        "paused": False,
    }
    assert stats["health"]["expired_leases"] == 0
    assert stats["health"]["oldest_xact_pid"] is None


def test_stats_watch_redraws_until_interrupted(pgq_conn: Conn, pgq_dsn: str) -> None:
    build_scenario(pgq_conn)
    proc = subprocess.Popen(
        [CLI, "stats", "--watch", "0.1", "-d", dsn_at(pgq_dsn)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line.rstrip("\n"))
        if sum(x.startswith("pgq-thin stats ") for x in seen) == 3:
            break
    proc.send_signal(signal.SIGINT)  # as Ctrl-C
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    mail = "mail                         2       1     0     2   5m00s       2      1      1"
    assert seen.count(mail) >= 2
    assert all(len(line) <= 80 for line in seen)


def test_jobs_lists_newest_first(pgq_conn: Conn, pgq_dsn: str) -> None:
    j = build_scenario(pgq_conn)
    assert cli(pgq_dsn, "jobs").stdout.splitlines() == [
        "       ID ENTRYPOINT         STATE       TRY  PRI       WHEN DETAIL",
        f"{j['r1']:>9} report             queued      0/5    0  5m00s ago",
        f"{j['m6']:>9} mail               scheduled   0/2    0  in 55m00s",
        f"{j['m5']:>9} mail               queued      0/2    0  5m00s ago",
        f"{j['m4']:>9} mail               queued      0/2    0  5m00s ago",
        f"{j['m3']:>9} mail               succeeded   1/2    0  1m00s ago",
        f"{j['m2']:>9} mail               failed      2/2    0  1m00s ago boom again",
        f"{j['m1']:>9} mail               succeeded   1/2    0  3m00s ago",
    ]


def test_jobs_filters(pgq_conn: Conn, pgq_dsn: str) -> None:
    j = build_scenario(pgq_conn)
    claim(pgq_conn, "mail", 1, "w1")
    picked = cli(
        pgq_dsn, "jobs", "--state", "failed", "--state", "running", "-e", "mail", "--json"
    ).stdout
    assert [(r["id"], r["state"], r["detail"]) for r in json.loads(picked)] == [
        (j["m4"], "running", "w1"),
        (j["m2"], "failed", "boom again"),
    ]
    limited = json.loads(cli(pgq_dsn, "jobs", "--limit", "2", "--json").stdout)
    assert [r["id"] for r in limited] == [j["r1"], j["m6"]]
    none = cli(pgq_dsn, "jobs", "-e", "nothing").stdout.splitlines()
    assert none[1:] == ["(no jobs)"]


def test_explain(pgq_conn: Conn, pgq_dsn: str) -> None:
    j = build_scenario(pgq_conn)
    scheduled = cli(pgq_dsn, "explain", str(j["m6"])).stdout
    assert scheduled == f"job {j['m6']}: not due until 2030-01-01 13:00:00+00\n"
    assert json.loads(cli(pgq_dsn, "explain", str(j["m2"]), "--json").stdout) == {
        "id": j["m2"],
        "explanation": f"job {j['m2']}: failed at 2030-01-01 12:04:00+00 after 2 attempt(s)"
        ": boom again",
    }


def test_retry(pgq_conn: Conn, pgq_dsn: str) -> None:
    j = build_scenario(pgq_conn)
    result = cli(pgq_dsn, "retry", str(j["m2"]), str(j["m1"]), "999999", code=1)
    assert result.stdout == f"job {j['m2']}: queued\n"
    assert result.stderr.splitlines() == [
        f"pgq-thin: error: job {j['m1']} succeeded; only failed or cancelled jobs can be retried",
        "pgq-thin: error: no job with id 999999",
    ]
    state = pgq_conn.execute("SELECT state FROM pgq.jobs WHERE id = %s", (j["m2"],)).fetchone()
    assert state == ("queued",)


def test_cancel(pgq_conn: Conn, pgq_dsn: str) -> None:
    j = build_scenario(pgq_conn)
    claim(pgq_conn, "mail", 1, "w1")  # m4 runs
    result = cli(pgq_dsn, "cancel", str(j["m5"]), str(j["m4"]), str(j["m1"]), code=1)
    assert result.stdout.splitlines() == [
        f"job {j['m5']}: cancelled",
        f"job {j['m4']}: cancel requested",
    ]
    assert result.stderr == f"pgq-thin: error: job {j['m1']} already succeeded\n"
    again = cli(pgq_dsn, "cancel", str(j["m5"]), "--json", code=1)
    assert json.loads(again.stdout) == [
        {"id": j["m5"], "outcome": None, "error": f"job {j['m5']} already cancelled"}
    ]


def test_workers(pgq_conn: Conn, pgq_dsn: str) -> None:
    build_scenario(pgq_conn)
    claim(pgq_conn, "report", 1, "psql-worker")
    assert cli(pgq_dsn, "workers").stdout.splitlines() == [
        "WORKER            STATUS         JOBS CONN      BEAT     UP VERSION  ENTRYPOINTS",
        "psql-worker       unregistered      1              -      -",
        "w1                alive           0/2    5    0s ago  5m00s 0.1.0    mail",
        "w3                stale           0/2    3 5m00s ago  5m00s 0.1.0    mail",
    ]
    found = json.loads(cli(pgq_dsn, "workers", "--json").stdout)
    assert [(w["worker_id"], w["status"], w["running"]) for w in found] == [
        ("psql-worker", "unregistered", 1),
        ("w1", "alive", 0),
        ("w3", "stale", 0),
    ]


def test_pause_and_resume(pgq_conn: Conn, pgq_dsn: str) -> None:
    build_scenario(pgq_conn)
    assert cli(pgq_dsn, "pause", "mail").stdout == "paused mail\n"
    stats = cli(pgq_dsn, "stats").stdout.splitlines()
    assert stats[1].startswith("mail*  ")
    assert stats[3] == "* paused: no worker claims its jobs until `pgq-thin resume ENTRYPOINT`"
    assert claim(pgq_conn, "mail", 5, "w1") == []
    assert cli(pgq_dsn, "resume", "mail").stdout == "resumed mail\n"
    assert len(claim(pgq_conn, "mail", 5, "w1")) == 2
    ghost = json.loads(cli(pgq_dsn, "pause", "ghost", "--create", "--json").stdout)
    assert ghost == {"entrypoint": "ghost", "paused": True, "known": False}
    assert cli(pgq_dsn, "pause", "ghost").stdout == "paused ghost\n"
    assert "rerun with --create" in cli(pgq_dsn, "resume", "nobody", code=1).stderr


def test_missing_schema_is_one_clear_line(pgq_conn: Conn, pgq_dsn: str) -> None:
    pgq_conn.execute("DROP SCHEMA pgq CASCADE")
    for command in ("stats", "jobs", "workers"):
        result = cli(pgq_dsn, command, code=1)
        assert result.stderr.startswith("pgq-thin: error: the pgq schema is missing")
        assert result.stderr.count("\n") == 1


def scrape(server: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics by (name, sorted labels)."""
    url = f"http://127.0.0.1:{server.server_port}/metrics"
    with urllib.request.urlopen(url, timeout=30) as response:
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_endpoint(pgq_conn: Conn, pgq_dsn: str) -> None:
    build_scenario(pgq_conn)
    name = f"metrics-{uuid.uuid4().hex[:8]}"  # counters are per process: a label of our own
    ep = (("entrypoint", name),)
    server = metrics.serve(0, dsn_at(pgq_dsn), addr="127.0.0.1")
    try:
        metrics.job_started(name)
        metrics.job_started(name)
        metrics.job_finished(name, "succeeded", 0.2)
        metrics.job_finished(name, "queued", 31.0, timed_out=True)
        first = scrape(server)
        assert first[("pgq_jobs_started_total", ep)] == 2
        assert first[("pgq_jobs_succeeded_total", ep)] == 1
        assert first[("pgq_jobs_retried_total", ep)] == 1
        assert first[("pgq_jobs_timed_out_total", ep)] == 1
        assert ("pgq_jobs_failed_total", ep) not in first
        retried = (("entrypoint", name), ("outcome", "retried"))
        assert first[("pgq_job_run_seconds_count", retried)] == 1
        assert first[("pgq_job_run_seconds_sum", retried)] == 31.0

        def gauge(metric: str, entrypoint: str, state: str | None = None) -> float:
            labels = [("entrypoint", entrypoint)] + ([("state", state)] if state else [])
            return first[(metric, tuple(labels))]

        assert first[("pgq_queue_up", ())] == 1
        assert gauge("pgq_queue_jobs", "mail", "queued") == 2
        assert gauge("pgq_queue_jobs", "mail", "scheduled") == 1
        assert gauge("pgq_queue_jobs", "mail", "running") == 0
        assert gauge("pgq_queue_jobs", "mail", "failed") == 1
        assert gauge("pgq_queue_jobs", "report", "queued") == 1
        assert gauge("pgq_queue_oldest_waiting_seconds", "mail") == 300
        assert gauge("pgq_queue_paused", "mail") == 0

        metrics.job_finished(name, "succeeded", 0.1)
        metrics.job_finished(name, "failed", 0.1)
        pgq_conn.execute("SELECT pgq.set_entrypoint('mail', paused => true)")
        second = scrape(server)
        assert second[("pgq_jobs_succeeded_total", ep)] == 2
        assert second[("pgq_jobs_failed_total", ep)] == 1
        assert second[("pgq_queue_paused", (("entrypoint", "mail"),))] == 1
    finally:
        server.shutdown()


def test_metrics_report_an_unreadable_queue() -> None:
    collector = metrics.QueueCollector("postgresql://127.0.0.1:1/nothing?connect_timeout=2")
    families = list(collector.collect())
    assert [(f.name, [s.value for s in f.samples]) for f in families] == [("pgq_queue_up", [0])]
