"""The Instagram publisher over real HTTP against the standalone sandbox: Facebook Login
with the Instagram permissions, the business account found behind each granted Page,
and the refusals on the way."""

from __future__ import annotations

from urllib.parse import parse_qs, parse_qsl, urlsplit

import pytest

from src.publishers import facebook, instagram
from src.publishers.base import ConnectError, DiscoveredAccount, PlatformError
from src.publishers.meta_common import GraphError
from src.sandbox.config import SandboxConfig
from src.sandbox.meta import BAKERY_IG_ID, BAKERY_PAGE_ID, BOOKS_PAGE_ID, FIONA_ID, FRANK_ID
from tests.publishers.test_facebook import (
    PERMISSIONS_PATH,
    TOKEN_PATH,
    VERSION,
    connect,
    consent,
    days_from_now,
    grant_of,
    publisher_for,
    token_calls,
)

REDIRECT = "https://okktopus.example/connections/instagram/callback"
FACEBOOK_REDIRECT = "https://okktopus.example/connections/facebook/callback"


@pytest.fixture
def publisher(sandbox) -> instagram.InstagramPublisher:
    return publisher_for(instagram, sandbox)


@pytest.fixture
async def bakery(publisher) -> DiscoveredAccount:
    [account] = await connect(publisher, REDIRECT)
    return account


# -- authorization URL ---------------------------------------------------------------------
def test_authorization_url_asks_for_the_instagram_permissions(publisher, sandbox):
    request = publisher.authorization(REDIRECT)
    url = urlsplit(request.url)
    assert url.path == f"/facebook/www/{VERSION}/dialog/oauth"
    query = dict(parse_qsl(url.query))
    assert query["scope"] == (
        "pages_show_list,pages_read_engagement,instagram_basic,instagram_content_publish"
    )
    assert query["redirect_uri"] == REDIRECT and query["state"] == request.state
    assert request.code_verifier is None
    assert (publisher.platform, publisher.title, publisher.refreshable) == (
        "instagram",
        "Instagram",
        False,
    )


# -- connect and discovery -------------------------------------------------------------------
async def test_exactly_one_business_account_behind_fionas_pages(sandbox, bakery):
    assert (bakery.platform, bakery.external_id, bakery.handle, bakery.display_name) == (
        "instagram",
        BAKERY_IG_ID,
        "okkbakery",
        "Okk Bakery",
    )
    assert bakery.avatar_url == f"{sandbox.url}/facebook/www/avatar/{BAKERY_IG_ID}"
    assert bakery.facebook_page_id == BAKERY_PAGE_ID
    assert bakery.instagram_business_id == BAKERY_IG_ID
    assert bakery.meta["page_name"] == "Okk Bakery"
    assert bakery.meta["user_id"] == FIONA_ID

    tokens = bakery.tokens
    grant = grant_of(sandbox, tokens.access_token)
    assert grant["extra"]["type"] == "user" and grant["extra"]["long"] is True
    assert tokens.refresh_token == tokens.access_token  # the user token revokes too
    expected = SandboxConfig().facebook_long_token_ttl / 86400
    assert days_from_now(tokens.access_expires_at) == pytest.approx(expected, abs=0.01)
    assert tokens.refresh_expires_at == tokens.access_expires_at
    assert bakery.meta["user_token_expires_at"] == tokens.access_expires_at.isoformat()
    assert set(instagram.SCOPES) <= set(tokens.scopes)


async def test_each_page_was_looked_up_then_the_business_account(sandbox, bakery):
    paths = [r["path"] for r in sandbox.records(platform="facebook", method="GET")]
    graph = f"/graph/{VERSION}"
    for path in (
        f"{graph}/{BAKERY_PAGE_ID}",
        f"{graph}/{BOOKS_PAGE_ID}",
        f"{graph}/{BAKERY_IG_ID}",
    ):
        assert path in paths
    [lookup] = sandbox.records(platform="facebook", path=f"{graph}/{BAKERY_IG_ID}")
    assert parse_qs(lookup["query"])["fields"] == ["id,username,name,profile_picture_url"]
    exchanges = [c for c in token_calls(sandbox) if c.get("grant_type") == ["fb_exchange_token"]]
    assert len(exchanges) == 1


async def test_the_token_reaches_the_content_publishing_endpoints(publisher, bakery):
    token = bakery.tokens.access_token
    limit = await publisher.graph.get(f"{BAKERY_IG_ID}/content_publishing_limit", token)
    assert limit["data"][0]["quota_usage"] == 0
    account = await publisher.graph.get(BAKERY_IG_ID, token, fields="username")
    assert account["username"] == "okkbakery"


async def test_person_without_a_business_account_is_told_how_to_link_one(publisher):
    with pytest.raises(ConnectError) as caught:
        await connect(publisher, REDIRECT, identity=FRANK_ID)
    assert str(caught.value) == (
        "No Instagram business account is linked to the Facebook Pages you granted. "
        "Link one in Meta Business Suite, then reconnect."
    )


# -- refusals ----------------------------------------------------------------------------
async def test_consent_denied(publisher):
    with pytest.raises(ConnectError) as caught:
        await connect(publisher, REDIRECT, decision="deny")
    assert str(caught.value) == (
        "You declined the Instagram connection at Facebook. Nothing was connected."
    )


async def test_unticked_scope_is_named(publisher):
    with pytest.raises(ConnectError) as caught:
        await connect(publisher, REDIRECT, untick=("instagram_content_publish",))
    assert str(caught.value) == (
        "Facebook did not grant: instagram_content_publish. "
        "Reconnect and keep every permission ticked."
    )


async def test_code_replayed(publisher):
    request = publisher.authorization(REDIRECT)
    params = await consent(request, REDIRECT)
    await publisher.connect(params, REDIRECT, None)
    with pytest.raises(ConnectError, match="expired or was already used"):
        await publisher.connect(params, REDIRECT, None)


async def test_code_expired(publisher, sandbox):
    request = publisher.authorization(REDIRECT)
    params = await consent(request, REDIRECT)
    sandbox.advance(601)
    with pytest.raises(ConnectError, match=r"expired or was already used \(code 100/36007\)"):
        await publisher.connect(params, REDIRECT, None)


async def test_token_endpoint_5xx(publisher, sandbox):
    sandbox.fault(platform="facebook", kind="error", path=TOKEN_PATH)
    with pytest.raises(ConnectError, match="Facebook is unavailable right now"):
        await connect(publisher, REDIRECT)


async def test_token_endpoint_timeout(sandbox):
    fast = publisher_for(instagram, sandbox, timeout=0.5)
    request = fast.authorization(REDIRECT)
    params = await consent(request, REDIRECT)
    sandbox.fault(platform="facebook", kind="timeout", path=TOKEN_PATH)
    with pytest.raises(ConnectError, match="Facebook is unavailable right now"):
        await fast.connect(params, REDIRECT, None)


async def test_business_account_lookup_failure_is_a_connect_error(publisher, sandbox):
    sandbox.fault(
        platform="facebook", kind="rate_limit", path=f"/graph/*/{BAKERY_IG_ID}", retry_after=120
    )
    with pytest.raises(ConnectError) as caught:
        await connect(publisher, REDIRECT)
    message = str(caught.value)
    assert "could not find your Instagram accounts" in message and "(code 4)" in message


# -- refresh and revoke -------------------------------------------------------------------
async def test_refresh_is_impossible(publisher, bakery):
    with pytest.raises(PlatformError) as caught:
        await publisher.refresh(bakery.tokens)
    assert caught.value.kind == "auth" and "reconnect before" in caught.value.message


async def test_revoke_deauthorizes_and_kills_the_token(publisher, sandbox, bakery):
    await publisher.revoke(bakery.tokens, bakery)
    [delete] = sandbox.records(platform="facebook", method="DELETE")
    assert delete["path"] == PERMISSIONS_PATH
    assert grant_of(sandbox, bakery.tokens.access_token)["revoked"] is True
    with pytest.raises(GraphError) as caught:
        await publisher.graph.get(BAKERY_IG_ID, bakery.tokens.access_token, fields="username")
    assert (caught.value.kind, caught.value.graph_code) == ("auth", 190)


async def test_revoke_failure_raises(publisher, sandbox, bakery):
    sandbox.fault(platform="facebook", kind="error", path=PERMISSIONS_PATH, method="DELETE")
    with pytest.raises(PlatformError) as caught:
        await publisher.revoke(bakery.tokens, bakery)
    assert caught.value.kind == "transient"
    assert grant_of(sandbox, bakery.tokens.access_token)["revoked"] is False


async def test_revoking_one_meta_connection_ends_the_others_of_that_person(sandbox, bakery):
    """Meta revokes per person and app, not per Page: disconnecting a Facebook Page
    with DELETE /me/permissions also kills the Instagram connection (and vice versa).
    The accounts domain should revoke only when the person's last Meta account goes."""
    fb = publisher_for(facebook, sandbox)
    pages = await connect(fb, FACEBOOK_REDIRECT)
    books = next(p for p in pages if p.external_id == BOOKS_PAGE_ID)
    await fb.revoke(books.tokens, books)
    with pytest.raises(GraphError) as caught:
        await fb.graph.get(BAKERY_IG_ID, bakery.tokens.access_token, fields="username")
    assert (caught.value.kind, caught.value.subcode) == ("auth", 458)
