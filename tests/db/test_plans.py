"""The hot path keeps index plans on a deep queue, also once PL/pgSQL switches to generic plans,
and never JIT-compiles.

Plans are read with auto_explain (nested statements) after each function ran often enough
for its statements to use cached generic plans, where a parameter array or LIMIT is
estimated blindly (DESIGN.md's measured traps).
"""

from __future__ import annotations

from typing import Any

import psycopg

QUEUED = 200_000
HOT_PATH_ROUND = [
    "SELECT array_agg(id) AS ids, array_agg(lease_token) AS tokens"
    " FROM pgq.claim(ARRAY['a', 'b'], 100, 'w')",
    "SELECT pgq.complete_many(%(ids)s, %(tokens)s)",
    "SELECT array_agg(id) AS ids, array_agg(lease_token) AS tokens"
    " FROM pgq.claim(ARRAY['a', 'b'], 100, 'w')",
    "SELECT count(*) FROM pgq.renew(%(ids)s, %(tokens)s)",
    "SELECT count(*) FROM pgq.heartbeat(%(ids)s, %(tokens)s)",
    "SELECT pgq.next_due(ARRAY['a', 'b'])",
    "SELECT count(*) FROM pgq.fail_many(%(ids)s, %(tokens)s, array_fill('x'::text, ARRAY[100]))",
    "SELECT count(*) FROM pgq.enqueue_many(array_fill('a'::text, ARRAY[100]),"
    " array_fill('{}'::jsonb, ARRAY[100]))",
    "SELECT pgq.reap(100)",
]


def run_round(conn: psycopg.Connection[Any]) -> None:
    claimed: dict[str, Any] = {}
    for sql in HOT_PATH_ROUND:
        row = conn.execute(sql, claimed).fetchone()  # type: ignore[arg-type]
        if row is not None and len(row) == 2:
            claimed = {"ids": row[0], "tokens": row[1]}


def _query_text(plan: str) -> str:
    return plan.split("Query Text: ", 1)[1] if "Query Text: " in plan else plan


def test_hot_path_never_scans_the_tables(pgq_conn: psycopg.Connection[Any]) -> None:
    pgq_conn.execute(
        "SELECT count(*) FROM (SELECT pgq.enqueue_many(array_fill(CASE WHEN g %% 2 = 0 THEN 'a'"
        " ELSE 'b' END, ARRAY[1000]), array_fill('{}'::jsonb, ARRAY[1000]))"
        " FROM generate_series(1, %s) AS g) AS x",
        (QUEUED // 1000,),
    )
    # Statistics taken while nothing runs, as after a quiet night: then 20,000 jobs start
    # running, 1,000 of them with an expired lease.
    pgq_conn.execute("VACUUM ANALYZE pgq.jobs, pgq.job_history, pgq.entrypoints")
    pgq_conn.execute("SELECT count(*) FROM pgq.dequeue(ARRAY['a', 'b'], 10000, 'w')")
    pgq_conn.execute("SELECT count(*) FROM pgq.dequeue(ARRAY['a', 'b'], 10000, 'w')")
    pgq_conn.execute(
        "UPDATE pgq.jobs SET lease_expires_at = now() - interval '1 minute'"
        " WHERE id IN (SELECT id FROM pgq.jobs WHERE state = 'running' LIMIT 1000)"
    )

    for _ in range(6):
        run_round(pgq_conn)

    plans: list[str] = []
    pgq_conn.add_notice_handler(lambda diag: plans.append(diag.message_primary or ""))
    pgq_conn.execute("LOAD 'auto_explain'")
    for setting, value in [
        ("log_min_duration", "0"),
        ("log_nested_statements", "on"),
        ("log_level", "notice"),
    ]:
        pgq_conn.execute(f"SET auto_explain.{setting} = {value}")
    # Compile every plan the server would JIT-compile: a generic plan's blind estimates can pass
    # jit_above_cost on a deep queue (5 ms of compiling per 100-job claim was measured).
    pgq_conn.execute("SET jit_above_cost = 0")
    run_round(pgq_conn)

    top_level = tuple(sql.split("%(")[0] for sql in HOT_PATH_ROUND)  # up to the first parameter
    compiled = [p for p in plans if "JIT:" in p and not _query_text(p).startswith(top_level)]
    assert compiled == [], compiled[0] if compiled else ""
    text = "\n".join(plans)
    assert "Index Scan using jobs_claim_idx" in text  # the claim walks the index in order
    # Running jobs are found by id (or lease expiry), never by walking all of them.
    assert "jobs_running_idx" not in text, text
    for table in ("jobs", "job_history"):
        assert f"Seq Scan on {table} " not in text, text
