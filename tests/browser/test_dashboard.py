"""The dashboard in a real browser, against a real `pgq-thin web` server, database and worker."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from typing import Any

import pytest
from psycopg.types.json import Jsonb

from pgq_thin import schema
from tests.browser.conftest import SCREENSHOTS, Serve
from tests.e2e.harness import Conn, Start, enqueue, wait_for

expect = pytest.importorskip(
    "playwright.sync_api", reason="Playwright for Python is missing: pip install -e '.[test]'"
).expect
Page = Any
HOSTILE_NAME = "<img src=x onerror=alert('entrypoint')>"
HOSTILE_PAYLOAD = {"note": "<script>alert('payload')</script>", "<b>key</b>": 1}
HOSTILE_ERROR = "boom <img src=x onerror=alert('error')><script>alert('error2')</script>"


def dead_letter(
    conn: Conn, entrypoint: str, payload: dict[str, Any], error: str, dedupe_key: str | None = None
) -> int:
    """A job that failed for good: claimed and failed (not retryable) through the pgq API."""
    (job_id,) = conn.execute(
        "SELECT pgq.enqueue(%s, %s, dedupe_key => %s)", (entrypoint, Jsonb(payload), dedupe_key)
    ).fetchone()  # type: ignore[misc]
    row = conn.execute(
        "SELECT id, lease_token FROM pgq.dequeue(ARRAY[%s], 1, 'test-worker')", (entrypoint,)
    ).fetchone()
    assert row is not None and row[0] == job_id
    conn.execute("SELECT pgq.fail(%s, %s, %s, false)", (job_id, row[1], error))
    return job_id


def state(conn: Conn, job_id: int) -> str | None:
    row = conn.execute(
        "SELECT state FROM pgq.jobs WHERE id = %(id)s"
        " UNION ALL SELECT state FROM pgq.job_history WHERE id = %(id)s",
        {"id": job_id},
    ).fetchone()
    return None if row is None else row[0]


def csrf_cookie(page: Page) -> str:
    (token,) = [c["value"] for c in page.context.cookies() if c["name"] == "pgq_csrf"]
    return str(token)


def test_overview_counts_follow_enqueues_without_reload(
    db: Conn, serve: Serve, new_page: Any
) -> None:
    server = serve()
    page = new_page()
    page.goto(server.url + "/")
    expect(page.locator("#total-queued")).to_have_text("0")
    page.evaluate("window.notReloaded = true")
    enqueue(db, "sync_job", [{}, {}, {}])
    expect(page.locator("#total-queued")).to_have_text("3")
    expect(page.locator('tr[data-entrypoint="sync_job"] td.queued')).to_have_text("3")
    assert page.evaluate("window.notReloaded") is True  # swapped in place, not reloaded
    # A worker that died holding a job: the overview says so, and what to do.
    db.execute("SELECT count(*) FROM pgq.dequeue(ARRAY['sync_job'], 1, 'gone', interval '1 ms')")
    expect(page.locator(".warning")).to_contain_text("1 running job(s) hold an expired lease")
    expect(page.locator("#total-running")).to_have_text("1")


def test_schedules_page_once_periodic_jobs_exist(db: Conn, serve: Serve, new_page: Any) -> None:
    server = serve()
    page = new_page()
    page.goto(server.url + "/")
    expect(page.get_by_role("link", name="Schedules")).to_have_count(0)
    assert page.goto(server.url + "/schedules").status == 404
    db.execute(  # stands in for the view that periodic jobs install
        "CREATE VIEW pgq.schedule_stats AS SELECT 'nightly' AS name, '<b>0 3 * * *</b>' AS cron"
    )
    page.goto(server.url + "/")
    page.get_by_role("link", name="Schedules").click()
    expect(page.locator("#schedules td").nth(1)).to_have_text("<b>0 3 * * *</b>")
    expect(page.locator("#schedules th").first).to_have_text("name")


def test_failed_job_page_shows_traceback(
    db: Conn, serve: Serve, new_page: Any, start_worker: Start
) -> None:
    (job_id,) = enqueue(db, "sync_job", [{"fatal": True}])
    start_worker("--mode", "drain").wait()
    assert state(db, job_id) == "failed"
    page = new_page()
    page.goto(f"{serve().url}/jobs/{job_id}")
    expect(page.locator("h1")).to_contain_text("failed")
    trace = page.locator("#error")
    expect(trace).to_contain_text("Traceback (most recent call last)")
    expect(trace).to_contain_text("Fatal: no point retrying")
    expect(page.locator("#explain")).to_contain_text(f"job {job_id}: failed")


def test_retry_from_the_page_then_a_worker_runs_it(
    db: Conn, serve: Serve, new_page: Any, start_worker: Start
) -> None:
    job_id = dead_letter(db, "sync_job", {"value": 7}, "RuntimeError: first try broke")
    page = new_page()
    page.goto(f"{serve().url}/jobs/{job_id}")
    page.get_by_role("button", name="Retry").click()
    expect(page.locator(".flash.ok")).to_have_text(f"job {job_id} queued again")
    expect(page.locator("h1")).to_contain_text("queued")
    assert state(db, job_id) == "queued"
    start_worker("--mode", "drain").wait()
    expect(page.locator("h1")).to_contain_text("succeeded")  # by the live update
    expect(page.locator("#result")).to_contain_text('"value": 7')
    expect(page.get_by_role("button", name="Retry")).to_have_count(0)


def test_an_error_from_sql_is_shown_as_a_message(db: Conn, serve: Serve, new_page: Any) -> None:
    job_id = dead_letter(db, "sync_job", {}, "broke", dedupe_key="order-7")
    db.execute("SELECT pgq.enqueue('sync_job', dedupe_key => 'order-7')")  # a live job holds it
    page = new_page()
    page.goto(f"{serve().url}/jobs/{job_id}")
    page.get_by_role("button", name="Retry").click()
    expect(page.locator(".flash.error")).to_have_text(
        f"job {job_id} cannot be retried: a live job holds its dedupe_key"
    )
    expect(page.locator("h1")).to_contain_text("failed")


def test_pause_and_resume_under_a_base_path(db: Conn, serve: Serve, new_page: Any) -> None:
    enqueue(db, "sync_job", [{}])
    server = serve("--base-path", "/pgq")
    page = new_page()
    page.goto(server.url + "/pgq/")
    assert page.evaluate("getComputedStyle(document.querySelector('header')).display") == "flex"
    page.get_by_role("link", name="Jobs").click()
    expect(page).to_have_url(server.url + "/pgq/jobs")
    page.get_by_role("link", name="Overview").click()
    row = page.locator('tr[data-entrypoint="sync_job"]')
    row.get_by_role("button", name="Pause").click()
    expect(page.locator(".flash.ok")).to_have_text("paused sync_job")
    expect(row.locator(".state")).to_have_text("paused")
    assert db.execute("SELECT paused FROM pgq.entrypoints WHERE name = 'sync_job'").fetchone()
    assert db.execute("SELECT pgq.explain_job(1)").fetchone()[0].endswith("is paused")  # type: ignore[index]
    row.get_by_role("button", name="Resume").click()
    expect(page.locator(".flash.ok")).to_have_text("resumed sync_job")
    expect(row.locator(".state")).to_have_text("active")
    assert db.execute("SELECT paused FROM pgq.entrypoints WHERE name = 'sync_job'").fetchone() == (
        False,
    )


def test_paging_through_10000_jobs(db: Conn, serve: Serve, new_page: Any) -> None:
    db.execute(
        "SELECT pgq.enqueue_many(array_fill('many'::text, ARRAY[10000]),"
        " array_fill('{}'::jsonb, ARRAY[10000]))"
    )
    # Half of them finished, so pages walk both the live table and the history.
    db.execute(
        "SELECT pgq.complete_many(array_agg(id), array_agg(lease_token))"
        " FROM pgq.dequeue(ARRAY['many'], 5000, 'w')"
    )
    page = new_page()
    page.goto(serve().url + "/jobs?limit=500")
    seen: list[int] = []
    for _ in range(25):
        ids = page.locator("table.jobs tbody tr td:first-child").all_inner_texts()
        seen.extend(int(i) for i in ids)
        older = page.locator("#older")
        if older.count() == 0:
            break
        older.click()
        expect(page.locator("#newest")).to_be_visible()
    assert len(seen) == 10_000
    assert seen == sorted(set(seen), reverse=True)  # every job once, newest first
    assert seen[0] == 10_000 and seen[-1] == 1


def test_read_only_hides_and_refuses_actions(db: Conn, serve: Serve, new_page: Any) -> None:
    job_id = dead_letter(db, "sync_job", {}, "broke")
    server = serve("--read-only")
    page = new_page()
    page.goto(f"{server.url}/jobs/{job_id}")
    expect(page.locator(".badge")).to_have_text("read-only")
    expect(page.get_by_role("button", name="Retry")).to_have_count(0)
    page.goto(server.url + "/")
    expect(page.get_by_role("button", name="Pause")).to_have_count(0)
    answer = page.request.post(
        f"{server.url}/jobs/{job_id}/retry", form={"csrf": csrf_cookie(page)}
    )
    assert answer.status == 403
    assert "read-only" in answer.text()
    assert state(db, job_id) == "failed"


def test_a_monitor_role_is_offered_no_action_and_refused(
    db: Conn, pgq_dsn: str, serve: Serve, new_page: Any
) -> None:
    role = f"web_monitor_{os.getpid()}"
    db.execute(f"DROP ROLE IF EXISTS {role}")
    db.execute(f"CREATE ROLE {role} LOGIN IN ROLE pgq_monitor")
    try:
        job_id = dead_letter(db, "sync_job", {}, "broke")
        server = serve(dsn=f"{pgq_dsn} user={role}")
        page = new_page()
        page.goto(f"{server.url}/jobs/{job_id}")
        expect(page.locator("#error")).to_have_text("broke")
        expect(page.get_by_role("button", name="Retry")).to_have_count(0)
        page.goto(server.url + "/")
        expect(page.locator('tr[data-entrypoint="sync_job"]')).to_be_visible()
        expect(page.get_by_role("button", name="Pause")).to_have_count(0)
        answer = page.request.post(
            f"{server.url}/jobs/{job_id}/retry", form={"csrf": csrf_cookie(page)}
        )
        assert answer.status == 403
        assert "may not retry (pgq.retry)" in answer.text() and role in answer.text()
        assert state(db, job_id) == "failed"
    finally:
        db.execute(f"DROP OWNED BY {role}")
        db.execute(f"DROP ROLE {role}")


def test_hostile_text_renders_as_text_and_runs_nothing(
    db: Conn, serve: Serve, new_page: Any
) -> None:
    job_id = dead_letter(db, HOSTILE_NAME, HOSTILE_PAYLOAD, HOSTILE_ERROR)
    server = serve()
    page = new_page()
    for path in ("/", "/jobs", f"/jobs?state=failed&error={HOSTILE_ERROR[:8]}", f"/jobs/{job_id}"):
        page.goto(server.url + path)
        page.wait_for_timeout(300)
    expect(page.locator("#payload")).to_contain_text(HOSTILE_PAYLOAD["note"])
    expect(page.locator("#payload")).to_contain_text("<b>key</b>")
    expect(page.locator("#error")).to_have_text(HOSTILE_ERROR)
    expect(page.locator("dl.facts a").first).to_have_text(HOSTILE_NAME)
    page.goto(server.url + "/")
    expect(page.locator("table.entrypoints td a").first).to_have_text(HOSTILE_NAME)
    page.goto(server.url + "/jobs")
    expect(page.locator("td.error").first).to_contain_text(HOSTILE_ERROR)
    page.wait_for_timeout(2500)  # one live update too
    assert page.locator("main img, main script, main b").count() == 0
    assert page.dialogs == []


def test_a_post_without_the_csrf_token_is_refused(db: Conn, serve: Serve, new_page: Any) -> None:
    job_id = dead_letter(db, "sync_job", {}, "broke")
    server = serve()
    page = new_page()
    policy = page.goto(f"{server.url}/jobs/{job_id}").headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    url = f"{server.url}/jobs/{job_id}/retry"
    for form in ({}, {"csrf": "x" * 43}):
        answer = page.request.post(url, form=form)
        assert answer.status == 403
        assert "CSRF token is missing or wrong" in answer.text()
    assert page.request.get(url).status == 405  # no action by GET
    assert state(db, job_id) == "failed"
    answer = page.request.post(url, form={"csrf": csrf_cookie(page)}, max_redirects=0)
    assert answer.status == 303
    assert state(db, job_id) == "queued"


def test_bulk_retry_asks_first_and_retries_the_filter_only(
    db: Conn, serve: Serve, new_page: Any
) -> None:
    mine = [dead_letter(db, "sync_job", {"n": n}, f"timeout talking to api {n}") for n in range(3)]
    other = dead_letter(db, "sync_job", {}, "disk full")
    page = new_page()
    page.goto(serve().url + "/jobs?state=failed&error=api")
    page.locator("#bulk-retry").click()
    expect(page.locator("#confirm-text")).to_contain_text("Queue 3 failed job(s)")
    assert {state(db, i) for i in mine} == {"failed"}  # nothing happens before confirming
    page.locator("#confirm").click()
    expect(page.locator(".flash.ok")).to_have_text("3 failed job(s) queued again")
    assert {state(db, i) for i in mine} == {"queued"}
    assert state(db, other) == "failed"


def test_bad_input_gets_404_and_400_pages(db: Conn, serve: Serve, new_page: Any) -> None:
    enqueue(db, "sync_job", [{}])
    server = serve()
    page = new_page()
    for path, status, text in [
        ("/jobs/424242", 404, "no job with id 424242"),
        ("/jobs/abc", 404, "Not found"),
        ("/jobs?entrypoint=nope", 404, "no entrypoint named 'nope'"),
        ("/jobs?state=lost", 400, "state: must be one of"),
        ("/jobs?id=12x", 400, "id: '12x' is not a whole number"),
        ("/jobs?before=-3", 400, "before: must be a positive job id"),
        ("/jobs?limit=100000", 400, "limit: must be between 1 and 500"),
    ]:
        answer = page.goto(server.url + path)
        assert answer.status == status, path
        expect(page.locator("main")).to_contain_text(text)
    answer = page.request.post(
        server.url + "/entrypoints/pause",
        form={"csrf": csrf_cookie(page), "entrypoint": "nope"},
    )
    assert answer.status == 404


def test_a_wrong_token_gets_401_on_a_non_local_bind(
    db: Conn, pgq_dsn: str, serve: Serve, browser: Any
) -> None:
    refused = subprocess.run(
        [sys.executable, "-m", "pgq_thin", "web", "--host", "0.0.0.0", "-d", pgq_dsn],
        capture_output=True,
        text=True,
        timeout=30,
        env={k: v for k, v in os.environ.items() if not k.startswith("PGQ_WEB")},
    )
    assert refused.returncode == 1
    assert "give it an auth mode" in refused.stderr
    server = serve("--host", "0.0.0.0", PGQ_WEB_TOKEN="s3cret-token")
    for headers, status in [
        ({}, 401),
        ({"Authorization": "Bearer wrong"}, 401),
        ({"Authorization": "Bearer s3cret-token"}, 200),
    ]:
        context = browser.new_context(extra_http_headers=headers)
        try:
            answer = context.request.get(server.url + "/")
            assert answer.status == status, headers
        finally:
            context.close()
    # A browser logs in with the token as the password of basic auth.
    context = browser.new_context(http_credentials={"username": "me", "password": "s3cret-token"})
    try:
        page = context.new_page()
        assert page.goto(server.url + "/jobs").status == 200
        expect(page.locator("h1")).to_have_text("Jobs")
    finally:
        context.close()


def test_a_database_that_is_down_is_shown_and_recovered_from(
    throwaway_server: Any, serve: Serve, new_page: Any
) -> None:
    throwaway_server.install_schema()
    with throwaway_server.connect() as conn:
        enqueue(conn, "sync_job", [{}, {}])
    server = serve(dsn=throwaway_server.dsn())
    page = new_page()
    page.goto(server.url + "/")
    expect(page.locator("#total-queued")).to_have_text("2")
    throwaway_server.stop()
    expect(page.locator("#status")).to_contain_text("does not answer", timeout=30_000)
    expect(page.locator("#total-queued")).to_have_text("2")  # the last numbers stay
    assert page.request.get(server.url + "/healthz").status == 503
    other = new_page()
    other.goto(server.url + "/")  # opened while the database is down
    expect(other.locator("h1")).to_have_text("Database unavailable")
    throwaway_server.start()
    with throwaway_server.connect() as conn:
        enqueue(conn, "sync_job", [{}])
    expect(page.locator("#status")).to_be_empty(timeout=30_000)
    expect(page.locator("#total-queued")).to_have_text("3")
    expect(other.locator("#total-queued")).to_have_text("3", timeout=30_000)
    wait_for(lambda: page.request.get(server.url + "/healthz").status == 200, "healthz 200")


def test_screenshots(db: Conn, serve: Serve, new_page: Any) -> None:
    """A realistic overview at desktop and phone width, written to build/screenshots/."""
    db.execute("SELECT pgq.set_entrypoint('send_email', concurrency_limit => 20)")
    db.execute("SELECT pgq.set_entrypoint('resize_image', paused => true)")
    for name, n in (("send_email", 1200), ("resize_image", 340), ("sync_crm", 45)):
        enqueue(db, name, [{"n": i} for i in range(n)])
    db.execute(
        "SELECT pgq.register_worker('worker-' || g, ARRAY['send_email', 'sync_crm'], 16,"
        " 'app-' || g, 1000 + g, '0.4.0') FROM generate_series(1, 3) AS g"
    )
    db.execute("SELECT count(*) FROM pgq.dequeue(ARRAY['send_email'], 14, 'worker-1')")
    # An hour of finished jobs (the view reads history by finish time).
    db.execute(
        """
        INSERT INTO pgq.job_history (id, entrypoint, state, priority, attempt, enqueued_at,
                                     started_at, finished_at, error, payload, headers)
        SELECT 1000000 + g, (ARRAY['send_email', 'sync_crm', 'resize_image'])[1 + g %% 3],
               CASE WHEN g %% 23 = 0 THEN 'failed' ELSE 'succeeded' END, 0, 1,
               t - (0.2 + (g %% 17) / 4.0) * interval '1 second' - (g %% 7) * interval '1 second',
               t - (g %% 7) * interval '1 second' * 0.1, t,
               CASE WHEN g %% 23 = 0 THEN %s END,
               '{}', '{}'
        FROM generate_series(1, 6000) AS g,
             LATERAL (SELECT now() - (g / 100.0 + sin(g / 900.0) ^ 2 / 1.2) * interval '1 minute'
                             AS t) AS x
        WHERE t > now() - interval '59 minutes'
        """,
        ("smtplib.SMTPServerDisconnected: Connection unexpectedly closed",),
    )
    server = serve()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for width, height in ((1280, 800), (390, 844)):
        page = new_page(width, height)
        page.goto(server.url + "/")
        expect(page.locator("svg.chart")).to_have_count(2)
        page.screenshot(path=str(SCREENSHOTS / f"overview-{width}x{height}.png"))
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        failed = page.locator("a.bad").first
        failed.click()
        expect(page.locator("h1")).to_have_text("Jobs")
        page.locator("table.jobs tbody a").first.click()
        expect(page.locator("#error")).to_contain_text("SMTPServerDisconnected")
        page.screenshot(path=str(SCREENSHOTS / f"job-{width}x{height}.png"))
        # Nothing is wider than the viewport (tables scroll inside their own box).
        assert page.evaluate("document.documentElement.scrollWidth") <= width
    assert re.search(r"Uvicorn running", server.log())


def test_a_database_without_the_schema_says_what_to_run(
    db: Conn, serve: Serve, new_page: Any
) -> None:
    db.execute("DROP SCHEMA pgq CASCADE")
    server = serve()
    page = new_page()
    assert page.goto(server.url + "/").status == 503
    expect(page.locator("h1")).to_have_text("Schema not ready")
    expect(page.locator(".message")).to_contain_text("run `pgq-thin install`")
    schema.install(db)
    enqueue(db, "sync_job", [{}])
    expect(page.locator("#total-queued")).to_have_text("1")  # reloaded on its own
