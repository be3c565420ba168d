"""Compose, schedule and publish through the real app, worker and sandbox platforms:
exactly once, with every failure visible and recoverable."""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest

from src.db.tables import Account, Post, PostTarget, User
from tests.browser import Browser

pytestmark = pytest.mark.usefixtures("db")


@pytest.fixture
def sandbox_admin(server):
    with server.sandbox_admin() as admin:
        admin.delete("/faults")
        yield admin
        admin.delete("/faults")


def local_input(moment: datetime, zone: str = "Europe/Berlin") -> str:
    return moment.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%dT%H:%M")


async def account_ids(email: str) -> dict[str, int]:
    user = await User.objects().get(User.email == email)
    rows = await Account.objects().where(Account.user == user.id)
    return {f"{a.platform}:{a.handle}": a.id for a in rows}


def compose(browser: Browser, **fields) -> httpx.Response:
    data = {"timezone": "Europe/Berlin", "action": "schedule", **fields}
    return browser.post("/compose", data)


async def wait_for(post_id: int, statuses: set[str], timeout: float = 60) -> list[PostTarget]:
    deadline = time.monotonic() + timeout
    while True:
        targets = await PostTarget.objects().where(PostTarget.post == post_id)
        if targets and all(t.status in statuses for t in targets):
            return targets
        assert time.monotonic() < deadline, [(t.status, t.last_error) for t in targets]
        await asyncio.sleep(0.2)


def post_id_of(response: httpx.Response) -> int:
    assert response.status_code in (302, 303), response.text[:2000]
    return int(re.search(r"/posts/(\d+)", response.headers["location"]).group(1))


# -- the happy path -----------------------------------------------------------------------
async def test_a_scheduled_post_is_published_once_on_time_with_a_link(server, sandbox_admin):
    browser = Browser(server.url)
    email = browser.signed_in_user()
    browser.connect("x")
    ids = await account_ids(email)
    text = f"Hello from OKKTOPUS {secrets.token_hex(4)} https://example.org/launch"
    due = datetime.now(UTC) + timedelta(minutes=1)
    response = compose(
        browser, text=text, account=str(ids["x:xavier_x"]), publish_at=local_input(due)
    )
    post_id = post_id_of(response)
    post = await Post.objects().get(Post.id == post_id)
    assert post.timezone == "Europe/Berlin"
    assert abs((post.publish_at - due).total_seconds()) < 60  # stored in UTC
    assert (await PostTarget.objects().get(PostTarget.post == post_id)).status == "scheduled"
    # Bring it due now (the calendar's "publish now" does the same through the domain).
    browser.post(f"/posts/{post_id}/publish-now")
    (target,) = await wait_for(post_id, {"published"})
    tweets = [
        p
        for p in sandbox_admin.get("/published", params={"platform": "x"}).json()
        if p.get("text") == text
    ]
    assert len(tweets) == 1
    assert target.published_url and target.platform_post_id == tweets[0]["id"]
    page = browser.get(f"/posts/{post_id}").text
    assert "Published" in page and target.published_url in page
    assert httpx.get(target.published_url).status_code == 200  # the link leads to the post


async def test_text_over_the_x_limit_is_refused_before_scheduling(server, sandbox_admin):
    browser = Browser(server.url)
    email = browser.signed_in_user()
    browser.connect("x")
    ids = await account_ids(email)
    response = compose(browser, text="x" * 281, account=str(ids["x:xavier_x"]), action="now")
    assert response.status_code == 400
    assert "280" in response.text
    user = await User.objects().get(User.email == email)
    assert await Post.count().where(Post.user == user.id) == 0


async def test_live_checks_count_weighted_characters(server, sandbox_admin):
    browser = Browser(server.url)
    email = browser.signed_in_user()
    browser.connect("x")
    ids = await account_ids(email)
    data = {"text": "日本語 https://example.org", "account": str(ids["x:xavier_x"])}
    checks = browser.post("/compose/validate", data, headers={"hx-request": "true"})
    assert checks.status_code == 200
    assert "30 / 280" in checks.text  # 3 CJK at 2 each, a space, a URL at 23


async def test_tiktok_needs_a_privacy_choice_none_preselected(server, sandbox_admin):
    browser = Browser(server.url)
    email = browser.signed_in_user()
    browser.connect("tiktok")
    page = browser.get("/compose").text
    assert 'name="opt__tiktok__privacy_level"' in page
    assert not re.search(r'name="opt__tiktok__privacy_level"[^>]*checked', page)
    assert not re.search(r'name="opt__tiktok__allow_comment"[^>]*checked', page)
    ids = await account_ids(email)
    response = compose(browser, text="A video", account=str(ids["tiktok:tiktok_tom"]), action="now")
    assert response.status_code == 400


async def test_cancel_and_edit_before_publishing(server, sandbox_admin):
    browser = Browser(server.url)
    email = browser.signed_in_user()
    browser.connect("x")
    ids = await account_ids(email)
    due = datetime.now(UTC) + timedelta(days=2)
    post_id = post_id_of(
        compose(
            browser, text="First words", account=str(ids["x:xavier_x"]), publish_at=local_input(due)
        )
    )
    edit = browser.get(f"/posts/{post_id}/edit").text
    assert "First words" in edit
    saved = browser.post(
        f"/posts/{post_id}/edit",
        {
            "text": "Better words",
            "account": str(ids["x:xavier_x"]),
            "publish_at": local_input(due + timedelta(hours=1)),
            "timezone": "Europe/Berlin",
            "action": "schedule",
        },
    )
    assert post_id_of(saved) == post_id
    post = await Post.objects().get(Post.id == post_id)
    assert post.text == "Better words"
    browser.post(f"/posts/{post_id}/cancel")
    (target,) = await PostTarget.objects().where(PostTarget.post == post_id)
    assert target.status == "cancelled"


async def test_another_user_cannot_see_or_touch_a_post(server, sandbox_admin):
    alice, mallory = Browser(server.url), Browser(server.url)
    email = alice.signed_in_user()
    mallory.signed_in_user()
    alice.connect("x")
    ids = await account_ids(email)
    post_id = post_id_of(
        compose(
            alice,
            text="Alice only",
            account=str(ids["x:xavier_x"]),
            publish_at=local_input(datetime.now(UTC) + timedelta(days=1)),
        )
    )
    assert mallory.get(f"/posts/{post_id}").status_code == 404
    assert mallory.post(f"/posts/{post_id}/cancel").status_code == 404
    assert "Alice only" not in mallory.get("/posts").text
    # Nor schedule to Alice's account.
    refused = compose(mallory, text="hijack", account=str(ids["x:xavier_x"]), action="now")
    assert refused.status_code == 400


async def test_disconnected_account_holds_then_resumes(server, sandbox_admin):
    browser = Browser(server.url)
    email = browser.signed_in_user()
    browser.connect("x")
    ids = await account_ids(email)
    text = f"Held then sent {secrets.token_hex(4)}"
    post_id = post_id_of(
        compose(
            browser,
            text=text,
            account=str(ids["x:xavier_x"]),
            publish_at=local_input(datetime.now(UTC) + timedelta(days=1)),
        )
    )
    browser.post(f"/connections/{ids['x:xavier_x']}/disconnect")
    (target,) = await PostTarget.objects().where(PostTarget.post == post_id)
    assert target.status == "held"
    assert "reconnect" in browser.get(f"/posts/{post_id}").text.lower()
    browser.connect("x")
    browser.post(f"/posts/{post_id}/publish-now")
    await wait_for(post_id, {"published"})


# -- faults -------------------------------------------------------------------------------
async def test_every_target_publishes_exactly_once_through_a_30_percent_fault_rate(
    server, sandbox_admin
):
    browser = Browser(server.url)
    email = browser.signed_in_user()
    browser.connect("x")
    browser.connect("x", identity=1)
    ids = await account_ids(email)
    accounts = [str(ids["x:xavier_x"]), str(ids["x:xena_x"])]
    for kind, extra in [
        ("error", {}),
        ("rate_limit", {"retry_after": 1}),
        ("timeout", {}),
        ("latency", {"latency_ms": 800}),
    ]:
        sandbox_admin.post(
            "/faults",
            json={
                "platform": "x",
                "path": "/api/2/tweets",
                "method": "POST",
                "kind": kind,
                "rate": 0.1,
                **extra,
            },
        ).raise_for_status()
    tag = secrets.token_hex(3)
    post_ids = []
    for n in range(20):
        post_ids.append(
            post_id_of(
                compose(browser, text=f"Burst {tag} number {n}", account=accounts, action="now")
            )
        )
    for post_id in post_ids:
        await wait_for(post_id, {"published"}, timeout=180)
    sandbox_admin.delete("/faults")
    published = [
        p["text"]
        for p in sandbox_admin.get("/published", params={"platform": "x"}).json()
        if tag in (p.get("text") or "")
    ]
    assert sorted(published) == sorted(
        f"Burst {tag} number {n}" for n in range(20) for _ in accounts
    )


async def test_editing_a_post_keeps_its_held_target(server, sandbox_admin):
    browser = Browser(server.url)
    email = browser.signed_in_user()
    browser.connect("x")
    ids = await account_ids(email)
    due = local_input(datetime.now(UTC) + timedelta(days=1))
    post_id = post_id_of(
        compose(browser, text="Before", account=str(ids["x:xavier_x"]), publish_at=due)
    )
    browser.post(f"/connections/{ids['x:xavier_x']}/disconnect")
    edit = browser.get(f"/posts/{post_id}/edit").text
    assert "held until reconnected" in edit
    saved = browser.post(
        f"/posts/{post_id}/edit",
        {
            "text": "After",
            "account": str(ids["x:xavier_x"]),
            "publish_at": due,
            "timezone": "Europe/Berlin",
            "action": "schedule",
        },
    )
    assert post_id_of(saved) == post_id
    (target,) = await PostTarget.objects().where(PostTarget.post == post_id)
    assert target.status == "held"
    assert (await Post.objects().get(Post.id == post_id)).text == "After"


async def test_history_filters_by_account_and_platform(server, sandbox_admin):
    browser = Browser(server.url)
    email = browser.signed_in_user()
    browser.connect("x")
    browser.connect("x", identity=1)
    ids = await account_ids(email)
    due = local_input(datetime.now(UTC) + timedelta(days=3))
    for handle in ("xavier_x", "xena_x"):
        compose(browser, text=f"For {handle} only", account=str(ids[f"x:{handle}"]), publish_at=due)
    only = browser.get("/posts", params={"account": str(ids["x:xena_x"])}).text
    assert "For xena_x only" in only and "For xavier_x only" not in only
    assert "For xavier_x only" in browser.get("/posts", params={"platform": "x"}).text
    assert "For xavier_x only" not in browser.get("/posts", params={"platform": "tiktok"}).text
