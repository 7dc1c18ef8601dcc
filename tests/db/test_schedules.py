"""Schedules in the database: upsert, pause, resume, run-now, app registration, and firing with
the clock moved through `pgq.now` (a simulated day, each catch-up policy after an outage)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

Conn = psycopg.Connection[Any]
T0 = datetime(2030, 3, 30, 0, 0, 0, tzinfo=UTC)  # Berlin moves its clocks on 2030-03-31


def at(conn: Conn, moment: datetime) -> None:
    conn.execute("SELECT set_config('pgq.now', %s, false)", (moment.isoformat(),))


def one(conn: Conn, query: str, params: Any = None) -> Any:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def fired(conn: Conn) -> Counter[tuple[str, datetime]]:
    """(schedule, tick) of every job enqueued by a schedule, live or finished, counted."""
    rows = conn.execute(
        "SELECT headers->>'schedule', (headers->>'tick')::timestamptz FROM pgq.jobs"
        " UNION ALL SELECT headers->>'schedule', (headers->>'tick')::timestamptz"
        " FROM pgq.job_history"
    ).fetchall()
    return Counter((name, tick) for name, tick in rows)


@pytest.fixture
def conn(pgq_conn: Conn) -> Conn:
    pgq_conn.execute("SET TimeZone = 'UTC'")
    at(pgq_conn, T0)
    return pgq_conn


def run_clock(conn: Conn, until: datetime, step: timedelta) -> None:
    """Moves the clock to `until` in steps, firing at each: mostly pgq.fire_schedules(), every
    third step through a dequeue (which fires when its probe finds a schedule due)."""
    moment, n = one(conn, "SELECT pgq.now()"), 0
    while moment < until:
        n += 1
        moment = min(until, moment + step)
        at(conn, moment)
        if n % 3:
            conn.execute("SELECT pgq.fire_schedules()")
        else:
            conn.execute("SELECT count(*) FROM pgq.dequeue(ARRAY['nothing'])")


def every(first: datetime, step: timedelta, last: datetime) -> set[datetime]:
    found = set()
    while first <= last:
        found.add(first)
        first += step
    return found


def by_schedule(counts: Counter[tuple[str, datetime]]) -> dict[str, set[datetime]]:
    assert all(n == 1 for n in counts.values()), [k for k, n in counts.items() if n > 1]
    got: dict[str, set[datetime]] = {}
    for name, tick in counts:
        got.setdefault(name, set()).add(tick)
    return got


def test_a_simulated_day_fires_exactly_the_expected_ticks(conn: Conn) -> None:
    conn.execute("SELECT pgq.schedule('quarter', '*/15 * * * *', 'work')")
    conn.execute("SELECT pgq.schedule('hourly', '@hourly', 'work', timezone => 'Europe/Berlin')")
    # 02:30 Berlin does not exist on 2030-03-31: it fires at the change (01:00 UTC).
    conn.execute("SELECT pgq.schedule('night', '30 2 * * *', 'work', timezone => 'Europe/Berlin')")
    conn.execute("SELECT pgq.schedule('weekday', '0 9 * * mon-fri', 'work')")
    # Every 20 s from 06:00 to 06:59: more ticks than steps, so catch_up => 'all'.
    conn.execute("SELECT pgq.schedule('seconds', '*/20 * 6 * * *', 'work', catch_up => 'all')")
    end = T0 + timedelta(days=2, hours=10)  # Saturday 00:00 to Monday 10:00
    run_clock(conn, end, timedelta(minutes=7, seconds=13))

    hour = timedelta(hours=1)
    seconds = set()
    for day in range(3):
        six = T0 + timedelta(days=day, hours=6)
        seconds |= every(six, timedelta(seconds=20), six + timedelta(seconds=3580))
    assert by_schedule(fired(conn)) == {
        "quarter": every(T0 + timedelta(minutes=15), timedelta(minutes=15), end),
        "hourly": every(T0 + hour, hour, end),  # the hour the change skips fires at the change
        "night": {
            T0 + timedelta(hours=1, minutes=30),
            T0 + timedelta(days=1, hours=1),
            T0 + timedelta(days=2, hours=0, minutes=30),
        },
        "weekday": {T0 + timedelta(days=2, hours=9)},
        "seconds": seconds,
    }
    stats = conn.execute(
        "SELECT name, next_run_at, last_tick_at FROM pgq.schedule_stats ORDER BY name"
    ).fetchall()
    assert [(n, nxt > end, last <= end) for n, nxt, last in stats] == [
        (n, True, True) for n in ("hourly", "night", "quarter", "seconds", "weekday")
    ]


@pytest.mark.parametrize(
    ("catch_up", "expected"),
    [
        # Down from 00:05 to 03:05: the ticks 00:15 ... 03:00 were missed.
        ("all", [T0 + timedelta(minutes=15 * k) for k in range(1, 13)]),
        ("latest", [T0 + timedelta(hours=3)]),
        ("none", []),
    ],
)
def test_each_catch_up_policy_after_a_three_hour_outage(
    conn: Conn, catch_up: str, expected: list[datetime]
) -> None:
    conn.execute("SELECT pgq.schedule('s', '*/15 * * * *', 'work', catch_up => %s)", (catch_up,))
    at(conn, T0 + timedelta(minutes=5))
    assert one(conn, "SELECT pgq.fire_schedules()") == 0
    at(conn, T0 + timedelta(hours=3, minutes=5))
    assert one(conn, "SELECT pgq.fire_schedules()") == len(expected)
    assert sorted(tick for _, tick in fired(conn)) == expected
    # Back on time: the next tick fires once, whatever the policy.
    assert one(conn, "SELECT next_run_at FROM pgq.schedules") == T0 + timedelta(hours=3, minutes=15)
    at(conn, T0 + timedelta(hours=3, minutes=15, seconds=1))
    assert one(conn, "SELECT pgq.fire_schedules()") == 1
    assert one(conn, "SELECT pgq.fire_schedules()") == 0


def test_all_is_bounded_to_1000_ticks(conn: Conn) -> None:
    conn.execute("SELECT pgq.schedule('s', '* * * * * *', 'work', catch_up => 'all')")
    at(conn, T0 + timedelta(hours=1))
    assert one(conn, "SELECT pgq.fire_schedules(5000)") == 1000
    assert one(conn, "SELECT min(headers->>'tick') FROM pgq.jobs") == "2030-03-30T00:00:01Z"
    assert one(conn, "SELECT next_run_at FROM pgq.schedules") == T0 + timedelta(hours=1, seconds=1)


def test_max_jobs_leaves_the_rest_for_the_next_call(conn: Conn) -> None:
    for i in range(5):
        conn.execute("SELECT pgq.schedule(%s, '@hourly', 'work')", (f"s{i}",))
    at(conn, T0 + timedelta(hours=1))
    assert [one(conn, "SELECT pgq.fire_schedules(2)") for _ in range(4)] == [2, 2, 1, 0]
    assert len(fired(conn)) == 5


def test_the_job_carries_the_schedule_its_payload_and_policy(conn: Conn) -> None:
    conn.execute(
        "SELECT pgq.schedule('report', '0 6 * * *', 'mail', payload => '{\"to\": \"ops\"}',"
        ' priority => 5, headers => \'{"team": "x"}\', max_attempts => 2)'
    )
    at(conn, T0 + timedelta(hours=6))
    row = conn.execute(
        "SELECT entrypoint, payload, priority, headers, attempt, max_attempts"
        " FROM pgq.dequeue(ARRAY['mail'], 5)"
    ).fetchall()
    assert row == [
        ("mail", {"to": "ops"}, 5,
         {"team": "x", "schedule": "report", "tick": "2030-03-30T06:00:00Z"}, 1, 2),
    ]  # fmt: skip


def test_upsert_keeps_the_pending_tick_unless_the_timing_changes(conn: Conn) -> None:
    first = one(conn, "SELECT pgq.schedule('s', '0 6 * * *', 'work')")
    assert first == T0 + timedelta(hours=6)
    at(conn, T0 + timedelta(hours=7))  # due, not fired yet
    assert one(conn, "SELECT pgq.schedule('s', '0 6 * * *', 'work', payload => '[1]')") == first
    assert one(conn, "SELECT pgq.schedule('s', '0 8 * * *', 'work')") == T0 + timedelta(hours=8)


def test_pause_resume_run_now_and_unschedule(conn: Conn) -> None:
    conn.execute("SELECT pgq.schedule('s', '@hourly', 'work')")
    assert one(conn, "SELECT pgq.pause_schedule('s')") is True
    at(conn, T0 + timedelta(hours=2, minutes=30))
    assert one(conn, "SELECT pgq.fire_schedules()") == 0
    # Resumed from now: the ticks missed while paused never fire.
    assert one(conn, "SELECT pgq.resume_schedule('s')") == T0 + timedelta(hours=3)
    assert one(conn, "SELECT pgq.fire_schedules()") == 0
    job = one(conn, "SELECT pgq.run_schedule('s')")
    assert one(conn, "SELECT headers FROM pgq.jobs WHERE id = %s", (job,)) == {
        "schedule": "s", "tick": "2030-03-30T02:30:00Z"}  # fmt: skip
    assert one(conn, "SELECT next_run_at FROM pgq.schedules") == T0 + timedelta(hours=3)
    assert one(conn, "SELECT pgq.unschedule('s')") is True
    assert one(conn, "SELECT pgq.unschedule('s')") is False
    assert one(conn, "SELECT pgq.pause_schedule('s')") is False
    assert one(conn, "SELECT pgq.resume_schedule('s')") is None
    with pytest.raises(psycopg.errors.NoDataFound, match="no schedule named"):
        conn.execute("SELECT pgq.run_schedule('s')")
    assert one(conn, "SELECT count(*) FROM pgq.jobs") == 1  # the run-now job stays


def register(conn: Conn, entrypoints: list[str], schedules: dict[str, tuple[str, str]]) -> Any:
    names = list(schedules)
    n = len(names)
    return one(
        conn,
        "SELECT coalesce(array_agg(n ORDER BY n), '{}') FROM pgq.register_schedules("
        "%s, %s, %s, %s, %s::jsonb[], %s, %s, %s::jsonb[], %s, %s) AS n",
        (entrypoints, names, [schedules[k][0] for k in names], [schedules[k][1] for k in names],
         ["{}"] * n, ["UTC"] * n, [0] * n, ["{}"] * n, [None] * n, ["latest"] * n),
    )  # fmt: skip


def test_an_app_declaration_pauses_what_it_no_longer_declares(conn: Conn) -> None:
    conn.execute("SELECT pgq.schedule('by-sql', '@daily', 'a')")
    assert register(conn, ["a", "b"], {"a1": ("@hourly", "a"), "b1": ("@daily", "b")}) == []
    # The app now declares only a1: b1 is paused (not deleted); the SQL one is left alone.
    assert register(conn, ["a", "b"], {"a1": ("@hourly", "a")}) == ["b1"]
    rows = conn.execute(
        "SELECT name, declared_by, paused_reason FROM pgq.schedule_stats ORDER BY name"
    ).fetchall()
    assert rows == [
        ("a1", "app", None),
        ("b1", "app", "no longer declared"),
        ("by-sql", "sql", None),
    ]
    # Declared again: resumed. Another app (entrypoint c only) touches nothing of these.
    assert register(conn, ["a", "b"], {"a1": ("@hourly", "a"), "b1": ("@daily", "b")}) == []
    assert register(conn, ["c"], {}) == []
    assert one(conn, "SELECT count(*) FROM pgq.schedules WHERE paused IS NOT NULL") == 0
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="its own entrypoints"):
        register(conn, ["c"], {"x": ("@daily", "a")})


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ("pgq.schedule('s', '0 0 30 2 *', 'work')", "never matches"),
        ("pgq.schedule('s', '* * * * * * *', 'work')", "got 7"),
        ("pgq.schedule('s', '@daily', 'work', timezone => 'Nowhere/Town')", "unknown time zone"),
        ("pgq.schedule('s', '@daily', 'work', catch_up => 'some')", "catch_up must be"),
        ("pgq.schedule('', '@daily', 'work')", "schedule name"),
        ("pgq.schedule('s', '@daily', ' ')", "entrypoint must not be empty"),
        ("pgq.schedule('s', '@daily', 'work', headers => '[]')", "headers must be a JSON object"),
        ("pgq.schedule('s', '@daily', 'work', priority => 40000)", "priority must be"),
        ("pgq.schedule('s', '@daily', 'work', max_attempts => 0)", "max_attempts"),
        ("pgq.fire_schedules(0)", "max_jobs"),
        ("pgq.fire_schedules(10001)", "max_jobs"),
    ],
)
def test_bad_input_raises_22023_and_stores_nothing(conn: Conn, call: str, message: str) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=message):
        conn.execute(f"SELECT {call}")
    assert one(conn, "SELECT count(*) FROM pgq.schedules") == 0


def test_entrypoint_limits_apply(conn: Conn) -> None:
    with pytest.raises(psycopg.errors.ProgramLimitExceeded, match="200 characters"):
        conn.execute("SELECT pgq.schedule('s', '@daily', repeat('e', 201))")


def test_stats_show_the_last_job_its_error_and_the_last_success(conn: Conn) -> None:
    conn.execute("SELECT pgq.schedule('s', '@hourly', 'work', max_attempts => 1)")
    at(conn, T0 + timedelta(hours=1, seconds=2))
    conn.execute("SELECT pgq.complete(id, lease_token) FROM pgq.dequeue(ARRAY['work'], 5)")
    at(conn, T0 + timedelta(hours=2, seconds=3))
    conn.execute("SELECT pgq.fail(id, lease_token, 'boom') FROM pgq.dequeue(ARRAY['work'], 5)")
    row = conn.execute(
        "SELECT last_tick_at, last_fire_delay, last_job_state, last_job_error, last_success_at,"
        " lateness FROM pgq.schedule_stats"
    ).fetchone()
    assert row == (T0 + timedelta(hours=2), timedelta(seconds=3), "failed", "boom",
                   T0 + timedelta(hours=1, seconds=2), timedelta(0))  # fmt: skip
    at(conn, T0 + timedelta(hours=3, minutes=1))
    assert one(conn, "SELECT lateness FROM pgq.schedule_stats") == timedelta(minutes=1)


def test_a_schedule_the_lowered_limits_refuse_is_paused_not_a_failing_claim(conn: Conn) -> None:
    conn.execute(
        "SELECT pgq.schedule('big', '@hourly', 'work', payload => %s)", (f'"{"x" * 3000}"',)
    )
    conn.execute("SELECT pgq.schedule('small', '@hourly', 'work')")
    conn.execute("SELECT pgq.configure(max_payload_bytes => 1024)")
    at(conn, T0 + timedelta(hours=1))
    assert one(conn, "SELECT count(*) FROM pgq.dequeue(ARRAY['work'], 10)") == 1  # small's job
    rows = conn.execute("SELECT name, paused_reason FROM pgq.schedule_stats ORDER BY name")
    assert rows.fetchall() == [("big", "over the size limits"), ("small", None)]


def test_headers_count_with_the_schedule_and_tick_they_will_carry(conn: Conn) -> None:
    conn.execute("SELECT pgq.configure(max_headers_bytes => 100)")
    headers = '{"k": "' + "v" * 50 + '"}'  # fits alone, not with schedule and tick
    assert one(conn, "SELECT pg_column_size(%s::jsonb)", (headers,)) <= 100
    with pytest.raises(psycopg.errors.ProgramLimitExceeded, match="with schedule and tick"):
        conn.execute("SELECT pgq.schedule('s', '@daily', 'work', headers => %s)", (headers,))
