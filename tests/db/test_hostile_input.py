"""Hostile input: strings that look like SQL, megabytes of JSON, deep nesting, NUL escapes.

Each value is either stored and returned exactly as given, or refused with the error that
docs/sql-api.md's "Limits" table names for it, leaving the queue as it was. Nothing a caller
passes is ever executed.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest
from psycopg import errors
from psycopg.types.json import Jsonb

Conn = psycopg.Connection[Any]

HOSTILE = [
    "'; DROP TABLE pgq.jobs; --",
    "Robert'); DELETE FROM pgq.job_history; --",
    "$$; SELECT pg_sleep(10); $$",
    "$q$ ' \" $q$",
    "\\'; \\\\ \\x00 \\u0000 \\n",
    "%s %(name)s {} {0} :name ? $1",
    "E'\\x27' || chr(39) || \"ident\"",
    "émail 送信 🚀 \u202e reversed \u200b zero-width",
    " leading and trailing spaces ",
    "a" * 200,
]

DIGEST_SQL = """
SELECT md5(concat_ws('#',
    (SELECT string_agg(j::text, '|' ORDER BY j.id) FROM pgq.jobs AS j),
    (SELECT string_agg(h::text, '|' ORDER BY h.id) FROM pgq.job_history AS h),
    (SELECT string_agg(e::text, '|' ORDER BY e.name) FROM pgq.entrypoints AS e),
    (SELECT string_agg(s::text, '|') FROM pgq.settings AS s)))
"""


def value(conn: Conn, query: str, params: Any = None) -> Any:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def refused(conn: Conn, error: type[psycopg.Error], query: str, params: Any = None) -> str:
    """Run a call that must fail with `error` and change nothing; return the message."""
    before = value(conn, DIGEST_SQL)
    with pytest.raises(error) as caught:
        conn.execute(query, params)
    assert value(conn, DIGEST_SQL) == before
    return str(caught.value)


def tables_intact(conn: Conn) -> None:
    tables = ["pgq.jobs", "pgq.job_history", "pgq.entrypoints", "pgq.settings", "pgq.migrations"]
    found = conn.execute(
        "SELECT to_regclass(t) IS NOT NULL FROM unnest(%s::text[]) AS t", (tables,)
    )
    assert [r[0] for r in found] == [True] * len(tables)


@pytest.mark.parametrize("text", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_strings_round_trip_through_every_column(pgq_conn: Conn, text: str) -> None:
    """As entrypoint, dedupe key, payload, headers, worker id, error and result: kept verbatim."""
    doc = {text: [text, {"nested": text}], "n": 1}
    pgq_conn.execute("SELECT pgq.set_entrypoint(%s, backoff_base => '0')", (text,))
    job_id = value(
        pgq_conn,
        "SELECT pgq.enqueue(%s, %s, dedupe_key => %s, headers => %s)",
        (text, Jsonb(doc), text, Jsonb({"trace": text})),
    )
    assert value(pgq_conn, "SELECT pgq.enqueue(%s, dedupe_key => %s)", (text, text)) == job_id
    row = pgq_conn.execute(
        "SELECT id, entrypoint, payload, headers, lease_token FROM pgq.dequeue(%s, 1, %s)",
        ([text], text),
    ).fetchone()
    assert row is not None
    assert row[:4] == (job_id, text, doc, {"trace": text})
    token = row[4]
    assert value(pgq_conn, "SELECT worker_id FROM pgq.jobs WHERE id = %s", (job_id,)) == text
    assert value(pgq_conn, "SELECT pgq.fail(%s, %s, %s)", (job_id, token, text)) == "queued"
    assert value(pgq_conn, "SELECT last_error FROM pgq.jobs WHERE id = %s", (job_id,)) == text
    assert text in value(pgq_conn, "SELECT pgq.explain_job(%s)", (job_id,))

    token = value(pgq_conn, "SELECT lease_token FROM pgq.dequeue(%s)", ([text],))
    assert value(pgq_conn, "SELECT pgq.complete(%s, %s, %s)", (job_id, token, Jsonb(doc)))
    history = pgq_conn.execute(
        "SELECT entrypoint, dedupe_key, payload, headers, result, error FROM pgq.job_history"
    ).fetchone()
    assert history == (text, text, doc, {"trace": text}, doc, None)
    stats = pgq_conn.execute("SELECT entrypoint, succeeded_5m FROM pgq.queue_stats").fetchall()
    assert stats == [(text, 1)]
    tables_intact(pgq_conn)


def test_names_with_control_characters_or_too_long_are_refused(pgq_conn: Conn) -> None:
    for name in ["line\nbreak", "tab\there", "bell\x07", "del\x7f", "c1\x85", "\x1b[31mred"]:
        message = refused(pgq_conn, errors.InvalidParameterValue, "SELECT pgq.enqueue(%s)", (name,))
        assert "pgq: entrypoint must not contain control characters" in message
        refused(pgq_conn, errors.InvalidParameterValue, "SELECT pgq.dequeue(%s)", ([name],))
        refused(pgq_conn, errors.InvalidParameterValue, "SELECT pgq.set_entrypoint(%s)", (name,))
    for name in ["", "   "]:
        refused(pgq_conn, errors.InvalidParameterValue, "SELECT pgq.enqueue(%s)", (name,))
    message = refused(pgq_conn, errors.ProgramLimitExceeded, "SELECT pgq.enqueue(%s)", ("e" * 201,))
    assert "pgq: entrypoint names are limited to 200 characters, got 201" in message
    refused(
        pgq_conn,
        errors.ProgramLimitExceeded,
        "SELECT pgq.enqueue('a', dedupe_key => %s)",
        ("k" * 513,),
    )


def test_nul_never_reaches_the_queue(pgq_conn: Conn) -> None:
    """PostgreSQL refuses NUL in text and \\u0000 in jsonb before any pgq function runs."""
    with pytest.raises(psycopg.DataError):  # refused by the client library: text holds no NUL
        pgq_conn.execute("SELECT pgq.enqueue(%s)", ("nul\x00name",))
    refused(
        pgq_conn,
        errors.UntranslatableCharacter,
        "SELECT pgq.enqueue('a', %s)",
        (Jsonb({"s": "nul\x00inside"}),),
    )
    refused(
        pgq_conn,
        errors.UntranslatableCharacter,
        "SELECT pgq.enqueue('a', headers => %s)",
        (Jsonb({"\x00": 1}),),
    )
    # An escaped backslash followed by u0000 is an ordinary string.
    doc = {"s": "\\u0000"}
    job_id = value(pgq_conn, "SELECT pgq.enqueue('a', %s)", (Jsonb(doc),))
    assert value(pgq_conn, "SELECT payload FROM pgq.jobs WHERE id = %s", (job_id,)) == doc


def test_megabytes_of_json_up_to_the_configured_cap(pgq_conn: Conn) -> None:
    big = {"rows": [{"i": i, "s": "x" * 80} for i in range(9000)]}  # about 0.9 MB
    assert len(json.dumps(big)) > 900_000
    job_id = value(pgq_conn, "SELECT pgq.enqueue('big', %s)", (Jsonb(big),))
    assert value(pgq_conn, "SELECT payload FROM pgq.dequeue('{big}')") == big
    assert value(pgq_conn, "SELECT payload FROM pgq.jobs WHERE id = %s", (job_id,)) == big

    bigger = {"blob": "y" * 2_000_000}
    message = refused(
        pgq_conn, errors.ProgramLimitExceeded, "SELECT pgq.enqueue('big', %s)", (Jsonb(bigger),)
    )
    assert "exceeds max_payload_bytes (1048576)" in message
    refused(
        pgq_conn,
        errors.ProgramLimitExceeded,
        "SELECT pgq.enqueue('big', headers => %s)",
        (Jsonb({"h": "z" * 70_000}),),
    )
    pgq_conn.execute("SELECT pgq.configure(max_payload_bytes => 4 * 1024 * 1024)")
    job_id = value(pgq_conn, "SELECT pgq.enqueue('big', %s)", (Jsonb(bigger),))
    assert value(pgq_conn, "SELECT payload FROM pgq.jobs WHERE id = %s", (job_id,)) == bigger
    pgq_conn.execute("SELECT pgq.configure(max_payload_bytes => 1000)")
    refused(
        pgq_conn,
        errors.ProgramLimitExceeded,
        "SELECT pgq.enqueue_many(ARRAY['a', 'a'], %s)",
        ([Jsonb({}), Jsonb({"s": "x" * 1000})],),
    )


def test_deeply_nested_json_is_stored_or_refused_by_the_parser(pgq_conn: Conn) -> None:
    texts = {
        depth: "[" * depth + '{"leaf": "$$; DROP TABLE pgq.jobs"}' + "]" * depth
        for depth in (500, 10_000)
    }
    for text in texts.values():
        job_id = value(pgq_conn, "SELECT pgq.enqueue('deep', %s::jsonb)", (text,))
        stored = value(pgq_conn, "SELECT payload::text FROM pgq.jobs WHERE id = %s", (job_id,))
        assert stored == text  # jsonb prints this document back unchanged
    claimed = value(pgq_conn, "SELECT payload FROM pgq.dequeue('{deep}')")
    assert claimed == json.loads(texts[500])
    # Deeper than PostgreSQL's stack allows: its JSON parser refuses it (54001).
    far = "[" * 200_000 + "]" * 200_000
    refused(pgq_conn, errors.StatementTooComplex, "SELECT pgq.enqueue('deep', %s::jsonb)", (far,))
    tables_intact(pgq_conn)


def test_batches_are_bounded_and_empty_batches_do_nothing(pgq_conn: Conn) -> None:
    n = 10_001
    message = refused(
        pgq_conn,
        errors.ProgramLimitExceeded,
        "SELECT pgq.complete_many(%s::bigint[], %s::uuid[])",
        (list(range(n)), [None] * n),
    )
    assert "pgq: a batch holds at most 10000 jobs, got 10001" in message
    refused(
        pgq_conn,
        errors.ProgramLimitExceeded,
        "SELECT count(*) FROM pgq.enqueue_many(array_fill('a'::text, ARRAY[%s]), NULL)",
        (n,),
    )
    before = value(pgq_conn, DIGEST_SQL)
    assert pgq_conn.execute("SELECT * FROM pgq.enqueue_many('{}', '{}')").fetchall() == []
    assert value(pgq_conn, "SELECT pgq.complete_many('{}', '{}')") == []
    assert pgq_conn.execute("SELECT * FROM pgq.fail_many('{}', '{}', '{}')").fetchall() == []
    assert pgq_conn.execute("SELECT * FROM pgq.heartbeat('{}', '{}')").fetchall() == []
    assert pgq_conn.execute("SELECT * FROM pgq.renew('{}', '{}')").fetchall() == []
    assert value(pgq_conn, "SELECT pgq.release('{}', '{}')") == 0
    assert value(pgq_conn, DIGEST_SQL) == before
