"""Batch calls with repeated ids or shared dedupe keys keep fencing and never deadlock."""

from __future__ import annotations

import threading
from typing import Any

import psycopg


def test_fail_many_takes_the_error_of_the_entry_holding_the_lease(
    pgq_conn: psycopg.Connection[Any],
) -> None:
    pgq_conn.execute("SELECT pgq.set_entrypoint('a', jitter => 0)")
    pgq_conn.execute("SELECT pgq.enqueue('a')")
    job_id, token = pgq_conn.execute("SELECT id, lease_token FROM pgq.dequeue('{a}')").fetchone()
    outcome = pgq_conn.execute(
        "SELECT * FROM pgq.fail_many(ARRAY[%s, %s]::bigint[], ARRAY[gen_random_uuid(), %s],"
        " ARRAY['from a stale token', 'good'], ARRAY[false, true])",
        (job_id, job_id, token),
    ).fetchall()
    assert outcome == [(job_id, "queued")]
    assert pgq_conn.execute("SELECT last_error FROM pgq.jobs").fetchall() == [("good",)]


def test_concurrent_batches_sharing_dedupe_keys_in_opposite_order(pgq_dsn: str) -> None:
    keys = [f"k{i}" for i in range(3000)]
    with psycopg.connect(pgq_dsn, autocommit=True) as conn:
        conn.execute("SELECT pgq.set_entrypoint('a')")
    errors: list[BaseException] = []

    def enqueue(order: list[str]) -> None:
        try:
            with psycopg.connect(pgq_dsn, autocommit=True) as conn:
                conn.execute(
                    "SELECT count(*) FROM pgq.enqueue_many(array_fill('a'::text, ARRAY[%s]),"
                    " NULL, dedupe_keys => %s)",
                    (len(order), order),
                )
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=enqueue, args=(o,)) for o in (keys, keys[::-1])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    with psycopg.connect(pgq_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM pgq.jobs").fetchone() == (len(keys),)


HEARTBEAT = "SELECT count(*) FROM pgq.heartbeat(%(ids)s, %(tokens)s)"
OUTCOME_WRITES = [
    "SELECT pgq.complete_many(%(ids)s, %(tokens)s)",
    "SELECT count(*) FROM pgq.fail_many(%(ids)s, %(tokens)s,"
    " array_fill('x'::text, ARRAY[cardinality(%(ids)s)]))",
    "SELECT pgq.release(%(ids)s, %(tokens)s)",
]


def _race(dsn: str, calls: list[tuple[str, list[tuple[int, Any]], int]]) -> list[BaseException]:
    """Run each (sql, held jobs in the order to pass them, times) on its own connection at once."""
    errors: list[BaseException] = []

    def run(sql: str, rows: list[tuple[int, Any]], times: int) -> None:
        args = {"ids": [r[0] for r in rows], "tokens": [r[1] for r in rows]}
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("SET deadlock_timeout = '10ms'")
                for _ in range(times):
                    conn.execute(sql, args)
        except BaseException as exc:  # collected and asserted by the caller
            errors.append(exc)

    threads = [threading.Thread(target=run, args=call) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return errors


def test_concurrent_batch_writes_on_the_same_jobs_in_opposite_order(pgq_dsn: str) -> None:
    """heartbeat, complete_many, fail_many and release take their rows in id order: a worker's
    heartbeat racing its own outcome writes (listed in another order) waits, never deadlocks."""
    with psycopg.connect(pgq_dsn, autocommit=True) as conn:
        for _ in range(3):
            for write in OUTCOME_WRITES:
                conn.execute(
                    "SELECT count(*) FROM pgq.enqueue_many(array_fill('a'::text, ARRAY[2000]),"
                    " NULL)"
                )
                held = sorted(
                    conn.execute("SELECT id, lease_token FROM pgq.dequeue('{a}', 2000)").fetchall()
                )
                assert _race(pgq_dsn, [(HEARTBEAT, held, 3), (write, held[::-1], 1)]) == []
                conn.execute("TRUNCATE pgq.jobs, pgq.job_history, pgq.job_retries")
