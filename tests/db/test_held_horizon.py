"""While the workers' VACUUM stands down (pgq.vacuum_state), a session's claims start past the
jobs it already took, and walk from the front of the claim order once a second."""

from __future__ import annotations

from typing import Any

import psycopg

Conn = psycopg.Connection[Any]
CLAIM = "SELECT id, lease_token FROM pgq.dequeue(ARRAY['h'], 1, 'test')"


def claim(conn: Conn) -> tuple[int, Any]:
    row = conn.execute(CLAIM).fetchone()
    assert row is not None
    return row[0], row[1]


def release(conn: Conn, job: tuple[int, Any]) -> None:
    conn.execute("SELECT pgq.release(%s, %s)", ([job[0]], [job[1]]))


def later(conn: Conn, seconds: float) -> None:
    """Move the queue's clock (pgq.now) `seconds` past the real one."""
    conn.execute(
        "SELECT set_config('pgq.now', (statement_timestamp() + %s * interval '1 second')::text, "
        "false)",
        (seconds,),
    )


def test_claims_pass_their_marks_while_vacuum_stands_down(pgq_conn: Conn) -> None:
    a, b, c = (
        row[0]
        for row in pgq_conn.execute(
            "SELECT * FROM pgq.enqueue_many(ARRAY['h', 'h', 'h'], ARRAY['{}', '{}', '{}']::jsonb[])"
        )
    )
    pgq_conn.execute("SELECT pgq.report_vacuum(pg_backend_pid())")
    first = claim(pgq_conn)
    assert first[0] == a
    release(pgq_conn, first)  # queued again, behind this session's mark
    assert claim(pgq_conn)[0] == b
    later(pgq_conn, 2)  # a second on: the next claim walks from the front
    assert claim(pgq_conn)[0] == a
    assert claim(pgq_conn)[0] == c


def test_claims_take_the_claim_order_while_vacuum_runs(pgq_conn: Conn) -> None:
    a, b = (
        row[0]
        for row in pgq_conn.execute(
            "SELECT * FROM pgq.enqueue_many(ARRAY['h', 'h'], ARRAY['{}', '{}']::jsonb[])"
        )
    )
    pgq_conn.execute("SELECT pgq.report_vacuum(pg_backend_pid())")
    pgq_conn.execute("SELECT pgq.report_vacuum(NULL)")  # the horizon moved on
    first = claim(pgq_conn)
    release(pgq_conn, first)
    assert claim(pgq_conn)[0] == first[0] == a
    assert claim(pgq_conn)[0] == b


def test_health_says_when_vacuum_stands_down(pgq_conn: Conn) -> None:
    health = "SELECT vacuum_stood_down_since IS NOT NULL, vacuum_held_by_pid FROM pgq.health"
    assert pgq_conn.execute(health).fetchone() == (False, None)
    pgq_conn.execute("SELECT pgq.report_vacuum(4242)")
    since = pgq_conn.execute("SELECT stood_down_since FROM pgq.vacuum_state").fetchone()
    pgq_conn.execute("SELECT pgq.report_vacuum(4242)")  # the same holder: since stays
    assert pgq_conn.execute("SELECT stood_down_since FROM pgq.vacuum_state").fetchone() == since
    assert pgq_conn.execute(health).fetchone() == (True, 4242)
    pgq_conn.execute("SELECT pgq.report_vacuum(NULL)")
    assert pgq_conn.execute(health).fetchone() == (False, None)
