"""Large data exports: built by a job (progress shown on Settings), downloaded through a
signed link that only the owner can use and that expires; expired files are purged and
a person's deletion removes theirs. Through a running app with its worker."""

from __future__ import annotations

import dataclasses
import html
import io
import json
import re
import time
import zipfile
from pathlib import Path

import pytest

from src import exports
from src.config import get_settings
from src.security import signed_query
from tests.browser import Browser
from tests.media_samples import jpeg_bytes
from tests.test_privacy import issued_tokens

SECRETS = ("access_token", "refresh_token", "webhook_secret", "google_sub")


@pytest.fixture
def app(fresh_server):
    return fresh_server(worker=True, OKK_EXPORT_INLINE_MAX_BYTES="1")


def settings_of(app):
    return dataclasses.replace(get_settings(), data_dir=Path(app.env["OKK_DATA_DIR"]))


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

    (token, state), *_ = [(t, s) for t, s in exports._states(settings)]
    assert state["status"] == "done" and state["files_done"] == state["files_total"] == 1
    assert state["bytes_done"] == state["bytes_total"] == len(picture)
    assert exports.zip_path(settings, token).is_file()
    assert link.startswith(f"/settings/exports/{token}.zip?expires=")
    # While a job runs, the partial shows its progress (rows and bytes) and keeps polling.
    running = {**state, "status": "running", "files_done": 1, "files_total": 3}
    running.update(bytes_done=3 * 1048576, bytes_total=9 * 1048576, created_at=time.time() + 1)
    exports._write_state(settings, "r" * 32, running)
    part = browser.get("/settings/export/status").text
    assert "Building your export: 1 of 3 files, 3.0 of 9.0 MB" in part
    assert 'hx-trigger="every' in part and "<progress" in part
    assert browser.get("/settings/export").status_code in (302, 303)  # no second job
    assert len(exports._states(settings)) == 2
    exports._state_path(settings, "r" * 32).unlink()

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
    settings = settings_of(app)
    tokens = []
    for _ in range(2):
        browser, email, _ = person(app, upload=True)
        assert browser.get("/settings/export").status_code in (302, 303)
        wait_for_link(browser)
        (new,) = {t for t, _ in exports._states(settings)} - set(tokens)
        tokens.append(new)
    one, two = tokens
    # Expire the first export: the purge removes it (zip and state), the other stays.
    state = exports.read_state(settings, one)
    state["expires_at"] = time.time() - 1
    exports._write_state(settings, one, state)
    assert exports.remove(settings) == 1
    assert not exports.zip_path(settings, one).exists()
    assert exports.read_state(settings, one) is None
    assert exports.zip_path(settings, two).is_file()
    # The second person (still signed in as `browser`) deletes their account.
    done = browser.follow(browser.post("/settings/delete", {"confirm_email": email}))
    assert done.status_code == 200 and "account is deleted" in done.text
    assert not list(exports.folder(settings).iterdir())
