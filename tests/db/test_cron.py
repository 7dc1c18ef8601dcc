"""pgq.cron_next against croniter, an independent implementation used here only as an oracle.

Hypothesis draws expressions (5 fields or 6 with seconds first: lists, ranges, steps, names,
7 for Sunday, macros) and start instants, half of them within hours of a DST change in
Europe/Berlin, America/New_York or Australia/Lord_Howe (a 30-minute shift). Each example
sends its whole batch in one statement; the run makes at least 20,000 comparisons.

croniter is asked for wall-clock ticks (naive local times, where it is reliable); the test
maps them to instants by pgq's DST rules (a skipped local time fires at the change, a repeated
one at its first occurrence), written again here in Python with zoneinfo. croniter departs from
classic cron (and from pgq) in these ways, adjusted for in the oracle and each tested below:

1. A one-value range with or without a step (`5-5`, `6-6/3`) matches every value in
   croniter 7; classic cron and pgq match that one value. The oracle gets the single value.
2. Day-of-month/day-of-week: croniter ORs the two day fields whenever both expand to fewer
   than all values, so `*/2` counts as restricted; classic cron (and pgq) treat a field
   written starting with `*` as unrestricted and AND the two. The oracle gets `day_or` by the
   classic rule.
3. With an aware start, croniter fires a repeated local time (clocks set back) at both
   occurrences; pgq fires it once, at the first.
4. With an aware start, croniter skips a local time that a 30-minute DST change (Lord Howe)
   jumps over and fires at the next match; pgq fires at the change, as for any skipped time.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from croniter import croniter
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

Conn = psycopg.Connection[Any]

ZONES = ("UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe")
MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
EXAMPLES = 210
BATCH = 100  # EXAMPLES * BATCH >= 20,000 comparisons, one statement per example
TRY_NEXT = """
CREATE FUNCTION pg_temp.try_next(e text, a timestamptz, t text) RETURNS timestamptz
LANGUAGE plpgsql AS $$
BEGIN
    RETURN pgq.cron_next(e, a, t);
EXCEPTION WHEN invalid_parameter_value THEN
    RETURN NULL;  -- never matches
END $$
"""
NEXT_MANY = """
SELECT pg_temp.try_next(u.e, u.a, u.t)
FROM unnest(%s::text[], %s::timestamptz[], %s::text[]) WITH ORDINALITY AS u(e, a, t, n)
ORDER BY u.n
"""


def transitions(zone: str) -> list[datetime]:
    """The instants 2020-2032 at which `zone`'s UTC offset changes (to the half hour)."""
    tz = ZoneInfo(zone)
    found, t = [], datetime(2020, 1, 1, tzinfo=UTC)
    before = t.astimezone(tz).utcoffset()
    while t.year < 2032:
        t += timedelta(minutes=30)
        offset = t.astimezone(tz).utcoffset()
        if offset != before:
            found.append(t)
        before = offset
    return found


TRANSITIONS = {zone: transitions(zone) for zone in ZONES[1:]}


# Strategies are built once (building them inside a composite per draw cost most of the run).


def field(lo: int, hi: int, names: list[str] | None = None) -> st.SearchStrategy[str]:
    """One cron field: *, */n, a-b[/n], a/n, or a list of values (some as names)."""
    value = st.integers(lo, hi).map(str)
    if names:
        value |= st.integers(0, len(names) - 1).map(names.__getitem__)
    bounded = st.tuples(st.integers(lo, hi), st.integers(0, hi - lo), st.integers(0, 12))
    return st.one_of(
        st.just("*"),
        st.integers(1, hi - lo + 1).map(lambda n: f"*/{n}"),
        st.tuples(st.integers(lo, hi), st.integers(1, 20)).map(lambda t: f"{t[0]}/{t[1]}"),
        bounded.map(lambda t: f"{t[0]}-{min(hi, t[0] + t[1])}" + (f"/{t[2]}" if t[2] else "")),
        st.lists(value, min_size=1, max_size=3).map(",".join),
        st.lists(value, min_size=1, max_size=3).map(",".join),
    )


FIVE = st.tuples(
    field(0, 59), field(0, 23), field(1, 31), field(1, 12, MONTHS), field(0, 7, DAYS)
).map(" ".join)
SIX = st.tuples(field(0, 59), FIVE).map(" ".join)
MACRO = st.sampled_from(
    ["@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"]
)
EXPRESSION = st.one_of(FIVE, FIVE, FIVE, SIX, SIX, MACRO)  # one_of picks a branch uniformly
ANYTIME = st.tuples(st.sampled_from(ZONES), st.integers(0, 12 * 365 * 86400)).map(
    lambda t: (t[0], datetime(2020, 1, 1, tzinfo=UTC) + timedelta(seconds=t[1]))
)
NEAR_A_CHANGE = st.tuples(
    st.sampled_from([(zone, change) for zone in ZONES[1:] for change in TRANSITIONS[zone]]),
    st.integers(-5 * 3600, 3 * 3600),
).map(lambda t: (t[0][0], t[0][1] + timedelta(seconds=t[1])))
CASE = st.tuples(
    EXPRESSION,
    st.one_of(ANYTIME, NEAR_A_CHANGE),
    st.sampled_from([0, 0, 1, 500_000, 999_999]),
).map(lambda t: (t[0], t[1][1] + timedelta(microseconds=t[2]), t[1][0]))


MACROS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
          "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
          "@hourly": "0 * * * *"}  # fmt: skip


def classic(expr: str) -> tuple[str, bool]:
    """The expression croniter reads as classic cron does, and its day_or (departures 1, 2)."""
    expr = MACROS.get(expr, expr)
    expr = re.sub(r"\b(\w+)-\1(/\d+)?\b", r"\1", expr)
    fields = expr.split()
    return expr, not (fields[-3].startswith("*") or fields[-1].startswith("*"))


def change(lo: datetime, hi: datetime, tz: ZoneInfo) -> datetime:
    """The first instant in (lo, hi] whose UTC offset in tz differs from lo's, to the second."""
    before = lo.astimezone(tz).utcoffset()
    while hi - lo > timedelta(seconds=1):
        mid = lo + (hi - lo) / 2
        mid -= timedelta(microseconds=mid.microsecond)
        if mid.astimezone(tz).utcoffset() == before:
            lo = mid
        else:
            hi = mid
    return hi


def first_instant(local: datetime, tz: ZoneInfo) -> datetime:
    """When a wall-clock time fires: its first occurrence, or the DST change that skipped it."""
    early = local.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if early.astimezone(tz).replace(tzinfo=None) != local:  # in a gap: fold=0 is the old offset
        return change(early - timedelta(hours=3), early, tz)
    return min(early, local.replace(tzinfo=tz, fold=1).astimezone(UTC))


def oracle(expr: str, start: datetime, zone: str) -> datetime | None:
    """croniter's wall-clock ticks (departures 1, 2 adjusted), fired by the DST rules above."""
    text, day_or = classic(expr)
    tz = ZoneInfo(zone)
    begin = start.astimezone(tz).replace(tzinfo=None, microsecond=0)
    try:
        while True:
            it = croniter(text, begin, second_at_beginning=True, day_or=day_or)
            local = it.get_next(datetime)
            instant = first_instant(local, tz)
            if instant > start:
                return instant
            # `start` lies in the repeat of `local`: go on from the end of the repeated hour.
            repeat = change(instant, instant + timedelta(hours=3), tz)
            length = instant.astimezone(tz).utcoffset() - repeat.astimezone(tz).utcoffset()
            end = repeat.astimezone(tz).replace(tzinfo=None) + length
            begin = max(local, end - timedelta(seconds=1))
    except Exception as exc:  # croniter's "failed to find next date"
        if "failed to find" in str(exc):
            return None
        raise


def cron_next_many(conn: Conn, cases: list[tuple[str, datetime, str]]) -> list[datetime | None]:
    rows = conn.execute(
        NEXT_MANY, ([c[0] for c in cases], [c[1] for c in cases], [c[2] for c in cases])
    ).fetchall()
    return [r[0] for r in rows]


@pytest.fixture
def cron_conn(pgq_conn: Conn) -> Conn:
    pgq_conn.execute("SET TimeZone = 'UTC'")
    pgq_conn.execute(TRY_NEXT)
    return pgq_conn


compared = {"n": 0}


# No shrinking: a failure names its first wrong case, and shrinking 100-case batches takes minutes.
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          phases=[Phase.explicit, Phase.generate],
          suppress_health_check=[HealthCheck.data_too_large, HealthCheck.too_slow,
                                 HealthCheck.large_base_example,
                                 HealthCheck.function_scoped_fixture])  # fmt: skip
@given(st.lists(CASE, min_size=BATCH, max_size=BATCH))
def test_cron_next_agrees_with_croniter(
    cron_conn: Conn, cases: list[tuple[str, datetime, str]]
) -> None:
    got = cron_next_many(cron_conn, cases)
    for (expr, start, zone), ours in zip(cases, got, strict=True):
        expected = oracle(expr, start, zone)
        assert ours == expected, (expr, start.isoformat(), zone)
        compared["n"] += 1


def test_at_least_20000_comparisons_ran() -> None:
    if compared["n"] == 0:
        pytest.skip("run together with test_cron_next_agrees_with_croniter")
    assert compared["n"] >= 20_000


def nxt(conn: Conn, expr: str, after: str, zone: str = "UTC") -> datetime:
    row = conn.execute("SELECT pgq.cron_next(%s, %s, %s)", (expr, after, zone)).fetchone()
    assert row is not None
    value: datetime = row[0]
    return value


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# --- the departures from croniter, each checked explicitly ----------------------------------


def test_one_value_range_matches_that_value_only(cron_conn: Conn) -> None:
    start = datetime(2030, 1, 1, 0, 0, 30, tzinfo=UTC)
    assert nxt(cron_conn, "5-5 * * * *", start.isoformat()) == utc("2030-01-01T00:05:00")
    assert nxt(cron_conn, "5-5/3 * * * *", "2030-01-01T00:05:00Z") == utc("2030-01-01T01:05:00")
    # croniter 7 reads the same expression as every minute.
    assert croniter("5-5 * * * *", start).get_next(datetime) == utc("2030-01-01T00:01:00")


def test_day_fields_either_when_both_restricted_both_when_one_starts_with_a_star(
    cron_conn: Conn,
) -> None:
    # 2030-01-01 is a Tuesday. Both restricted: the 15th or any Friday, whichever comes first.
    assert nxt(cron_conn, "0 0 15 * fri", "2030-01-01T00:00:00Z") == utc("2030-01-04T00:00:00")
    assert nxt(cron_conn, "0 0 15 * fri", "2030-01-12T00:00:00Z") == utc("2030-01-15T00:00:00")
    # `*` day-of-week: the day-of-month alone; `*` day-of-month: the day-of-week alone.
    assert nxt(cron_conn, "0 0 15 * *", "2030-01-01T00:00:00Z") == utc("2030-01-15T00:00:00")
    assert nxt(cron_conn, "0 0 * * fri", "2030-01-01T00:00:00Z") == utc("2030-01-04T00:00:00")
    # `*/2` day-of-month with Monday to Friday: classic cron ANDs (odd weekdays)...
    assert nxt(cron_conn, "0 0 */2 * 1-5", "2030-01-03T12:00:00Z") == utc("2030-01-07T00:00:00")
    # ...where croniter ORs (the 4th is a Friday, the 5th odd).
    start = datetime(2030, 1, 3, 12, tzinfo=UTC)
    assert croniter("0 0 */2 * 1-5", start).get_next(datetime) == utc("2030-01-04T00:00:00")


def test_a_repeated_local_time_fires_once(cron_conn: Conn) -> None:
    # Europe/Berlin 2030-10-27: 03:00 CEST becomes 02:00 CET; 02:30 happens at 00:30 and 01:30 UTC.
    berlin = "Europe/Berlin"
    assert nxt(cron_conn, "30 2 * * *", "2030-10-26T12:00:00Z", berlin) == utc(
        "2030-10-27T00:30:00"
    )
    assert nxt(cron_conn, "30 2 * * *", "2030-10-27T00:30:00Z", berlin) == utc(
        "2030-10-28T01:30:00"
    )
    # Every minute: nothing fires while the hour repeats; 03:00 CET is next.
    assert nxt(cron_conn, "* * * * *", "2030-10-27T01:10:00Z", berlin) == utc("2030-10-27T02:00:00")
    # croniter fires 02:30 again at its second occurrence.
    it = croniter(
        "30 2 * * *", datetime(2030, 10, 27, 0, 30, tzinfo=UTC).astimezone(ZoneInfo(berlin))
    )
    assert it.get_next(datetime).astimezone(UTC) == utc("2030-10-27T01:30:00")


# --- DST, calendar edges --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "expr", "after", "expected"),
    [
        # Skipped local times fire at the change: 02:30 does not exist on these days.
        ("Europe/Berlin", "30 2 * * *", "2030-03-30T12:00:00Z", "2030-03-31T01:00:00"),
        ("America/New_York", "30 2 * * *", "2030-03-09T12:00:00Z", "2030-03-10T07:00:00"),
        # Lord Howe moves 30 minutes: 02:00-02:29 local are skipped on 2030-10-06.
        ("Australia/Lord_Howe", "15 2 * * *", "2030-10-05T00:00:00Z", "2030-10-05T15:30:00"),
        ("Australia/Lord_Howe", "45 2 * * *", "2030-10-05T00:00:00Z", "2030-10-05T15:45:00"),
        # ...and 01:30-01:59 local happen twice on 2030-04-07: the first one fires.
        ("Australia/Lord_Howe", "45 1 * * *", "2030-04-06T00:00:00Z", "2030-04-06T14:45:00"),
        ("Australia/Lord_Howe", "45 1 * * *", "2030-04-06T14:45:00Z", "2030-04-07T15:15:00"),
        ("America/New_York", "30 1 * * *", "2030-11-03T05:30:00Z", "2030-11-04T06:30:00"),
        # Feb 29, the 31st, and the macros.
        ("UTC", "0 0 29 2 *", "2030-01-01T00:00:00Z", "2032-02-29T00:00:00"),
        ("UTC", "0 0 29 2 *", "2096-03-01T00:00:00Z", "2104-02-29T00:00:00"),
        ("UTC", "0 0 31 * *", "2030-01-31T00:00:00Z", "2030-03-31T00:00:00"),
        ("UTC", "@monthly", "2030-01-31T00:00:00Z", "2030-02-01T00:00:00"),
        ("UTC", "0 0 * * 7", "2030-01-01T00:00:00Z", "2030-01-06T00:00:00"),
        ("UTC", "*/20 * * * * *", "2030-01-01T00:00:59.5Z", "2030-01-01T00:01:00"),
    ],
)
def test_known_ticks(cron_conn: Conn, zone: str, expr: str, after: str, expected: str) -> None:
    assert nxt(cron_conn, expr, after, zone) == utc(expected)


@pytest.mark.parametrize(
    ("expr", "zone", "message"),
    [
        ("0 0 30 2 *", "UTC", 'invalid cron expression "0 0 30 2 *": it never matches'),
        ("0 0 31 4,6,9,11 *", "UTC", "never matches"),
        ("61 * * * *", "UTC", 'minute field "61": 61 is out of range 0-59'),
        ("* 24 * * *", "UTC", 'hour field "24": 24 is out of range 0-23'),
        ("* * 0 * *", "UTC", 'day-of-month field "0": 0 is out of range 1-31'),
        ("* * * 13 *", "UTC", 'month field "13"'),
        ("* * * * 8", "UTC", 'day-of-week field "8": 8 is out of range 0-7'),
        ("*/0 * * * *", "UTC", 'minute field "*/0": step 0'),
        ("1,,2 * * * *", "UTC", 'minute field "1,,2": empty list item'),
        ("* * * * fri-mon", "UTC", "runs backwards"),
        ("* * * foo *", "UTC", 'month field "foo": unknown value "foo"'),
        ("* * * *", "UTC", "expected 5 fields"),
        ("", "UTC", "got 0"),
        ("@reboot", "UTC", "unknown macro"),
        ("L * * * *", "UTC", 'minute field "l"'),
        ("@daily", "Mars/Olympus", 'unknown time zone "Mars/Olympus"'),
    ],
)
def test_bad_expressions_raise_22023_naming_the_field(
    cron_conn: Conn, expr: str, zone: str, message: str
) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=re.escape(message)):
        nxt(cron_conn, expr, "2030-01-01T00:00:00Z", zone)


def test_a_skipped_local_time_fires_at_the_change_also_for_a_30_minute_shift(
    cron_conn: Conn,
) -> None:
    # Lord Howe 2030-10-06: 02:00 (+10:30) becomes 02:30 (+11:00) at 15:30 UTC.
    zone = "Australia/Lord_Howe"
    assert nxt(cron_conn, "@hourly", "2030-10-05T15:29:07Z", zone) == utc("2030-10-05T15:30:00")
    assert nxt(cron_conn, "@hourly", "2030-10-05T15:30:00Z", zone) == utc("2030-10-05T16:00:00")
    # croniter skips it: 03:00 local is its next tick.
    start = datetime(2030, 10, 5, 15, 29, 7, tzinfo=UTC).astimezone(ZoneInfo(zone))
    assert croniter("@hourly", start).get_next(datetime).astimezone(UTC) == utc(
        "2030-10-05T16:00:00"
    )
