"""The Facebook publisher over real HTTP against the standalone sandbox: Facebook Login
like a browser, code -> short-lived -> long-lived token, /me/permissions, Page
discovery with Page tokens, revoke, and the Graph error envelope (meta_common)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import ModuleType
from urllib.parse import parse_qs, parse_qsl, urljoin, urlsplit

import httpx
import pytest

from src.publishers import facebook
from src.publishers.base import (
    AuthorizationRequest,
    ConnectError,
    DiscoveredAccount,
    Endpoints,
    PlatformError,
    TokenSet,
)
from src.publishers.meta_common import Graph, GraphError
from src.sandbox.config import SandboxConfig
from src.sandbox.meta import (
    BAKERY_IG_ID,
    BAKERY_PAGE_ID,
    BOOKS_PAGE_ID,
    FIONA_ID,
    FITNESS_PAGE_ID,
    FRANK_ID,
)
from tests.browser import forms_of, hidden_fields

REDIRECT = "https://okktopus.example/connections/facebook/callback"
VERSION = "v24.0"
TOKEN_PATH = f"/graph/{VERSION}/oauth/access_token"
PERMISSIONS_PATH = f"/graph/{VERSION}/me/permissions"


# -- helpers shared with test_instagram.py -----------------------------------------------
def endpoints_for(sandbox, secret: str | None = None) -> Endpoints:
    config = SandboxConfig()
    return Endpoints(
        config.facebook_app_id,
        secret or config.facebook_app_secret,
        auth_url=f"{sandbox.url}/facebook/www",
        api_url=f"{sandbox.url}/facebook/graph",
        version=VERSION,
    )


def publisher_for(module: ModuleType, sandbox, timeout: float = 10.0, secret: str | None = None):
    return module.make(endpoints_for(sandbox, secret), timeout=timeout)


async def consent(
    request: AuthorizationRequest,
    redirect: str,
    decision: str = "allow",
    untick: tuple[str, ...] = (),
    identity: str = FIONA_ID,
) -> dict[str, str]:
    """Open Facebook's dialog, submit it like a browser, return the callback's params."""
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
    assert location.startswith(redirect + "?")
    params = dict(parse_qsl(urlsplit(location).query))
    assert params["state"] == request.state
    return params


async def connect(publisher, redirect: str, **consent_kw) -> list[DiscoveredAccount]:
    request = publisher.authorization(redirect)
    params = await consent(request, redirect, **consent_kw)
    return await publisher.connect(params, redirect, request.code_verifier)


def grant_of(sandbox, value: str) -> dict:
    [grant] = [g for g in sandbox.admin.get("/grants").json() if g["value"] == value]
    return grant


def token_calls(sandbox) -> list[dict[str, list[str]]]:
    """The form bodies of the token calls (POSTed, so no secret sits in a URL)."""
    calls = sandbox.records(platform="facebook", path=TOKEN_PATH)
    assert all(c["method"] == "POST" and c["query"] == "" for c in calls)
    return [parse_qs(c["body"]) for c in calls]


def days_from_now(when: datetime | None) -> float:
    assert when is not None
    return (when - datetime.now(UTC)).total_seconds() / 86400


# -- fixtures ------------------------------------------------------------------------------
@pytest.fixture
def publisher(sandbox) -> facebook.FacebookPublisher:
    return publisher_for(facebook, sandbox)


@pytest.fixture
async def pages(publisher) -> dict[str, DiscoveredAccount]:
    return {a.display_name: a for a in await connect(publisher, REDIRECT)}


# -- authorization URL ---------------------------------------------------------------------
def test_authorization_url_is_facebook_login_without_pkce(publisher, sandbox):
    request = publisher.authorization(REDIRECT)
    url = urlsplit(request.url)
    assert f"{url.scheme}://{url.netloc}{url.path}" == (
        f"{sandbox.url}/facebook/www/{VERSION}/dialog/oauth"
    )
    query = dict(parse_qsl(url.query))
    assert query["client_id"] == SandboxConfig().facebook_app_id
    assert query["redirect_uri"] == REDIRECT
    assert query["state"] == request.state and len(request.state) >= 32
    assert query["scope"] == (
        "pages_show_list,pages_read_engagement,pages_manage_posts,publish_video"
    )
    assert query["auth_type"] == "rerequest"
    assert "code_challenge" not in query and request.code_verifier is None
    assert publisher.authorization(REDIRECT).state != request.state
    assert (publisher.platform, publisher.title, publisher.refreshable) == (
        "facebook",
        "Facebook Page",
        False,
    )


# -- connect and discovery -------------------------------------------------------------------
async def test_connect_discovers_both_pages_with_page_tokens(sandbox, pages):
    assert sorted(pages) == ["Okk Bakery", "Okk Books"]
    bakery, books = pages["Okk Bakery"], pages["Okk Books"]
    assert (bakery.platform, bakery.external_id, bakery.handle) == (
        "facebook",
        BAKERY_PAGE_ID,
        "Okk Bakery",
    )
    assert books.external_id == BOOKS_PAGE_ID and books.facebook_page_id == BOOKS_PAGE_ID
    assert bakery.avatar_url == f"{sandbox.url}/facebook/www/avatar/{BAKERY_PAGE_ID}"
    assert bakery.meta["can_publish"] is True and "CREATE_CONTENT" in bakery.meta["tasks"]
    assert bakery.meta["user_id"] == FIONA_ID
    assert bakery.meta["linked_instagram_id"] == BAKERY_IG_ID
    assert "linked_instagram_id" not in books.meta
    assert bakery.instagram_business_id is None

    tokens = bakery.tokens
    page_grant, user_grant = (
        grant_of(sandbox, tokens.access_token),
        grant_of(sandbox, tokens.refresh_token),
    )
    assert page_grant["extra"]["type"] == "page"
    assert page_grant["extra"]["page_id"] == BAKERY_PAGE_ID
    assert page_grant["expires_at"] is None  # from a long-lived user token: no expiry
    assert user_grant["extra"] == {**user_grant["extra"], "type": "user", "long": True}
    assert books.tokens.access_token != tokens.access_token
    assert books.tokens.refresh_token == tokens.refresh_token  # one user token per connect

    # Expiry: the long-lived user token's expires_in (~60 days), for access and refresh.
    expected = SandboxConfig().facebook_long_token_ttl / 86400
    assert days_from_now(tokens.access_expires_at) == pytest.approx(expected, abs=0.01)
    assert tokens.refresh_expires_at == tokens.access_expires_at
    assert bakery.meta["user_token_expires_at"] == tokens.access_expires_at.isoformat()
    assert set(facebook.SCOPES) <= set(tokens.scopes)
    assert "public_profile" in tokens.scopes


async def test_page_token_acts_as_the_page(sandbox, pages, publisher):
    me = await publisher.graph.get("me", pages["Okk Books"].tokens.access_token, fields="id,name")
    assert me == {"id": BOOKS_PAGE_ID, "name": "Okk Books"}


async def test_short_token_is_exchanged_for_a_long_lived_one(sandbox, pages):
    calls = token_calls(sandbox)
    assert [c.get("grant_type", [""])[0] for c in calls] == ["", "fb_exchange_token"]
    code_call, exchange = calls
    assert code_call["redirect_uri"] == [REDIRECT] and "code" in code_call
    assert exchange["client_id"] == [SandboxConfig().facebook_app_id]
    short = exchange["fb_exchange_token"][0]
    assert grant_of(sandbox, short)["extra"]["long"] is False
    assert short not in {p.tokens.access_token for p in pages.values()}
    assert short not in {p.tokens.refresh_token for p in pages.values()}


async def test_graph_calls_carry_tokens_in_the_header_not_the_url(sandbox, pages):
    graph_calls = [
        r
        for r in sandbox.records(platform="facebook")
        if r["path"].startswith("/graph/") and r["path"] != TOKEN_PATH
    ]
    paths = {r["path"] for r in graph_calls}
    assert {f"/graph/{VERSION}/me/permissions", f"/graph/{VERSION}/me/accounts"} <= paths
    for record in graph_calls:
        assert "access_token" not in parse_qs(record["query"])
        assert record["authorization"].startswith("Bearer EAA")


async def test_page_without_create_content_is_listed_but_cannot_publish(sandbox, publisher):
    sandbox.state.get(BOOKS_PAGE_ID)["roles"][FIONA_ID] = ["ANALYZE", "MODERATE"]
    found = {a.display_name: a for a in await connect(publisher, REDIRECT)}
    assert found["Okk Books"].meta["can_publish"] is False
    assert found["Okk Books"].meta["tasks"] == ["ANALYZE", "MODERATE"]
    assert found["Okk Bakery"].meta["can_publish"] is True


async def test_discovery_follows_paging(sandbox, publisher):
    extra = [str(104_600_000_000_000 + n) for n in range(105)]
    for page_id in extra:
        sandbox.state.put(
            page_id, _type="page", name=f"Page {page_id}", roles={FIONA_ID: ["CREATE_CONTENT"]}
        )
    sandbox.state.flags["facebook_pages"].extend(extra)
    found = await connect(publisher, REDIRECT)
    assert len(found) == 107
    assert {a.external_id for a in found} == {BAKERY_PAGE_ID, BOOKS_PAGE_ID, *extra}
    calls = sandbox.records(platform="facebook", path=f"/graph/{VERSION}/me/accounts")
    assert len(calls) == 2 and "after" in parse_qs(calls[1]["query"])


async def test_frank_gets_his_own_page(publisher):
    [page] = await connect(publisher, REDIRECT, identity=FRANK_ID)
    assert (page.external_id, page.display_name) == (FITNESS_PAGE_ID, "Frank's Fitness")
    assert page.meta["user_id"] == FRANK_ID


async def test_person_without_pages_is_told_what_to_do(sandbox, publisher):
    sandbox.state.get(FITNESS_PAGE_ID)["roles"].clear()
    with pytest.raises(ConnectError, match="Facebook shared no Pages with OKKTOPUS"):
        await connect(publisher, REDIRECT, identity=FRANK_ID)


# -- refusals ----------------------------------------------------------------------------
async def test_consent_denied(publisher, sandbox):
    with pytest.raises(ConnectError) as caught:
        await connect(publisher, REDIRECT, decision="deny")
    assert str(caught.value) == (
        "You declined the Facebook Page connection at Facebook. Nothing was connected."
    )
    assert token_calls(sandbox) == []


async def test_unticked_scope_is_named(publisher):
    with pytest.raises(ConnectError) as caught:
        await connect(publisher, REDIRECT, untick=("pages_manage_posts",))
    assert str(caught.value) == (
        "Facebook did not grant: pages_manage_posts. Reconnect and keep every permission ticked."
    )


async def test_two_unticked_scopes_are_named(publisher):
    with pytest.raises(ConnectError, match=r"did not grant: pages_show_list, publish_video\."):
        await connect(publisher, REDIRECT, untick=("publish_video", "pages_show_list"))


async def test_reconnect_after_declining_works(publisher):
    with pytest.raises(ConnectError):
        await connect(publisher, REDIRECT, untick=("pages_manage_posts",))
    assert len(await connect(publisher, REDIRECT)) == 2


async def test_code_replayed(publisher):
    request = publisher.authorization(REDIRECT)
    params = await consent(request, REDIRECT)
    await publisher.connect(params, REDIRECT, None)
    with pytest.raises(ConnectError, match=r"expired or was already used \(code 100/36009\)"):
        await publisher.connect(params, REDIRECT, None)


async def test_code_expired(publisher, sandbox):
    request = publisher.authorization(REDIRECT)
    params = await consent(request, REDIRECT)
    sandbox.advance(601)  # Facebook codes live about ten minutes
    with pytest.raises(ConnectError, match=r"expired or was already used \(code 100/36007\)"):
        await publisher.connect(params, REDIRECT, None)


async def test_callback_without_code(publisher):
    with pytest.raises(ConnectError, match="sent no authorization code"):
        await publisher.connect({"state": "x"}, REDIRECT, None)


async def test_token_endpoint_5xx(publisher, sandbox):
    sandbox.fault(platform="facebook", kind="error", path="/graph/*/oauth/access_token")
    with pytest.raises(ConnectError) as caught:
        await connect(publisher, REDIRECT)
    assert "Facebook is unavailable right now" in str(caught.value)


async def test_long_lived_exchange_5xx(publisher, sandbox, monkeypatch):
    request = publisher.authorization(REDIRECT)
    params = await consent(request, REDIRECT)
    redeem = publisher.login._token

    async def exchange_meets_a_500(form, secrets):
        # Both calls share one path, so the fault is armed between them: the code
        # redeems, the long-lived exchange gets Graph's 500.
        if form.get("grant_type") == "fb_exchange_token":
            sandbox.fault(platform="facebook", kind="error", path="/graph/*/oauth/access_token")
        return await redeem(form, secrets)

    monkeypatch.setattr(publisher.login, "_token", exchange_meets_a_500)
    with pytest.raises(ConnectError, match="Facebook is unavailable right now"):
        await publisher.connect(params, REDIRECT, None)
    assert [c.get("grant_type", [""])[0] for c in token_calls(sandbox)] == [
        "",
        "fb_exchange_token",
    ]


async def test_token_endpoint_timeout(sandbox):
    fast = publisher_for(facebook, sandbox, timeout=0.5)
    request = fast.authorization(REDIRECT)
    params = await consent(request, REDIRECT)
    sandbox.fault(platform="facebook", kind="timeout", path="/graph/*/oauth/access_token")
    with pytest.raises(ConnectError, match="Facebook is unavailable right now"):
        await fast.connect(params, REDIRECT, None)


async def test_wrong_app_secret_is_named_as_configuration(sandbox):
    wrong = publisher_for(facebook, sandbox, secret="not-the-secret")
    with pytest.raises(ConnectError) as caught:
        await connect(wrong, REDIRECT)
    message = str(caught.value)
    assert "OKK_FACEBOOK_APP_SECRET" in message and "(code 1)" in message
    assert "not-the-secret" not in message


async def test_discovery_failure_is_a_connect_error(publisher, sandbox):
    sandbox.fault(platform="facebook", kind="error", path="/graph/*/me/accounts")
    with pytest.raises(ConnectError) as caught:
        await connect(publisher, REDIRECT)
    message = str(caught.value)
    assert "could not list your Facebook Pages" in message and "(code 2)" in message
    assert "Nothing was connected" in message


# -- refresh and revoke -------------------------------------------------------------------
async def test_refresh_is_impossible_and_says_when_to_reconnect(publisher, pages):
    tokens = pages["Okk Bakery"].tokens
    with pytest.raises(PlatformError) as caught:
        await publisher.refresh(tokens)
    assert caught.value.kind == "auth"
    assert caught.value.message == (
        f"Facebook tokens cannot be refreshed; reconnect before "
        f"{tokens.access_expires_at:%d %B %Y} to keep publishing."
    )
    assert tokens.access_token not in caught.value.message


async def test_revoke_deauthorizes_and_kills_the_page_token(publisher, sandbox, pages):
    bakery = pages["Okk Bakery"]
    await publisher.revoke(bakery.tokens, bakery)

    [delete] = sandbox.records(platform="facebook", method="DELETE")
    assert delete["path"] == PERMISSIONS_PATH
    assert delete["authorization"] == f"Bearer {bakery.tokens.refresh_token}"
    grants = sandbox.admin.get(
        "/grants", params={"platform": "facebook", "user_id": FIONA_ID, "kind": "access"}
    ).json()
    assert grants and all(g["revoked"] for g in grants)

    for page in pages.values():  # every Page token of the person dies with the user token
        with pytest.raises(PlatformError) as caught:
            await publisher.graph.get("me", page.tokens.access_token)
        error = caught.value
        assert isinstance(error, GraphError)
        assert (error.kind, error.graph_code, error.subcode) == ("auth", 190, 458)
        assert "Reconnect the account" in error.message
        assert page.tokens.access_token not in error.message

    await publisher.revoke(bakery.tokens, bakery)  # already revoked: nothing to do


async def test_revoke_failure_raises(publisher, sandbox, pages):
    sandbox.fault(platform="facebook", kind="error", path=PERMISSIONS_PATH, method="DELETE")
    bakery = pages["Okk Bakery"]
    with pytest.raises(PlatformError) as caught:
        await publisher.revoke(bakery.tokens, bakery)
    assert caught.value.kind == "transient" and caught.value.code == "2"
    assert not grant_of(sandbox, bakery.tokens.access_token)["revoked"]


async def test_revoke_with_an_expired_user_token_is_an_auth_error(publisher, sandbox, pages):
    sandbox.advance(SandboxConfig().facebook_long_token_ttl + 60)
    bakery = pages["Okk Bakery"]
    with pytest.raises(PlatformError) as caught:
        await publisher.revoke(bakery.tokens, bakery)
    assert (caught.value.kind, caught.value.code) == ("auth", "190")
    assert "(code 190/463)" in caught.value.message


async def test_revoke_without_a_user_token(publisher, pages):
    bakery = pages["Okk Bakery"]
    bakery.tokens.refresh_token = None
    with pytest.raises(PlatformError) as caught:
        await publisher.revoke(bakery.tokens, bakery)
    assert caught.value.kind == "permanent" and "Business Integrations" in caught.value.message


# -- the Graph error envelope (meta_common) ------------------------------------------------
GRAPH_ME = f"/graph/{VERSION}/me"


@pytest.mark.parametrize(
    ("rule", "kind", "code", "wait"),
    [
        ({"kind": "rate_limit", "body": {"code": 4}, "retry_after": 300}, "rate_limited", 4, 300),
        ({"kind": "rate_limit", "body": {"code": 17}, "retry_after": 61}, "rate_limited", 17, 120),
        ({"kind": "rate_limit", "body": {"code": 32}, "retry_after": 1}, "rate_limited", 32, 60),
        ({"kind": "rate_limit", "body": {"code": 613}}, "rate_limited", 613, 60),
        ({"kind": "rate_limit", "body": {"code": 80001}}, "rate_limited", 80001, 60),
        ({"kind": "error", "body": {"code": 368}}, "rate_limited", 368, 3600),
        ({"kind": "error", "body": {"code": 4, "error_subcode": 2207051}}, "rate_limited", 4, 3600),
        ({"kind": "error"}, "transient", 2, None),
        ({"kind": "error", "body": {"code": 1}}, "transient", 1, None),
        ({"kind": "error", "body": {"code": -1}}, "transient", -1, None),
        ({"kind": "error", "body": {"code": -2}}, "transient", -2, None),
        ({"kind": "error", "body": {"code": 341}}, "transient", 341, None),  # is_transient
        ({"kind": "expired_token"}, "auth", 190, None),
        ({"kind": "revoked_token"}, "auth", 190, None),
        ({"kind": "error", "body": {"code": 100}}, "permanent", 100, None),
        ({"kind": "error", "body": {"code": 10}}, "permanent", 10, None),
        ({"kind": "error", "body": {"code": 200}}, "permanent", 200, None),
        ({"kind": "error", "body": {"code": 506}}, "permanent", 506, None),
        ({"kind": "error", "body": {"code": 1609005}}, "permanent", 1609005, None),
    ],
)
async def test_graph_error_mapping(sandbox, rule, kind, code, wait):
    sandbox.fault(platform="facebook", path=GRAPH_ME, **rule)
    graph = Graph(endpoints_for(sandbox), "Facebook", timeout=5)
    with pytest.raises(GraphError) as caught:
        await graph.get("me", "EAAsome-token-value")
    error = caught.value
    assert (error.kind, error.graph_code, error.code) == (kind, code, str(code))
    assert error.retry_after == wait
    assert f"(code {code}" in error.message
    assert "EAAsome-token-value" not in error.message


@pytest.mark.parametrize(
    ("status", "body", "headers", "kind", "wait"),
    [
        (502, "<html>Bad gateway</html>", {}, "transient", None),
        (429, "", {"Retry-After": "7"}, "rate_limited", 7),
        (
            400,
            {"error": {"message": "(#4) Application request limit reached", "code": 4}},
            {"X-App-Usage": '{"call_count": 100, "total_cputime": 12, "total_time": 30}'},
            "rate_limited",
            60,
        ),
        (
            400,
            {"error": {"message": "(#32) Page request limit reached", "code": 32}},
            {
                "X-Business-Use-Case-Usage": (
                    '{"1": [{"type": "pages", "call_count": 100,'
                    ' "estimated_time_to_regain_access": 15}]}'
                )
            },
            "rate_limited",
            900,
        ),
        (
            400,
            {"error": {"message": "x", "code": 100, "error_user_msg": "Say it plainly."}},
            {},
            "permanent",
            None,
        ),
    ],
)
async def test_graph_error_edge_cases(sandbox, status, body, headers, kind, wait):
    sandbox.fault(
        platform="facebook",
        path=GRAPH_ME,
        kind="response",
        status=status,
        body=body,
        headers=headers,
    )
    graph = Graph(endpoints_for(sandbox), "Facebook", timeout=5)
    with pytest.raises(GraphError) as caught:
        await graph.get("me", "EAAtoken")
    assert (caught.value.kind, caught.value.retry_after, caught.value.status) == (
        kind,
        wait,
        status,
    )
    if kind == "permanent":
        assert caught.value.message == "Facebook refused the request: Say it plainly. (code 100)."


async def test_graph_timeout_is_transient(sandbox):
    sandbox.fault(platform="facebook", path=GRAPH_ME, kind="timeout")
    graph = Graph(endpoints_for(sandbox), "Facebook", timeout=0.3)
    with pytest.raises(GraphError) as caught:
        await graph.get("me", "EAAtoken")
    assert caught.value.kind == "transient" and "did not answer in time" in caught.value.message


async def test_graph_unreachable_is_transient():
    endpoints = Endpoints("a", "b", "http://127.0.0.1:9", "http://127.0.0.1:9", version=VERSION)
    with pytest.raises(GraphError) as caught:
        await Graph(endpoints, "Facebook", timeout=2).get("me", "EAAtoken")
    assert caught.value.kind == "transient" and "unreachable" in caught.value.message


def test_no_refresh_before_expiry_is_described_for_a_past_date(publisher):
    past = datetime.now(UTC) - timedelta(days=1)
    error = publisher.login.cannot_refresh(TokenSet("t", "u", past, past))
    assert error.kind == "auth" and "expired on" in error.message
