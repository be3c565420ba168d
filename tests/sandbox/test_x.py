"""Contract tests of the X fake over real HTTP, every API exchange checked against X's
OpenAPI spec (tests/sandbox/x_openapi.py)."""

from __future__ import annotations

import base64
import hashlib
import html
import re
import secrets
import struct
import zlib
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from src.sandbox.x import XAVIER_ID, XENA_ID
from tests.media_samples import jpeg_bytes, mp4_bytes
from tests.sandbox.x_openapi import SpecViolation, check, request_errors, spec_client

REDIRECT = "https://app.example/callback/x"
ALL_SCOPES = "tweet.read tweet.write users.read offline.access media.write"
CLIENT, SECRET, PUBLIC = "sandbox-x-client", "sandbox-x-secret", "sandbox-x-public-client"
UNAUTHORIZED = {
    "title": "Unauthorized",
    "type": "about:blank",
    "status": 401,
    "detail": "Unauthorized",
}
TOO_MANY = {
    "title": "Too Many Requests",
    "type": "about:blank",
    "status": 429,
    "detail": "Too Many Requests",
}
FORBIDDEN = {"title": "Forbidden", "type": "about:blank", "status": 403, "detail": "Forbidden"}
DUPLICATE = {
    "detail": "You are not allowed to create a Tweet with duplicate content.",
    "type": "about:blank",
    "title": "Forbidden",
    "status": 403,
}
INVALID = "https://api.twitter.com/2/problems/invalid-request"


# -- helpers -----------------------------------------------------------------------------
@pytest.fixture
def x(sandbox):
    with spec_client(sandbox.url) as client:
        yield client


def pkce(method: str = "S256") -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    if method == "plain":
        return verifier, verifier
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def authorize_params(challenge: str, **overrides: str) -> dict[str, str]:
    params = {
        "response_type": "code",
        "client_id": CLIENT,
        "redirect_uri": REDIRECT,
        "scope": ALL_SCOPES,
        "state": "st-" + secrets.token_hex(4),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    params.update(overrides)
    return {k: v for k, v in params.items() if v is not None}


def consent(
    x: httpx.Client,
    params: dict[str, str],
    decision: str = "allow",
    identity: str = XAVIER_ID,
    untick=(),
) -> dict[str, str]:
    """Open the authorize URL, submit the consent form as a browser would, and return the
    query parameters X sends the browser back to the redirect_uri with."""
    page = x.get("/x/www/i/oauth2/authorize", params=params)
    assert page.status_code == 200, page.text
    action = html.unescape(re.search(r'<form method="post" action="([^"]+)"', page.text).group(1))
    form: dict[str, object] = {
        html.unescape(name): html.unescape(value)
        for name, value in re.findall(r'type="hidden" name="([^"]+)" value="([^"]*)"', page.text)
    }
    scopes = re.findall(r'name="scope" value="([^"]+)"', page.text)
    form.update(decision=decision, identity=identity, scope=[s for s in scopes if s not in untick])
    answer = x.post(action, data=form)
    assert answer.status_code == 302, answer.text
    location = answer.headers["location"]
    assert location.startswith(REDIRECT + "?")
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def get_code(
    x: httpx.Client, scopes: str = ALL_SCOPES, method: str = "S256", **kw
) -> tuple[str, str]:
    verifier, challenge = pkce(method)
    params = authorize_params(challenge, scope=scopes, code_challenge_method=method, **kw)
    back = consent(x, params)
    assert back["state"] == params["state"]
    return back["code"], verifier


def exchange(
    x: httpx.Client, code: str, verifier: str, public: bool = False, **extra
) -> httpx.Response:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "code_verifier": verifier,
    }
    form.update(extra)
    if public:
        return x.post("/x/api/2/oauth2/token", data={**form, "client_id": PUBLIC})
    return x.post("/x/api/2/oauth2/token", data=form, auth=(CLIENT, SECRET))


def connect(
    x: httpx.Client, scopes: str = ALL_SCOPES, identity: str = XAVIER_ID, untick=()
) -> dict:
    verifier, challenge = pkce()
    back = consent(x, authorize_params(challenge, scope=scopes), identity=identity, untick=untick)
    response = exchange(x, back["code"], verifier)
    assert response.status_code == 200, response.text
    return response.json()


def auth(tokens: dict | str) -> dict[str, str]:
    token = tokens if isinstance(tokens, str) else tokens["access_token"]
    return {"Authorization": f"Bearer {token}"}


def tweet(x: httpx.Client, tokens, **body) -> httpx.Response:
    return x.post("/x/api/2/tweets", json=body, headers=auth(tokens))


def png(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    rows = b"".join(b"\0" + b"\x80\x80\x80" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def one_shot(x: httpx.Client, tokens, data: bytes, category: str = "tweet_image") -> httpx.Response:
    files = {"media": ("image.bin", data, "application/octet-stream")}
    return x.post(
        "/x/api/2/media/upload",
        files=files,
        data={"media_category": category},
        headers=auth(tokens),
    )


def initialize(x: httpx.Client, tokens, **body) -> httpx.Response:
    return x.post("/x/api/2/media/upload/initialize", json=body, headers=auth(tokens))


def append(x: httpx.Client, tokens, media_id: str, chunk: bytes, index: int) -> httpx.Response:
    files = {"media": ("chunk", chunk, "application/octet-stream")}
    url = f"/x/api/2/media/upload/{media_id}/append"
    return x.post(url, files=files, data={"segment_index": str(index)}, headers=auth(tokens))


def chunked(
    x: httpx.Client, tokens, data: bytes, media_type: str, category: str, size: int = 1 << 20
) -> dict:
    """initialize + append every chunk + finalize; returns finalize's `data`."""
    init = initialize(
        x, tokens, media_type=media_type, total_bytes=len(data), media_category=category
    )
    assert init.status_code == 200, init.text
    media_id = init.json()["data"]["id"]
    for index, start in enumerate(range(0, len(data), size)):
        answer = append(x, tokens, media_id, data[start : start + size], index)
        assert answer.status_code == 200, answer.text
    done = x.post(f"/x/api/2/media/upload/{media_id}/finalize", headers=auth(tokens))
    assert done.status_code == 200, done.text
    return done.json()["data"]


def status(x: httpx.Client, tokens, media_id: str) -> dict:
    answer = x.get(
        "/x/api/2/media/upload",
        params={"command": "STATUS", "media_id": media_id},
        headers=auth(tokens),
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]


def assert_invalid(response: httpx.Response, message: str | None = None) -> None:
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["type"] == INVALID
    assert body["title"] == "Invalid Request"
    assert body["detail"] == "One or more parameters to your request was invalid."
    if message is not None:
        assert message in [e["message"] for e in body["errors"]], body


# -- OAuth 2.0 ---------------------------------------------------------------------------
def test_authorize_shows_consent_for_requested_scopes(x, sandbox):
    _, challenge = pkce()
    page = x.get("/x/www/i/oauth2/authorize", params=authorize_params(challenge))
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    for scope in ALL_SCOPES.split():
        assert f'name="scope" value="{scope}"' in page.text
    assert "Xavier X" in page.text and "Xena X" in page.text


@pytest.mark.parametrize(
    "override",
    [
        {"code_challenge": None},
        {"code_challenge_method": None},
        {"code_challenge_method": "S512"},
        {"state": "s" * 501},
        {"state": None},
        {"client_id": "someone-else"},
        {"response_type": "token"},
        {"scope": "tweet.read tweet.fly"},
        {"scope": None},
        {"redirect_uri": "not a url"},
    ],
)
def test_authorize_refuses_what_x_refuses(x, override):
    _, challenge = pkce()
    page = x.get("/x/www/i/oauth2/authorize", params=authorize_params(challenge, **override))
    assert page.status_code == 400
    assert "location" not in page.headers
    assert "able to give access to the App." in page.text


def test_registered_callback_urls_are_exact(x, sandbox):
    sandbox.configure(x_callback_urls=[REDIRECT])
    _, challenge = pkce()
    assert x.get("/x/www/i/oauth2/authorize", params=authorize_params(challenge)).status_code == 200
    other = authorize_params(challenge, redirect_uri=REDIRECT + "/")
    assert x.get("/x/www/i/oauth2/authorize", params=other).status_code == 400


def test_state_of_500_characters_comes_back(x):
    _, challenge = pkce()
    params = authorize_params(challenge, state="s" * 500)
    assert consent(x, params)["state"] == "s" * 500


def test_deny_sends_access_denied_with_state(x, sandbox):
    _, challenge = pkce()
    params = authorize_params(challenge)
    back = consent(x, params, decision="deny")
    assert back == {"error": "access_denied", "state": params["state"]}
    assert sandbox.state.grants == {}


def test_confidential_client_gets_tokens_with_basic_auth(x, sandbox):
    code, verifier = get_code(x)
    response = exchange(x, code, verifier)
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 7200
    assert body["scope"] == ALL_SCOPES
    assert body["access_token"] and body["refresh_token"]
    assert x.get("/x/api/2/users/me", headers=auth(body)).json()["data"]["id"] == XAVIER_ID


def test_public_client_sends_client_id_in_the_body(x):
    verifier, challenge = pkce()
    back = consent(x, authorize_params(challenge, client_id=PUBLIC))
    response = exchange(x, back["code"], verifier, public=True)
    assert response.status_code == 200
    assert response.json()["scope"] == ALL_SCOPES


def test_confidential_client_must_authenticate(x):
    code, verifier = get_code(x)
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "code_verifier": verifier,
    }
    denied = {
        "error": "unauthorized_client",
        "error_description": "Missing valid authorization header",
    }
    no_basic = x.post("/x/api/2/oauth2/token", data={**form, "client_id": CLIENT})
    assert (no_basic.status_code, no_basic.json()) == (401, denied)
    wrong_secret = x.post("/x/api/2/oauth2/token", data=form, auth=(CLIENT, "nope"))
    assert (wrong_secret.status_code, wrong_secret.json()) == (401, denied)
    assert exchange(x, code, verifier).status_code == 200  # the code survived both attempts


def test_no_refresh_token_without_offline_access(x):
    tokens = connect(x, untick=("offline.access",))
    assert "refresh_token" not in tokens
    assert tokens["scope"] == "tweet.read tweet.write users.read media.write"


def test_authorization_code_is_single_use(x):
    code, verifier = get_code(x)
    assert exchange(x, code, verifier).status_code == 200
    again = exchange(x, code, verifier)
    assert again.status_code == 400
    assert again.json() == {
        "error": "invalid_request",
        "error_description": "Value passed for the authorization code was invalid.",
    }


def test_authorization_code_lives_30_seconds(x, sandbox):
    fresh, fresh_verifier = get_code(x)
    old, old_verifier = get_code(x)
    sandbox.advance(29)
    assert exchange(x, fresh, fresh_verifier).status_code == 200
    sandbox.advance(2)
    expired = exchange(x, old, old_verifier)
    assert expired.status_code == 400
    assert (
        expired.json()["error_description"]
        == "Value passed for the authorization code was invalid."
    )


def test_code_verifier_and_redirect_uri_are_checked(x):
    code, verifier = get_code(x)
    assert exchange(x, code, pkce()[0]).status_code == 400
    assert exchange(x, code, verifier, redirect_uri=REDIRECT + "/other").status_code == 400
    assert exchange(x, code, verifier).status_code == 200
    plain_code, plain_verifier = get_code(x, method="plain")
    assert exchange(x, plain_code, plain_verifier).status_code == 200


def test_missing_token_parameters_are_named(x):
    code, _ = get_code(x)
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}
    response = x.post("/x/api/2/oauth2/token", data=form, auth=(CLIENT, SECRET))
    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid_request",
        "error_description": "Missing required parameter [code_verifier].",
    }


def test_refresh_rotates_the_refresh_token(x):
    first = connect(x)
    form = {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    second = x.post("/x/api/2/oauth2/token", data=form, auth=(CLIENT, SECRET))
    assert second.status_code == 200
    body = second.json()
    assert body["refresh_token"] != first["refresh_token"]
    assert body["access_token"] != first["access_token"]
    assert body["scope"] == ALL_SCOPES and body["expires_in"] == 7200
    reused = x.post("/x/api/2/oauth2/token", data=form, auth=(CLIENT, SECRET))
    assert reused.status_code == 400
    assert reused.json() == {
        "error": "invalid_request",
        "error_description": "Value passed for the token was invalid.",
    }
    assert x.get("/x/api/2/users/me", headers=auth(body)).status_code == 200
    third = x.post(
        "/x/api/2/oauth2/token",
        data={"grant_type": "refresh_token", "refresh_token": body["refresh_token"]},
        auth=(CLIENT, SECRET),
    )
    assert third.status_code == 200


def test_revoke_access_and_refresh_tokens(x):
    tokens = connect(x)
    revoked = x.post(
        "/x/api/2/oauth2/revoke",
        data={"token": tokens["access_token"], "token_type_hint": "access_token"},
        auth=(CLIENT, SECRET),
    )
    assert (revoked.status_code, revoked.json()) == (200, {"revoked": True})
    me = x.get("/x/api/2/users/me", headers=auth(tokens))
    assert (me.status_code, me.json()) == (401, UNAUTHORIZED)
    x.post("/x/api/2/oauth2/revoke", data={"token": tokens["refresh_token"]}, auth=(CLIENT, SECRET))
    refresh = x.post(
        "/x/api/2/oauth2/token",
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        auth=(CLIENT, SECRET),
    )
    assert refresh.status_code == 400


def test_access_token_expires_after_x_access_ttl(x, sandbox):
    tokens = connect(x)
    sandbox.advance(7199)
    assert x.get("/x/api/2/users/me", headers=auth(tokens)).status_code == 200
    sandbox.advance(2)
    me = x.get("/x/api/2/users/me", headers=auth(tokens))
    assert (me.status_code, me.json()) == (401, UNAUTHORIZED)
    assert me.headers["content-type"].startswith("application/problem+json")


# -- users/me, scopes, auth -------------------------------------------------------------
def test_users_me_with_profile_image_and_rate_headers(x, sandbox):
    tokens = connect(x, identity=XENA_ID)
    plain = x.get("/x/api/2/users/me", headers=auth(tokens))
    assert plain.json() == {"data": {"id": XENA_ID, "name": "Xena X", "username": "xena_x"}}
    assert plain.headers["x-rate-limit-limit"] == "75"
    assert plain.headers["x-rate-limit-remaining"] == "74"
    assert int(plain.headers["x-rate-limit-reset"]) > sandbox.state.now()
    rich = x.get(
        "/x/api/2/users/me",
        params={"user.fields": "profile_image_url,created_at"},
        headers=auth(tokens),
    )
    data = rich.json()["data"]
    assert data["created_at"].endswith("Z")
    avatar = x.get(data["profile_image_url"])
    assert avatar.status_code == 200 and avatar.content.startswith(b"\x89PNG")


def test_missing_or_unknown_token_is_401(x):
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"}):
        response = x.get("/x/api/2/users/me", headers=headers)
        assert (response.status_code, response.json()) == (401, UNAUTHORIZED)


def test_scopes_follow_the_spec_security_requirements(x):
    readers = connect(x, scopes="tweet.read users.read")
    assert x.get("/x/api/2/users/me", headers=auth(readers)).status_code == 200
    refused = tweet(x, readers, text="no tweet.write")
    assert (refused.status_code, refused.json()) == (403, FORBIDDEN)
    init = initialize(x, readers, media_type="image/png", total_bytes=10)
    assert (init.status_code, init.json()) == (403, FORBIDDEN)
    only_users = connect(x, scopes="users.read")
    assert x.get("/x/api/2/users/me", headers=auth(only_users)).status_code == 403


def test_users_me_is_limited_to_75_per_15_minutes(x, sandbox):
    tokens = connect(x)
    for _ in range(75):
        assert x.get("/x/api/2/users/me", headers=auth(tokens)).status_code == 200
    limited = x.get("/x/api/2/users/me", headers=auth(tokens))
    assert (limited.status_code, limited.json()) == (429, TOO_MANY)
    assert limited.headers["x-rate-limit-remaining"] == "0"
    reset = int(limited.headers["x-rate-limit-reset"])
    sandbox.advance(reset - sandbox.state.now() + 1)
    assert x.get("/x/api/2/users/me", headers=auth(tokens)).status_code == 200


# -- posts -------------------------------------------------------------------------------
def test_create_read_list_and_delete_a_post(x, sandbox):
    tokens = connect(x)
    created = tweet(x, tokens, text="Hello from the sandbox")
    assert created.status_code == 201
    data = created.json()["data"]
    assert data["text"] == "Hello from the sandbox"
    assert data["edit_history_post_ids"] == [data["id"]]
    assert re.fullmatch(r"[0-9]{1,19}", data["id"])
    [entry] = sandbox.published(platform="x")
    url = f"{sandbox.url}/x/www/xavier_x/status/{data['id']}"
    assert entry["account_id"] == XAVIER_ID and entry["kind"] == "tweet"
    assert (entry["id"], entry["text"], entry["url"], entry["media"]) == (
        data["id"],
        data["text"],
        url,
        [],
    )
    page = x.get(url)
    assert page.status_code == 200 and "Hello from the sandbox" in page.text
    one = x.get(
        f"/x/api/2/tweets/{data['id']}",
        params={"tweet.fields": "created_at,author_id"},
        headers=auth(tokens),
    )
    assert one.json()["data"]["author_id"] == XAVIER_ID
    mine = x.get(f"/x/api/2/users/{XAVIER_ID}/tweets", headers=auth(tokens)).json()
    assert [p["id"] for p in mine["data"]] == [data["id"]] and mine["meta"]["result_count"] == 1
    deleted = x.delete(f"/x/api/2/tweets/{data['id']}", headers=auth(tokens))
    assert deleted.json() == {"data": {"deleted": True}}
    gone = x.get(f"/x/api/2/tweets/{data['id']}", headers=auth(tokens))
    assert gone.status_code == 200
    assert (
        gone.json()["errors"][0]["type"] == "https://api.twitter.com/2/problems/resource-not-found"
    )
    assert x.get(url).status_code == 404
    assert x.delete(f"/x/api/2/tweets/{data['id']}", headers=auth(tokens)).status_code == 404


def test_only_the_author_may_delete(x):
    xavier, xena = connect(x), connect(x, identity=XENA_ID)
    post_id = tweet(x, xavier, text="mine").json()["data"]["id"]
    refused = x.delete(f"/x/api/2/tweets/{post_id}", headers=auth(xena))
    assert refused.status_code == 403 and refused.json()["type"] == "about:blank"


def test_unknown_keys_are_refused(x):
    tokens = connect(x)
    response = tweet(x, tokens, text="hi", visibility="public")
    not_defined = "is not defined in the schema and the schema does not allow additional properties"
    assert_invalid(response, f"$.visibility: {not_defined}")
    assert request_errors(response), "the spec refuses it too"
    nested = tweet(x, tokens, text="hi", reply={"in_reply_to_tweet_id": "1", "quote": True})
    assert_invalid(nested)


def test_text_is_required_unless_media(x):
    tokens = connect(x)
    assert_invalid(tweet(x, tokens))
    assert_invalid(tweet(x, tokens, text=""))


def test_requests_must_be_json(x):
    tokens = connect(x)
    response = x.post("/x/api/2/tweets", data={"text": "form"}, headers=auth(tokens))
    assert_invalid(response, "Requests with bodies must have content-type of application/json.")


URL = "https://example.com/a/long/path?with=query"


@pytest.mark.parametrize(
    ("text", "fits"),
    [
        ("a" * 280, True),
        ("a" * 281, False),
        ("日" * 140, True),  # CJK weighs 2
        ("日" * 140 + "a", False),
        ("😷" * 140, True),  # each emoji weighs 2
        ("👩‍👩‍👧‍👦" * 140, True),  # a ZWJ sequence is one emoji
        ("😷" * 140 + "a", False),
        ("x" * 256 + " " + URL, True),  # any URL weighs 23
        ("x" * 257 + " " + URL, False),
        ("e\u0301" * 280, True),  # NFC: e + combining accent is one character
        ("—" * 280, True),  # U+2014 is in a light range
    ],
)
def test_weighted_length_limit(x, text, fits):
    response = tweet(x, connect(x), text=text)
    if fits:
        assert response.status_code == 201, response.text
    else:
        assert_invalid(response, "Tweet text is too long.")


def test_duplicate_text_is_refused_until_deleted(x):
    tokens = connect(x)
    first = tweet(x, tokens, text="same words")
    again = tweet(x, tokens, text="same words")
    assert (again.status_code, again.json()) == (403, DUPLICATE)
    assert again.headers["content-type"].startswith("application/problem+json")
    assert tweet(x, connect(x, identity=XENA_ID), text="same words").status_code == 201
    x.delete(f"/x/api/2/tweets/{first.json()['data']['id']}", headers=auth(tokens))
    assert tweet(x, tokens, text="same words").status_code == 201


def test_replies_need_a_visible_post(x):
    tokens = connect(x)
    root = tweet(x, tokens, text="root").json()["data"]["id"]
    reply = tweet(x, tokens, text="reply", reply={"in_reply_to_tweet_id": root})
    assert reply.status_code == 201
    fields = {"tweet.fields": "conversation_id,in_reply_to_user_id"}
    data = x.get(
        f"/x/api/2/tweets/{reply.json()['data']['id']}", params=fields, headers=auth(tokens)
    ).json()
    assert (
        data["data"]["conversation_id"] == root and data["data"]["in_reply_to_user_id"] == XAVIER_ID
    )
    missing = tweet(x, tokens, text="reply 2", reply={"in_reply_to_tweet_id": "12345"})
    assert missing.status_code == 403
    assert (
        missing.json()["detail"]
        == "You attempted to reply to a Tweet that is deleted or not visible to you."
    )


def test_user_timeline_pages_and_bounds(x):
    tokens = connect(x)
    ids = [tweet(x, tokens, text=f"post {n}").json()["data"]["id"] for n in range(7)]
    first = x.get(
        f"/x/api/2/users/{XAVIER_ID}/tweets", params={"max_results": 5}, headers=auth(tokens)
    ).json()
    assert [p["id"] for p in first["data"]] == ids[::-1][:5]
    token = first["meta"]["next_token"]
    params = {"max_results": 5, "pagination_token": token}
    second = x.get(f"/x/api/2/users/{XAVIER_ID}/tweets", params=params, headers=auth(tokens)).json()
    assert [p["id"] for p in second["data"]] == ids[1::-1] and "next_token" not in second["meta"]
    since = x.get(
        f"/x/api/2/users/{XAVIER_ID}/tweets", params={"since_id": ids[4]}, headers=auth(tokens)
    ).json()
    assert [p["id"] for p in since["data"]] == [ids[6], ids[5]]
    small = x.get(
        f"/x/api/2/users/{XAVIER_ID}/tweets", params={"max_results": 2}, headers=auth(tokens)
    )
    assert_invalid(small)
    nobody = x.get("/x/api/2/users/42/tweets", headers=auth(tokens)).json()
    assert nobody["errors"][0]["resource_type"] == "user"


def test_post_limits_and_24_hour_headers(x, sandbox):
    sandbox.configure(x_tweets_per_15min=3)
    tokens = connect(x)
    for n in range(3):
        ok = tweet(x, tokens, text=f"limited {n}")
        assert ok.status_code == 201
    assert ok.headers["x-rate-limit-limit"] == "3" and ok.headers["x-rate-limit-remaining"] == "0"
    assert ok.headers["x-user-limit-24hour-limit"] == "2400"
    assert ok.headers["x-user-limit-24hour-remaining"] == "2397"
    assert ok.headers["x-app-limit-24hour-limit"] == "10000"
    assert ok.headers["x-app-limit-24hour-remaining"] == "9997"
    assert int(ok.headers["x-app-limit-24hour-reset"]) > int(ok.headers["x-rate-limit-reset"])
    limited = tweet(x, tokens, text="one too many")
    assert (limited.status_code, limited.json()) == (429, TOO_MANY)
    assert limited.headers["x-user-limit-24hour-remaining"] == "2397"
    sandbox.advance(901)
    assert tweet(x, tokens, text="next window").status_code == 201


def test_app_daily_limit_spans_users(x, sandbox):
    sandbox.configure(x_tweets_per_day_app=2)
    xavier, xena = connect(x), connect(x, identity=XENA_ID)
    assert tweet(x, xavier, text="a").status_code == 201
    assert tweet(x, xena, text="b").status_code == 201
    limited = tweet(x, xena, text="c")
    assert limited.status_code == 429 and limited.headers["x-app-limit-24hour-remaining"] == "0"


# -- media -------------------------------------------------------------------------------
def test_one_shot_image_upload_and_image_post(x, sandbox):
    tokens = connect(x)
    uploaded = one_shot(x, tokens, png(64, 32))
    assert uploaded.status_code == 200, uploaded.text
    data = uploaded.json()["data"]
    assert data["media_key"] == f"3_{data['id']}"
    assert data["image"] == {"image_type": "image/png", "w": 64, "h": 32}
    assert "processing_info" not in data and data["expires_after_secs"] > 0
    alt = x.post(
        "/x/api/2/media/metadata",
        json={"id": data["id"], "metadata": {"alt_text": {"text": "a grey square"}}},
        headers=auth(tokens),
    )
    assert alt.status_code == 200 and alt.json()["data"]["id"] == data["id"]
    posted = tweet(x, tokens, text="a picture", media={"media_ids": [data["id"]]})
    assert posted.status_code == 201
    assert sandbox.published(platform="x")[0]["media"] == [data["id"]]
    assert "a grey square" in x.get(sandbox.published(platform="x")[0]["url"]).text


def test_one_shot_json_base64_and_media_only_post(x):
    tokens = connect(x)
    body = {"media": base64.b64encode(jpeg_bytes(40, 30)).decode(), "media_category": "tweet_image"}
    uploaded = x.post("/x/api/2/media/upload", json=body, headers=auth(tokens))
    assert uploaded.status_code == 200, uploaded.text
    media_id = uploaded.json()["data"]["id"]
    assert tweet(x, tokens, media={"media_ids": [media_id]}).status_code == 201


def test_one_shot_refusals(x):
    tokens = connect(x)
    assert_invalid(one_shot(x, tokens, mp4_bytes(), category="tweet_video"))
    assert_invalid(one_shot(x, tokens, b"plain text, not an image"), "Media type unrecognized.")
    assert_invalid(one_shot(x, tokens, b"\xff\xd8\xff" + b"\0" * (5 * 1024 * 1024)))
    assert_invalid(
        x.post(
            "/x/api/2/media/upload", json={"media_category": "tweet_image"}, headers=auth(tokens)
        )
    )


def test_chunked_image_is_ready_at_finalize(x):
    tokens = connect(x)
    data = chunked(x, tokens, jpeg_bytes(), "image/jpeg", "tweet_image", size=4096)
    assert "processing_info" not in data
    assert data["image"]["image_type"] == "image/jpeg"
    assert (
        tweet(x, tokens, text="chunked image", media={"media_ids": [data["id"]]}).status_code == 201
    )


def test_video_processing_states(x, sandbox):
    sandbox.configure(processing_delay=100)
    tokens = connect(x)
    video = mp4_bytes(3 * 1024 * 1024 + 5)
    data = chunked(x, tokens, video, "video/mp4", "tweet_video")
    assert data["media_key"] == f"7_{data['id']}" and data["size"] == len(video)
    assert data["processing_info"]["state"] == "pending"
    assert data["processing_info"]["check_after_secs"] >= 1
    assert status(x, tokens, data["id"])["processing_info"]["state"] == "pending"
    early = tweet(x, tokens, text="too early", media={"media_ids": [data["id"]]})
    assert_invalid(early, "Your media IDs are invalid.")
    sandbox.advance(50)
    info = status(x, tokens, data["id"])["processing_info"]
    assert info["state"] == "in_progress" and 50 <= info["progress_percent"] < 100
    sandbox.advance(51)
    done = status(x, tokens, data["id"])
    assert done["processing_info"] == {"state": "succeeded", "progress_percent": 100}
    assert done["video"] == {"video_type": "video/mp4"}
    assert tweet(x, tokens, text="video!", media={"media_ids": [data["id"]]}).status_code == 201


def test_non_video_declared_as_video_fails_processing(x, sandbox):
    tokens = connect(x)
    data = chunked(x, tokens, jpeg_bytes(), "video/mp4", "tweet_video")
    assert data["processing_info"]["state"] == "pending"
    sandbox.advance(1)
    assert status(x, tokens, data["id"])["processing_info"]["state"] == "failed"
    assert_invalid(tweet(x, tokens, text="broken video", media={"media_ids": [data["id"]]}))


def test_finalize_checks_total_bytes(x):
    tokens = connect(x)
    init = initialize(
        x, tokens, media_type="video/mp4", total_bytes=2000, media_category="tweet_video"
    )
    media_id = init.json()["data"]["id"]
    assert append(x, tokens, media_id, mp4_bytes(1000), 0).json()["data"]["expires_at"] > 0
    finalize = x.post(f"/x/api/2/media/upload/{media_id}/finalize", headers=auth(tokens))
    assert_invalid(finalize, "Segments do not add up to provided total file size.")


def test_append_and_initialize_refusals(x):
    tokens = connect(x)
    init = initialize(
        x, tokens, media_type="video/mp4", total_bytes=1000, media_category="tweet_video"
    )
    media_id = init.json()["data"]["id"]
    assert init.headers["x-rate-limit-limit"] == "1875"
    out_of_range = append(x, tokens, media_id, b"\0" * 10, 1000)
    assert_invalid(out_of_range, "$.segment_index: must have a maximum value of 999")
    assert request_errors(out_of_range)
    assert_invalid(append(x, tokens, "123", b"\0" * 10, 0))
    assert_invalid(initialize(x, tokens, media_type="video/mp4", total_bytes=512 * 1024 * 1024 + 1))
    assert_invalid(initialize(x, tokens, media_type="image/jpeg", total_bytes=5 * 1024 * 1024 + 1))
    assert_invalid(initialize(x, tokens, media_type="video/avi", total_bytes=10))
    assert_invalid(initialize(x, tokens, media_type="image/png", total_bytes=10, command="INIT"))
    xena = connect(x, identity=XENA_ID)
    assert_invalid(append(x, xena, media_id, b"\0" * 10, 0))  # not her upload
    check = x.get(
        "/x/api/2/media/upload",
        params={"command": "STATUS", "media_id": media_id},
        headers=auth(tokens),
    )
    assert_invalid(check)  # not finalized yet
    assert check.headers["x-rate-limit-limit"] == "1000"


def test_alt_text_is_at_most_1000_characters(x):
    tokens = connect(x)
    media_id = one_shot(x, tokens, png(2, 2)).json()["data"]["id"]
    long = {"id": media_id, "metadata": {"alt_text": {"text": "a" * 1001}}}
    assert_invalid(x.post("/x/api/2/media/metadata", json=long, headers=auth(tokens)))
    unknown = {"id": "42", "metadata": {"alt_text": {"text": "who?"}}}
    assert_invalid(x.post("/x/api/2/media/metadata", json=unknown, headers=auth(tokens)))


def test_media_ids_must_exist_belong_and_combine(x, sandbox):
    sandbox.configure(processing_delay=0)
    tokens, xena = connect(x), connect(x, identity=XENA_ID)
    images = [one_shot(x, tokens, png(4, 4 + n)).json()["data"]["id"] for n in range(5)]
    video = chunked(x, tokens, mp4_bytes(), "video/mp4", "tweet_video")["id"]
    theirs = one_shot(x, xena, png(3, 3)).json()["data"]["id"]
    assert tweet(x, tokens, text="four", media={"media_ids": images[:4]}).status_code == 201
    five = tweet(x, tokens, text="five", media={"media_ids": images})
    assert_invalid(five, "$.media.media_ids: there must be a maximum of 4 items in the array")
    assert request_errors(five)
    assert_invalid(tweet(x, tokens, text="mixed", media={"media_ids": [video, images[0]]}))
    assert_invalid(
        tweet(x, tokens, text="ghost", media={"media_ids": ["1234567"]}),
        "Your media IDs are invalid.",
    )
    assert_invalid(
        tweet(x, tokens, text="stolen", media={"media_ids": [theirs]}),
        "Your media IDs are invalid.",
    )
    poll = {"options": ["yes", "no"], "duration_minutes": 60}
    assert_invalid(tweet(x, tokens, text="poll", media={"media_ids": [images[4]]}, poll=poll))
    assert_invalid(
        tweet(x, tokens, text="quote", media={"media_ids": [images[4]]}, quote_tweet_id="1")
    )
    assert tweet(x, tokens, text="a poll", poll=poll).status_code == 201


# -- faults ------------------------------------------------------------------------------
def test_fault_error_is_a_503_problem(x, sandbox):
    tokens = connect(x)
    sandbox.fault(platform="x", path="/api/2/tweets", method="POST", kind="error", remaining=1)
    failed = tweet(x, tokens, text="during an outage")
    assert failed.status_code == 503
    assert failed.json() == {
        "title": "Service Unavailable",
        "type": "about:blank",
        "status": 503,
        "detail": "Service Unavailable",
    }
    assert failed.headers["x-rate-limit-limit"] == "100"
    assert tweet(x, tokens, text="after the outage").status_code == 201


def test_fault_rate_limit_uses_retry_after(x, sandbox):
    tokens = connect(x)
    sandbox.fault(
        platform="x", path="/api/2/users/me", kind="rate_limit", retry_after=120, remaining=1
    )
    limited = x.get("/x/api/2/users/me", headers=auth(tokens))
    assert (limited.status_code, limited.json()) == (429, TOO_MANY)
    assert limited.headers["x-rate-limit-remaining"] == "0"
    assert limited.headers["x-rate-limit-limit"] == "75"
    assert abs(int(limited.headers["x-rate-limit-reset"]) - (sandbox.state.now() + 120)) <= 2


@pytest.mark.parametrize("kind", ["expired_token", "revoked_token"])
def test_fault_bad_token_is_401(x, sandbox, kind):
    tokens = connect(x)
    sandbox.fault(platform="x", path="/api/2/media/upload/initialize", kind=kind)
    response = initialize(x, tokens, media_type="image/png", total_bytes=10)
    assert (response.status_code, response.json()) == (401, UNAUTHORIZED)


# -- journey -----------------------------------------------------------------------------
def test_journey_connect_and_publish_text_image_and_video(sandbox):
    """A test account goes through OAuth in a browser-like way, then publishes a text post,
    an image post (one-shot) and a video post (chunked, waiting for processing)."""
    with spec_client(sandbox.url) as client:
        verifier, challenge = pkce()
        params = authorize_params(challenge)
        page = client.get("/x/www/i/oauth2/authorize", params=params)
        action = html.unescape(re.search(r'action="([^"]+)"', page.text).group(1))
        hidden = dict(re.findall(r'type="hidden" name="([^"]+)" value="([^"]*)"', page.text))
        form = {
            **{k: html.unescape(v) for k, v in hidden.items()},
            "decision": "allow",
            "identity": XAVIER_ID,
        }
        form["scope"] = re.findall(r'name="scope" value="([^"]+)"', page.text)
        redirect = client.post(action, data=form)
        query = parse_qs(urlsplit(redirect.headers["location"]).query)
        assert query["state"] == [params["state"]]
        tokens = exchange(client, query["code"][0], verifier).json()

        me = client.get(
            "/x/api/2/users/me", params={"user.fields": "profile_image_url"}, headers=auth(tokens)
        )
        assert me.json()["data"]["username"] == "xavier_x"

        text = tweet(client, tokens, text="Journey: plain text")
        image_id = one_shot(client, tokens, jpeg_bytes()).json()["data"]["id"]
        image = tweet(client, tokens, text="Journey: an image", media={"media_ids": [image_id]})
        video = chunked(
            client, tokens, mp4_bytes(2 * 1024 * 1024), "video/mp4", "tweet_video", size=512 * 1024
        )
        state = video["processing_info"]["state"]
        for _ in range(20):  # poll as a publisher would, moving the clock instead of sleeping
            if state in ("succeeded", "failed"):
                break
            sandbox.advance(video["processing_info"].get("check_after_secs", 1))
            state = status(client, tokens, video["id"])["processing_info"]["state"]
        assert state == "succeeded"
        clip = tweet(client, tokens, text="Journey: a video", media={"media_ids": [video["id"]]})
        assert [r.status_code for r in (text, image, clip)] == [201, 201, 201]

    published = sandbox.published(platform="x", account_id=XAVIER_ID)
    assert [p["text"] for p in published] == [
        "Journey: plain text",
        "Journey: an image",
        "Journey: a video",
    ]
    assert [p["media"] for p in published] == [[], [image_id], [video["id"]]]
    for entry in published:
        assert httpx.get(entry["url"]).status_code == 200


# -- the spec helper itself --------------------------------------------------------------
def _fake_exchange(
    method: str, path: str, status_code: int, body: dict, sent: dict | None = None
) -> httpx.Response:
    request = httpx.Request(method, "http://sandbox/x/api" + path, json=sent)
    ctype = "application/problem+json" if status_code >= 400 else "application/json"
    headers = {
        "content-type": ctype,
        "x-rate-limit-limit": "1",
        "x-rate-limit-remaining": "0",
        "x-rate-limit-reset": "1",
    }
    return httpx.Response(status_code, json=body, headers=headers, request=request)


@pytest.mark.parametrize(
    "exchange_",
    [
        _fake_exchange(
            "POST", "/2/tweets", 201, {"data": {"id": "abc", "text": "a"}}, {"text": "a"}
        ),
        _fake_exchange(
            "POST", "/2/tweets", 201, {"data": {"id": "1", "text": "a"}}, {"text": "a", "zz": 1}
        ),
        _fake_exchange(
            "POST", "/2/tweets", 401, {"type": "about:blank", "status": 401}, {"text": "a"}
        ),
        _fake_exchange(
            "GET", "/2/media/upload", 200, {"data": {"id": "1", "processing_info": {"error": {}}}}
        ),
    ],
    ids=["bad-id", "accepted-invalid-request", "problem-without-title", "unknown-processing-field"],
)
def test_spec_helper_catches_violations(exchange_):
    with pytest.raises(SpecViolation):
        check(exchange_)


# -- weighted length: the sandbox's shortcuts agree with twitter-text-parser ---------------
def test_emoji_scan_and_ascii_count_match_the_package():
    import random
    import string

    from twitter_text import parse_tweet
    from twitter_text.extract_emojis import extract_emojis_with_indices
    from twitter_text.regexp.emoji import emoji_list

    from src.sandbox import tweet_length

    rng = random.Random(7)
    emoji = [entry.emoji for entry in emoji_list]
    unicode_pieces = [
        *emoji,
        "日本",
        "é",
        "e\u0301",
        "\ufe0f",
        "\u200d",
        "\u20e3",
        "\U0001f3fb",
        "#",
        "1",
        " ",
    ]
    ascii_pieces = [
        *string.printable,
        "https://example.com/a?b=1 ",
        "example.org",
        "www.x.com",
        "\r\n",
        "a.b",
    ]
    for _ in range(2000):
        mixed = "".join(
            rng.choice(unicode_pieces + ascii_pieces) for _ in range(rng.randint(0, 40))
        )
        assert tweet_length.emoji_entities(mixed) == extract_emojis_with_indices(mixed)
        plain = "".join(rng.choice(ascii_pieces) for _ in range(rng.randint(0, 120)))
        assert tweet_length.weighted_length(plain) == parse_tweet(plain).weightedLength
        assert tweet_length.weighted_length(mixed) == parse_tweet(mixed).weightedLength
