"""A worker killed with SIGKILL at random moments during a burst: nothing is published
twice and nothing is lost, by the sandbox's own count."""

from __future__ import annotations

import random
import secrets
import signal
import subprocess
import sys
import time
from collections import Counter

import psycopg

from tests.appserver import ROOT
from tests.browser import Browser

BURST = 500
KILLS = 10


def start_worker(app, log_path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "src", "worker"],
        cwd=ROOT,
        env=app.env,
        stdout=log_path.open("ab"),
        stderr=subprocess.STDOUT,
    )


def burst(dsn: str, email: str, tag: str) -> None:
    """500 posts due now on one X account (test setup straight in SQL, for speed)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        user_id = conn.execute("SELECT id FROM users WHERE email = %s", (email,)).fetchone()[0]
        account = conn.execute(
            "SELECT id FROM accounts WHERE \"user\" = %s AND platform = 'x'", (user_id,)
        ).fetchone()[0]
        conn.execute(
            """
            WITH p AS (
              INSERT INTO posts ("user", text, publish_at, timezone, status)
              SELECT %s, 'Crash ' || %s || ' #' || g, now(), 'UTC', 'scheduled'
              FROM generate_series(1, %s) AS g RETURNING id
            )
            INSERT INTO post_targets (post, account, status, due_at)
            SELECT id, %s, 'scheduled', now() FROM p
            """,
            (user_id, tag, BURST, account),
        )


def statuses(dsn: str) -> Counter:
    with psycopg.connect(dsn) as conn:
        return Counter(r[0] for r in conn.execute("SELECT status FROM post_targets"))


def wait_until(condition, log, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.05)


def slow_unlimited_x(admin, latency_ms: int) -> None:
    """No X rate limit in the way, and each post a little slow, so a burst outlives the
    kills."""
    admin.patch(
        "/config",
        json={
            "x_tweets_per_15min": 100_000,
            "x_tweets_per_day_user": 100_000,
            "x_tweets_per_day_app": 1_000_000,
        },
    ).raise_for_status()
    admin.post(
        "/faults",
        json={
            "platform": "x",
            "path": "/api/2/tweets",
            "method": "POST",
            "kind": "latency",
            "latency_ms": latency_ms,
        },
    ).raise_for_status()


def wait_all_final(dsn: str, log, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        counts = statuses(dsn)
        if counts["published"] + counts["unconfirmed"] + counts["failed"] == BURST:
            return
        assert time.monotonic() < deadline, (counts, log.read_text()[-3000:])
        time.sleep(0.3)


def assert_each_published_once(admin, dsn: str, tag: str, progress_at_kills: list[int]):
    published = [
        p["text"]
        for p in admin.get("/published", params={"platform": "x"}).json()
        if tag in (p.get("text") or "")
    ]
    # The kills really landed mid-burst, not before or after the work.
    assert sum(1 for n in progress_at_kills if 0 < n < BURST) >= 3, progress_at_kills
    copies = Counter(published)
    assert [text for text, n in copies.items() if n > 1] == []  # zero duplicates
    assert len(copies) == BURST  # zero lost
    assert statuses(dsn)["published"] == BURST


def test_sigkill_during_a_burst_ten_times_publishes_each_target_exactly_once(
    fresh_server, tmp_path
):
    app = fresh_server(
        worker=False,
        OKK_CLAIM_LEASE_S="3",
        OKK_PUBLISH_BATCH="20",
        OKK_WORKER_SHUTDOWN_GRACE_S="0",
    )
    dsn = app.env["OKK_DATABASE_URL"]
    browser = Browser(app.url)
    email = browser.signed_in_user()
    browser.connect("x")
    with app.sandbox_admin() as admin:
        tag = secrets.token_hex(3)
        burst(dsn, email, tag)
        log = tmp_path / "worker.log"
        slow_unlimited_x(admin, latency_ms=40)
        rng = random.Random(7)
        progress_at_kills = []
        for _ in range(KILLS):
            before = statuses(dsn)["published"]
            worker = start_worker(app, log)
            wait_until(lambda n=before: statuses(dsn)["published"] > n, log)  # it is working
            time.sleep(rng.uniform(0, 0.5))  # then a random moment to kill it
            worker.send_signal(signal.SIGKILL)
            worker.wait()
            progress_at_kills.append(statuses(dsn)["published"])
        admin.delete("/faults")
        worker = start_worker(app, log)
        try:
            wait_all_final(dsn, log, timeout=180)
        finally:
            worker.terminate()
            worker.wait(20)
        assert_each_published_once(admin, dsn, tag, progress_at_kills)
