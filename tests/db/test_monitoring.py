"""The monitoring views, the worker registry and pruning, against a scripted history.

Time is moved with `SET pgq.now`, so every count and duration is exact; nothing sleeps.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

Conn = psycopg.Connection[Any]
T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def at(conn: Conn, moment: datetime) -> None:
    """Set the queue's clock for this session."""
    conn.execute("SELECT set_config('pgq.now', %s, false)", (moment.isoformat(),))


def rows(conn: Conn, query: str, params: Any = None) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query, params)  # type: ignore[arg-type]
        return cur.fetchall()


def value(conn: Conn, query: str, params: Any = None) -> Any:
    row = conn.execute(query, params).fetchone()  # type: ignore[arg-type]
    assert row is not None
    return row[0]


def claim(conn: Conn, entrypoint: str, n: int, worker: str) -> list[tuple[int, Any]]:
    """Claim up to n jobs with a 5-minute lease; (id, lease_token) in id order."""
    found = conn.execute(
        "SELECT id, lease_token FROM pgq.dequeue(%s, %s, %s, interval '5 minutes') ORDER BY id",
        ([entrypoint], n, worker),
    ).fetchall()
    return [(r[0], r[1]) for r in found]


def build_scenario(conn: Conn) -> dict[str, int]:
    """A known history, ending at T0 + 5 min. Job ids by name.

    mail (limit 2, 2 attempts, 10 s backoff): m1 succeeds at +2m; m2 fails at +2m (retried),
    runs again at +3m and fails for good at +4m; m3 succeeds at +4m; m4, m5 wait; m6 is
    scheduled for +1h. report: r1 waits. Worker w1 registered, w2 registered and deregistered,
    w3 registered and silent since T0.
    """
    at(conn, T0)
    conn.execute(
        "SELECT pgq.set_entrypoint('mail', concurrency_limit => 2, max_attempts => 2,"
        " backoff_base => '10 seconds', jitter => 0)"
    )
    ids = [
        value(conn, "SELECT pgq.enqueue('mail', jsonb_build_object('n', %s))", (n,))
        for n in range(1, 6)
    ]
    ids.append(value(conn, "SELECT pgq.enqueue('mail', run_at => %s)", (T0 + timedelta(hours=1),)))
    ids.append(value(conn, "SELECT pgq.enqueue('report')"))
    jobs = dict(zip(["m1", "m2", "m3", "m4", "m5", "m6", "r1"], ids, strict=True))
    for worker, connections in (("w1", 5), ("w2", 5), ("w3", 3)):
        conn.execute(
            "SELECT pgq.register_worker(%s, ARRAY['mail'], 2, 'host-1', 42, '0.1.0', %s)",
            (worker, connections),
        )

    at(conn, T0 + timedelta(minutes=1))
    assert value(conn, "SELECT pgq.worker_heartbeat('w1')") is True
    (m1, t1), (m2, t2) = claim(conn, "mail", 5, "w1")
    assert (m1, m2) == (jobs["m1"], jobs["m2"])

    at(conn, T0 + timedelta(minutes=2))
    assert value(conn, "SELECT pgq.complete(%s, %s)", (m1, t1)) is True
    assert value(conn, "SELECT pgq.fail(%s, %s, 'boom')", (m2, t2)) == "queued"

    at(conn, T0 + timedelta(minutes=3))
    conn.execute("SELECT pgq.worker_heartbeat('w1')")
    (a, ta), (b, tb) = claim(conn, "mail", 5, "w1")
    assert (a, b) == (jobs["m2"], jobs["m3"])

    at(conn, T0 + timedelta(minutes=4))
    assert value(conn, "SELECT pgq.fail(%s, %s, 'boom again')", (a, ta)) == "failed"
    assert value(conn, "SELECT pgq.complete(%s, %s)", (b, tb)) is True
    conn.execute("SELECT pgq.worker_heartbeat('w1'), pgq.worker_heartbeat('w2')")
    assert value(conn, "SELECT pgq.deregister_worker('w2')") is True

    at(conn, T0 + timedelta(minutes=5))
    conn.execute("SELECT pgq.worker_heartbeat('w1')")
    return jobs


def test_queue_stats_counts_each_state(pgq_conn: Conn) -> None:
    build_scenario(pgq_conn)
    stats = rows(pgq_conn, "SELECT * FROM pgq.queue_stats")
    assert stats == [
        {
            "entrypoint": "mail",
            "queued": 2,
            "scheduled": 1,
            "running": 0,
            "failed": 1,
            "succeeded_5m": 2,
            "failed_5m": 1,
            "oldest_waiting": timedelta(minutes=5),
            "concurrency_limit": 2,
            "paused": False,
        },
        {
            "entrypoint": "report",
            "queued": 1,
            "scheduled": 0,
            "running": 0,
            "failed": 0,
            "succeeded_5m": 0,
            "failed_5m": 0,
            "oldest_waiting": timedelta(minutes=5),
            "concurrency_limit": None,
            "paused": False,
        },
    ]

    # Two hours on: m6 is due (still 'scheduled' until a dequeue promotes it) and counts as
    # queued; nothing finished in the last 5 minutes.
    at(pgq_conn, T0 + timedelta(hours=2))
    mail = rows(pgq_conn, "SELECT * FROM pgq.queue_stats WHERE entrypoint = 'mail'")[0]
    assert (mail["queued"], mail["scheduled"], mail["succeeded_5m"], mail["failed_5m"]) == (
        3,
        0,
        0,
        0,
    )
    assert mail["oldest_waiting"] == timedelta(hours=2)


def test_queue_stats_shows_running_and_paused(pgq_conn: Conn) -> None:
    build_scenario(pgq_conn)
    claim(pgq_conn, "mail", 5, "w1")
    pgq_conn.execute("SELECT pgq.set_entrypoint('report', paused => true)")
    stats = {r["entrypoint"]: r for r in rows(pgq_conn, "SELECT * FROM pgq.queue_stats")}
    assert (stats["mail"]["queued"], stats["mail"]["running"]) == (0, 2)
    assert stats["mail"]["oldest_waiting"] is None
    assert stats["report"]["paused"] is True


def test_oldest_waiting_looks_at_every_priority(pgq_conn: Conn) -> None:
    at(pgq_conn, T0)
    pgq_conn.execute("SELECT pgq.enqueue('mix', priority => 0)")
    at(pgq_conn, T0 + timedelta(minutes=1))
    pgq_conn.execute("SELECT pgq.enqueue('mix', priority => 5)")
    pgq_conn.execute("SELECT pgq.enqueue('mix', priority => -3, run_at => %s)", (T0,))
    at(pgq_conn, T0 + timedelta(minutes=10))
    pgq_conn.execute("SELECT pgq.enqueue('mix', priority => 9)")
    stats = rows(pgq_conn, "SELECT queued, oldest_waiting FROM pgq.queue_stats")
    assert stats == [{"queued": 4, "oldest_waiting": timedelta(minutes=10)}]


def test_running_jobs_and_expired_leases(pgq_conn: Conn) -> None:
    jobs = build_scenario(pgq_conn)
    (m4, _), (m5, _) = claim(pgq_conn, "mail", 5, "w1")  # lease and timeout end at +10m
    assert (m4, m5) == (jobs["m4"], jobs["m5"])

    at(pgq_conn, T0 + timedelta(minutes=6))
    running = rows(
        pgq_conn,
        "SELECT id, entrypoint, worker_id, attempt, max_attempts, running_for, lease_expired,"
        " cancel_requested FROM pgq.running_jobs",
    )
    assert running == [
        {
            "id": m,
            "entrypoint": "mail",
            "worker_id": "w1",
            "attempt": 1,
            "max_attempts": 2,
            "running_for": timedelta(minutes=1),
            "lease_expired": False,
            "cancel_requested": False,
        }
        for m in (m4, m5)
    ]
    assert value(pgq_conn, "SELECT expired_leases FROM pgq.health") == 0

    at(pgq_conn, T0 + timedelta(minutes=11))
    assert (
        value(pgq_conn, "SELECT count(*) FILTER (WHERE lease_expired) FROM pgq.running_jobs") == 2
    )
    assert value(pgq_conn, "SELECT expired_leases FROM pgq.health") == 2


def test_failed_jobs_lists_dead_letters(pgq_conn: Conn) -> None:
    jobs = build_scenario(pgq_conn)
    failed = rows(
        pgq_conn,
        "SELECT id, entrypoint, attempt, max_attempts, error, finished_at, worker_id, payload"
        " FROM pgq.failed_jobs",
    )
    assert failed == [
        {
            "id": jobs["m2"],
            "entrypoint": "mail",
            "attempt": 2,
            "max_attempts": 2,
            "error": "boom again",
            "finished_at": T0 + timedelta(minutes=4),
            "worker_id": "w1",
            "payload": {"n": 2},
        }
    ]
    assert value(pgq_conn, "SELECT pgq.retry(%s)", (jobs["m2"],)) == jobs["m2"]
    assert rows(pgq_conn, "SELECT * FROM pgq.failed_jobs") == []


def test_throughput_per_minute(pgq_conn: Conn) -> None:
    build_scenario(pgq_conn)
    per_minute = rows(
        pgq_conn,
        "SELECT minute, entrypoint, succeeded, failed, cancelled, wait_p50, wait_p95,"
        " run_p50, run_p95 FROM pgq.throughput",
    )
    assert per_minute == [
        {
            "minute": T0 + timedelta(minutes=4),
            "entrypoint": "mail",
            "succeeded": 1,
            "failed": 1,
            "cancelled": 0,
            "wait_p50": timedelta(minutes=3),
            "wait_p95": timedelta(minutes=3),
            "run_p50": timedelta(minutes=1),
            "run_p95": timedelta(minutes=1),
        },
        {
            "minute": T0 + timedelta(minutes=2),
            "entrypoint": "mail",
            "succeeded": 1,
            "failed": 0,
            "cancelled": 0,
            "wait_p50": timedelta(minutes=1),
            "wait_p95": timedelta(minutes=1),
            "run_p50": timedelta(minutes=1),
            "run_p95": timedelta(minutes=1),
        },
    ]
    # An hour and a minute after the last finish, nothing is left in the window.
    at(pgq_conn, T0 + timedelta(hours=1, minutes=4))
    assert [r["minute"] for r in rows(pgq_conn, "SELECT minute FROM pgq.throughput")] == []


def test_throughput_counts_retries(pgq_conn: Conn) -> None:
    build_scenario(pgq_conn)
    retried = rows(pgq_conn, "SELECT minute, retried FROM pgq.throughput WHERE retried > 0")
    assert retried == [{"minute": T0 + timedelta(minutes=2), "retried": 1}]


def test_workers_registry(pgq_conn: Conn) -> None:
    build_scenario(pgq_conn)
    claim(pgq_conn, "report", 1, "psql-worker")
    workers = rows(
        pgq_conn,
        "SELECT worker_id, status, running, concurrency, entrypoints, hostname, pid, version,"
        " started_at, heartbeat_at FROM pgq.workers",
    )
    registered = {
        "concurrency": 2,
        "entrypoints": ["mail"],
        "hostname": "host-1",
        "pid": 42,
        "version": "0.1.0",
        "started_at": T0,
    }
    assert workers == [
        {"worker_id": "psql-worker", "status": "unregistered", "running": 1}
        | dict.fromkeys(registered)
        | {"heartbeat_at": None},
        {"worker_id": "w1", "status": "alive", "running": 0}
        | registered
        | {"heartbeat_at": T0 + timedelta(minutes=5)},
        {"worker_id": "w3", "status": "stale", "running": 0} | registered | {"heartbeat_at": T0},
    ]
    assert value(pgq_conn, "SELECT pgq.deregister_worker('w2')") is False
    assert value(pgq_conn, "SELECT pgq.worker_heartbeat('w2')") is False

    # Registering again (a restart) resets the start; a longer stale_after revives w3.
    pgq_conn.execute("SELECT pgq.register_worker('w1', ARRAY['mail', 'report'])")
    pgq_conn.execute("SELECT pgq.configure(worker_stale_after => '10 minutes')")
    again = {r["worker_id"]: r for r in rows(pgq_conn, "SELECT * FROM pgq.workers")}
    assert again["w1"]["started_at"] == T0 + timedelta(minutes=5)
    assert again["w1"]["entrypoints"] == ["mail", "report"]
    assert again["w1"]["concurrency"] is None
    assert again["w3"]["status"] == "alive"


def test_register_worker_refuses_an_empty_id(pgq_conn: Conn) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="worker_id must not be empty"):
        pgq_conn.execute("SELECT pgq.register_worker(' ')")


def test_health_names_the_oldest_transaction(pgq_conn: Conn, pgq_dsn: str) -> None:
    health = rows(pgq_conn, "SELECT * FROM pgq.health")[0]
    assert health["oldest_xact_pid"] is None
    assert health["notification_queue_usage"] == 0
    for key in (
        "jobs_live_tuples",
        "jobs_dead_tuples",
        "history_live_tuples",
        "history_dead_tuples",
    ):
        assert isinstance(health[key], int) and health[key] >= 0

    with psycopg.connect(pgq_dsn) as other:
        other.execute("SELECT txid_current()")  # opens a transaction holding an xid
        health = rows(pgq_conn, "SELECT * FROM pgq.health")[0]
        assert health["oldest_xact_pid"] == other.info.backend_pid
        assert health["oldest_xact_state"] == "idle in transaction"
        assert health["oldest_xact_xid_age"] >= 1


def test_settings_default_and_validation(pgq_conn: Conn) -> None:
    assert rows(pgq_conn, "SELECT history_retention, worker_stale_after FROM pgq.settings") == [
        {"history_retention": timedelta(days=7), "worker_stale_after": timedelta(minutes=1)}
    ]
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="history_retention"):
        pgq_conn.execute("SELECT pgq.configure(history_retention => '-1 day')")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="worker_stale_after"):
        pgq_conn.execute("SELECT pgq.configure(worker_stale_after => '0')")


def test_prune_removes_only_what_the_retention_lets_go(pgq_conn: Conn) -> None:
    jobs = build_scenario(pgq_conn)
    pgq_conn.execute("SELECT pgq.configure(history_retention => '1 day')")
    live = rows(pgq_conn, "SELECT * FROM pgq.jobs ORDER BY id")

    # Within the retention nothing goes, however many times it runs.
    at(pgq_conn, T0 + timedelta(days=1))
    assert value(pgq_conn, "SELECT pgq.prune()") == 0

    # One day and 3 minutes on: m1 (finished at +2m) and the retry record of m2 (+2m) are
    # older than a day, as is w3's last heartbeat (T0); m2 and m3 (+4m), w1 (+5m) stay.
    at(pgq_conn, T0 + timedelta(days=1, minutes=3))
    retries = value(pgq_conn, "SELECT count(*) FROM pgq.job_retries")
    assert value(pgq_conn, "SELECT pgq.prune()") == 1 + retries + 1
    assert value(pgq_conn, "SELECT array_agg(id ORDER BY id) FROM pgq.job_history") == [
        jobs["m2"],
        jobs["m3"],
    ]
    assert value(pgq_conn, "SELECT count(*) FROM pgq.job_retries") == 0
    assert value(pgq_conn, "SELECT array_agg(worker_id) FROM pgq.worker_registry") == ["w1"]
    assert rows(pgq_conn, "SELECT * FROM pgq.jobs ORDER BY id") == live
    assert value(pgq_conn, "SELECT pgq.prune()") == 0


def test_prune_works_in_bounded_batches(pgq_conn: Conn) -> None:
    at(pgq_conn, T0)
    for _ in range(5):
        pgq_conn.execute("SELECT pgq.cancel(pgq.enqueue('old'))")
    at(pgq_conn, T0 + timedelta(days=8))
    kept = value(pgq_conn, "SELECT pgq.enqueue('recent')")
    pgq_conn.execute("SELECT pgq.cancel(%s)", (kept,))
    assert [value(pgq_conn, "SELECT pgq.prune(2)") for _ in range(4)] == [2, 2, 1, 0]
    assert value(pgq_conn, "SELECT array_agg(id) FROM pgq.job_history") == [kept]
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="max_rows"):
        pgq_conn.execute("SELECT pgq.prune(0)")


def test_prune_runs_one_at_a_time(pgq_conn: Conn, pgq_dsn: str) -> None:
    at(pgq_conn, T0)
    for _ in range(3):
        pgq_conn.execute("SELECT pgq.cancel(pgq.enqueue('old'))")
    at(pgq_conn, T0 + timedelta(days=8))
    with psycopg.connect(pgq_dsn) as other:
        at(other, T0 + timedelta(days=8))
        assert value(other, "SELECT pgq.prune(1)") == 1  # holds the lock until it commits
        assert value(pgq_conn, "SELECT pgq.prune()") == 0
        other.commit()
    assert value(pgq_conn, "SELECT pgq.prune()") == 2


def test_register_worker_takes_the_connections_held_and_keeps_its_older_form(
    pgq_conn: Conn,
) -> None:
    # Workers before migration 0007 call the six-argument form, positionally.
    pgq_conn.execute("SELECT pgq.register_worker('old', ARRAY['mail'], 2, 'h', 1, '0.1.0')")
    pgq_conn.execute("SELECT pgq.register_worker('new', ARRAY['mail'], connections => 3)")
    held = dict(pgq_conn.execute("SELECT worker_id, connections FROM pgq.workers").fetchall())
    assert held == {"new": 3, "old": None}
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="connections must not be"):
        pgq_conn.execute("SELECT pgq.register_worker('w', connections => -1)")
