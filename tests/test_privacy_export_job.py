"""Large data exports: built by a job (progress shown on Settings), downloaded through a
signed link that only the owner can use and that expires; expired files are purged and
a person's deletion removes theirs. Through a running app with its worker."""

from __future__ import annotations

import dataclasses
import html
import io
import json
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import psycopg
import pytest

from src import exports
from src.config import get_settings
from src.security import signed_query
from tests.appserver import ROOT
from tests.browser import Browser
from tests.media_samples import jpeg_bytes
from tests.test_privacy import issued_tokens

SECRETS = ("access_token", "refresh_token", "webhook_secret", "google_sub")


@pytest.fixture
def app(fresh_server):
    return fresh_server(worker=True, OKK_EXPORT_INLINE_MAX_BYTES="1")


def settings_of(app):
    return dataclasses.replace(get_settings(), data_dir=Path(app.env["OKK_DATA_DIR"]))


def media_root(app) -> Path:
    return Path(app.env["OKK_DATA_DIR"]) / "media"


def sql(app, query: str, *args: object) -> list[tuple]:
    """Rows from the app's own database (each fresh_server has one)."""
    with psycopg.connect(app.env["OKK_DATABASE_URL"], autocommit=True) as conn:
        cursor = conn.execute(query, args)
        return cursor.fetchall() if cursor.description else []


def purge_expired(app) -> int:
    """The purge job's export step, run as the app runs it: its database, its store."""
    code = (
        "import asyncio; from src import exports; from src.config import get_settings; "
        "print(asyncio.run(exports.remove(get_settings())))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=app.env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split()[-1])


def person(app, *, upload: bool) -> tuple[Browser, str, bytes]:
    browser = Browser(app.url)
    email = browser.signed_in_user()
    browser.connect("x")
    browser.connect("tiktok")
    picture = jpeg_bytes(320, 240)
    if upload:
        sent = browser.http.post(
            "/media",
            files={"file": ("holiday.jpg", picture)},
            headers={"accept": "application/json", "x-csrftoken": browser.csrf_token()},
            timeout=60,
        )
        assert sent.status_code in (200, 201), sent.text
    assert browser.post("/settings/feedback", {"message": "Nice"}).status_code in (302, 303)
    return browser, email, picture


def wait_for_link(browser: Browser, timeout: float = 30) -> tuple[list[str], str]:
    """Polls the progress partial like the page does; returns what it showed and the link."""
    shown = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        part = browser.get("/settings/export/status", headers={"hx-request": "true"})
        assert part.status_code == 200, part.text
        shown.append(part.text)
        link = re.search(r'href="(/settings/exports/[^"]+)"', part.text)
        if link:
            return shown, html.unescape(link.group(1))
        assert "Building your export" in part.text and 'hx-trigger="every' in part.text
        time.sleep(0.2)
    raise AssertionError(f"the export was not built: {shown[-1:]}")


def kinds(archive: zipfile.ZipFile) -> tuple[set[str], set[str]]:
    names = {n.split("/", 1)[0] + ("/" if "/" in n else "") for n in archive.namelist()}
    return names, set(json.loads(archive.read("export.json")))


def assert_no_secrets(raw: bytes, archive: zipfile.ZipFile, tokens: set[str]) -> None:
    plain = raw + b"".join(archive.read(n) for n in archive.namelist())
    for value in filter(None, tokens | {get_settings().secret_key}):
        assert value.encode() not in plain, "a token or secret is in the export"
    document = archive.read("export.json").decode()
    assert not any(key in document for key in SECRETS)


def test_large_export_is_built_by_a_job_with_progress_and_a_signed_link(app):
    settings = settings_of(app)
    browser, email, picture = person(app, upload=True)
    # A small export (no media) still streams at once.
    small, _, _ = person(app, upload=False)
    streamed = small.get("/settings/export")
    assert streamed.status_code == 200 and "attachment" in streamed.headers["content-disposition"]
    streamed_zip = zipfile.ZipFile(io.BytesIO(streamed.content))

    started = browser.get("/settings/export")
    assert started.status_code in (302, 303), started.text
    page = browser.follow(started)
    assert 'hx-get="/settings/export/status"' in page.text and "being built" in page.text
    shown, link = wait_for_link(browser)
    assert "Download your export" in shown[-1] and "expires" in shown[-1]

    ((user_id, token, status, files, files_total, done, total),) = sql(
        app,
        "SELECT e.user, token, status, files_done, files_total, bytes_done, bytes_total "
        "FROM data_exports e JOIN users u ON u.id = e.user WHERE u.email = %s",
        email,
    )
    assert status == "done" and files == files_total == 1
    assert done == total == len(picture)
    # The zip is in the media store (here the local folder), under the person's folder.
    assert (media_root(app) / exports.store_key(user_id, token)).is_file()
    assert link.startswith(f"/settings/exports/{token}.zip?expires=")
    # While a job runs, the partial shows its progress (rows and bytes) and keeps polling.
    sql(
        app,
        'INSERT INTO data_exports (token, "user", status, files_done, files_total, '
        "bytes_done, bytes_total, created_at) "
        "VALUES (%s, %s, 'running', 1, 3, %s, %s, now() + interval '1 second')",
        "r" * 32,
        user_id,
        3 * 1048576,
        9 * 1048576,
    )
    part = browser.get("/settings/export/status").text
    assert "Building your export: 1 of 3 files, 3.0 of 9.0 MB" in part
    assert 'hx-trigger="every' in part and "<progress" in part
    assert browser.get("/settings/export").status_code in (302, 303)  # no second job
    assert sql(app, 'SELECT count(*) FROM data_exports WHERE "user" = %s', user_id) == [(2,)]
    sql(app, "DELETE FROM data_exports WHERE token = %s", "r" * 32)

    got = browser.get(link)
    assert got.status_code == 200, got.text
    assert got.headers["content-type"].startswith("application/zip")
    assert "attachment" in got.headers["content-disposition"]
    archive = zipfile.ZipFile(io.BytesIO(got.content))
    assert archive.testzip() is None
    names, keys = kinds(archive)
    small_names, small_keys = kinds(streamed_zip)
    assert keys == small_keys and names == small_names | {"media/"}
    data = json.loads(archive.read("export.json"))
    assert data["profile"]["email"] == email
    assert {a["platform"] for a in data["accounts"]} == {"x", "tiktok"}
    assert data["feedback"] and data["audit_events"]
    (item,) = data["media"]
    assert archive.read(item["file"]) == picture
    with app.sandbox_admin() as admin:
        assert_no_secrets(got.content, archive, set(issued_tokens(admin)))

    # Another person cannot use the link; a tampered or expired link is refused.
    other = Browser(app.url)
    other.signed_in_user()
    assert other.get(link).status_code == 404
    assert Browser(app.url).get(link).status_code in (302, 303, 401)  # signed out
    forged = re.sub(r"signature=[^&]+", "signature=AAAA", link)
    assert browser.get(forged).status_code == 403
    later = re.sub(r"expires=(\d+)", lambda m: f"expires={int(m.group(1)) + 3600}", link)
    assert browser.get(later).status_code == 403
    path = exports.download_path(token)
    old = signed_query(settings.secret_key, path, 60, now=time.time() - 3600)
    gone = browser.get(f"{path}?{old}")
    assert gone.status_code == 410 and "expired" in gone.text


def test_expired_exports_are_purged_and_deletion_removes_them(app):
    zips = []
    for _ in range(2):
        browser, email, _ = person(app, upload=True)
        assert browser.get("/settings/export").status_code in (302, 303)
        wait_for_link(browser)
        ((user_id, token),) = sql(
            app,
            'SELECT e."user", token FROM data_exports e JOIN users u ON u.id = e."user" '
            "WHERE u.email = %s",
            email,
        )
        zips.append((token, media_root(app) / exports.store_key(user_id, token)))
    (one, zip_one), (two, zip_two) = zips
    assert zip_one.is_file() and zip_two.is_file()
    # Expire the first export: the purge removes it (zip and row), the other stays.
    sql(
        app,
        "UPDATE data_exports SET expires_at = now() - interval '1 second' WHERE token = %s",
        one,
    )
    assert purge_expired(app) == 1
    assert not zip_one.exists()
    assert sql(app, "SELECT token FROM data_exports") == [(two,)]
    assert zip_two.is_file()
    # The second person (still signed in as `browser`) deletes their account.
    done = browser.follow(browser.post("/settings/delete", {"confirm_email": email}))
    assert done.status_code == 200 and "account is deleted" in done.text
    assert not zip_two.exists()
    assert sql(app, "SELECT token FROM data_exports") == []
