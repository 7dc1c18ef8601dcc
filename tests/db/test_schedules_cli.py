"""`pgq-thin schedules`, `pgq-thin schedule add|remove|pause|resume|run-now`, the schedules in
`pgq-thin stats`, and their Prometheus gauges. Sessions get the queue's clock via the DSN."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from click.testing import CliRunner, Result

from pgq_thin import metrics
from pgq_thin.cli import main
from tests.db.test_monitoring_cli import dsn_at, scrape

Conn = psycopg.Connection[Any]
T0 = datetime(2030, 1, 1, tzinfo=UTC)


def cli(dsn: str, *args: str, at: datetime = T0, code: int = 0) -> Result:
    result = CliRunner().invoke(main, [*args, "-d", dsn_at(dsn, at)])
    assert result.exit_code == code, (result.stdout, result.stderr)
    if "--json" not in args:
        assert all(len(line) <= 80 for line in result.stdout.splitlines()), result.stdout
    return result


def test_add_list_pause_resume_run_now_remove(pgq_dsn: str, pgq_conn: Conn) -> None:
    out = cli(
        pgq_dsn,
        "schedule",
        "add",
        "nightly",
        "30 2 * * *",
        "report",
        "-z",
        "Europe/Berlin",
        "--payload",
        '{"kind": "daily"}',
        "--catch-up",
        "all",
    ).stdout
    assert out == "schedule nightly: next run 2030-01-01T01:30:00+00:00\n"  # fmt: skip
    cli(pgq_dsn, "schedule", "add", "often", "*/5 * * * *", "ping")
    assert cli(pgq_dsn, "schedules", at=T0 + timedelta(minutes=1)).stdout.splitlines() == [
        "SCHEDULE          CRON            ENTRYPOINT           NEXT       LAST LAST JOB",
        "nightly           30 2 * * * Eur… report           in 1h29m          - -",
        "often             */5 * * * *     ping             in 4m00s          - -",
    ]
    assert cli(pgq_dsn, "schedule", "pause", "often").stdout == "schedule often paused\n"
    rows = json.loads(cli(pgq_dsn, "schedules", "--json").stdout)
    assert [(r["name"], r["paused"], r["paused_reason"], r["catch_up"]) for r in rows] == [
        ("nightly", False, None, "all"), ("often", True, "by request", "latest")]  # fmt: skip
    out = cli(pgq_dsn, "schedule", "resume", "often", at=T0 + timedelta(minutes=6)).stdout
    assert out == "schedule often resumed: next run 2030-01-01T00:10:00+00:00\n"
    out = cli(pgq_dsn, "schedule", "run-now", "nightly").stdout
    assert out == "schedule nightly: enqueued job 1\n"
    row = pgq_conn.execute("SELECT entrypoint, payload, headers FROM pgq.jobs").fetchone()
    assert row == (
        "report",
        {"kind": "daily"},
        {"schedule": "nightly", "tick": "2030-01-01T00:00:00Z"},
    )
    assert cli(pgq_dsn, "schedule", "remove", "often").stdout == "schedule often removed\n"
    assert json.loads(cli(pgq_dsn, "schedules", "--json").stdout)[0]["name"] == "nightly"


def test_errors_are_one_line(pgq_dsn: str) -> None:
    bad = cli(pgq_dsn, "schedule", "add", "x", "0 0 30 2 *", "work", code=1)
    assert (
        bad.stderr
        == 'pgq-thin: error: invalid cron expression "0 0 30 2 *": it never matches (no such day)\n'
    )
    bad = cli(pgq_dsn, "schedule", "add", "x", "* * *", "work", "-z", "Nowhere", code=1)
    assert bad.stderr.startswith("pgq-thin: error: unknown time zone")
    for verb in ("remove", "pause", "resume", "run-now"):
        bad = cli(pgq_dsn, "schedule", verb, "missing", code=1)
        assert bad.stderr == "pgq-thin: error: no schedule named " + (
            '"missing"\n' if verb == "run-now" else "'missing'\n"
        )
    bad = cli(pgq_dsn, "schedule", "add", "x", "@daily", "work", "--payload", "{", code=2)
    assert "not JSON" in bad.stderr


def test_stats_show_schedules(pgq_dsn: str, pgq_conn: Conn) -> None:
    pgq_conn.execute("SET pgq.now = '2030-01-01 00:00:00+00'")
    pgq_conn.execute("SELECT pgq.schedule('often', '*/5 * * * *', 'ping')")
    pgq_conn.execute("SELECT pgq.schedule('rare', '@yearly', 'ping')")
    pgq_conn.execute("SELECT pgq.pause_schedule('rare')")
    pgq_conn.execute("SET pgq.now = '2030-01-01 00:05:01+00'")
    pgq_conn.execute("SELECT pgq.fire_schedules()")
    lines = cli(pgq_dsn, "stats", at=T0 + timedelta(minutes=6)).stdout.splitlines()
    start = lines.index(next(line for line in lines if line.startswith("SCHEDULE")))
    assert lines[start : start + 4] == [
        "SCHEDULE          CRON            ENTRYPOINT           NEXT       LAST LAST JOB",
        "often             */5 * * * *     ping             in 4m00s  1m00s ago queued",
        "rare*             @yearly         ping               paused          - -",
        "* paused: no tick fires until `pgq-thin schedule resume NAME`",
    ]
    stats = json.loads(cli(pgq_dsn, "stats", "--json").stdout)
    assert [s["name"] for s in stats["schedules"]] == ["often", "rare"]


def test_metrics_gauges(pgq_dsn: str, pgq_conn: Conn) -> None:
    pgq_conn.execute("SET pgq.now = '2030-01-01 00:00:00+00'")
    pgq_conn.execute("SELECT pgq.schedule('often', '*/5 * * * *', 'ping')")
    pgq_conn.execute("SET pgq.now = '2030-01-01 00:05:01+00'")
    pgq_conn.execute(
        "SELECT pgq.complete(id, lease_token) FROM pgq.dequeue(ARRAY['ping'])"
    )  # dequeue fires the tick, then it succeeds at 00:05:01
    server = metrics.serve(0, dsn_at(pgq_dsn, T0 + timedelta(minutes=10, seconds=30)), "127.0.0.1")
    try:
        got = scrape(server)
    finally:
        server.shutdown()
    often = (("schedule", "often"),)
    assert (
        got[("pgq_schedule_last_success_timestamp", often)]
        == (T0 + timedelta(minutes=5, seconds=1)).timestamp()
    )
    assert got[("pgq_schedule_lateness_seconds", often)] == 30.0
    assert got[("pgq_schedule_paused", often)] == 0
