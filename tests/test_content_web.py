"""The Content page, the schema endpoint and the forge webhooks, against the real app
process and its in-process worker; and the whole GitOps loop in sandbox mode: commit,
push, webhook, published on time; delete before its time, cancelled."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import secrets
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from src.config import get_settings
from src.content import service
from src.db.tables import ContentSource, Post, SyncRun, User
from tests.browser import Browser
from tests.content_helpers import Repo, post_yaml, unique
from tests.test_content_sync import make_user

pytestmark = pytest.mark.usefixtures("db")


def github(secret: str, body: bytes) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"x-hub-signature-256": f"sha256={digest}", "x-github-event": "push"}


def gitea(secret: str, body: bytes) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"x-gitea-signature": digest, "x-gitea-event": "push"}


def push(branch: str = "main", after: str | None = None) -> bytes:
    return json.dumps(
        {"ref": f"refs/heads/{branch}", "after": after or secrets.token_hex(20)}
    ).encode()


async def wait_for_run(source_id: int, count: int, timeout: float = 60) -> SyncRun:
    deadline = time.monotonic() + timeout
    while True:
        runs = (
            await SyncRun.objects()
            .where((SyncRun.source == source_id) & (SyncRun.status != "running"))
            .order_by(SyncRun.id)
            .output(load_json=True)
        )
        if len(runs) >= count:
            return runs[-1]
        assert time.monotonic() < deadline, f"no sync run {count} for source {source_id}"
        await asyncio.sleep(0.2)


@pytest.fixture
async def hooked(tmp_path):
    user = await make_user(owner=False)
    repo = Repo(tmp_path)
    source = ContentSource(
        {
            ContentSource.user: user.id,
            ContentSource.name: unique("hooked"),
            ContentSource.kind: "git",
            ContentSource.url: repo.remote.as_uri(),
            ContentSource.branch: "main",
            ContentSource.webhook_secret: service.cipher(get_settings()).encrypt("s3cret-hook"),
            ContentSource.poll_interval_s: 3600,
            ContentSource.last_synced_at: datetime.now(UTC),  # the poll leaves it alone
        }
    )
    await source.save()
    return user, repo, source


def test_the_schema_is_served_to_editors(server):
    response = httpx.get(server.url + "/content/schema.json")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/schema+json")
    schema = response.json()
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert "publish_at" in schema["$defs"]["post"]["properties"]


async def test_webhooks_with_a_bad_signature_are_refused(server, hooked):
    _, _, source = hooked
    body = push()
    url = f"{server.url}/hooks/content/{source.id}"
    cases = [
        {},
        github("wrong-secret", body),
        {"x-hub-signature-256": "sha256=" + "0" * 64},
        {"x-gitlab-token": "s3cret-hoo"},
        gitea("nope", body),
    ]
    for headers in cases:
        response = httpx.post(url, content=body, headers=headers)
        assert response.status_code == 401, headers
    tampered = github("s3cret-hook", body)
    assert httpx.post(url, content=body + b" ", headers=tampered).status_code == 401
    unknown = httpx.post(f"{server.url}/hooks/content/999999", content=body, headers=tampered)
    assert unknown.status_code == 401
    await asyncio.sleep(0.5)
    assert await SyncRun.count().where(SyncRun.source == source.id) == 0


async def test_signed_webhooks_queue_a_sync(server, hooked):
    _, repo, source = hooked
    repo.write("hello.yaml", post_yaml("hello"))
    commit = repo.commit()
    body = push(after=commit)
    url = f"{server.url}/hooks/content/{source.id}"
    response = httpx.post(url, content=body, headers=github("s3cret-hook", body))
    assert response.status_code == 202 and response.json()["queued"] is True
    run = await wait_for_run(source.id, 1)
    assert (run.status, run.trigger, run.commit, run.created) == ("ok", "webhook", commit, 1)

    # Pushes to other branches and pings are acknowledged, not synced.
    other = push("feature")
    assert (
        httpx.post(url, content=other, headers=github("s3cret-hook", other)).json()["queued"]
        is False
    )
    ping = {**github("s3cret-hook", b"{}"), "x-github-event": "ping"}
    assert httpx.post(url, content=b"{}", headers=ping).status_code == 200

    # GitLab's token and Gitea's signature work too.
    repo.write("two.yaml", post_yaml("two"))
    repo.commit()
    body = push()
    gitlab = {"x-gitlab-token": "s3cret-hook", "x-gitlab-event": "Push Hook"}
    assert httpx.post(url, content=body, headers=gitlab).status_code == 202
    run = await wait_for_run(source.id, 2)
    assert run.created == 1
    repo.write("three.yaml", post_yaml("three"))
    repo.commit()
    body = push()
    assert httpx.post(url, content=body, headers=gitea("s3cret-hook", body)).status_code == 202
    assert (await wait_for_run(source.id, 3)).created == 1
    assert await Post.count().where(Post.content_source == source.id) == 3


async def test_the_content_page_add_a_repository_sync_now_and_history(server, tmp_path):
    browser = Browser(server.url)
    email = browser.signed_in_user()
    page = browser.get("/content")
    assert page.status_code == 200 and "Add a git repository" in page.text

    # A repository URL with credentials in it is refused, with the form kept.
    refused = browser.post(
        "/content/sources",
        {"name": "leaky", "url": "https://user:token@example.org/r.git", "branch": "main"},
    )
    assert refused.status_code == 400 and "token field" in refused.text
    assert 'value="leaky"' in refused.text

    added = browser.post(
        "/content/sources",
        {
            "name": "unreachable",
            "url": "https://127.0.0.1:9/none.git",
            "branch": "main",
            "token": "tkn",
        },
    )
    assert added.status_code in (302, 303), added.text[:500]
    detail = browser.follow(added)
    assert "Webhook" in detail.text and "/hooks/content/" in detail.text
    assert "tkn" not in detail.text  # the token never comes back
    user = await User.objects().get(User.email == email)
    stored = await ContentSource.objects().get(
        (ContentSource.user == user.id) & (ContentSource.name == "unreachable")
    )
    assert stored.access_token and "tkn" not in stored.access_token  # encrypted at rest
    run = await wait_for_run(stored.id, 1)
    assert run.status == "failed"

    # A local repository (added here directly: only the owner may add one in the UI).
    repo = Repo(tmp_path)
    repo.write("ok.yaml", post_yaml("ok", accounts="[x:@xavier_x]"))
    repo.write("bad.yaml", "id: bad\npublish_at: now\naccounts: [x:@xavier_x]\ntext: [\n")
    repo.commit()
    source = ContentSource(
        {
            ContentSource.user: user.id,
            ContentSource.name: "local-repo",
            ContentSource.kind: "git",
            ContentSource.url: repo.remote.as_uri(),
            ContentSource.branch: "main",
            ContentSource.last_synced_at: datetime.now(UTC),
            ContentSource.poll_interval_s: 3600,
        }
    )
    await source.save()
    card = browser.post(f"/content/sources/{source.id}/sync", headers={"hx-request": "true"})
    assert card.status_code == 200 and "Queued" in card.text
    assert f'hx-get="/content/sources/{source.id}/card' in card.text
    run = await wait_for_run(source.id, 1)
    assert run.status == "partial"  # the account is not connected, bad.yaml is broken
    history = browser.get(f"/content/sources/{source.id}").text
    assert "bad.yaml:5" in history and "invalid YAML" in history
    assert "ok.yaml:3" in history and "unknown account x:xavier_x" in history
    listing = browser.get("/content").text
    assert "local-repo" in listing and run.commit[:12] in listing and "2 problems" in listing
    # Someone else cannot see or sync it.
    other = Browser(server.url)
    other.signed_in_user()
    assert other.get(f"/content/sources/{source.id}").status_code == 404
    assert other.post(f"/content/sources/{source.id}/sync").status_code == 404


def _post_ids(browser: Browser) -> list[str]:
    return re.findall(r'id="post-(\d+)"', browser.get("/posts").text)


def _wait_page(browser: Browser, path: str, pattern: str, timeout: float = 90) -> str:
    deadline = time.monotonic() + timeout
    while True:
        text = browser.get(path).text
        if re.search(pattern, text):
            return text
        assert time.monotonic() < deadline, f"{pattern!r} never appeared on {path}"
        time.sleep(0.5)


def test_commit_push_webhook_publishes_on_time_and_delete_cancels(fresh_server, tmp_path):
    """The issue's "done when": sandbox mode, a local repository registered as a source,
    a pushed file publishes on time; a file deleted before its time is cancelled."""
    app = fresh_server(worker=True)
    browser = Browser(app.url)
    browser.signed_in_user()  # the first user: the owner
    browser.connect("x")
    # A fresh instance's default source: the repository's content/ folder.
    page = browser.get("/content").text
    assert ">content</a>" in page and "/content" in page
    repo = Repo(tmp_path / "repo")
    added = browser.post(
        "/content/sources",
        {"name": "team", "url": str(repo.remote), "branch": "main", "subpath": "posts"},
    )
    assert added.status_code in (302, 303), added.text[:1000]
    detail = browser.follow(added).text
    source_path = added.headers["location"]
    secret = re.search(r'class="content-secret">([^<]+)<', detail).group(1)
    hook = app.url + "/hooks/content/" + source_path.rsplit("/", 1)[-1]

    def push_and_hook() -> None:
        commit = repo.commit()
        body = push(after=commit)
        response = httpx.post(hook, content=body, headers=github(secret, body))
        assert response.status_code == 202, response.text

    text = f"Shipped from git {secrets.token_hex(4)}"
    due = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=20)
    repo.write("posts/ship.yaml", post_yaml("ship", text=text, when=due.isoformat()))
    later = f"Not yet {secrets.token_hex(4)}"
    repo.write(
        "posts/later.yaml",
        post_yaml("later", text=later, when=(due + timedelta(hours=2)).isoformat()),
    )
    push_and_hook()
    _wait_page(browser, source_path, r"2 new")
    with app.sandbox_admin() as admin:
        deadline = time.monotonic() + 120
        while True:
            published = [
                p
                for p in admin.get("/published", params={"platform": "x"}).json()
                if p.get("text") == text
            ]
            if published:
                break
            assert time.monotonic() < deadline, "the post was not published"
            time.sleep(0.5)
    assert len(published) == 1
    assert datetime.now(UTC) >= due  # not before its time
    posts_page = _wait_page(browser, "/posts", r"Published")
    assert re.search(r"from .*@[0-9a-f]{7}:posts/ship.yaml", posts_page)  # repo@commit:path

    repo.remove("posts/later.yaml")
    push_and_hook()
    _wait_page(browser, source_path, r"1 cancelled")
    page = browser.get("/posts").text
    cards = re.split(r'(?=class="post-card status-)', page)[1:]
    (card,) = [c for c in cards if later in c]
    assert card.startswith('class="post-card status-cancelled"')
    with app.sandbox_admin() as admin:
        assert not [
            p
            for p in admin.get("/published", params={"platform": "x"}).json()
            if p.get("text") == later
        ]
