"""A hypothesis state machine over the job lifecycle, against a real database.

Random sequences of enqueue (plain, deduped, batched), dequeue, complete and fail (with the
current, a stale or a made-up lease token), heartbeat, release, reap, cancel, retry, pause and
moving the clock (``SET pgq.now``) run on one autocommit connection. Each rule checks the answer
of the call it makes against what the rows said just before; after every step the invariants
check the whole queue:

- no job is lost: every id ever enqueued is in exactly one of pgq.jobs / pgq.job_history;
- a live job's columns agree with its state (a lease exactly when running, ...);
- attempts never exceed the job's effective max_attempts;
- a finished job never changes or reappears unless pgq.retry brought it back;
- a call with a token that does not hold the lease changes nothing;
- running jobs per limited entrypoint never exceed the limit;
- at most one live job per dedupe key.

The test database comes from the ``pgq_dsn`` fixture; each example starts by emptying it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from psycopg.rows import dict_row

START = datetime(2030, 1, 1, tzinfo=UTC)
LEASE = 30  # seconds, pgq.heartbeat's default

# The policies the machine runs with (fixed: only `paused` changes during a run).
POLICIES: dict[str, dict[str, Any]] = {
    # unlimited, immediate retry, 60 s timeout
    "a": {"limit": None, "max_attempts": 3, "base": 0, "factor": 1, "max": 60, "timeout": 60},
    # at most 2 running, retry after 5 s, 10 s, ... (cap 15 s), no timeout
    "b": {"limit": 2, "max_attempts": 3, "base": 5, "factor": 2, "max": 15, "timeout": None},
    # at most 1 running, retry after 10 s, 20 s timeout
    "c": {"limit": 1, "max_attempts": 2, "base": 10, "factor": 1, "max": 60, "timeout": 20},
}
ENTRYPOINTS = sorted(POLICIES)
UNKNOWN_ID = 10**9

DIGEST_SQL = """
SELECT md5(concat_ws('#',
    (SELECT string_agg(j::text, '|' ORDER BY j.id) FROM pgq.jobs AS j),
    (SELECT string_agg(h::text, '|' ORDER BY h.id) FROM pgq.job_history AS h),
    (SELECT string_agg(e::text, '|' ORDER BY e.name) FROM pgq.entrypoints AS e))) AS digest
"""

entrypoint_st = st.sampled_from(ENTRYPOINTS)
token_kind_st = st.sampled_from(["current", "current", "stale", "random"])
WORK_ACTIONS = ["complete", "fail", "fail", "fail_fatal", "heartbeat", "release", "keep"]


def backoff(entrypoint: str, attempt: int) -> timedelta:
    p = POLICIES[entrypoint]
    seconds = min(p["base"] * p["factor"] ** max(attempt - 1, 0), p["max"])
    return timedelta(seconds=seconds)


def lease_for(entrypoint: str, lease: int) -> timedelta:
    timeout = POLICIES[entrypoint]["timeout"]
    return timedelta(seconds=lease if timeout is None else min(lease, timeout))


class Lifecycle(RuleBasedStateMachine):
    conn: psycopg.Connection[dict[str, Any]]  # set by the factory in the test below

    def __init__(self) -> None:
        super().__init__()
        self.now = START
        self.ids: set[int] = set()  # every id ever enqueued
        self.tokens: dict[int, list[uuid.UUID]] = {}  # leases handed out, per job, in order
        self.finished: dict[int, dict[str, Any]] = {}  # history rows as first seen
        self.paused = dict.fromkeys(ENTRYPOINTS, False)

    # -- helpers --------------------------------------------------------------------------

    def q(self, sql: str, params: Any = None) -> list[dict[str, Any]]:
        return self.conn.execute(sql, params).fetchall()

    def one(self, sql: str, params: Any = None) -> Any:
        rows = self.q(sql, params)
        assert len(rows) == 1, rows
        return next(iter(rows[0].values()))

    def digest(self) -> str:
        return str(self.one(DIGEST_SQL))

    def live(self, job_id: int) -> dict[str, Any] | None:
        rows = self.q("SELECT * FROM pgq.jobs WHERE id = %s", (job_id,))
        return rows[0] if rows else None

    def hist(self, job_id: int) -> dict[str, Any] | None:
        rows = self.q("SELECT * FROM pgq.job_history WHERE id = %s", (job_id,))
        return rows[0] if rows else None

    def set_clock(self) -> None:
        self.q("SELECT set_config('pgq.now', %s, false)", (self.now.isoformat(),))

    def pick_token(self, job_id: int, kind: str) -> uuid.UUID:
        handed = self.tokens.get(job_id, [])
        if kind == "current" and handed:
            return handed[-1]
        if kind == "stale" and len(handed) > 1:
            return handed[0]
        return uuid.uuid4()

    def holds(self, row: dict[str, Any] | None, token: uuid.UUID) -> bool:
        """The token holds a live lease: the call acts on the job."""
        return self.claimed(row, token) and row is not None and row["lease_expires_at"] > self.now

    def claimed(self, row: dict[str, Any] | None, token: uuid.UUID) -> bool:
        """The token is the job's current lease, live or lapsed (then the call ends it)."""
        return row is not None and row["state"] == "running" and row["lease_token"] == token

    def check_expired(self, row: dict[str, Any]) -> None:
        """The job of `row` (a lapsed claim) was recorded as pgq.reap records it."""
        job_id = row["id"]
        after = self.live(job_id)
        timed_out = row["timeout_at"] is not None and row["lease_expires_at"] >= row["timeout_at"]
        error = "timeout" if timed_out else "worker lost: w (lease not renewed)"
        if row["cancel_requested"]:
            expected = "cancelled"
        elif row["attempt"] < self.effective_max(row):
            expected = "retry"
        else:
            expected = "failed"
        if expected == "retry":
            assert after is not None, (row, self.hist(job_id))
            delay = backoff(row["entrypoint"], row["attempt"])
            assert after["state"] == ("scheduled" if delay else "queued")
            if timed_out:
                assert after["run_at"] == self.now + delay
            else:  # a lost worker's jobs retry spread over 0.5 to 1.5 times their backoff
                cap = timedelta(seconds=POLICIES[row["entrypoint"]]["max"])
                assert self.now + delay / 2 <= after["run_at"] <= self.now + min(delay * 1.5, cap)
            assert after["last_error"] == error and after["attempt"] == row["attempt"]
        else:
            h = self.hist(job_id)
            assert after is None and h is not None, (row, after)
            assert (h["state"], h["error"], h["attempt"]) == (expected, error, row["attempt"])

    def effective_max(self, row: dict[str, Any]) -> int:
        return int(row["max_attempts"] or POLICIES[row["entrypoint"]]["max_attempts"])

    def pick_job(self, data: st.DataObject) -> int:
        """A job we were handed a lease for; mostly one still running, so calls often hold it."""
        running = [
            r["id"] for r in self.q("SELECT id FROM pgq.jobs WHERE state = 'running' ORDER BY id")
        ]
        running = [i for i in running if i in self.tokens]
        prefer_running = data.draw(st.integers(0, 3), label="prefer_running") > 0
        choices = running if running and prefer_running else sorted(self.tokens)
        return int(data.draw(st.sampled_from(choices), label="job"))

    def new_id(self, job_id: int) -> None:
        assert job_id not in self.ids, f"id {job_id} handed out twice"
        self.ids.add(job_id)

    # -- setup ----------------------------------------------------------------------------

    @initialize(
        jobs=st.lists(
            st.tuples(entrypoint_st, st.integers(-2, 2), st.sampled_from([None, None, 1, 2])),
            min_size=1,
            max_size=8,
        )
    )
    def empty_queue(self, jobs: list[tuple[str, int, int | None]]) -> None:
        """Empties the queue, sets the policies, enqueues a few jobs."""
        self.conn.execute("TRUNCATE pgq.jobs, pgq.job_history, pgq.entrypoints RESTART IDENTITY")
        self.set_clock()
        for name, p in POLICIES.items():
            self.q(
                "SELECT pgq.set_entrypoint(%s, concurrency_limit => %s, max_attempts => %s,"
                " timeout => %s, backoff_base => %s, backoff_factor => %s, backoff_max => %s,"
                " jitter => 0, paused => false)",
                (
                    name,
                    p["limit"] or 0,
                    p["max_attempts"],
                    timedelta(seconds=p["timeout"] or 0),
                    timedelta(seconds=p["base"]),
                    p["factor"],
                    timedelta(seconds=p["max"]),
                ),
            )
        for job_id in self.q(
            "SELECT * FROM pgq.enqueue_many(%s, NULL, %s, max_attempts => %s) AS e(id)",
            ([e for e, _, _ in jobs], [p for _, p, _ in jobs], [m for _, _, m in jobs]),
        ):
            self.new_id(job_id["id"])

    # -- producers ------------------------------------------------------------------------

    @rule(
        entrypoint=entrypoint_st,
        priority=st.integers(-2, 2),
        delay=st.sampled_from([None, 0, 5, 30]),
        max_attempts=st.sampled_from([None, 1, 2, 3]),
    )
    def enqueue(
        self, entrypoint: str, priority: int, delay: int | None, max_attempts: int | None
    ) -> None:
        run_at = None if delay is None else self.now + timedelta(seconds=delay)
        job_id = self.one(
            "SELECT pgq.enqueue(%s, '{}', %s, %s, NULL, '{}', %s)",
            (entrypoint, priority, run_at, max_attempts),
        )
        self.new_id(job_id)
        row = self.live(job_id)
        assert row is not None
        assert row["state"] == ("scheduled" if delay else "queued")
        assert (row["priority"], row["attempt"], row["max_attempts"]) == (priority, 0, max_attempts)

    @rule(entrypoint=entrypoint_st, key=st.sampled_from(["k1", "k2", "k3"]))
    def enqueue_deduped(self, entrypoint: str, key: str) -> None:
        holder = self.q("SELECT id FROM pgq.jobs WHERE dedupe_key = %s", (key,))
        before = self.digest()
        job_id = self.one("SELECT pgq.enqueue(%s, dedupe_key => %s)", (entrypoint, key))
        if holder:
            assert job_id == holder[0]["id"]
            assert self.digest() == before
        else:
            self.new_id(job_id)

    @rule(
        batch=st.lists(
            st.tuples(entrypoint_st, st.sampled_from([None, "k1", "k2", "k4"])),
            min_size=1,
            max_size=4,
        )
    )
    def enqueue_batch(self, batch: list[tuple[str, str | None]]) -> None:
        holders = {
            r["dedupe_key"]: r["id"]
            for r in self.q("SELECT id, dedupe_key FROM pgq.jobs WHERE dedupe_key IS NOT NULL")
        }
        ids = [
            r["id"]
            for r in self.q(
                "SELECT * FROM pgq.enqueue_many(%s, NULL, dedupe_keys => %s)"
                " WITH ORDINALITY AS e(id, ord) ORDER BY ord",
                ([e for e, _ in batch], [k for _, k in batch]),
            )
        ]
        assert len(ids) == len(batch)
        first_of_key: dict[str, int] = {}
        for job_id, (_, key) in zip(ids, batch, strict=True):
            if key is not None and key in holders:
                assert job_id == holders[key]
            elif key is not None and key in first_of_key:
                assert job_id == first_of_key[key]
            else:
                self.new_id(job_id)
                if key is not None:
                    first_of_key[key] = job_id

    # -- workers --------------------------------------------------------------------------

    @rule(
        entrypoints=st.lists(entrypoint_st, min_size=1, max_size=3, unique=True),
        batch=st.integers(1, 4),
        lease=st.sampled_from([5, 10, 30, 60]),
    )
    def dequeue(self, entrypoints: list[str], batch: int, lease: int) -> None:
        self.claim(entrypoints, batch, lease)

    @rule(entrypoint=entrypoint_st, batch=st.integers(1, 4))
    def dequeue_one_entrypoint(self, entrypoint: str, batch: int) -> None:
        """The same rule again, so that claims are frequent (the other rules need them)."""
        self.claim([entrypoint], batch, LEASE)

    def claim(self, entrypoints: list[str], batch: int, lease: int) -> list[dict[str, Any]]:
        before = {r["id"]: r for r in self.q("SELECT * FROM pgq.jobs")}
        rows = self.q(
            "SELECT * FROM pgq.dequeue(%s, %s, 'w', %s)",
            (entrypoints, batch, timedelta(seconds=lease)),
        )
        assert len(rows) <= batch
        assert len({r["id"] for r in rows}) == len(rows)
        for r in rows:
            b = before[r["id"]]
            assert r["entrypoint"] in entrypoints and not self.paused[r["entrypoint"]]
            due = b["state"] in ("queued", "scheduled") and b["run_at"] <= self.now
            reaped = b["state"] == "running" and b["lease_expires_at"] <= self.now
            assert due or reaped, (r, b)
            assert r["attempt"] == b["attempt"] + 1
            assert r["max_attempts"] == self.effective_max(b)
            assert r["lease_expires_at"] == self.now + lease_for(r["entrypoint"], lease)
            self.tokens.setdefault(r["id"], []).append(r["lease_token"])
        # Due scheduled jobs were promoted; what is left queued ranks after what was claimed.
        assert not self.q(
            "SELECT id FROM pgq.jobs WHERE state = 'scheduled' AND run_at <= %s", (self.now,)
        )
        for e in entrypoints:
            if self.paused[e]:
                continue
            claimed = [(-r["priority"], r["id"]) for r in rows if r["entrypoint"] == e]
            left = self.q(
                "SELECT id, priority FROM pgq.jobs WHERE entrypoint = %s AND state = 'queued'",
                (e,),
            )
            assert all(c < (-x["priority"], x["id"]) for c in claimed for x in left), (e, rows)
            running = self.one(
                "SELECT count(*) FROM pgq.jobs WHERE entrypoint = %s AND state = 'running'", (e,)
            )
            limit = POLICIES[e]["limit"]
            if len(rows) < batch and (limit is None or running < limit):
                assert not left, f"{e}: jobs left queued although the batch was not full"
        return rows

    @rule(
        entrypoints=st.lists(entrypoint_st, min_size=1, max_size=3, unique=True),
        batch=st.integers(1, 4),
        data=st.data(),
    )
    def work(self, entrypoints: list[str], batch: int, data: st.DataObject) -> None:
        """A worker's round: claim a batch, then finish, fail, renew or keep each job."""
        for r in self.claim(entrypoints, batch, LEASE):
            action = data.draw(st.sampled_from(WORK_ACTIONS), label="action")
            token = r["lease_token"]
            if action == "complete":
                self.check_complete(r["id"], token)
            elif action in ("fail", "fail_fatal"):
                self.check_fail(r["id"], token, action == "fail")
            elif action == "heartbeat":
                self.check_heartbeat([r["id"]], [token])
            elif action == "release":
                self.check_release(r["id"], token)

    @precondition(lambda self: bool(self.tokens))
    @rule(data=st.data(), kind=token_kind_st)
    def complete(self, data: st.DataObject, kind: str) -> None:
        job_id = self.pick_job(data)
        self.check_complete(job_id, self.pick_token(job_id, kind))

    def check_complete(self, job_id: int, token: uuid.UUID) -> None:
        row = self.live(job_id)
        before = self.digest()
        done = self.one("SELECT pgq.complete(%s, %s, '{\"ok\": 1}')", (job_id, token))
        if not self.holds(row, token):
            assert done is False
            if self.claimed(row, token):
                assert row is not None
                self.check_expired(row)
            else:
                assert self.digest() == before, "complete with a stale token changed something"
            return
        assert row is not None
        assert done is (not row["cancel_requested"])
        h = self.hist(job_id)
        assert h is not None and self.live(job_id) is None
        assert h["state"] == ("cancelled" if row["cancel_requested"] else "succeeded")
        assert h["attempt"] == row["attempt"]

    @precondition(lambda self: bool(self.tokens))
    @rule(data=st.data(), kind=token_kind_st, retryable=st.booleans())
    def fail(self, data: st.DataObject, kind: str, retryable: bool) -> None:
        job_id = self.pick_job(data)
        self.check_fail(job_id, self.pick_token(job_id, kind), retryable)

    def check_fail(self, job_id: int, token: uuid.UUID, retryable: bool) -> None:
        row = self.live(job_id)
        before = self.digest()
        outcome = self.one("SELECT pgq.fail(%s, %s, 'boom', %s)", (job_id, token, retryable))
        if not self.holds(row, token):
            assert outcome == "stale"
            if self.claimed(row, token):
                assert row is not None
                self.check_expired(row)
            else:
                assert self.digest() == before, "fail with a stale token changed something"
            return
        assert row is not None
        if row["cancel_requested"]:
            expected = "cancelled"
        elif retryable and row["attempt"] < self.effective_max(row):
            expected = "queued"
        else:
            expected = "failed"
        assert outcome == expected
        if expected == "queued":
            after = self.live(job_id)
            assert after is not None
            delay = backoff(row["entrypoint"], row["attempt"])
            assert after["state"] == ("scheduled" if delay else "queued")
            assert after["run_at"] == self.now + delay
            assert after["attempt"] == row["attempt"] and after["lease_token"] is None
            assert after["last_error"] == "boom"
        else:
            h = self.hist(job_id)
            assert h is not None and h["state"] == expected and h["error"] == "boom"

    @precondition(lambda self: bool(self.tokens))
    @rule(data=st.data())
    def heartbeat(self, data: st.DataObject) -> None:
        size = data.draw(st.integers(1, 3), label="size")
        ids = [self.pick_job(data) for _ in range(size)]
        tokens = [self.pick_token(i, data.draw(token_kind_st, label="kind")) for i in ids]
        self.check_heartbeat(ids, tokens)

    def check_heartbeat(self, ids: list[int], tokens: list[uuid.UUID]) -> None:
        held = set()
        extended: dict[int, datetime] = {}
        lapsed: dict[int, dict[str, Any]] = {}
        for job_id, token in zip(ids, tokens, strict=True):
            row = self.live(job_id)
            if self.claimed(row, token) and not self.holds(row, token):
                assert row is not None
                lapsed[job_id] = row
            if self.holds(row, token) and row is not None and not row["cancel_requested"]:
                end = self.now + timedelta(seconds=LEASE)
                if row["timeout_at"] is not None:
                    end = min(end, row["timeout_at"])
                extended[job_id] = end
                if end > self.now:
                    held.add(job_id)
        before = self.digest()
        rows = self.q("SELECT * FROM pgq.heartbeat(%s, %s) AS h(id)", (ids, tokens))
        returned = [r["id"] for r in rows]
        assert len(returned) == len(set(returned))
        assert set(returned) == set(ids) - held
        for job_id, end in extended.items():  # never past the job's timeout
            row = self.live(job_id)
            assert row is not None and row["lease_expires_at"] == end
        for row in lapsed.values():
            self.check_expired(row)
        if not extended and not lapsed:
            assert self.digest() == before, "heartbeat with stale tokens changed something"

    @precondition(lambda self: bool(self.tokens))
    @rule(data=st.data(), kind=token_kind_st)
    def release(self, data: st.DataObject, kind: str) -> None:
        job_id = self.pick_job(data)
        self.check_release(job_id, self.pick_token(job_id, kind))

    def check_release(self, job_id: int, token: uuid.UUID) -> None:
        row = self.live(job_id)
        before = self.digest()
        released = self.one("SELECT pgq.release(%s, %s)", ([job_id], [token]))
        if not self.holds(row, token):
            assert released == 0
            if self.claimed(row, token):
                assert row is not None
                self.check_expired(row)
            else:
                assert self.digest() == before, "release with a stale token changed something"
            return
        assert row is not None
        if row["cancel_requested"]:
            assert released == 0
            h = self.hist(job_id)
            assert h is not None and h["state"] == "cancelled"
        else:
            assert released == 1
            after = self.live(job_id)
            assert after is not None
            assert (after["state"], after["attempt"], after["lease_token"]) == (
                "queued",
                row["attempt"] - 1,
                None,
            )

    @rule()
    def reap(self) -> None:
        expired = {
            r["id"]: r
            for r in self.q(
                "SELECT * FROM pgq.jobs WHERE state = 'running' AND lease_expires_at <= %s",
                (self.now,),
            )
        }
        assert self.one("SELECT pgq.reap()") == len(expired)
        for row in expired.values():
            self.check_expired(row)

    # -- operators ------------------------------------------------------------------------

    def some_job(self, data: st.DataObject) -> int:
        """Any job (half of the time a running one, if any), or an unknown id."""
        running = [r["id"] for r in self.q("SELECT id FROM pgq.jobs WHERE state = 'running'")]
        if running and data.draw(st.booleans(), label="running_job"):
            choices = sorted(running)
        else:
            choices = [*sorted(self.ids), UNKNOWN_ID]
        return int(data.draw(st.sampled_from(choices), label="job"))

    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        job_id = self.some_job(data)
        row = self.live(job_id)
        before = self.digest()
        cancelled = self.one("SELECT pgq.cancel(%s)", (job_id,))
        if row is None:
            assert cancelled is False
            assert self.digest() == before
        elif row["state"] == "running":
            assert cancelled is True
            after = self.live(job_id)
            assert after is not None and after["cancel_requested"]
            assert after["lease_token"] == row["lease_token"]
        else:
            assert cancelled is True
            h = self.hist(job_id)
            assert h is not None and h["state"] == "cancelled" and self.live(job_id) is None

    @rule(data=st.data())
    def retry(self, data: st.DataObject) -> None:
        job_id = self.some_job(data)
        h = self.hist(job_id)
        live = self.live(job_id)
        key_held = bool(
            h
            and h["dedupe_key"]
            and self.q("SELECT 1 FROM pgq.jobs WHERE dedupe_key = %s", (h["dedupe_key"],))
        )
        if h is None:
            expected_error = "55000" if live else "P0002"
        elif h["state"] == "succeeded":
            expected_error = "55000"
        elif key_held:
            expected_error = "23505"
        else:
            expected_error = None
        before = self.digest()
        try:
            result = self.one("SELECT pgq.retry(%s)", (job_id,))
        except psycopg.Error as exc:
            assert exc.sqlstate == expected_error, exc
            assert self.digest() == before
            return
        assert expected_error is None, f"retry({job_id}) should have raised {expected_error}"
        assert result == job_id
        after = self.live(job_id)
        assert after is not None and self.hist(job_id) is None
        assert (after["state"], after["attempt"], after["run_at"]) == ("queued", 0, self.now)
        del self.finished[job_id]

    @rule(entrypoint=entrypoint_st, paused=st.booleans())
    def pause(self, entrypoint: str, paused: bool) -> None:
        self.q("SELECT pgq.set_entrypoint(%s, paused => %s)", (entrypoint, paused))
        self.paused[entrypoint] = paused

    @rule(seconds=st.sampled_from([1, 5, 15, 31, 61]), then_reap=st.booleans())
    def advance_clock(self, seconds: int, then_reap: bool) -> None:
        self.now += timedelta(seconds=seconds)
        self.set_clock()
        if then_reap:
            self.reap()

    # -- invariants -----------------------------------------------------------------------

    @invariant()
    def whole_queue_is_consistent(self) -> None:
        live = {r["id"]: r for r in self.q("SELECT * FROM pgq.jobs")}
        hist = {r["id"]: r for r in self.q("SELECT * FROM pgq.job_history")}
        # Every job in exactly one place (and so in one state); none lost, none invented.
        assert not live.keys() & hist.keys(), "a job is both live and finished"
        assert live.keys() | hist.keys() == self.ids, "a job was lost or invented"
        keys = [r["dedupe_key"] for r in live.values() if r["dedupe_key"] is not None]
        assert len(keys) == len(set(keys)), "two live jobs share a dedupe key"
        running: dict[str, int] = dict.fromkeys(ENTRYPOINTS, 0)
        for r in live.values():
            if r["state"] == "running":
                running[r["entrypoint"]] += 1
                assert r["lease_token"] is not None and r["lease_expires_at"] is not None
                assert r["attempt"] >= 1 and r["worker_id"] == "w"
            else:
                assert r["lease_token"] is None and r["lease_expires_at"] is None
                assert not r["cancel_requested"] and r["worker_id"] is None
            assert r["attempt"] <= self.effective_max(r), r
        for e, n in running.items():
            limit = POLICIES[e]["limit"]
            assert limit is None or n <= limit, f"{n} running on {e}, limit {limit}"
        for job_id, r in hist.items():
            assert r["attempt"] <= self.effective_max(r), r
            # A finished job stays exactly as it finished, unless retried (see retry()).
            first = self.finished.setdefault(job_id, r)
            assert r == first, f"finished job {job_id} changed"
        for job_id in self.finished:
            assert job_id in hist, f"finished job {job_id} came back without a retry"


@pytest.mark.filterwarnings("ignore::hypothesis.errors.NonInteractiveExampleWarning")
def test_job_lifecycle_state_machine(pgq_dsn: str) -> None:
    with psycopg.connect(pgq_dsn, autocommit=True, row_factory=dict_row) as conn:
        conn.execute("SET timezone = 'UTC'")

        def factory() -> Lifecycle:
            machine = Lifecycle()
            machine.conn = conn
            return machine

        make: Callable[[], Lifecycle] = factory
        run_state_machine_as_test(
            make,
            settings=settings(
                max_examples=50,
                stateful_step_count=30,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )
