"""Connecting, keeping fresh and disconnecting accounts, through the app's pages and the
sandbox platforms over real HTTP."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time

import httpx
import pytest

from src import accounts
from src.config import get_settings
from src.db.tables import Account, PostTarget, User
from src.publishers.base import DiscoveredAccount, TokenSet
from tests.browser import Browser

pytestmark = pytest.mark.usefixtures("db")


@pytest.fixture
def sandbox_admin(server):
    with server.sandbox_admin() as admin:
        admin.delete("/faults")
        yield admin
        admin.delete("/faults")
        admin.patch("/config", json={"x_access_ttl": 7200, "tiktok_access_ttl": 86400})


def app_settings(server):
    """The server's settings as seen from the test process (same keys, same sandbox)."""
    return dataclasses.replace(get_settings(), base_url=server.url, sandbox=True)


async def accounts_of(email: str) -> list[Account]:
    user = await User.objects().get(User.email == email)
    return await Account.objects().where(Account.user == user.id).order_by(Account.id)


def grants(admin: httpx.Client, platform: str) -> list[dict]:
    return admin.get("/grants", params={"platform": platform}).json()


def refresh_calls(admin: httpx.Client) -> int:
    records = admin.get("/records", params={"platform": "tiktok"}).json()
    return sum(
        1
        for r in records
        if r["path"].startswith("/open/v2/oauth/token") and "refresh_token" in str(r["body"])
    )


# -- connecting ---------------------------------------------------------------------------
@pytest.mark.parametrize(("platform", "handle"), [("x", "xavier_x"), ("tiktok", "tiktok_tom")])
async def test_connect_lists_the_account_with_encrypted_tokens(
    server, sandbox_admin, platform, handle
):
    browser = Browser(server.url)
    email = browser.signed_in_user()
    page = browser.connect(platform)
    assert page.url.path == "/connections"
    assert "Connected:" in page.text
    assert handle in page.text
    (account,) = await accounts_of(email)
    assert account.platform == platform and account.status == "active"
    assert account.access_expires_at is not None and account.refresh_token
    issued = {g["value"] for g in grants(sandbox_admin, platform) if g["kind"] != "code"}
    assert account.access_token not in issued  # stored encrypted, not as issued
    tokens = accounts.tokens_of(account, app_settings(server))
    assert tokens.access_token in issued and tokens.refresh_token in issued


async def test_reconnect_updates_in_place_and_keeps_the_refresh_token(server, sandbox_admin):
    browser = Browser(server.url)
    email = browser.signed_in_user()
    browser.connect("x")
    (first,) = await accounts_of(email)
    browser.connect("x")
    (again,) = await accounts_of(email)
    assert again.id == first.id  # updated in place, never a duplicate row
    settings = app_settings(server)
    assert (
        accounts.tokens_of(again, settings).access_token
        != accounts.tokens_of(first, settings).access_token
    )
    # A platform answer without a refresh token never erases the stored one.
    kept = accounts.tokens_of(again, settings).refresh_token
    found = DiscoveredAccount(
        platform="x",
        external_id=again.external_id,
        handle=again.handle,
        display_name=again.display_name,
        avatar_url=again.avatar_url,
        tokens=TokenSet(access_token="new-access-without-refresh"),
    )
    await accounts.connect(again.user, found, settings)
    (last,) = await accounts_of(email)
    assert accounts.tokens_of(last, settings).refresh_token == kept


async def test_consent_denied_connects_nothing(server, sandbox_admin):
    browser = Browser(server.url)
    email = browser.signed_in_user()
    page = browser.connect("tiktok", decision="deny")
    assert "declined" in page.text
    assert await accounts_of(email) == []


@pytest.mark.parametrize(("platform", "scope"), [("x", "media.write"), ("tiktok", "video.publish")])
async def test_unticked_scope_is_named_and_nothing_is_connected(
    server, sandbox_admin, platform, scope
):
    browser = Browser(server.url)
    email = browser.signed_in_user()
    page = browser.connect(platform, untick=(scope,))
    assert scope in page.text
    assert await accounts_of(email) == []


async def test_mismatched_state_is_refused(server, sandbox_admin):
    browser = Browser(server.url)
    email = browser.signed_in_user()
    back = browser.grant(browser.start_connect("x"))
    forged = str(back.headers["location"]).replace("state=", "state=forged")
    page = browser.follow(browser.http.get(forged))
    assert "state did not match" in page.text
    assert await accounts_of(email) == []


async def test_missing_state_cookie_is_refused(server, sandbox_admin):
    browser = Browser(server.url)
    email = browser.signed_in_user()
    back = browser.grant(browser.start_connect("x"))
    browser.http.cookies.delete("okk_oauth_state")
    page = browser.follow(browser.http.get(back.headers["location"]))
    assert "state did not match" in page.text
    assert await accounts_of(email) == []


async def test_replayed_code_is_refused(server, sandbox_admin):
    browser = Browser(server.url)
    email = browser.signed_in_user()
    back = browser.grant(browser.start_connect("x"))
    browser.follow(browser.http.get(back.headers["location"]))
    assert len(await accounts_of(email)) == 1
    # Replaying the callback: our pending attempt is gone, and the code is spent.
    page = browser.follow(browser.http.get(back.headers["location"]))
    assert "expired" in page.text


async def test_expired_x_code_is_refused(server, sandbox_admin):
    browser = Browser(server.url)
    email = browser.signed_in_user()
    back = browser.grant(browser.start_connect("x"))
    sandbox_admin.post("/clock", json={"advance": 31})  # X codes live 30 seconds
    page = browser.follow(browser.http.get(back.headers["location"]))
    assert "X" in page.text and "Connected:" not in page.text
    assert await accounts_of(email) == []


@pytest.mark.parametrize("kind", ["error", "timeout"])
async def test_token_endpoint_failure_is_a_clear_message(server, sandbox_admin, kind):
    browser = Browser(server.url)
    email = browser.signed_in_user()
    back = browser.grant(browser.start_connect("tiktok"))
    sandbox_admin.post(
        "/faults", json={"platform": "tiktok", "path": "/open/v2/oauth/token", "kind": kind}
    ).raise_for_status()
    started = time.monotonic()
    page = browser.follow(browser.http.get(back.headers["location"], timeout=60))
    assert time.monotonic() - started < 20  # the app gives up, the person is told
    assert "unavailable" in page.text.lower() or "try again" in page.text.lower()
    assert await accounts_of(email) == []


# -- tokens never leak --------------------------------------------------------------------
async def test_tokens_never_reach_html_logs_or_messages(server, sandbox_admin):
    browser = Browser(server.url)
    email = browser.signed_in_user()
    pages = [browser.connect("x").text, browser.connect("tiktok").text]
    pages += [browser.get(p).text for p in ("/connections", "/settings", "/calendar")]
    (x_account, tiktok_account) = await accounts_of(email)
    pages.append(browser.post(f"/connections/{x_account.id}/refresh").text)
    pages.append(browser.post(f"/connections/{tiktok_account.id}/disconnect").text)
    values = [
        g["value"]
        for platform in ("x", "tiktok")
        for g in grants(sandbox_admin, platform)
        if g["kind"] in ("access", "refresh")
    ]
    assert values
    logs = server.log_path.read_text(errors="replace")
    for value in values:
        assert all(value not in page for page in pages)
        assert value not in logs


# -- keeping tokens fresh ------------------------------------------------------------------
async def test_refresh_job_keeps_short_lived_tokens_alive(server, sandbox_admin):
    sandbox_admin.patch("/config", json={"x_access_ttl": 30, "tiktok_access_ttl": 30})
    browser = Browser(server.url)
    email = browser.signed_in_user()
    browser.connect("x")
    browser.connect("tiktok")
    before = {a.platform: a.last_refreshed_at for a in await accounts_of(email)}
    deadline = time.monotonic() + 60
    while True:  # the cron job runs every 20 s and refreshes at a quarter of the lifetime
        now = {a.platform: a for a in await accounts_of(email)}
        if all(now[p].last_refreshed_at > before[p] for p in before):
            break
        assert time.monotonic() < deadline, "the refresh job did not refresh in time"
        await asyncio.sleep(0.5)
    assert all(a.status == "active" for a in now.values())
    # The refreshed X token works where the first one has expired.
    token = accounts.tokens_of(now["x"], app_settings(server)).access_token
    me = httpx.get(
        f"{server.url}/sandbox/x/api/2/users/me", headers={"Authorization": f"Bearer {token}"}
    )
    assert me.status_code == 200


async def test_concurrent_refreshes_of_one_tiktok_account_use_the_refresh_token_once(
    server, sandbox_admin
):
    browser = Browser(server.url)
    email = browser.signed_in_user()
    browser.connect("tiktok")
    (account,) = await accounts_of(email)
    # Make it due, then race two refreshes (two workers would do this).
    await Account.raw(
        "UPDATE accounts SET access_expires_at = now() + interval '1 second', "
        "last_refreshed_at = now() - interval '1 day' WHERE id = {}",
        account.id,
    )
    settings = app_settings(server)
    before = refresh_calls(sandbox_admin)
    results = await asyncio.gather(
        accounts.refresh(account.id, settings), accounts.refresh(account.id, settings)
    )
    assert all(r.status == "active" for r in results)
    assert refresh_calls(sandbox_admin) - before == 1
    (after,) = await accounts_of(email)
    assert after.status == "active"


async def test_dead_refresh_token_marks_needs_reconnect_with_a_banner(server, sandbox_admin):
    browser = Browser(server.url)
    email = browser.signed_in_user()
    browser.connect("x")
    (account,) = await accounts_of(email)
    sandbox_admin.post("/tokens/revoke", json={"platform": "x", "kind": "refresh"})
    with pytest.raises(accounts.ReconnectNeeded):
        await accounts.refresh(account.id, app_settings(server), force=True)
    (after,) = await accounts_of(email)
    assert after.status == "needs_reconnect"
    banner = browser.get("/banners", headers={"hx-request": "true"}).text
    assert "needs reconnecting" in banner
    assert "Needs reconnect" in browser.get("/connections").text


# -- disconnecting -------------------------------------------------------------------------
async def test_disconnect_revokes_deletes_tokens_and_holds_targets(server, sandbox_admin):
    browser = Browser(server.url)
    email = browser.signed_in_user()
    browser.connect("x")
    (account,) = await accounts_of(email)
    tokens = accounts.tokens_of(account, app_settings(server))
    target = await _scheduled_target(email, account)
    row = browser.post(f"/connections/{account.id}/disconnect", headers={"hx-request": "true"})
    assert row.status_code == 200
    assert "Disconnected" in row.text and "revoked" in row.text
    (after,) = await accounts_of(email)
    assert after.status == "disconnected"
    assert after.access_token is None and after.refresh_token is None
    revoked = {g["value"]: g["revoked"] for g in grants(sandbox_admin, "x")}
    assert revoked[tokens.access_token] and revoked[tokens.refresh_token]
    held = await PostTarget.objects().get(PostTarget.id == target.id)
    assert held.status == "held" and "disconnected" in held.last_error.lower()
    # Reconnecting resumes the held target.
    browser.connect("x")
    resumed = await PostTarget.objects().get(PostTarget.id == target.id)
    assert resumed.status == "scheduled"


async def test_failed_revoke_still_deletes_tokens_and_says_so(server, sandbox_admin):
    browser = Browser(server.url)
    email = browser.signed_in_user()
    browser.connect("tiktok")
    (account,) = await accounts_of(email)
    sandbox_admin.post(
        "/faults", json={"platform": "tiktok", "path": "/open/v2/oauth/revoke", "kind": "error"}
    ).raise_for_status()
    row = browser.post(f"/connections/{account.id}/disconnect", headers={"hx-request": "true"})
    assert "did not confirm" in row.text
    (after,) = await accounts_of(email)
    assert after.status == "disconnected" and after.access_token is None


async def test_disconnect_waits_for_a_running_refresh(server, sandbox_admin):
    browser = Browser(server.url)
    email = browser.signed_in_user()
    browser.connect("x")
    (account,) = await accounts_of(email)
    sandbox_admin.post(
        "/faults",
        json={
            "platform": "x",
            "path": "/api/2/oauth2/token",
            "kind": "latency",
            "latency_ms": 1500,
        },
    ).raise_for_status()
    settings = app_settings(server)
    refreshing = asyncio.create_task(accounts.refresh(account.id, settings, force=True))
    await asyncio.sleep(0.3)  # let the refresh take the account's lock first
    user = await User.objects().get(User.email == email)
    result = await accounts.disconnect(user.id, account.id, settings)
    await refreshing
    assert result.account.status == "disconnected"
    (after,) = await accounts_of(email)
    assert after.access_token is None and after.refresh_token is None


async def test_other_users_accounts_are_out_of_reach(server, sandbox_admin):
    alice, mallory = Browser(server.url), Browser(server.url)
    alice_email = alice.signed_in_user()
    mallory.signed_in_user()
    alice.connect("x")
    (account,) = await accounts_of(alice_email)
    attempt = mallory.post(f"/connections/{account.id}/disconnect")
    assert attempt.status_code == 404
    assert "xavier_x" not in mallory.get("/connections").text
    (still,) = await accounts_of(alice_email)
    assert still.status == "active"


async def _scheduled_target(email: str, account: Account) -> PostTarget:
    from datetime import UTC, datetime, timedelta

    from src.db.tables import Post

    user = await User.objects().get(User.email == email)
    post = Post(
        {
            Post.user: user.id,
            Post.text: "Held while disconnected",
            Post.status: "scheduled",
            Post.publish_at: datetime.now(UTC) + timedelta(days=1),
        }
    )
    await post.save()
    target = PostTarget(
        {
            PostTarget.post: post.id,
            PostTarget.account: account.id,
            PostTarget.status: "scheduled",
            PostTarget.due_at: post.publish_at,
        }
    )
    await target.save()
    return target


# -- Facebook Pages and Instagram ---------------------------------------------------------
async def test_facebook_page_picker_then_instagram_behind_one_page(server, sandbox_admin):
    browser = Browser(server.url)
    email = browser.signed_in_user()
    back = browser.grant(browser.start_connect("facebook"))
    picker = browser.follow(browser.http.get(back.headers["location"]))
    assert picker.url.path == "/connections/pick", (picker.status_code, server.logs())
    assert "Okk Bakery" in picker.text and "Okk Books" in picker.text
    token = browser.csrf_token()
    ids = re.findall(r'name="account" value="(\d+)"', picker.text)
    assert len(ids) == 2
    done = browser.follow(
        browser.http.post("/connections/pick", data={"account": ids, "_csrf_token": token})
    )
    assert "Connected: Okk Bakery, Okk Books" in done.text
    page = browser.connect("instagram")
    assert "okkbakery" in page.text
    rows = await accounts_of(email)
    assert sorted((a.platform, a.handle) for a in rows) == [
        ("facebook", "Okk Bakery"),
        ("facebook", "Okk Books"),
        ("instagram", "okkbakery"),
    ]
    instagram = next(a for a in rows if a.platform == "instagram")
    bakery = next(a for a in rows if a.handle == "Okk Bakery")
    assert instagram.facebook_page_id == bakery.external_id
    assert instagram.instagram_business_id == instagram.external_id
    # Disconnecting one Page must not cut off the others (Meta grants per person).
    row = browser.post(f"/connections/{bakery.id}/disconnect", headers={"hx-request": "true"})
    assert "Access stays granted" in row.text
    books = next(a for a in rows if a.handle == "Okk Books")
    token = accounts.tokens_of(books, app_settings(server)).access_token
    me = httpx.get(
        f"{server.url}/sandbox/facebook/graph/v24.0/me",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert me.status_code == 200


async def test_picking_nothing_connects_nothing(server, sandbox_admin):
    browser = Browser(server.url)
    email = browser.signed_in_user()
    back = browser.grant(browser.start_connect("facebook"))
    browser.follow(browser.http.get(back.headers["location"]))
    page = browser.follow(browser.post("/connections/pick", {}))
    assert "no account was selected" in page.text
    assert await accounts_of(email) == []


async def test_instagram_without_a_linked_business_account_is_explained(server, sandbox_admin):
    browser = Browser(server.url)
    email = browser.signed_in_user()
    page = browser.connect("instagram", identity=1)  # Frank's page has no Instagram
    assert "No Instagram business account" in page.text
    assert await accounts_of(email) == []


async def test_facebook_declined_permission_is_named(server, sandbox_admin):
    browser = Browser(server.url)
    email = browser.signed_in_user()
    page = browser.connect("facebook", untick=("pages_manage_posts",))
    assert "pages_manage_posts" in page.text
    assert await accounts_of(email) == []
