"""The ground everything stands on: CSRF, sessions, health, worker, migrations and the
embedded database."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from urllib.parse import urlsplit

import psycopg
import pytest
from saq import Queue

from src.db.tables import Session, User
from src.users import end_sessions
from tests.appserver import ROOT, AppServer
from tests.browser import Browser


def run_cli(*args: str, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "src", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# -- CSRF -------------------------------------------------------------------------------
def test_unsafe_request_without_csrf_token_is_refused(server):
    browser = Browser(server.url)
    browser.signed_in_user()
    refused = browser.post("/auth/logout", csrf=False)
    assert refused.status_code == 403
    assert browser.get("/calendar").status_code == 200  # still signed in


def test_csrf_token_in_htmx_header_passes(server):
    browser = Browser(server.url)
    browser.signed_in_user()
    token = browser.csrf_token()
    response = browser.http.post(
        "/auth/logout", headers={"hx-request": "true", "x-csrftoken": token}
    )
    assert response.status_code in (302, 303)
    assert browser.get("/calendar").status_code == 302


def test_csrf_token_in_form_field_passes(server):
    browser = Browser(server.url)
    browser.signed_in_user()
    token = browser.csrf_token()
    response = browser.http.post("/auth/logout", data={"_csrf_token": token})
    assert response.status_code in (302, 303)
    assert browser.get("/calendar").status_code == 302


def test_forms_work_again_after_a_page_load_when_the_secret_key_changed(fresh_server):
    """An operator rotates OKK_SECRET_KEY: the browser's old csrftoken cookie no longer
    verifies. The next page load issues a fresh one instead of refusing every form."""
    before = fresh_server(OKK_SECRET_KEY="the-old-secret-key-" + "a" * 32)
    after = fresh_server(OKK_SECRET_KEY="the-new-secret-key-" + "b" * 32)
    old = Browser(before.url)
    old.csrf_token()  # the browser now holds a cookie signed with the old key
    stale = old.http.cookies["csrftoken"]
    browser = Browser(after.url)
    browser.http.cookies.update(old.http.cookies)  # same host, the server restarted
    page = browser.get("/privacy")
    assert page.status_code == 200
    assert browser.http.cookies["csrftoken"] != stale  # replaced with the page
    done = browser.post("/auth/logout")
    assert done.status_code in (302, 303), done.text


def test_cookies_are_httponly_and_samesite_lax(server):
    browser = Browser(server.url)
    consent = browser.start_sign_in()
    back = browser.consent(consent, custom_email="cookie@example.com")
    response = browser.http.get(back.headers["location"])
    cookies = response.headers.get_list("set-cookie")
    session = next(c for c in cookies if c.startswith("okk_session="))
    assert "HttpOnly" in session and "SameSite=lax" in session.replace("Lax", "lax")
    csrf = browser.get("/privacy").headers.get_list("set-cookie")
    assert all("HttpOnly" in c for c in csrf)


# -- sessions ---------------------------------------------------------------------------
@pytest.mark.usefixtures("db")
async def test_sign_out_ends_the_session_for_good(server):
    browser = Browser(server.url)
    browser.signed_in_user()
    stolen = browser.http.cookies.get("okk_session")
    browser.post("/auth/logout")
    assert await Session.count().where(Session.id == stolen) == 0
    replay = Browser(server.url)
    replay.http.cookies.set("okk_session", stolen)
    assert replay.get("/calendar").status_code == 302


@pytest.mark.usefixtures("db")
async def test_revoking_a_users_sessions_signs_out_every_browser(server):
    email = Browser(server.url).signed_in_user()
    laptop, phone = Browser(server.url), Browser(server.url)
    laptop.sign_in(email)
    phone.sign_in(email)
    assert laptop.get("/calendar").status_code == 200
    user = await User.objects().get(User.email == email)
    assert await end_sessions(user.id) == 3
    assert laptop.get("/calendar").status_code == 302
    assert phone.get("/calendar").status_code == 302


# -- authorization ----------------------------------------------------------------------
def test_a_user_never_sees_another_users_data(server):
    alice, bob = Browser(server.url), Browser(server.url)
    alice_email = alice.signed_in_user()
    bob_email = bob.signed_in_user()
    page = bob.get("/settings").text
    assert bob_email in page
    assert alice_email not in page


# -- health and worker ------------------------------------------------------------------
def test_healthz_reports_database_queue_and_worker(server):
    deadline = time.monotonic() + 30
    while True:
        body = server.health().json()
        if body["worker"]["ok"] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert body["status"] == "ok", body
    assert body["database"]["ok"] and body["queue"]["ok"]
    assert body["worker"]["heartbeat_age_s"] < 30


def test_healthz_is_503_when_the_database_is_down(fresh_server, pg_admin):
    app = fresh_server()
    database = urlsplit(app.env["OKK_DATABASE_URL"]).path.lstrip("/")
    assert app.health().status_code == 200
    pg_admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
    pg_admin.execute(
        f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}'"
    )
    try:
        down = app.health()
        assert down.status_code == 503
        assert down.json()["database"]["ok"] is False
    finally:
        pg_admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
    assert app.health().status_code == 200  # it recovers by itself


def test_split_deployment_web_without_worker_and_a_worker_process(fresh_server, tmp_path):
    web = fresh_server(worker=False)
    body = web.health().json()
    assert body["worker"]["ok"] is False  # nobody is working yet
    env = {**web.env}
    worker = subprocess.Popen(
        [sys.executable, "-m", "src", "worker"],
        cwd=ROOT,
        env=env,
        stdout=(tmp_path / "worker.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:

        async def apply() -> str:
            queue = Queue.from_url(env["OKK_DATABASE_URL"], name="okktopus")
            await queue.connect()
            try:
                return await queue.apply("ping", value="hello", timeout=30)
            finally:
                await queue.disconnect()

        import asyncio

        assert asyncio.run(apply()) == "hello"
        deadline = time.monotonic() + 30
        while not web.health().json()["worker"]["ok"]:
            assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()
            time.sleep(0.2)
    finally:
        worker.terminate()
        worker.wait(20)


# -- migrations and the embedded database -----------------------------------------------
def _external_server(pg_admin) -> str:
    """The PostgreSQL service on this machine when there is one, else the test server."""
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return "postgresql://postgres@127.0.0.1:5432/postgres"
    except OSError:
        return pg_admin.url


def test_migrations_apply_on_an_empty_external_database_and_check_clean(pg_admin, tmp_path):
    from tests.appserver import PostgresAdmin

    admin = PostgresAdmin(_external_server(pg_admin))
    name = f"okk_empty_{os.getpid()}"
    admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        env = {**os.environ, "OKK_DATABASE_URL": admin.dsn(name), "OKK_DATA_DIR": str(tmp_path)}
        result = run_cli("migrate", env=env)
        assert result.returncode == 0, result.stderr
        with psycopg.connect(admin.dsn(name)) as conn:
            tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables")}
        assert {"users", "sessions", "accounts", "posts", "post_targets", "sync_runs"} <= tables
        check = subprocess.run(
            [str(ROOT / ".venv" / "bin" / "piccolo"), "migrations", "check"]
            if (ROOT / ".venv" / "bin" / "piccolo").exists()
            else [sys.executable, "-m", "piccolo.main", "migrations", "check"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert check.returncode == 0, check.stderr
        assert "False" not in check.stdout  # every migration ran
        auto = subprocess.run(
            [
                sys.executable,
                "-c",
                "from piccolo.main import main; main()",
                "migrations",
                "new",
                "okktopus",
                "--auto",
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert "No changes detected" in auto.stdout + auto.stderr
    finally:
        admin.drop_database(name)


def test_processes_starting_together_on_a_fresh_database_all_migrate(pg_admin, tmp_path):
    """A deploy starts web and worker processes at once, and each migrates first: they
    must take turns, not fail on each other's half-created tables."""
    from tests.appserver import PostgresAdmin

    admin = PostgresAdmin(_external_server(pg_admin))
    name = f"okk_race_{os.getpid()}"
    admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        env = {**os.environ, "OKK_DATABASE_URL": admin.dsn(name), "OKK_DATA_DIR": str(tmp_path)}
        processes = [
            subprocess.Popen(
                [sys.executable, "-m", "src", "migrate"],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(4)
        ]
        outcomes = [(p.wait(timeout=180), p.communicate()[1]) for p in processes]
        assert [code for code, _ in outcomes] == [0, 0, 0, 0], outcomes
        with psycopg.connect(admin.dsn(name)) as conn:
            applied = conn.execute(
                "SELECT name, count(*) FROM migration GROUP BY name HAVING count(*) > 1"
            ).fetchall()
        assert applied == []  # each migration recorded once
    finally:
        admin.drop_database(name)


def test_embedded_database_starts_from_nothing_and_restarts_on_existing_data():
    data_dir = ROOT / "var" / "test" / f"embedded-{os.getpid()}"
    shutil.rmtree(data_dir, ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if k != "OKK_DATABASE_URL"}
    env["OKK_DATA_DIR"] = str(data_dir)
    try:
        first = run_cli("migrate", env=env)
        assert first.returncode == 0, first.stderr
        assert (data_dir / "pg" / "PG_VERSION").exists()
        app = AppServer(
            database_url="",
            data_dir=data_dir,
            log_dir=data_dir,
            worker=True,
            env={"OKK_DATABASE_URL": ""},
        )
        app.env.pop("OKK_DATABASE_URL")
        app.start()
        try:
            Browser(app.url).signed_in_user("embedded@example.com")
        finally:
            app.stop()
        again = AppServer(database_url="", data_dir=data_dir, log_dir=data_dir, worker=False)
        again.env.pop("OKK_DATABASE_URL")
        again.start()
        try:
            browser = Browser(again.url)
            assert browser.sign_in("embedded@example.com").url.path == "/calendar"
        finally:
            again.stop()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
