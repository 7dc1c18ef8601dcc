"""Producing jobs: Queue / AsyncQueue over pgq.enqueue_many, and `pgq-thin enqueue`."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from pgq_thin import AsyncQueue, NewJob, Queue
from pgq_thin.cli import main
from pgq_thin.errors import PgqError

Conn = psycopg.Connection[Any]
JOB = "SELECT entrypoint, state, priority, payload, headers, max_attempts, dedupe_key"
JOB += ", run_at - enqueued_at FROM pgq.jobs WHERE id = %s"


def jobs(conn: Conn) -> int:
    row = conn.execute("SELECT count(*) FROM pgq.jobs").fetchone()
    assert row is not None
    return int(row[0])


def test_enqueue_joins_the_callers_transaction(pgq_dsn: str, pgq_conn: Conn) -> None:
    with psycopg.connect(pgq_dsn) as conn:
        Queue(conn).enqueue("send", {"to": "a@b.c"})
        conn.rollback()
        assert jobs(pgq_conn) == 0
        job_id = Queue(conn).enqueue("send", {"to": "a@b.c"})
        assert jobs(pgq_conn) == 0  # not committed yet
        conn.commit()
    assert pgq_conn.execute(JOB, (job_id,)).fetchone() == (
        "send", "queued", 0, {"to": "a@b.c"}, {}, None, None, timedelta(0)
    )  # fmt: skip


def test_enqueue_options_map_to_the_sql_arguments(pgq_conn: Conn) -> None:
    queue = Queue(pgq_conn)
    job_id = queue.enqueue(
        "send", [1], priority=5, delay=90, dedupe_key="k", headers={"h": 1}, max_attempts=2
    )
    assert pgq_conn.execute(JOB, (job_id,)).fetchone() == (
        "send", "scheduled", 5, [1], {"h": 1}, 2, "k", timedelta(seconds=90)
    )  # fmt: skip
    assert queue.enqueue("send", dedupe_key="k") == job_id  # a live job holds the key
    later = datetime.now(UTC) + timedelta(hours=1)
    scheduled = queue.enqueue("send", run_at=later)
    row = pgq_conn.execute("SELECT run_at FROM pgq.jobs WHERE id = %s", (scheduled,)).fetchone()
    assert row == (later,)
    with pytest.raises(PgqError, match="run_at or delay, not both"):
        queue.enqueue("send", run_at=later, delay=1)


def test_enqueue_many_returns_ids_in_input_order(pgq_conn: Conn) -> None:
    batch = [
        NewJob("b", {"n": 1}),
        NewJob("a", {"n": 2}, delay=timedelta(seconds=5), priority=-1),
        NewJob("b", None, headers={"x": "y"}),
    ]
    ids = Queue(pgq_conn).enqueue_many(batch)
    assert ids == sorted(ids) and len(set(ids)) == 3
    rows = [pgq_conn.execute(JOB, (i,)).fetchone() for i in ids]
    assert [r[:4] if r else None for r in rows] == [
        ("b", "queued", 0, {"n": 1}),
        ("a", "scheduled", -1, {"n": 2}),
        ("b", "queued", 0, {}),
    ]
    assert Queue(pgq_conn).enqueue_many([]) == []


def test_a_large_mixed_batch_keeps_each_jobs_own_options(pgq_conn: Conn) -> None:
    # A column every job leaves at its default is sent as NULL, one any job sets is sent
    # whole, payloads and headers as one JSON array each: each job keeps its own values.
    def job(n: int) -> NewJob:
        return NewJob(
            "b" if n % 2 else "a",
            {"n": n, "text": 'comma, "quote" ]}'} if n % 4 else [n, None, "\u00fc", 1.5],
            priority=5 if n % 7 == 0 else 0,
            delay=60 if n % 5 == 0 else None,
            dedupe_key="dup" if n in (10, 20) else (f"k{n}" if n % 3 == 0 else None),
            headers={"h": n} if n % 6 == 0 else None,
            max_attempts=2 if n % 9 == 0 else None,
        )

    batch = [job(n) for n in range(1000)]
    ids = Queue(pgq_conn).enqueue_many(batch)
    assert len(ids) == 1000 and ids[20] == ids[10] and len(set(ids)) == 999
    rows = pgq_conn.execute(
        "SELECT id, entrypoint, payload, priority, run_at - enqueued_at, dedupe_key, headers,"
        " max_attempts FROM pgq.jobs"
    ).fetchall()
    stored = {row[0]: row[1:] for row in rows}
    for n, (job_id, new) in enumerate(zip(ids, batch, strict=True)):
        if n == 20:
            continue  # the same key as job 10: that job's id
        delay = timedelta(seconds=new.delay or 0)
        assert stored[job_id] == (
            new.entrypoint, new.payload, new.priority, delay, new.dedupe_key,
            new.headers or {}, new.max_attempts,
        ), n  # fmt: skip


def test_pool_commits_on_its_own(pgq_dsn: str, pgq_conn: Conn) -> None:
    with ConnectionPool(pgq_dsn, min_size=1, open=True) as pool:
        Queue(pool).enqueue("send")
    assert jobs(pgq_conn) == 1


def test_async_queue_with_connection_and_pool(pgq_dsn: str, pgq_conn: Conn) -> None:
    async def scenario() -> None:
        async with await psycopg.AsyncConnection.connect(pgq_dsn) as conn:
            await AsyncQueue(conn).enqueue("send", {"n": 1})
            await conn.rollback()
        async with AsyncConnectionPool(pgq_dsn, min_size=1, open=False) as pool:
            await AsyncQueue(pool).enqueue_many([NewJob("send"), NewJob("send")])

    asyncio.run(scenario())
    assert jobs(pgq_conn) == 2


def test_cli_enqueue_prints_the_id(pgq_dsn: str, pgq_conn: Conn) -> None:
    args = ["enqueue", "send", '{"to": "x"}', "--priority", "3", "--delay", "60"]
    args += ["--dedupe-key", "k", "--max-attempts", "4", "--headers", '{"trace": "t"}']
    result = CliRunner().invoke(main, [*args, "-d", pgq_dsn])
    assert result.exit_code == 0, result.output
    job_id = int(result.stdout)
    assert pgq_conn.execute(JOB, (job_id,)).fetchone() == (
        "send", "scheduled", 3, {"to": "x"}, {"trace": "t"}, 4, "k", timedelta(seconds=60)
    )  # fmt: skip
    at = "2031-05-01T12:00:00+00:00"
    result = CliRunner().invoke(main, ["enqueue", "send", "--run-at", at, "-d", pgq_dsn])
    row = pgq_conn.execute("SELECT run_at FROM pgq.jobs WHERE id = %s", (int(result.stdout),))
    assert row.fetchone() == (datetime.fromisoformat(at),)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{nope"], "invalid JSON payload: Expecting property name"),
        (["--headers", "[1]"], "--headers must be a JSON object"),
        (["--delay", "1", "--run-at", "2030-01-01"], "give --delay or --run-at, not both"),
        (["--run-at", "tomorrow"], "invalid --run-at 'tomorrow'"),
    ],
)
def test_cli_enqueue_errors_are_one_line(
    pgq_dsn: str, pgq_conn: Conn, args: list[str], message: str
) -> None:
    result = CliRunner().invoke(main, ["enqueue", "send", *args, "-d", pgq_dsn])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"pgq-thin: error: {message}")
    assert result.stderr.count("\n") == 1
    assert jobs(pgq_conn) == 0
