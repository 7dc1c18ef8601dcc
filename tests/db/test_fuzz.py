"""Random arguments thrown at every public pgq function, read from the catalog.

Each example runs a few calls with arguments drawn per SQL type (NULLs, empty and mismatched
arrays, bounds and just past them, huge and negative numbers, NaN, far dates, hostile text,
random JSON, and the ids and lease tokens of real jobs). A call either succeeds or fails with
one of the SQLSTATEs docs/sql-api.md documents and a message starting with ``pgq:``. After
each call the queue must still be sound: every live and finished job passes the limits it was
accepted under, every monitoring view and explain_job answers, and reaping and promoting work.

Derandomized with a bounded number of examples, so CI runs the same calls every time.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.types.json import Jsonb

Conn = psycopg.Connection[Any]

# Helpers that only other pgq functions call (not granted to any role).
INTERNAL = {
    "_settle_failures",
    "_lock_held",
    "_backoff",
    "_check_entrypoints",
    "_check_batch",
    "_record_install",
    "_archive",
    "_expire",
    "_check_results",
}
# The SQLSTATEs of docs/sql-api.md's error table.
DOCUMENTED = {"22023", "22004", "2202E", "54000", "P0002", "55000", "55006", "23505"}
NAMES = ["a", "b", "c"]
NOW = datetime.now(UTC)
CHARS = st.characters(exclude_categories=["Cs"], min_codepoint=1)  # no NUL, no lone surrogate

SOUND_SQL = r"""
SELECT
    (SELECT count(*) FROM pgq.jobs AS j
     WHERE NOT (isfinite(j.run_at) AND j.run_at <= pgq.now() + interval '10 years 1 day'
                AND char_length(j.entrypoint) BETWEEN 1 AND 200
                AND j.entrypoint !~ '[\x01-\x1f\x7f-\x9f]' AND btrim(j.entrypoint) <> ''
                AND j.priority BETWEEN -32768 AND 32767 AND j.attempt >= 0
                AND jsonb_typeof(j.headers) = 'object'
                AND coalesce(char_length(j.dedupe_key), 0) <= 512
                AND (j.lease_expires_at IS NULL OR isfinite(j.lease_expires_at))
                AND EXISTS (SELECT FROM pgq.entrypoints AS e WHERE e.name = j.entrypoint))),
    (SELECT count(*) FROM pgq.job_history AS h
     WHERE NOT (jsonb_typeof(h.headers) = 'object' AND isfinite(h.finished_at))),
    (SELECT count(*) FROM pgq.entrypoints AS e
     WHERE NOT (e.backoff_factor BETWEEN 1 AND 100 AND e.jitter BETWEEN 0 AND 1
                AND e.backoff_base <= interval '10 years' AND e.backoff_max <= interval '10 years'
                AND coalesce(e.timeout, interval '0') <= interval '10 years'))
"""
# Each example starts from an empty queue, with size caps small enough for a drawn value to pass.
RESET_SQL = """
TRUNCATE pgq.jobs, pgq.job_history, pgq.job_retries, pgq.entrypoints, pgq.worker_registry
    RESTART IDENTITY;
SELECT pgq.configure('7 days', '1 minute', 4096, 1024);
"""
VIEWS = ["queue_stats", "running_jobs", "failed_jobs", "workers", "throughput", "health"]


def text_st() -> st.SearchStrategy[str | None]:
    printable = st.text(CHARS, max_size=12)
    return st.one_of(
        st.none(),
        st.sampled_from(NAMES),
        st.sampled_from(["", " ", "'; DROP TABLE pgq.jobs; --", "$$", "a\nb", "x\x7f", "\\"]),
        printable,
        st.integers(195, 205).map(lambda n: "e" * n),
        st.integers(508, 516).map(lambda n: "k" * n),
    )


def int_st(low: int, high: int) -> st.SearchStrategy[int | None]:
    edges = [0, 1, -1, 2, 100, 10_000, 10_001, 32_767, 32_768, -32_768, -32_769, low, high]
    return st.one_of(st.none(), st.integers(-3, 20), st.sampled_from(edges), st.integers(low, high))


def json_st() -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(10**30), 10**30),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(CHARS, max_size=10),
    )
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3),
            st.dictionaries(
                st.text(max_size=5).filter(lambda k: "\x00" not in k), inner, max_size=3
            ),
        ),
        max_leaves=8,
    )


@dataclass(frozen=True)
class Live:
    """The id (or lease token) of the n-th job in the queue at call time, drawn blind."""

    kind: str
    n: int


def plausible_st(sql_type: str) -> st.SearchStrategy[Any]:
    """Values a careful caller would pass, so that calls also get past the checks."""
    live = st.builds(Live, st.just("token" if sql_type == "uuid" else "id"), st.integers(0, 9))
    return {
        "text": st.sampled_from(NAMES),
        "integer": st.integers(1, 5),
        "bigint": live,
        "uuid": live,
        "jsonb": st.dictionaries(st.sampled_from(NAMES), json_st(), max_size=3).map(Jsonb),
        "boolean": st.booleans(),
        "timestamp with time zone": st.one_of(
            st.none(), st.timedeltas(-timedelta(days=2), timedelta(days=2)).map(lambda d: NOW + d)
        ),
        "interval": st.timedeltas(timedelta(seconds=1), timedelta(hours=1)),
        "numeric": st.sampled_from([Decimal(0), Decimal("0.5"), Decimal(1)]),
    }[sql_type]


def wild_st(sql_type: str) -> st.SearchStrategy[Any]:
    """Any value the SQL type can hold, biased to bounds, NULL and hostile text."""
    if sql_type == "text":
        return text_st()
    if sql_type == "integer":
        return int_st(-(2**31), 2**31 - 1)
    if sql_type == "bigint":
        return st.one_of(
            st.builds(Live, st.just("id"), st.integers(0, 9)), int_st(-(2**63), 2**63 - 1)
        )
    if sql_type == "jsonb":
        return st.one_of(st.none(), json_st().map(Jsonb), st.just(Jsonb({"big": "x" * 5000})))
    if sql_type == "boolean":
        return st.one_of(st.none(), st.booleans())
    if sql_type == "uuid":
        return st.one_of(
            st.none(), st.uuids(), st.builds(Live, st.just("token"), st.integers(0, 9))
        )
    if sql_type == "timestamp with time zone":
        far = [timedelta(days=3650), timedelta(days=3660), timedelta(days=-(10**5))]
        return st.one_of(
            st.none(),
            st.timedeltas(-timedelta(days=2), timedelta(days=2)).map(lambda d: NOW + d),
            st.sampled_from(far).map(lambda d: NOW + d),
            st.datetimes(timezones=st.just(UTC)),
        )
    if sql_type == "interval":
        return st.one_of(
            st.none(),
            st.timedeltas(-timedelta(hours=1), timedelta(hours=1)),
            st.sampled_from([timedelta(0), timedelta(days=3600), timedelta(days=3601)]),
            st.timedeltas(),
        )
    if sql_type == "numeric":
        return st.one_of(
            st.none(),
            # PostgreSQL's numeric has one NaN: no signalling or negative ones.
            st.decimals(allow_nan=True, allow_infinity=True).filter(
                lambda d: not (d.is_nan() and (d.is_snan() or d.is_signed()))
            ),
            st.sampled_from([Decimal(0), Decimal("0.5"), Decimal(1), Decimal(100), Decimal(101)]),
        )
    raise AssertionError(f"no strategy for SQL type {sql_type}: teach test_fuzz.py about it")


def args_st(types: list[str], wild: bool) -> st.SearchStrategy[list[Any]]:
    """Arguments of one call: plausible ones (arrays of one shared length), or wild ones (NULL,
    empty and mismatched arrays too)."""
    scalar = wild_st if wild else plausible_st

    def array(sql_type: str, length: int) -> st.SearchStrategy[list[Any] | None]:
        sized = st.lists(scalar(sql_type), min_size=length, max_size=length)
        if not wild:
            return sized
        other = st.integers(0, 4).flatmap(
            lambda n: st.lists(scalar(sql_type), min_size=n, max_size=n)
        )
        return st.one_of(st.none(), sized, sized, other)

    def build(length: int) -> st.SearchStrategy[list[Any]]:
        parts = [array(t[:-2], length) if t.endswith("[]") else scalar(t) for t in types]
        return st.tuples(*parts).map(list)

    return st.integers(0 if wild else 1, 4).flatmap(build)


def public_functions(conn: Conn) -> list[tuple[str, list[str]]]:
    rows = conn.execute(
        "SELECT p.proname, ARRAY(SELECT format_type(t, NULL) FROM unnest(p.proargtypes) AS t)"
        " FROM pg_proc AS p WHERE p.pronamespace = 'pgq'::regnamespace"
        " ORDER BY p.oid::regprocedure::text"
    ).fetchall()
    return [(name, types) for name, types in rows if name not in INTERNAL]


def resolve(conn: Conn, args: list[Any]) -> list[Any]:
    """Replace each Live marker by a real job id or a current lease token (or a miss)."""
    ids = [
        r[0]
        for r in conn.execute(
            "SELECT id FROM pgq.jobs UNION ALL SELECT id FROM pgq.job_history ORDER BY 1"
        )
    ]
    tokens = [
        r[0]
        for r in conn.execute(
            "SELECT lease_token FROM pgq.jobs WHERE lease_token IS NOT NULL ORDER BY id"
        )
    ]

    def one(value: Any) -> Any:
        if isinstance(value, list):
            return [one(v) for v in value]
        if not isinstance(value, Live):
            return value
        pool: list[Any] = ids if value.kind == "id" else tokens
        fallback = 1 if value.kind == "id" else uuid.UUID(int=value.n)
        return pool[value.n % len(pool)] if pool else fallback

    return [one(a) for a in args]


def call(conn: Conn, name: str, types: list[str], args: list[Any]) -> None:
    placeholders = ", ".join(f"%s::{t}" for t in types)
    args = resolve(conn, args)
    try:
        conn.execute(f"SELECT * FROM pgq.{name}({placeholders})", args).fetchall()
    except psycopg.Error as exc:
        diag = exc.diag
        assert diag.sqlstate in DOCUMENTED, f"pgq.{name}{tuple(args)!r:.300}: {exc!r}"
        assert (diag.message_primary or "").startswith("pgq: "), f"pgq.{name}: {exc!r}"


def assert_sound(conn: Conn) -> None:
    assert conn.execute(SOUND_SQL).fetchone() == (0, 0, 0)
    for view in VIEWS:
        conn.execute(f"SELECT * FROM pgq.{view}").fetchall()
    conn.execute("SELECT pgq.explain_job(id) FROM pgq.jobs").fetchall()
    conn.execute("SELECT pgq.explain_job(id) FROM pgq.job_history").fetchall()
    conn.execute("SELECT pgq.reap(), pgq.promote_due()").fetchall()


@pytest.fixture
def fuzz_conn(pgq_conn: Conn) -> Conn:
    functions = {name for name, _ in public_functions(pgq_conn)}
    assert {"enqueue", "enqueue_many", "dequeue", "complete_many", "fail_many"} <= functions
    return pgq_conn


@settings(
    max_examples=100,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_random_arguments_raise_only_documented_errors(
    fuzz_conn: Conn, data: st.DataObject
) -> None:
    conn = fuzz_conn
    conn.execute(RESET_SQL)
    conn.execute("SELECT pgq.enqueue(n) FROM unnest(%s::text[]) AS n", (NAMES,))
    functions = public_functions(conn)
    for _ in range(data.draw(st.integers(1, 5), label="calls")):
        name, types = data.draw(st.sampled_from(functions), label="function")
        wild = data.draw(st.booleans(), label="wild")
        call(conn, name, types, data.draw(args_st(types, wild), label=name))
        assert_sound(conn)
