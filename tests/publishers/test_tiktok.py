"""The TikTok publisher over real HTTP against the standalone sandbox: Login Kit v2 consent
like a browser, code exchange, discovery with creator info, rotating refresh (and why two
concurrent refreshes must never happen), revocation and the v2 error envelope."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, parse_qsl, urlencode, urljoin, urlsplit

import httpx
import pytest
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from src.publishers.base import (
    AuthorizationRequest,
    ConnectError,
    DiscoveredAccount,
    Endpoints,
    PlatformError,
    TokenSet,
)
from src.publishers.tiktok import TikTokPublisher, make
from src.sandbox.config import SandboxConfig
from tests.browser import forms_of, hidden_fields

REDIRECT = "https://okktopus.example/connections/tiktok/callback"
TOM, PRIYA = "-000TomTikT0kOpenIdq7Lh9Kd4eJvXbZ2mR", "-000PriyaPr1vateOpenIdW3nTg8sYcQ5aK"
TOKEN_PATH = "/open/v2/oauth/token"  # paths as the sandbox records them (no trailing /)
REVOKE_PATH = "/open/v2/oauth/revoke"
USER_INFO_PATH = "/open/v2/user/info"


# -- helpers -------------------------------------------------------------------------------
def publisher_for(sandbox, timeout: float = 10.0) -> TikTokPublisher:
    config = SandboxConfig()
    endpoints = Endpoints(
        config.tiktok_client_key,
        config.tiktok_client_secret,
        auth_url=f"{sandbox.url}/tiktok/www",
        api_url=f"{sandbox.url}/tiktok/open",
    )
    return make(endpoints, timeout=timeout)


@pytest.fixture
def publisher(sandbox) -> TikTokPublisher:
    return publisher_for(sandbox)


async def consent(
    request: AuthorizationRequest,
    decision: str = "allow",
    untick: tuple[str, ...] = (),
    identity: str = TOM,
) -> dict[str, str]:
    """Open the consent page, submit it like a browser, and return the callback's params
    decoded once, as a web framework hands them over."""
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


async def connected(publisher: TikTokPublisher, identity: str = TOM) -> DiscoveredAccount:
    request = publisher.authorization(REDIRECT)
    params = await consent(request, identity=identity)
    (account,) = await publisher.connect(params, REDIRECT, request.code_verifier)
    return account


def grants(sandbox, **filters: str) -> list[dict]:
    return sandbox.admin.get("/grants", params={"platform": "tiktok", **filters}).json()


def near(moment: datetime | None, seconds: float) -> bool:
    expected = datetime.now(UTC) + timedelta(seconds=seconds)
    return moment is not None and abs((moment - expected).total_seconds()) < 30


async def connect_failure(publisher: TikTokPublisher, sandbox, **fault) -> ConnectError:
    request = publisher.authorization(REDIRECT)
    params = await consent(request)
    sandbox.fault(platform="tiktok", **fault)
    with pytest.raises(ConnectError) as refused:
        await publisher.connect(params, REDIRECT, request.code_verifier)
    return refused.value


# -- authorization URL ---------------------------------------------------------------------
def test_authorization_uses_client_key_comma_scopes_and_pkce(publisher, sandbox):
    request = publisher.authorization(REDIRECT)
    url = urlsplit(request.url)
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert (
        f"{url.scheme}://{url.netloc}{url.path}" == f"{sandbox.url}/tiktok/www/v2/auth/authorize/"
    )
    assert query["client_key"] == SandboxConfig().tiktok_client_key
    assert "client_id" not in query
    assert query["scope"] == "user.info.basic,video.publish"
    assert query["response_type"] == "code"
    assert query["redirect_uri"] == REDIRECT
    assert query["state"] == request.state
    assert query["code_challenge_method"] == "S256"
    assert query["code_challenge"] == create_s256_code_challenge(request.code_verifier)


# -- connect -------------------------------------------------------------------------------
async def test_connect_discovers_the_creator_with_tokens_from_the_response(publisher, sandbox):
    # TikTok's newer docs say 2 h / 180 d: expiries must follow the response, never constants.
    sandbox.configure(tiktok_access_ttl=7200, tiktok_refresh_ttl=15_552_000)
    account = await connected(publisher)

    assert account.platform == "tiktok"
    assert account.external_id == TOM
    assert account.display_name == "Tom TikTok"
    assert account.handle == "tiktok_tom"  # creator_info's creator_username
    assert account.avatar_url == f"{sandbox.url}/tiktok/cdn/avatar/{TOM}.jpeg"
    assert account.meta["creator_username"] == "tiktok_tom"
    assert account.meta["privacy_level_options"] == ["SELF_ONLY"]  # an unaudited app
    assert account.meta["max_video_post_duration_sec"] == 600
    tokens = account.tokens
    assert tokens.access_token.startswith("act.") and tokens.refresh_token.startswith("rft.")
    assert near(tokens.access_expires_at, 7200)
    assert near(tokens.refresh_expires_at, 15_552_000)
    assert tokens.scopes == ["user.info.basic", "video.publish"]
    creator_calls = sandbox.records(
        platform="tiktok", path="/open/v2/post/publish/creator_info/query"
    )
    assert len(creator_calls) == 1


async def test_code_with_reserved_characters_is_sent_exactly_once_encoded(publisher, sandbox):
    request = publisher.authorization(REDIRECT)
    params = await consent(request, identity=PRIYA)
    code = params["code"]
    assert "*" in code and "!" in code  # like TikTok's real codes
    (account,) = await publisher.connect(params, REDIRECT, request.code_verifier)
    assert account.external_id == PRIYA
    assert account.handle == "priya_private"
    assert account.meta["max_video_post_duration_sec"] == 300
    (exchange,) = sandbox.records(platform="tiktok", path=TOKEN_PATH)
    form = exchange["body"]
    assert urlencode({"code": code}) in form  # neither double-encoded nor decoded again
    assert "client_key=" in form and "client_secret=" in form and "code_verifier=" in form
    assert "grant_type=authorization_code" in form


async def test_declined_consent_connects_nothing(publisher, sandbox):
    request = publisher.authorization(REDIRECT)
    params = await consent(request, decision="deny")
    with pytest.raises(ConnectError, match=r"You declined .* at TikTok\. Nothing was connected\."):
        await publisher.connect(params, REDIRECT, request.code_verifier)
    assert sandbox.records(platform="tiktok", path=TOKEN_PATH) == []


async def test_unticked_scope_in_the_callback_is_named_before_any_token(publisher, sandbox):
    request = publisher.authorization(REDIRECT)
    params = await consent(request, untick=("video.publish",))
    assert params["scopes"] == "user.info.basic"
    with pytest.raises(ConnectError) as refused:
        await publisher.connect(params, REDIRECT, request.code_verifier)
    assert str(refused.value) == (
        "TikTok did not grant: video.publish. Reconnect and keep every permission ticked."
    )
    assert grants(sandbox, kind="access") == []  # no token was minted


async def test_unticked_scope_in_the_token_response_is_named(publisher):
    request = publisher.authorization(REDIRECT)
    params = await consent(request, untick=("video.publish",))
    del params["scopes"]  # only the token response's `scope` tells
    with pytest.raises(ConnectError, match=r"^TikTok did not grant: video\.publish\. "):
        await publisher.connect(params, REDIRECT, request.code_verifier)


async def test_replayed_code_is_refused(publisher):
    request = publisher.authorization(REDIRECT)
    params = await consent(request)
    await publisher.connect(params, REDIRECT, request.code_verifier)
    with pytest.raises(ConnectError, match="expired or was already used"):
        await publisher.connect(params, REDIRECT, request.code_verifier)


async def test_expired_code_is_refused(publisher, sandbox):
    request = publisher.authorization(REDIRECT)
    params = await consent(request)
    sandbox.advance(601)  # TikTok codes live 10 minutes
    with pytest.raises(ConnectError, match="expired or was already used"):
        await publisher.connect(params, REDIRECT, request.code_verifier)


async def test_wrong_verifier_is_refused(publisher):
    request = publisher.authorization(REDIRECT)
    params = await consent(request)
    other = publisher.authorization(REDIRECT)
    with pytest.raises(ConnectError, match="Code verifier or code challenge is invalid"):
        await publisher.connect(params, REDIRECT, other.code_verifier)


async def test_token_endpoint_error_says_tiktok_is_unavailable(publisher, sandbox):
    refused = await connect_failure(publisher, sandbox, kind="error", path=TOKEN_PATH)
    assert str(refused).startswith("TikTok is unavailable right now.")


async def test_token_endpoint_timeout_says_tiktok_is_unavailable(sandbox):
    publisher = publisher_for(sandbox, timeout=0.5)
    refused = await connect_failure(publisher, sandbox, kind="timeout", path=TOKEN_PATH)
    assert str(refused).startswith("TikTok is unavailable right now.")


@pytest.mark.parametrize(
    ("fault", "kind", "code"),
    [
        ({"kind": "expired_token"}, "auth", "access_token_invalid"),
        ({"kind": "rate_limit", "retry_after": 42}, "rate_limited", "rate_limit_exceeded"),
        ({"kind": "error"}, "transient", "internal_error"),
        (
            {
                "kind": "response",
                "status": 401,
                "body": {
                    "data": {},
                    "error": {
                        "code": "scope_not_authorized",
                        "message": "The user did not authorize the scope.",
                        "log_id": "20261129120000ABCDEF0123456789ABCDEF",
                    },
                },
            },
            "permanent",
            "scope_not_authorized",
        ),
    ],
)
async def test_envelope_errors_in_discovery_fail_the_connect(publisher, sandbox, fault, kind, code):
    refused = await connect_failure(publisher, sandbox, path=USER_INFO_PATH, **fault)
    assert str(refused).startswith("Could not read your TikTok profile: TikTok answered:")
    cause = refused.__cause__
    assert isinstance(cause, PlatformError)
    assert (cause.kind, cause.code) == (kind, code)
    if kind == "rate_limited":
        assert cause.retry_after == 42
    if kind == "permanent":
        assert "The user did not authorize the scope." in cause.message


async def test_an_envelope_that_is_not_ok_is_an_error_even_with_status_200(publisher, sandbox):
    body = {"data": {}, "error": {"code": "invalid_params", "message": "fields is required."}}
    refused = await connect_failure(
        publisher, sandbox, kind="response", status=200, body=body, path=USER_INFO_PATH
    )
    assert isinstance(refused.__cause__, PlatformError)
    assert refused.__cause__.kind == "permanent"
    assert "fields is required." in str(refused)


# -- refresh -------------------------------------------------------------------------------
async def test_refresh_rotates_and_the_old_refresh_token_dies(publisher, sandbox):
    old = (await connected(publisher)).tokens
    sandbox.configure(tiktok_access_ttl=3600)
    sandbox.advance(86_400)  # a day on: the refresh token's lifetime counts down
    new = await publisher.refresh(old)

    assert new.access_token != old.access_token
    assert new.refresh_token and new.refresh_token != old.refresh_token
    assert near(new.access_expires_at, 3600)
    assert near(new.refresh_expires_at, 31_536_000 - 86_400)  # from refresh_expires_in
    assert new.scopes == ["user.info.basic", "video.publish"]
    with pytest.raises(PlatformError) as dead:
        await publisher.refresh(old)
    assert (dead.value.kind, dead.value.code) == ("auth", "invalid_grant")
    assert old.refresh_token not in dead.value.message
    assert (await publisher.refresh(new)).access_token  # the new one works


async def test_two_concurrent_refreshes_of_one_token_kill_one_of_them(publisher):
    """Why the accounts domain must lock per account: with rotating refresh tokens, two
    workers refreshing the same account at once get one success and one dead token, and
    the loser, had it stored its failure, would mark a healthy account needs_reconnect."""
    tokens = (await connected(publisher)).tokens
    outcomes = await asyncio.gather(
        publisher.refresh(tokens), publisher.refresh(tokens), return_exceptions=True
    )
    successes = [o for o in outcomes if isinstance(o, TokenSet)]
    failures = [o for o in outcomes if isinstance(o, PlatformError)]
    assert len(successes) == 1 and len(failures) == 1
    assert failures[0].kind == "auth"
    assert (await publisher.refresh(successes[0])).access_token  # the winner's token lives


async def test_refresh_of_a_revoked_refresh_token_is_an_auth_error(publisher):
    account = await connected(publisher)
    await publisher.revoke(account.tokens, account)
    with pytest.raises(PlatformError) as dead:
        await publisher.refresh(account.tokens)
    assert dead.value.kind == "auth"


async def test_refresh_during_an_outage_is_transient(publisher, sandbox):
    tokens = (await connected(publisher)).tokens
    sandbox.fault(platform="tiktok", kind="error", path=TOKEN_PATH, remaining=1)
    with pytest.raises(PlatformError) as outage:
        await publisher.refresh(tokens)
    assert (outage.value.kind, outage.value.code) == ("transient", "server_error")
    assert (await publisher.refresh(tokens)).access_token  # the refresh token survived


async def test_refresh_rate_limited_carries_retry_after(publisher, sandbox):
    tokens = (await connected(publisher)).tokens
    sandbox.fault(platform="tiktok", kind="rate_limit", path=TOKEN_PATH, retry_after=7)
    with pytest.raises(PlatformError) as limited:
        await publisher.refresh(tokens)
    assert (limited.value.kind, limited.value.retry_after) == ("rate_limited", 7)


async def test_refresh_timeout_is_transient(sandbox):
    publisher = publisher_for(sandbox, timeout=0.5)
    tokens = (await connected(publisher)).tokens
    sandbox.fault(platform="tiktok", kind="timeout", path=TOKEN_PATH)
    with pytest.raises(PlatformError) as slow:
        await publisher.refresh(tokens)
    assert (slow.value.kind, slow.value.code) == ("transient", "network")


# -- revoke --------------------------------------------------------------------------------
async def test_revoke_revokes_the_whole_grant(publisher, sandbox):
    account = await connected(publisher)
    await publisher.revoke(account.tokens, account)
    mine = grants(sandbox, user_id=TOM)
    tokens = [g for g in mine if g["kind"] in ("access", "refresh")]
    assert len(tokens) == 2 and all(g["revoked"] for g in tokens)
    (call,) = sandbox.records(platform="tiktok", path=REVOKE_PATH)
    assert "client_key=" in call["body"] and "client_secret=" in call["body"]


async def test_revoke_failure_is_a_platform_error(publisher, sandbox):
    account = await connected(publisher)
    sandbox.fault(platform="tiktok", kind="error", path=REVOKE_PATH)
    with pytest.raises(PlatformError) as failed:
        await publisher.revoke(account.tokens, account)
    assert (failed.value.kind, failed.value.status) == ("transient", 500)
    assert account.tokens.access_token not in failed.value.message
    assert not any(g["revoked"] for g in grants(sandbox, user_id=TOM, kind="access"))
