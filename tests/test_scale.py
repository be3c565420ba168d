"""Scaling out: SAQ's Redis queue (jobs, cron once per tick however many workers), two web
processes behind one public URL with a browser alternating between them, and the burst
with four workers killed at random, on the PostgreSQL queue and on Redis."""

from __future__ import annotations

import asyncio
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
import redis
from saq import Queue

from tests.appserver import AppServer
from tests.browser import Browser
from tests.media_samples import jpeg_bytes
from tests.servers import free_port
from tests.test_crash import (
    assert_each_published_once,
    burst,
    slow_unlimited_x,
    start_worker,
    statuses,
    wait_all_final,
    wait_until,
)

WORKERS = 4
CLAIM = "okk-test:claimed"


# -- Redis: the machine's service, else one of our own, else a clear failure ----------------
def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture(scope="module")
def redis_port(tmp_path_factory):
    if _answers(6379):
        yield 6379
        return
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail(
            "Redis is required for tests/test_scale.py: no Redis answers on 127.0.0.1:6379 "
            "and no redis-server is on PATH (`make test` installs Debian's redis-server)."
        )
    port = free_port()
    log = (tmp_path_factory.mktemp("redis") / "redis.log").open("wb")
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 20
    while not _answers(port):
        assert process.poll() is None and time.monotonic() < deadline, "redis-server did not start"
        time.sleep(0.05)
    yield port
    process.terminate()
    process.wait(10)
    log.close()


@pytest.fixture
def redis_url(redis_port):
    """A Redis database of this test's own (claimed with a marker key), flushed afterwards."""
    token = secrets.token_hex(8)
    for db in range(1, 16):
        client = redis.Redis(host="127.0.0.1", port=redis_port, db=db)
        if client.set(CLAIM, token, nx=True, ex=900):
            break
        client.close()
    else:
        pytest.fail("no free Redis database (1-15) for this test run")
    try:
        yield f"redis://127.0.0.1:{redis_port}/{db}"
    finally:
        if client.get(CLAIM) == token.encode():
            client.flushdb()
        client.close()


async def _apply(url: str, function: str, **kwargs):
    queue = Queue.from_url(url, name="okktopus")
    await queue.connect()
    try:
        return await queue.apply(function, timeout=30, **kwargs)
    finally:
        await queue.disconnect()


def _stop(workers: list[subprocess.Popen]) -> None:
    for worker in workers:
        if worker.poll() is None:
            worker.terminate()
    for worker in workers:
        try:
            worker.wait(20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


# -- 1. the Redis queue ---------------------------------------------------------------------
def test_redis_queue_runs_jobs_and_each_cron_tick_once_across_three_workers(
    fresh_server, redis_url, tmp_path
):
    counter = tmp_path / "ticks.txt"
    counter.touch()
    app = fresh_server(worker=False, OKK_QUEUE_URL=redis_url, OKK_TEST_CRON_COUNTER=str(counter))
    log = tmp_path / "workers.log"
    workers = [start_worker(app, log) for _ in range(3)]
    try:
        # retries: SAQ's Redis sweep can abort a job caught between its move to the active
        # list and its status update (tobymao/saq#124, #277), most often while workers start.
        result = asyncio.run(_apply(redis_url, "ping", value="over redis", retries=3))
        assert result == "over redis"
        deadline = time.monotonic() + 30
        while len(counter.read_text().splitlines()) < 6:  # ~6 one-second ticks
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        time.sleep(2)  # let every worker have had its chance at those ticks
        assert [w.poll() for w in workers] == [None] * 3  # all three ran the whole window
    finally:
        _stop(workers)
    runs = [line.split() for line in counter.read_text().splitlines()]
    ticks = Counter(tick for tick, _ in runs)
    # Never twice. (A tick can be skipped when the previous run still holds SAQ's unique
    # cron key, which only a one-second cron meets; ours run minutes or hours apart.)
    assert [tick for tick, n in ticks.items() if n > 1] == [], runs
    assert len(ticks) >= 6
    assert "Traceback" not in log.read_text()
    # The jobs really went through Redis, not the database.
    keys = redis.Redis.from_url(redis_url).keys("saq:*okktopus*")
    assert keys, "no SAQ keys in Redis"


# -- 2. two web processes, one worker, one database, one data folder --------------------------
class Alternating(httpx.HTTPTransport):
    """A load balancer in the browser: each request to the app goes to the next web process
    in turn (cookies are host-scoped, so they follow); the sandbox platforms, which stand
    for outside services, stay on the first."""

    def __init__(self, ports: list[int]) -> None:
        super().__init__()
        self.ports = ports
        self.turn = 0
        self.log: list[tuple[str, str, int]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        app = url.host == "127.0.0.1" and url.port in self.ports
        if app and not url.path.startswith("/sandbox"):
            port = self.ports[self.turn % len(self.ports)]
            self.turn += 1
            request.url = url.copy_with(port=port)
            self.log.append((request.method, url.path, port))
        return super().handle_request(request)


def test_two_web_processes_alternating_requests_sign_in_connect_upload_and_publish(
    pg_admin, tmp_path
):
    ports = [free_port(), free_port()]
    assert ports[0] != ports[1]
    public = f"http://127.0.0.1:{ports[0]}"  # the one public URL both processes serve
    database = pg_admin.new_database()
    data_dir = tmp_path / "shared-data"
    env = {"OKK_BASE_URL": public}
    webs = [
        AppServer(pg_admin.dsn(database), data_dir, tmp_path, env=env, worker=False, port=p)
        for p in ports
    ]
    worker = None
    try:
        for web in webs:
            web.start()
        worker = start_worker(webs[0], tmp_path / "worker.log")
        transport = Alternating(ports)
        browser = Browser(public)
        browser.http = httpx.Client(
            base_url=public, timeout=20, follow_redirects=False, transport=transport
        )
        browser.http.headers["accept"] = "text/html"

        email = browser.signed_in_user()
        login = next(p for m, path, p in transport.log if path == "/auth/login")
        callback = next(p for m, path, p in transport.log if path.startswith("/auth/callback"))
        assert login != callback  # OAuth state started on one process, finished on the other
        # The session is known to both processes (one signed-in page from each).
        assert [browser.get("/privacy").status_code for _ in ports] == [200, 200]

        page = browser.connect("x")
        assert page.status_code == 200, page.text[:2000]
        # CSRF: a token read from one process is accepted by the other.
        token = browser.csrf_token()
        upload = browser.http.post(
            "/media",
            files={"file": ("scale.jpg", jpeg_bytes(640, 480))},
            headers={"accept": "application/json", "x-csrftoken": token},
            timeout=60,
        )
        assert upload.status_code == 201, upload.text
        media_id = upload.json()["id"]
        assert list((data_dir / "media").rglob("*")), "upload not in the shared data folder"

        with psycopg_connect(pg_admin.dsn(database)) as conn:
            account = conn.execute(
                'SELECT a.id FROM accounts a JOIN users u ON u.id = a."user" '
                "WHERE u.email = %s AND a.platform = 'x'",
                (email,),
            ).fetchone()[0]
        text = f"Scaled out {secrets.token_hex(4)}"
        due = datetime.now(UTC) + timedelta(minutes=2)
        response = browser.post(
            "/compose",
            {
                "timezone": "Europe/Berlin",
                "action": "schedule",
                "text": text,
                "account": str(account),
                "media": str(media_id),
                "publish_at": due.astimezone(ZoneInfo("Europe/Berlin")).strftime("%Y-%m-%dT%H:%M"),
            },
        )
        assert response.status_code in (302, 303), response.text[:2000]
        post_id = int(re.search(r"/posts/(\d+)", response.headers["location"]).group(1))
        browser.post(f"/posts/{post_id}/publish-now")
        deadline = time.monotonic() + 60
        while "Published" not in (page := browser.get(f"/posts/{post_id}").text):
            assert time.monotonic() < deadline, page[-3000:]
            time.sleep(0.3)
        with webs[0].sandbox_admin() as admin:
            tweets = [
                p
                for p in admin.get("/published", params={"platform": "x"}).json()
                if p.get("text") == text
            ]
        assert len(tweets) == 1
        used = Counter(port for _, _, port in transport.log)
        assert used[ports[0]] >= 5 and used[ports[1]] >= 5, used
    finally:
        if worker is not None:
            _stop([worker])
        for web in webs:
            if web.process is not None:
                web.stop()
        pg_admin.drop_database(database)


def psycopg_connect(dsn: str):
    import psycopg

    return psycopg.connect(dsn, autocommit=True)


# -- 4. the burst with four workers killed at random, on both queues ------------------------
def _burst_with_four_workers(app, tmp_path, seed: int) -> None:
    dsn = app.env["OKK_DATABASE_URL"]
    browser = Browser(app.url)
    email = browser.signed_in_user()
    browser.connect("x")
    log = tmp_path / "workers.log"
    rng = random.Random(seed)
    with app.sandbox_admin() as admin:
        slow_unlimited_x(admin, latency_ms=80)
        tag = secrets.token_hex(3)
        workers = [start_worker(app, log) for _ in range(WORKERS)]
        try:
            burst(dsn, email, tag)
            wait_until(lambda: statuses(dsn)["published"] > 0, log)  # they are working
            progress_at_kills = []
            for _ in range(8):
                time.sleep(rng.uniform(0.1, 0.5))
                victim = rng.randrange(WORKERS)
                workers[victim].send_signal(signal.SIGKILL)
                workers[victim].wait()
                progress_at_kills.append(statuses(dsn)["published"])
                workers[victim] = start_worker(app, log)
            admin.delete("/faults")
            wait_all_final(dsn, log, timeout=90)
        finally:
            _stop(workers)
        assert_each_published_once(admin, dsn, tag, progress_at_kills)


# Two loops of 20 per worker and 80 ms a post: the burst outlasts the kills.
FAST_CLAIMS = {"OKK_CLAIM_LEASE_S": "3", "OKK_PUBLISH_BATCH": "20", "OKK_PUBLISH_LOOPS": "2"}


def test_four_workers_killed_at_random_on_the_postgresql_queue_publish_exactly_once(
    fresh_server, tmp_path
):
    app = fresh_server(worker=False, OKK_WORKER_SHUTDOWN_GRACE_S="0", **FAST_CLAIMS)
    _burst_with_four_workers(app, tmp_path, seed=11)


def test_four_workers_killed_at_random_on_redis_publish_exactly_once(
    fresh_server, redis_url, tmp_path
):
    app = fresh_server(
        worker=False, OKK_QUEUE_URL=redis_url, OKK_WORKER_SHUTDOWN_GRACE_S="0", **FAST_CLAIMS
    )
    _burst_with_four_workers(app, tmp_path, seed=12)
