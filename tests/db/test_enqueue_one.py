"""pgq.enqueue's one-job statement stores what enqueue_many stores, and wakes whom it should."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from pgq_thin import AsyncQueue, Queue

Conn = psycopg.Connection[Any]
ROW = """
SELECT entrypoint, state, priority, run_at - enqueued_at, max_attempts, dedupe_key, payload,
       headers, attempt
FROM pgq.jobs WHERE id = %s
"""
ONE = "SELECT pgq.enqueue(%s, %s, %s, pgq.now() + %s::interval, %s, %s, %s)"
MANY = (
    "SELECT * FROM pgq.enqueue_many(ARRAY[%s], ARRAY[%s::jsonb], ARRAY[%s::int], "
    "ARRAY[pgq.now() + %s::interval], ARRAY[%s], ARRAY[%s::jsonb], ARRAY[%s::int])"
)
CASES = [
    ("plain", {"n": 1}, 0, None, None, {}, None),
    ("prio", [1, "two"], -32768, timedelta(0), None, {"h": "v"}, 1),
    ("later", None, 32767, timedelta(minutes=5), None, None, 7),
    ("nulls", "text", None, None, None, None, None),
    ("keyed", {}, 3, timedelta(seconds=-5), "k", {}, 2),
]


def row(conn: Conn, job_id: int) -> tuple[Any, ...]:
    found = conn.execute(ROW, (job_id,)).fetchone()
    assert found is not None
    return found


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_one_job_is_stored_as_the_batch_stores_it(pgq_conn: Conn, case: tuple[Any, ...]) -> None:
    name, payload, priority, delay, key, headers, attempts = case
    args = (
        name,
        None if payload is None else Jsonb(payload),
        priority,
        delay,
        key,
        None if headers is None else Jsonb(headers),
        attempts,
    )
    one = pgq_conn.execute(ONE, args).fetchone()
    many_args = (f"{name}-many", *args[1:4], None if key is None else f"{key}-many", *args[5:])
    many = pgq_conn.execute(MANY, many_args).fetchone()
    assert one is not None and many is not None and many[0] > one[0]
    stored, batch = row(pgq_conn, one[0]), row(pgq_conn, many[0])
    assert stored[0] == name and batch[0] == f"{name}-many"
    assert stored[1:5] == batch[1:5] and stored[6:] == batch[6:]
    policies = pgq_conn.execute(
        "SELECT count(*) FROM pgq.entrypoints WHERE name IN (%s, %s)", (name, f"{name}-many")
    ).fetchone()
    assert policies == (2,)  # each new name got its policy row


def test_only_a_job_claimable_now_notifies(pgq_dsn: str, pgq_conn: Conn) -> None:
    with psycopg.connect(pgq_dsn, autocommit=True) as listener:
        listener.execute("LISTEN pgq_jobs")
        pgq_conn.execute("SELECT pgq.enqueue('later', run_at => pgq.now() + interval '1 hour')")
        pgq_conn.execute("SELECT pgq.enqueue('now')")
        pgq_conn.commit()
        heard = [n.payload for n in listener.notifies(timeout=1, stop_after=2)]
    assert heard == ["now"]


def test_an_enqueue_over_a_cap_or_with_a_live_key_goes_through_the_batch_rules(
    pgq_conn: Conn,
) -> None:
    pgq_conn.execute("SELECT pgq.configure(max_payload_bytes => 100)")
    with pytest.raises(psycopg.errors.ProgramLimitExceeded, match="max_payload_bytes"):
        pgq_conn.execute("SELECT pgq.enqueue('big', %s)", (Jsonb({"x": "y" * 200}),))
    pgq_conn.rollback()
    first = pgq_conn.execute("SELECT pgq.enqueue('k', dedupe_key => 'one')").fetchone()
    again = pgq_conn.execute("SELECT pgq.enqueue('k', '{\"n\": 2}', dedupe_key => 'one')")
    assert again.fetchone() == first
    assert pgq_conn.execute("SELECT count(*) FROM pgq.jobs").fetchone() == (1,)


def test_queue_enqueue_takes_the_one_job_statement(pgq_dsn: str, pgq_conn: Conn) -> None:
    """Queue and AsyncQueue: same rows whether a delay or a run_at sets the due time."""
    queue = Queue(pgq_conn)
    soon = queue.enqueue("q", {"a": 1}, delay=timedelta(seconds=30), max_attempts=3)
    now = queue.enqueue("q", priority=2, headers={"h": 1})
    assert row(pgq_conn, soon)[1:5] == ("scheduled", 0, timedelta(seconds=30), 3)
    assert row(pgq_conn, now)[1:4] == ("queued", 2, timedelta(0))
    assert row(pgq_conn, now)[6:8] == ({}, {"h": 1})

    async def produce() -> int:
        async with await psycopg.AsyncConnection.connect(pgq_dsn) as conn:
            job_id = await AsyncQueue(conn).enqueue("q", [1], delay=1.5)
            await conn.commit()
            return job_id

    later = asyncio.run(produce())
    assert row(pgq_conn, later)[1:4] == ("scheduled", 0, timedelta(seconds=1.5))
