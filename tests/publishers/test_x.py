"""The X publisher over real HTTP against the standalone sandbox: consent like a browser,
code exchange, discovery, refresh rotation, revocation and every refusal on the way."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, parse_qsl, urljoin, urlsplit

import httpx
import pytest
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from src.publishers.base import (
    AuthorizationRequest,
    ConnectError,
    DiscoveredAccount,
    Endpoints,
    PlatformError,
)
from src.publishers.x import SCOPES, XPublisher, make
from src.sandbox.config import SandboxConfig
from src.sandbox.x import XAVIER_ID, XENA_ID
from tests.browser import forms_of, hidden_fields

REDIRECT = "https://okktopus.example/connections/x/callback"
TOKEN_PATH = "/api/2/oauth2/token"
REVOKE_PATH = "/api/2/oauth2/revoke"


# -- helpers -------------------------------------------------------------------------------
def publisher_for(sandbox, timeout: float = 10.0) -> XPublisher:
    config = SandboxConfig()
    endpoints = Endpoints(
        config.x_client_id,
        config.x_client_secret,
        auth_url=f"{sandbox.url}/x/www",
        api_url=f"{sandbox.url}/x/api",
    )
    return make(endpoints, timeout=timeout)


@pytest.fixture
def publisher(sandbox) -> XPublisher:
    return publisher_for(sandbox)


async def consent(
    request: AuthorizationRequest,
    decision: str = "allow",
    untick: tuple[str, ...] = (),
    identity: str = XAVIER_ID,
) -> dict[str, str]:
    """Open the consent page, submit it like a browser, return the callback's params."""
    async with httpx.AsyncClient(timeout=10) as browser:
        page = await browser.get(request.url)
        assert page.status_code == 200, page.text
        form = next(f for f in forms_of(page.text) if f["method"] == "post")
        offered = [f["value"] for f in form["fields"] if f.get("name") == "scope"]
        data = hidden_fields(form) | {
            "decision": decision,
            "identity": identity,
            "scope": [s for s in offered if s not in untick],  # unticked: left out
        }
        back = await browser.post(urljoin(str(page.url), form["action"]), data=data)
    assert back.status_code == 302, back.text
    location = back.headers["location"]
    assert location.startswith(REDIRECT + "?")
    params = dict(parse_qsl(urlsplit(location).query))
    assert params["state"] == request.state
    return params


async def connected(publisher: XPublisher, identity: str = XAVIER_ID) -> DiscoveredAccount:
    request = publisher.authorization(REDIRECT)
    params = await consent(request, identity=identity)
    accounts = await publisher.connect(params, REDIRECT, request.code_verifier)
    assert len(accounts) == 1
    return accounts[0]


def grant(sandbox, token: str) -> dict:
    (found,) = sandbox.admin.get("/grants", params={"platform": "x", "value": token}).json()
    return found


def near(moment: datetime | None, seconds: float) -> bool:
    expected = datetime.now(UTC) + timedelta(seconds=seconds)
    return moment is not None and abs((moment - expected).total_seconds()) < 30


# -- authorization URL ---------------------------------------------------------------------
def test_authorization_asks_for_every_scope_with_pkce_s256(publisher, sandbox):
    request = publisher.authorization(REDIRECT)
    url = urlsplit(request.url)
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert f"{url.scheme}://{url.netloc}{url.path}" == f"{sandbox.url}/x/www/i/oauth2/authorize"
    assert query["scope"] == "tweet.read tweet.write users.read offline.access media.write"
    assert query["client_id"] == SandboxConfig().x_client_id
    assert query["response_type"] == "code"
    assert query["redirect_uri"] == REDIRECT
    assert query["state"] == request.state
    assert query["code_challenge_method"] == "S256"
    assert query["code_challenge"] == create_s256_code_challenge(request.code_verifier)
    assert 43 <= len(request.code_verifier) <= 128
    other = publisher.authorization(REDIRECT)
    assert (other.state, other.code_verifier) != (request.state, request.code_verifier)


# -- connect -------------------------------------------------------------------------------
async def test_connect_discovers_the_account_with_tokens_from_the_response(publisher, sandbox):
    sandbox.configure(x_access_ttl=1800)  # expiries must follow the response, not constants
    account = await connected(publisher)

    assert account.platform == "x"
    assert account.external_id == XAVIER_ID
    assert account.handle == "xavier_x"
    assert account.display_name == "Xavier X"
    assert account.avatar_url == f"{sandbox.url}/x/www/profile_images/{XAVIER_ID}.png"
    tokens = account.tokens
    assert tokens.access_token and tokens.refresh_token
    assert near(tokens.access_expires_at, 1800)
    assert tokens.refresh_expires_at is None  # X does not say; it rotates on use
    assert sorted(tokens.scopes) == sorted(SCOPES)
    # A confidential client: HTTP Basic at the token endpoint, nothing secret in the form.
    (exchange,) = sandbox.records(platform="x", path=TOKEN_PATH)
    assert exchange["authorization"].startswith("Basic ")
    assert "client_secret" not in exchange["body"]


async def test_connect_another_identity(publisher):
    account = await connected(publisher, identity=XENA_ID)
    assert (account.external_id, account.handle) == (XENA_ID, "xena_x")


async def test_declined_consent_connects_nothing(publisher, sandbox):
    request = publisher.authorization(REDIRECT)
    params = await consent(request, decision="deny")
    with pytest.raises(ConnectError, match=r"You declined .* at X\. Nothing was connected\."):
        await publisher.connect(params, REDIRECT, request.code_verifier)
    assert sandbox.records(platform="x", path=TOKEN_PATH) == []


async def test_unticked_scopes_are_named_and_the_grant_is_dropped(publisher, sandbox):
    request = publisher.authorization(REDIRECT)
    params = await consent(request, untick=("offline.access", "media.write"))
    with pytest.raises(ConnectError) as refused:
        await publisher.connect(params, REDIRECT, request.code_verifier)
    assert str(refused.value) == (
        "X did not grant: media.write, offline.access. Reconnect and keep every permission ticked."
    )
    # The token we will not keep is revoked at X rather than left alive.
    (access,) = sandbox.admin.get("/grants", params={"platform": "x", "kind": "access"}).json()
    assert access["revoked"] is True


async def test_replayed_code_is_refused(publisher):
    request = publisher.authorization(REDIRECT)
    params = await consent(request)
    await publisher.connect(params, REDIRECT, request.code_verifier)
    with pytest.raises(ConnectError, match="works only once"):
        await publisher.connect(params, REDIRECT, request.code_verifier)


async def test_code_older_than_30_seconds_is_refused(publisher, sandbox):
    request = publisher.authorization(REDIRECT)
    params = await consent(request)
    sandbox.advance(31)
    with pytest.raises(ConnectError, match="expires after 30 seconds"):
        await publisher.connect(params, REDIRECT, request.code_verifier)


async def test_wrong_verifier_is_refused(publisher):
    request = publisher.authorization(REDIRECT)
    params = await consent(request)
    other = publisher.authorization(REDIRECT)
    with pytest.raises(ConnectError, match="X did not accept the authorization"):
        await publisher.connect(params, REDIRECT, other.code_verifier)


async def test_missing_verifier_is_refused_before_calling_x(publisher, sandbox):
    request = publisher.authorization(REDIRECT)
    params = await consent(request)
    with pytest.raises(ConnectError, match="start again"):
        await publisher.connect(params, REDIRECT, None)
    assert sandbox.records(platform="x", path=TOKEN_PATH) == []


async def test_token_endpoint_error_says_x_is_unavailable(publisher, sandbox):
    request = publisher.authorization(REDIRECT)
    params = await consent(request)
    sandbox.fault(platform="x", kind="error", path=TOKEN_PATH)
    with pytest.raises(ConnectError, match="X is unavailable right now"):
        await publisher.connect(params, REDIRECT, request.code_verifier)


async def test_token_endpoint_timeout_says_x_is_unavailable(sandbox):
    publisher = publisher_for(sandbox, timeout=0.5)
    request = publisher.authorization(REDIRECT)
    params = await consent(request)
    sandbox.fault(platform="x", kind="timeout", path=TOKEN_PATH)
    with pytest.raises(ConnectError, match="X is unavailable right now"):
        await publisher.connect(params, REDIRECT, request.code_verifier)


async def test_discovery_failure_fails_the_connect(publisher, sandbox):
    request = publisher.authorization(REDIRECT)
    params = await consent(request)
    sandbox.fault(platform="x", kind="rate_limit", path="/api/2/users/me", retry_after=60)
    with pytest.raises(ConnectError, match="Could not read your X profile") as refused:
        await publisher.connect(params, REDIRECT, request.code_verifier)
    cause = refused.value.__cause__
    assert isinstance(cause, PlatformError)
    assert cause.kind == "rate_limited"
    assert 50 < cause.retry_after <= 60


# -- refresh -------------------------------------------------------------------------------
async def test_refresh_rotates_and_the_old_refresh_token_dies(publisher, sandbox):
    old = (await connected(publisher)).tokens
    sandbox.configure(x_access_ttl=900)
    new = await publisher.refresh(old)

    assert new.access_token != old.access_token
    assert new.refresh_token and new.refresh_token != old.refresh_token
    assert near(new.access_expires_at, 900)
    assert sorted(new.scopes) == sorted(SCOPES)
    with pytest.raises(PlatformError) as dead:
        await publisher.refresh(old)
    assert dead.value.kind == "auth"
    assert old.refresh_token not in dead.value.message
    assert (await publisher.refresh(new)).access_token  # the new one works


async def test_concurrent_refreshes_of_one_token_leave_one_winner(publisher):
    tokens = (await connected(publisher)).tokens
    outcomes = await asyncio.gather(
        publisher.refresh(tokens), publisher.refresh(tokens), return_exceptions=True
    )
    errors = [o for o in outcomes if isinstance(o, PlatformError)]
    assert len(errors) == 1 and errors[0].kind == "auth"


async def test_refresh_of_a_revoked_refresh_token_is_an_auth_error(publisher):
    account = await connected(publisher)
    await publisher.revoke(account.tokens, account)
    with pytest.raises(PlatformError) as dead:
        await publisher.refresh(account.tokens)
    assert dead.value.kind == "auth"
    assert dead.value.code == "invalid_request"


async def test_refresh_during_an_outage_is_transient(publisher, sandbox):
    tokens = (await connected(publisher)).tokens
    sandbox.fault(platform="x", kind="error", path=TOKEN_PATH, remaining=1)
    with pytest.raises(PlatformError) as outage:
        await publisher.refresh(tokens)
    assert outage.value.kind == "transient"
    assert (await publisher.refresh(tokens)).access_token  # the refresh token survived


async def test_refresh_timeout_is_transient(sandbox):
    publisher = publisher_for(sandbox, timeout=0.5)
    tokens = (await connected(publisher)).tokens
    sandbox.fault(platform="x", kind="timeout", path=TOKEN_PATH)
    with pytest.raises(PlatformError) as slow:
        await publisher.refresh(tokens)
    assert (slow.value.kind, slow.value.code) == ("transient", "network")


async def test_refresh_without_a_refresh_token_is_an_auth_error(publisher):
    tokens = (await connected(publisher)).tokens
    tokens.refresh_token = None
    with pytest.raises(PlatformError) as missing:
        await publisher.refresh(tokens)
    assert missing.value.kind == "auth"


# -- revoke --------------------------------------------------------------------------------
async def test_revoke_revokes_access_and_refresh_tokens(publisher, sandbox):
    account = await connected(publisher)
    await publisher.revoke(account.tokens, account)
    assert grant(sandbox, account.tokens.access_token)["revoked"] is True
    assert grant(sandbox, account.tokens.refresh_token)["revoked"] is True
    hints = [r["body"] for r in sandbox.records(platform="x", path=REVOKE_PATH)]
    assert any("token_type_hint=access_token" in h for h in hints)
    assert any("token_type_hint=refresh_token" in h for h in hints)


async def test_revoke_failure_is_a_platform_error(publisher, sandbox):
    account = await connected(publisher)
    sandbox.fault(platform="x", kind="error", path=REVOKE_PATH, remaining=1)
    with pytest.raises(PlatformError) as failed:
        await publisher.revoke(account.tokens, account)
    assert failed.value.kind == "transient"
    assert failed.value.status == 503
    # The other token was still revoked: a failure does not stop the second attempt.
    assert grant(sandbox, account.tokens.refresh_token)["revoked"] is True
