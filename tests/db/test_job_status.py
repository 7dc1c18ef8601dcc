"""pgq.job_status, pgq.watch_jobs and NOTIFY pgq_done: every path that finishes a watched job
announces it, once; jobs nobody watches finish silently."""

from __future__ import annotations

from typing import Any

import psycopg

Conn = psycopg.Connection[Any]
STATUS = "SELECT id, state, attempt, result, error, finished_at IS NOT NULL FROM pgq.job_status(%s)"


def claim(conn: Conn, n: int) -> list[tuple[int, Any]]:
    return conn.execute(
        "SELECT id, lease_token FROM pgq.dequeue('{a}', %s, 'w') ORDER BY id", (n,)
    ).fetchall()


def announced(listener: Conn) -> list[list[int]]:
    """The id lists of the pgq_done notifications received so far."""
    return [
        [int(i) for i in note.payload.split(",")]
        for note in listener.notifies(timeout=0.3)
        if note.channel == "pgq_done"
    ]


def test_job_status_answers_live_finished_and_unknown_ids_and_watch_flags_live_ones(
    pgq_conn: Conn,
) -> None:
    pgq_conn.execute("SELECT pgq.set_entrypoint('a', max_attempts => 2, backoff_base => '1h')")
    ids = [r[0] for r in pgq_conn.execute("SELECT pgq.enqueue('a') FROM generate_series(1, 4)")]
    (done, t1), (retried, t2), (running, _) = claim(pgq_conn, 3)
    pgq_conn.execute("SELECT pgq.complete(%s, %s, '{\"ok\": 1}')", (done, t1))
    pgq_conn.execute("SELECT pgq.fail(%s, %s, 'boom')", (retried, t2))
    rows = pgq_conn.execute(STATUS, ([*ids, done, 999_999],)).fetchall()
    assert rows == [
        (done, "succeeded", 1, {"ok": 1}, None, True),
        (retried, "scheduled", 1, None, "boom", False),
        (running, "running", 1, None, None, False),
        (ids[3], "queued", 0, None, None, False),
    ]
    watched = pgq_conn.execute(STATUS.replace("job_status", "watch_jobs"), ([*ids, 0],))
    assert watched.fetchall() == rows
    flagged = pgq_conn.execute("SELECT id FROM pgq.jobs WHERE notify_done ORDER BY id")
    assert flagged.fetchall() == [(retried,), (running,), (ids[3],)]
    assert pgq_conn.execute(STATUS, (None,)).fetchall() == []
    assert pgq_conn.execute(STATUS, ([],)).fetchall() == []


def test_every_finishing_path_notifies_its_ids_once_and_retries_do_not(
    pgq_conn: Conn, pgq_dsn: str
) -> None:
    conn = pgq_conn
    conn.execute("SELECT pgq.set_entrypoint('a', max_attempts => 2, backoff_base => '0')")
    with psycopg.connect(pgq_dsn, autocommit=True) as listener:
        listener.execute("LISTEN pgq_done")
        conn.execute("SELECT pgq.enqueue('a') FROM generate_series(1, 8)")
        conn.execute("SELECT count(*) FROM pgq.watch_jobs(ARRAY(SELECT generate_series(1, 7)))")
        jobs = claim(conn, 6)
        ids = [j[0] for j in jobs]
        tokens = [j[1] for j in jobs]

        conn.execute("SELECT pgq.complete_many(%s, %s)", (ids[:2], tokens[:2]))
        assert announced(listener) == [ids[:2]]

        # A retryable failure with attempts left finishes nothing; a fatal one does.
        fail = "SELECT count(*) FROM pgq.fail_many(%s, %s, '{x,y}', %s)"
        conn.execute(fail, (ids[2:4], tokens[2:4], [True, False]))
        assert announced(listener) == [[ids[3]]]

        # Cancelled while running, then completed or released: ends cancelled.
        conn.execute("SELECT pgq.cancel(%s), pgq.cancel(%s)", (ids[4], ids[5]))
        assert announced(listener) == []
        conn.execute("SELECT pgq.complete(%s, %s)", (ids[4], tokens[4]))
        conn.execute("SELECT pgq.release(%s, %s)", ([ids[5]], [tokens[5]]))
        assert announced(listener) == [[ids[4]], [ids[5]]]

        # A waiting job cancelled; a retried one reaped for good after its lease.
        waiting = 7
        conn.execute("SELECT pgq.cancel(%s)", (waiting,))
        assert announced(listener) == [[waiting]]
        [(again, _)] = claim(conn, 1)
        assert again == ids[2]
        conn.execute("SET pgq.now = '2100-01-01'")
        assert conn.execute("SELECT pgq.reap()").fetchone() == (1,)
        assert announced(listener) == [[again]]

        # Job 8 is not watched: it finishes silently.
        [(unwatched, token)] = claim(conn, 1)
        conn.execute("SELECT pgq.complete(%s, %s)", (unwatched, token))
        assert unwatched == 8 and announced(listener) == []

    states = dict(conn.execute("SELECT id, state FROM pgq.job_history").fetchall())
    assert states == {
        ids[0]: "succeeded",
        ids[1]: "succeeded",
        ids[2]: "failed",
        ids[3]: "failed",
        ids[4]: "cancelled",
        ids[5]: "cancelled",
        waiting: "cancelled",
        unwatched: "succeeded",
    }


def test_a_large_statement_splits_its_ids_under_the_payload_limit(
    pgq_conn: Conn, pgq_dsn: str
) -> None:
    with psycopg.connect(pgq_dsn, autocommit=True) as listener:
        listener.execute("LISTEN pgq_done")
        pgq_conn.execute("SELECT pgq.enqueue_many(array_fill('a'::text, ARRAY[1000]), NULL)")
        pgq_conn.execute("SELECT count(*) FROM pgq.watch_jobs(ARRAY(SELECT id FROM pgq.jobs))")
        jobs = claim(pgq_conn, 1000)
        ids = [j[0] for j in jobs]
        pgq_conn.execute("SELECT pgq.complete_many(%s, %s)", (ids, [j[1] for j in jobs]))
        notes = announced(listener)
    assert [len(n) for n in notes] == [390, 390, 220]
    assert sorted(i for n in notes for i in n) == ids
    # The widest ids (19 digits) still fit: 390 of them and the commas stay under 8,000 bytes.
    widest = ",".join([str(2**63 - 1)] * 390)
    assert len(widest.encode()) < 8000
