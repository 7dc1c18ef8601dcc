"""The dashboard's overview reads the big tables through indexes only, and a page of jobs walks
the primary keys from its cursor, however long the history (plans read with auto_explain)."""

from __future__ import annotations

from typing import Any

import psycopg

from pgq_thin import monitor
from pgq_thin.web import queries
from pgq_thin.web.queries import JobFilter

BIG_TABLES = ("jobs", "job_history", "job_retries")


def fill(conn: psycopg.Connection[Any]) -> None:
    """300,000 finished jobs over a week, 60,000 retry-log rows, 50,000 queued, a few running."""
    conn.execute(
        "INSERT INTO pgq.job_history (id, entrypoint, state, priority, attempt, enqueued_at,"
        " started_at, finished_at, error, payload, headers)"
        " SELECT i, 'ep' || (i % 5), CASE WHEN i % 50 = 0 THEN 'failed' ELSE 'succeeded' END,"
        " 0, 1, t - interval '1 s', t - interval '0.5 s', t,"
        " CASE WHEN i % 50 = 0 THEN 'boom' END, '{}', '{}'"
        " FROM generate_series(1, 300000) AS i,"
        " LATERAL (SELECT now() - interval '7 days' + i * interval '7 days' / 300000) AS x(t)"
    )
    conn.execute(
        "INSERT INTO pgq.job_retries (job_id, entrypoint, attempt, failed_at, error)"
        " SELECT i, 'ep' || (i % 5), 1, now() - interval '7 days' + i * interval '7 days' / 60000,"
        " 'flaky' FROM generate_series(1, 60000) AS i"
    )
    conn.execute(
        "SELECT count(*) FROM (SELECT pgq.enqueue_many(array_fill('ep' || g % 5, ARRAY[1000]),"
        " array_fill('{}'::jsonb, ARRAY[1000])) FROM generate_series(1, 50) AS g) AS x"
    )
    conn.execute("SELECT count(*) FROM pgq.dequeue(ARRAY['ep1', 'ep2'], 20, 'w')")
    conn.execute("VACUUM ANALYZE pgq.jobs, pgq.job_history, pgq.job_retries, pgq.entrypoints")


def plans_of(conn: psycopg.Connection[Any], *calls: Any) -> str:
    plans: list[str] = []
    conn.add_notice_handler(lambda diag: plans.append(diag.message_primary or ""))
    conn.execute("LOAD 'auto_explain'")
    conn.execute("SET auto_explain.log_min_duration = 0")
    conn.execute("SET auto_explain.log_level = notice")
    for call in calls:
        call()
    conn.execute("SET auto_explain.log_min_duration = -1")
    return "\n".join(plans)


def test_overview_and_job_pages_use_indexes_only(pgq_conn: psycopg.Connection[Any]) -> None:
    fill(pgq_conn)
    overview = plans_of(
        pgq_conn,
        lambda: monitor.stats(pgq_conn),
        lambda: queries.minutes(pgq_conn),
        lambda: queries.allowed(pgq_conn),
        lambda: queries.schedules_installed(pgq_conn),
    )
    for table in BIG_TABLES:
        assert f"Seq Scan on {table} " not in overview, overview
    assert "job_history_finished_idx" in overview  # recent history by finish time (BRIN)
    assert "job_retries_failed_idx" in overview

    pages = plans_of(
        pgq_conn,
        lambda: queries.job_page(pgq_conn, JobFilter()),
        lambda: queries.job_page(pgq_conn, JobFilter(before=150_000, limit=500)),
        lambda: queries.job_page(pgq_conn, JobFilter(state="succeeded", before=100_000)),
        lambda: queries.job_page(pgq_conn, JobFilter(entrypoint="ep3", before=200_000)),
        lambda: queries.job(pgq_conn, 150_000),
    )
    for table in BIG_TABLES:
        assert f"Seq Scan on {table} " not in pages, pages
    assert "Index Scan Backward using job_history_pkey" in pages
    assert "Sort Method: external" not in pages
    page, older = queries.job_page(pgq_conn, JobFilter(before=150_000, limit=500))
    assert [row["id"] for row in page] == list(range(149_999, 149_499, -1))
    assert older == 149_500
