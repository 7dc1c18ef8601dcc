"""The worker's upkeep loop (pgq_thin/maintenance.py): periodic pgq.prune() and VACUUM of pgq.jobs.

Real `pgq-thin run` subprocesses serve tests/e2e/worker_app.py (harness in tests/e2e/harness.py).
Nothing asserts how long anything took: waits are bounded polls of the database.
"""

from __future__ import annotations

import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from pgq_thin import Queue
from pgq_thin.config import load_settings
from pgq_thin.errors import PgqError
from tests.e2e.harness import Conn, Start, count, enqueue, finished, wait_for

DISABLED = "VACUUM of pgq.jobs disabled"
DEQUEUE = "SELECT id, lease_token FROM pgq.dequeue(ARRAY[%s], %s, 'test', interval '1 minute')"


def run_through(conn: Conn, entrypoint: str, n: int, *, fail_first: bool = False) -> list[int]:
    """Enqueue `n` jobs and finish them here in SQL (no worker): their ids, in history now."""
    ids = enqueue(conn, entrypoint, [{}] * n)
    claimed = conn.execute(DEQUEUE, (entrypoint, n)).fetchall()
    for job_id, token in claimed:
        if fail_first:  # one retry record, then success
            conn.execute("SELECT pgq.fail(%s, %s, 'boom')", (job_id, token))
            conn.execute("UPDATE pgq.jobs SET run_at = now() WHERE id = %s", (job_id,))
            [(job_id, token)] = conn.execute(DEQUEUE, (entrypoint, 1)).fetchall()
        conn.execute("SELECT pgq.complete(%s, %s)", (job_id, token))
    assert finished(conn, ids)
    return ids


def age(conn: Conn, ids: list[int]) -> None:
    """Make finished jobs (and their retry records) older than the 7-day retention."""
    conn.execute(
        "UPDATE pgq.job_history SET finished_at = finished_at - interval '8 days'"
        " WHERE id = ANY(%s)",
        (ids,),
    )
    conn.execute(
        "UPDATE pgq.job_retries SET failed_at = failed_at - interval '8 days'"
        " WHERE job_id = ANY(%s)",
        (ids,),
    )


def in_history(conn: Conn, ids: list[int]) -> int:
    return count(conn, "SELECT count(*) FROM pgq.job_history WHERE id = ANY(%s)", ids)


def vacuum_stats(conn: Conn) -> tuple[int, int, bool]:
    """Manual VACUUMs of pgq.jobs so far, its dead tuples, and whether it was ever vacuumed."""
    row = conn.execute(
        "SELECT vacuum_count, n_dead_tup, last_vacuum IS NOT NULL FROM pg_stat_user_tables"
        " WHERE relid = 'pgq.jobs'::regclass"
    ).fetchone()
    assert row is not None
    return row[0], row[1], row[2]


def test_the_worker_prunes_history_older_than_the_retention(db: Conn, start_worker: Start) -> None:
    old = run_through(db, "async_job", 3, fail_first=True)
    recent = run_through(db, "async_job", 2, fail_first=True)
    age(db, old)
    later = [Queue(db).enqueue("async_job", {}, delay=86400)]  # scheduled for tomorrow
    waiting = enqueue(db, "elsewhere", [{}, {}])  # nobody serves it

    worker = start_worker(PGQ_PRUNE_INTERVAL="0.1", PGQ_VACUUM_INTERVAL="0")
    wait_for(lambda: in_history(db, old) == 0, "the old history to be pruned")
    wait_for(lambda: "pruned 6 row(s)" in worker.log(), "the prune to be logged")
    assert in_history(db, recent) == 2
    retries = "SELECT count(*) FROM pgq.job_retries WHERE job_id = ANY(%s)"
    assert (count(db, retries, old), count(db, retries, recent)) == (0, 2)
    live = count(db, "SELECT count(*) FROM pgq.jobs WHERE id = ANY(%s)", later + waiting)
    assert live == 3

    killed = count(
        db,
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
        " WHERE application_name = 'pgq-thin maintenance' AND datname = current_database()",
    )
    assert killed == 1
    newer = run_through(db, "other", 1)  # aged later, on a lost connection: a later pass
    age(db, newer)
    wait_for(lambda: in_history(db, newer) == 0, "a prune on a new connection")
    assert in_history(db, recent) == 2
    wait_for(lambda: "maintenance: prune works again" in worker.log(), "the recovery log line")
    assert worker.log().count("maintenance: prune failed") == 1
    worker.send(signal.SIGTERM)
    assert worker.wait() == 0, worker.log()
    assert vacuum_stats(db)[0] == 0  # PGQ_VACUUM_INTERVAL=0: never vacuumed


def heap_pages(conn: Conn) -> int:
    return count(conn, "SELECT pg_relation_size('pgq.jobs') / 8192")


@pytest.mark.parametrize("vacuum", [True, False], ids=["vacuum", "no-vacuum"])
def test_the_worker_vacuums_the_hot_table(db: Conn, start_worker: Start, vacuum: bool) -> None:
    """Rounds of 500 jobs: with the worker's VACUUM the table never outgrows a few times the
    pages its first 500 jobs took; without it (autovacuum off for the table) it soon does."""
    db.execute("ALTER TABLE pgq.jobs SET (autovacuum_enabled = false)")
    ids = enqueue(db, "async_job", [{}] * 500)
    one_round = heap_pages(db)  # 500 waiting jobs in a fresh table
    worker = start_worker(PGQ_VACUUM_INTERVAL="0.1" if vacuum else "0")
    high_water = []
    for _ in range(6):
        vacuums_before = vacuum_stats(db)[0]
        wait_for(lambda ids=ids: finished(db, ids), "the round's jobs to finish")
        high_water.append(heap_pages(db))
        if vacuum:  # vacuumed since the round began, and no more than the threshold left
            # (a VACUUM mid-round may leave fewer dead tuples than are worth another one)
            wait_for(
                lambda n=vacuums_before: (s := vacuum_stats(db))[0] > n and s[1] <= 100,
                "a VACUUM in the round",
            )
        ids = enqueue(db, "async_job", [{}] * 500)
    worker.send(signal.SIGTERM)
    assert worker.wait() == 0, worker.log()
    vacuums, _dead, ever = vacuum_stats(db)
    bounded = max(high_water) <= 4 * one_round
    if vacuum:
        assert vacuums >= 6 and ever
        assert bounded, (one_round, high_water)
    else:
        assert (vacuums, ever) == (0, False)
        assert not bounded, (one_round, high_water)


@pytest.fixture
def non_owner(db: Conn, pgq_dsn: str) -> Iterator[str]:
    """DSN of a new login role with every privilege the worker needs, but not owning pgq.jobs."""
    role = f"pgq_test_{uuid.uuid4().hex[:10]}"
    db.execute(f"CREATE ROLE {role} LOGIN")
    for grant in (
        "USAGE ON SCHEMA pgq",
        "ALL ON ALL TABLES IN SCHEMA pgq",
        "ALL ON ALL SEQUENCES IN SCHEMA pgq",
        "EXECUTE ON ALL FUNCTIONS IN SCHEMA pgq",
        "ALL ON TABLE events",
    ):
        db.execute(f"GRANT {grant} TO {role}")
    try:
        yield make_conninfo(pgq_dsn, user=role)
    finally:
        db.execute(f"DROP OWNED BY {role}")
        db.execute(f"DROP ROLE {role}")


def test_a_role_that_cannot_vacuum_gets_one_warning(
    db: Conn,
    start_worker: Start,
    non_owner: str,
) -> None:
    first, second = run_through(db, "async_job", 1), run_through(db, "async_job", 1)
    worker = start_worker(dsn=non_owner, PGQ_VACUUM_INTERVAL="0.05", PGQ_PRUNE_INTERVAL="0.05")
    for ids in (first, second):  # two prunes: the loop went round more than once
        age(db, ids)
        wait_for(lambda ids=ids: in_history(db, ids) == 0, "a prune by the non-owner")
    worker.send(signal.SIGTERM)
    assert worker.wait() == 0, worker.log()
    warnings = [line for line in worker.log().splitlines() if DISABLED in line]
    assert len(warnings) == 1, worker.log()
    assert "may not vacuum it" in warnings[0] and "WARNING" in warnings[0]
    assert vacuum_stats(db)[0] == 0


def test_interval_settings(tmp_path: Path) -> None:
    defaults = load_settings(env={}, cwd=tmp_path)
    assert (defaults.vacuum_interval, defaults.prune_interval) == (0.5, 60.0)
    env = {"PGQ_VACUUM_INTERVAL": "0", "PGQ_PRUNE_INTERVAL": "0.5"}
    settings = load_settings(env=env, cwd=tmp_path)
    assert (settings.vacuum_interval, settings.prune_interval) == (0.0, 0.5)
    with pytest.raises(PgqError, match="invalid vacuum_interval '-1'"):
        load_settings({"vacuum_interval": "-1"}, env={}, cwd=tmp_path)


def test_a_worker_at_full_capacity_still_reaps_timed_out_jobs(
    db: Conn, start_worker: Start
) -> None:
    # The worker's one slot is busy, so it never dequeues (which reaps too); a job claimed
    # elsewhere and left running past its timeout is still timed out, by maintenance.
    [busy] = enqueue(db, "async_job", [{"sleep": 60}])
    worker = start_worker(MAX_CONCURRENT_JOBS="1")
    wait_for(lambda: count(db, "SELECT count(*) FROM events") == 1, "the worker to be busy")
    db.execute("SELECT pgq.set_entrypoint('elsewhere', timeout => '0.5 s', max_attempts => 1)")
    [hung] = enqueue(db, "elsewhere", [{}])
    assert count(db, "SELECT count(*) FROM pgq.dequeue('{elsewhere}', 1, 'psql')") == 1
    wait_for(lambda: finished(db, [hung]), "the hung job to be reaped")
    row = db.execute("SELECT state, error FROM pgq.job_history WHERE id = %s", (hung,)).fetchone()
    assert row is not None and row[0] == "failed" and row[1].startswith("timeout")
    assert not finished(db, [busy])
    worker.send(signal.SIGTERM)
    assert worker.wait() == 0, worker.log()
    assert "pgq.reap() every 1s" in worker.log()


def test_vacuum_stands_down_while_a_transaction_holds_the_horizon(
    db: Conn, start_worker: Start, pgq_dsn: str
) -> None:
    """A VACUUM that can remove nothing is not repeated until the holder lets go: pgq.health
    names the holder meanwhile, and the next VACUUM after it ends cleans the table."""
    health = "SELECT vacuum_held_by_pid FROM pgq.health"
    db.execute("ALTER TABLE pgq.jobs SET (autovacuum_enabled = false)")
    worker = start_worker(PGQ_VACUUM_INTERVAL="0.1")
    with psycopg.connect(pgq_dsn) as holder:
        holder.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        holder.execute("SELECT count(*) FROM pgq.entrypoints")  # holds its snapshot
        pid = holder.info.backend_pid
        first = enqueue(db, "async_job", [{}] * 300)
        wait_for(lambda: finished(db, first), "the jobs to run")
        wait_for(lambda: db.execute(health).fetchone() == (pid,), "VACUUM to stand down")
        vacuums, dead, _ = vacuum_stats(db)
        ids = enqueue(db, "async_job", [{}] * 2000)  # the table grows several times over
        wait_for(lambda: finished(db, ids), "more jobs to run while the horizon is held")
        assert vacuum_stats(db)[0] == vacuums and dead > 0  # no VACUUM while held
        # ... but the table grew past twice what the planner knew of it: an ANALYZE told it.
        analyzed = (
            "SELECT analyze_count FROM pg_stat_user_tables WHERE relid = 'pgq.jobs'::regclass"
        )
        wait_for(lambda: count(db, analyzed) > 0, "an ANALYZE of the grown table")
        holder.rollback()
    wait_for(lambda: db.execute(health).fetchone() == (None,), "VACUUM to run again")
    wait_for(lambda: vacuum_stats(db)[1] == 0, "a VACUUM that cleans the table")
    worker.send(signal.SIGTERM)
    assert worker.wait() == 0, worker.log()
