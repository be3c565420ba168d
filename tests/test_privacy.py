"""Your data, your rights: export, deletion (with the purge job), correction, feedback,
essential cookies only, no third-party requests, and the operator view."""

from __future__ import annotations

import dataclasses
import io
import json
import re
import zipfile
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from urllib.parse import urlsplit

import httpx
import pytest

from src import accounts, posts, privacy
from src.config import get_settings
from src.db.tables import (
    TABLES,
    Account,
    AuditEvent,
    ContentSource,
    DataExport,
    Feedback,
    Media,
    Post,
    PostMedia,
    PostTarget,
    Session,
    SyncRun,
    User,
)
from tests.browser import Browser, forms_of
from tests.media_samples import jpeg_bytes

pytestmark = pytest.mark.usefixtures("db")
ESSENTIAL_COOKIES = {"okk_session", "csrftoken", "okk_oauth_state"}
SOURCE_TOKEN = "source-access-token-" + "s" * 12
WEBHOOK_SECRET = "webhook-secret-" + "w" * 12


@pytest.fixture
def sandbox_admin(server):
    with server.sandbox_admin() as admin:
        admin.delete("/faults")
        yield admin
        admin.delete("/faults")


def app_settings(server):
    return dataclasses.replace(get_settings(), base_url=server.url, sandbox=True)


def issued_tokens(admin: httpx.Client) -> dict[str, bool]:
    """Every access/refresh token the sandbox platforms issued, with revoked or not."""
    values = {}
    for platform in ("x", "tiktok"):
        for grant in admin.get("/grants", params={"platform": platform}).json():
            if grant["kind"] != "code":
                values[grant["value"]] = grant["revoked"]
    return values


async def a_person_with_everything(server, name: str = "Pat Example") -> tuple[Browser, User]:
    """Signs in, connects X and TikTok, uploads a picture, schedules a post with it,
    corrects the profile, sends feedback, and owns a content source with a sync run."""
    browser = Browser(server.url)
    email = browser.signed_in_user()
    browser.connect("x")
    browser.connect("tiktok")
    upload = browser.http.post(
        "/media",
        files={"file": ("holiday.jpg", jpeg_bytes(320, 240))},
        headers={"accept": "application/json", "x-csrftoken": browser.csrf_token()},
        timeout=60,
    )
    assert upload.status_code in (200, 201), upload.text
    media_id = upload.json()["id"]
    user = await User.objects().get(User.email == email)
    found = await Account.objects().where(Account.user == user.id)
    options = {"tiktok": {"privacy_level": "SELF_ONLY"}}
    await posts.schedule(
        user.id,
        posts.PostSpec(
            text='["Hello from the privacy test"]',
            targets=[posts.TargetSpec(a.id, None, options.get(a.platform, {})) for a in found],
            publish_at=datetime.now(UTC) + timedelta(days=2),
            media_ids=[media_id],
        ),
    )
    saved = browser.post(
        "/settings/profile", {"name": name, "timezone": "Europe/Vienna", "notify_email": "1"}
    )
    assert saved.status_code in (302, 303), saved.text
    sent = browser.post("/settings/feedback", {"message": "Lovely tool, thanks"})
    assert sent.status_code in (302, 303), sent.text
    cipher = accounts.cipher(app_settings(server))
    source = ContentSource(
        {
            ContentSource.user: user.id,
            ContentSource.name: f"repo-{user.id}",
            ContentSource.kind: "git",
            ContentSource.url: "https://git.example.org/me/posts.git",
            ContentSource.access_token: cipher.encrypt(SOURCE_TOKEN),
            ContentSource.webhook_secret: cipher.encrypt(WEBHOOK_SECRET),
        }
    )
    await source.save()
    await SyncRun({SyncRun.source: source.id, SyncRun.status: "ok", SyncRun.created: 1}).save()
    return browser, await User.objects().get(User.id == user.id)


def export_of(browser: Browser) -> tuple[bytes, zipfile.ZipFile]:
    response = browser.get("/settings/export")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/zip")
    assert "attachment" in response.headers["content-disposition"]
    return response.content, zipfile.ZipFile(io.BytesIO(response.content))


# -- export ---------------------------------------------------------------------------------
async def test_export_has_every_kind_of_record_and_no_token_or_secret(server, sandbox_admin):
    browser, user = await a_person_with_everything(server)
    raw, archive = export_of(browser)
    names = archive.namelist()
    assert "README.txt" in names and "export.json" in names
    assert "export.json" in archive.read("README.txt").decode()
    data = json.loads(archive.read("export.json"))
    assert data["profile"]["email"] == user.email and data["profile"]["name"] == "Pat Example"
    assert data["profile"]["timezone"] == "Europe/Vienna"
    assert data["profile"]["age_confirmed_at"] and data["profile"]["policy_accepted_at"]
    assert {a["platform"] for a in data["accounts"]} == {"x", "tiktok"}
    (post,) = data["posts"]
    assert post["text"] == '["Hello from the privacy test"]'  # text stays text
    assert all(isinstance(t["options"], dict) for t in post["targets"])
    assert len(post["targets"]) == 2 and all(t["status"] for t in post["targets"])
    (item,) = data["media"]
    assert post["media"] == [item["id"]]
    (stored,) = await Media.objects().where(Media.user == user.id)
    assert (
        archive.read(item["file"])
        == (app_settings(server).data_dir / "media" / stored.storage_key).read_bytes()
    )
    (source,) = data["content_sources"]
    assert source["url"].endswith("posts.git")
    assert [r["status"] for r in data["sync_runs"]] == ["ok"]
    actions = {e["action"] for e in data["audit_events"]}
    assert {"sign_up", "consent_given", "profile_updated"} <= actions
    assert [f["message"] for f in data["feedback"]] == ["Lovely tool, thanks"]
    # No token or secret anywhere in the archive (compressed or not).
    plain = raw + b"".join(archive.read(n) for n in names)
    secrets = set(issued_tokens(sandbox_admin)) | {SOURCE_TOKEN, WEBHOOK_SECRET}
    secrets.add(get_settings().secret_key)
    for account in await Account.objects().where(Account.user == user.id):
        secrets |= {account.access_token, account.refresh_token}
    for row in await ContentSource.objects().where(ContentSource.user == user.id):
        secrets |= {row.access_token, row.webhook_secret}
    for value in filter(None, secrets):
        assert value.encode() not in plain, "a token or secret is in the export"
    for key in ("access_token", "refresh_token", "webhook_secret", "google_sub"):
        assert key not in archive.read("export.json").decode()


async def test_correction_shows_consent_and_rejects_unknown_zone(server):
    browser = Browser(server.url)
    browser.signed_in_user()
    page = browser.get("/settings").text
    assert "Confirmed 16 or older" in page and "Accepted the privacy policy" in page
    assert re.search(r'<time datetime="\d{4}-', page)
    browser.post("/settings/profile", {"name": "New Name", "timezone": "Mars/Base"})
    page = browser.get("/settings").text
    assert "not a known time zone" in page and 'value="New Name"' not in page
    browser.post("/settings/profile", {"name": "New Name", "timezone": "Asia/Tokyo"})
    page = browser.get("/settings").text
    assert 'value="New Name"' in page and 'value="Asia/Tokyo" selected' in page


# -- deletion -------------------------------------------------------------------------------
async def rows_of(user_id: int, post_ids, media_ids, source_ids) -> dict[str, int]:
    """Every table, queried for anything of the user."""
    post_ids, media_ids, source_ids = post_ids or [0], media_ids or [0], source_ids or [0]
    found = {
        "users": await User.count().where(User.id == user_id),
        "sessions": await Session.count().where(Session.user == user_id),
        "accounts": await Account.count().where(Account.user == user_id),
        "media": await Media.count().where(Media.user == user_id),
        "content_sources": await ContentSource.count().where(ContentSource.user == user_id),
        "posts": await Post.count().where(Post.user == user_id),
        "post_targets": await PostTarget.count().where(PostTarget.post.is_in(post_ids)),
        "post_media": await PostMedia.count().where(
            PostMedia.post.is_in(post_ids) | PostMedia.media.is_in(media_ids)
        ),
        "sync_runs": await SyncRun.count().where(SyncRun.source.is_in(source_ids)),
        "audit_events": await AuditEvent.count().where(AuditEvent.user == user_id),
        "feedback": await Feedback.count().where(Feedback.user == user_id),
        "data_exports": await DataExport.count().where(DataExport.user == user_id),
    }
    assert set(found) | {"worker_heartbeats"} == {t._meta.tablename for t in TABLES}
    return found


async def ids_of(user_id: int):
    post_ids = [p["id"] for p in await Post.select(Post.id).where(Post.user == user_id)]
    media = await Media.select(Media.id, Media.storage_key).where(Media.user == user_id)
    sources = await ContentSource.select(ContentSource.id).where(ContentSource.user == user_id)
    return post_ids, [m["id"] for m in media], [s["id"] for s in sources], media


async def everything_text() -> str:
    dump = []
    for table in TABLES:
        dump.append(json.dumps(await table.select(), default=str))
    return "\n".join(dump)


async def test_deletion_removes_every_row_and_file_and_revokes(server, sandbox_admin):
    browser, user = await a_person_with_everything(server, name="Doomed Dora")
    other, other_user = await a_person_with_everything(server, name="Staying Sam")
    before_other = await rows_of(other_user.id, *(await ids_of(other_user.id))[:3])
    post_ids, media_ids, source_ids, media = await ids_of(user.id)
    tokens = {}
    for account in await Account.objects().where(Account.user == user.id):
        t = accounts.tokens_of(account, app_settings(server))
        tokens |= {t.access_token: account.platform, t.refresh_token: account.platform}
    media_root = app_settings(server).data_dir / "media"
    assert (media_root / media[0]["storage_key"]).is_file()

    wrong = browser.post("/settings/delete", {"confirm_email": "not-me@example.com"})
    assert wrong.status_code in (302, 303)
    assert await User.count().where(User.id == user.id) == 1
    done = browser.follow(browser.post("/settings/delete", {"confirm_email": user.email.upper()}))
    assert done.status_code == 200 and "account is deleted" in done.text

    assert set((await rows_of(user.id, post_ids, media_ids, source_ids)).values()) == {0}
    assert not (media_root / f"u{user.id}").exists()
    assert not any((media_root / m["storage_key"]).exists() for m in media)
    dump = await everything_text()
    assert user.email not in dump and "Doomed Dora" not in dump
    event = (
        await AuditEvent.objects()
        .where(AuditEvent.action == "account_deleted")
        .order_by(AuditEvent.id, ascending=False)
        .first()
    )
    assert event.user is None and event.ip == "" and event.detail
    # Revocations reached the platforms.
    issued = issued_tokens(sandbox_admin)
    assert tokens and all(issued[value] for value in tokens if value)
    # The old session is worthless.
    assert browser.get("/settings").status_code in (302, 303)
    # The other person is untouched.
    assert await rows_of(other_user.id, *(await ids_of(other_user.id))[:3]) == before_other
    (kept,) = await Media.objects().where(Media.user == other_user.id)
    assert (media_root / kept.storage_key).is_file()
    assert other.get("/settings").status_code == 200
    kept_tokens = await other_tokens(server, other_user)
    assert kept_tokens and not any(issued[value] for value in kept_tokens if value)


async def other_tokens(server, user: User) -> set[str]:
    values = set()
    for account in await Account.objects().where(Account.user == user.id):
        t = accounts.tokens_of(account, app_settings(server))
        values |= {t.access_token, t.refresh_token}
    return values


@pytest.mark.parametrize("kind", ["error", "timeout"])
async def test_failed_revoke_is_retried_by_the_purge_job(server, sandbox_admin, kind):
    browser = Browser(server.url)
    email = browser.signed_in_user()
    browser.connect("tiktok")
    user = await User.objects().get(User.email == email)
    (account,) = await Account.objects().where(Account.user == user.id)
    tokens = accounts.tokens_of(account, app_settings(server))
    sandbox_admin.post(
        "/faults",
        json={"platform": "tiktok", "path": "/open/v2/oauth/revoke", "kind": kind, "remaining": 2},
    ).raise_for_status()
    done = browser.follow(browser.post("/settings/delete", {"confirm_email": email}))
    assert done.status_code == 200 and "account is deleted" in done.text
    # Personal data is gone at once; the row waits for the revocation.
    left = await User.objects().get(User.id == user.id)
    assert left.deletion_requested_at is not None and left.email == "" and left.name == ""
    (pending,) = await Account.objects().where(Account.user == user.id)
    assert pending.status == "disconnected" and pending.status_detail == privacy.REVOKE_PENDING
    assert not issued_tokens(sandbox_admin)[tokens.access_token]
    # Still failing: the purge job keeps it.
    assert (await privacy.purge(app_settings(server)))["pending"] >= 1
    assert await User.count().where(User.id == user.id) == 1
    # The platform answers again (the fault is used up): the purge job finishes.
    await privacy.purge(app_settings(server))
    assert issued_tokens(sandbox_admin)[tokens.access_token]
    assert set((await rows_of(user.id, [], [], [])).values()) == {0}


async def test_nothing_is_left_after_30_days_even_if_revoke_keeps_failing(server, sandbox_admin):
    browser = Browser(server.url)
    email = browser.signed_in_user()
    browser.connect("tiktok")
    user = await User.objects().get(User.email == email)
    sandbox_admin.post(
        "/faults", json={"platform": "tiktok", "path": "/open/v2/oauth/revoke", "kind": "error"}
    ).raise_for_status()
    browser.post("/settings/delete", {"confirm_email": email})
    assert await User.count().where(User.id == user.id) == 1
    await User.update(
        {User.deletion_requested_at: datetime.now(UTC) - timedelta(days=30, minutes=1)}
    ).where(User.id == user.id)
    from src import jobs

    await jobs.purge_deletions({"settings": app_settings(server)})
    assert set((await rows_of(user.id, [], [], [])).values()) == {0}


# -- cookies and third parties ------------------------------------------------------------------
MAIN_PAGES = [
    "/",
    "/privacy",
    "/calendar",
    "/compose",
    "/posts",
    "/connections",
    "/content",
    "/settings",
]


class Requests(HTMLParser):
    """What a page would make the browser fetch: src, srcset, link href, inline url()."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        for name in ("src", "data", "poster", "formaction"):
            if a.get(name):
                self.urls.append(a[name])
        if a.get("srcset"):
            self.urls += [part.split()[0] for part in a["srcset"].split(",") if part.strip()]
        if tag == "link" and a.get("href"):
            self.urls.append(a["href"])
        if tag == "form" and a.get("action"):
            self.urls.append(a["action"])
        for value in a.values():
            self.urls += re.findall(r"url\(['\"]?([^'\")]+)", value)


def outside(url: str, base: str) -> bool:
    parts = urlsplit(url)
    if not parts.netloc:
        return False
    return f"{parts.scheme}://{parts.netloc}" != base


async def test_pages_set_only_essential_cookies_and_fetch_nothing_outside(server):
    browser = Browser(server.url)
    cookies: set[str] = set()

    def collect(response: httpx.Response) -> None:
        if not response.request.url.path.startswith("/sandbox"):
            for header in response.headers.get_list("set-cookie"):
                cookies.add(header.split("=", 1)[0].strip())

    browser.http.event_hooks["response"].append(collect)
    for path in ("/", "/privacy"):
        browser.get(path)
    browser.signed_in_user()
    browser.connect("x")
    pages = {}
    for path in MAIN_PAGES:
        response = browser.follow(browser.get(path))
        assert response.status_code == 200, path
        pages[path] = response.text
    browser.get("/settings/export")
    assert cookies and cookies <= ESSENTIAL_COOKIES, cookies
    for path, html in pages.items():
        parser = Requests()
        parser.feed(html)
        parser.feed(" ".join(re.findall(r"<style[^>]*>(.*?)</style>", html, re.S)))
        far = [u for u in parser.urls if outside(u, server.url)]
        assert not far, f"{path} fetches from other hosts: {far}"
        assert not re.search(r"<script[^>]+src=\"(https?:)?//", html)
    for css in (server.url + "/static/app.css",):
        assert not re.search(r"url\(['\"]?(https?:)?//", httpx.get(css).text)


# -- operator -----------------------------------------------------------------------------------
async def test_operator_page_for_the_owner_only_and_deletes_through_the_same_path(fresh_server):
    app = fresh_server()
    owner = Browser(app.url)
    owner.signed_in_user("owner@example.com")
    person = Browser(app.url)
    person.signed_in_user("person@example.com")
    assert person.get("/operator").status_code in (403, 404)
    assert person.get("/operator/").status_code in (403, 404)
    page = owner.get("/operator")
    assert page.status_code == 200, page.text
    assert "person@example.com" in page.text and "Failed targets" in page.text
    assert "Worker" in page.text and "Queue" in page.text
    assert "/operator" in owner.get("/settings").text
    assert "/operator" not in person.get("/settings").text
    form = next(f for f in forms_of(page.text) if "/delete" in f["action"])
    refused = person.post(form["action"], {"confirm_email": "person@example.com"})
    assert refused.status_code in (403, 404)
    gone = owner.post(form["action"], {"confirm_email": "person@example.com"})
    assert gone.status_code in (302, 303)
    assert "person@example.com" not in owner.get("/operator").text
    assert person.get("/settings").status_code in (302, 303)
