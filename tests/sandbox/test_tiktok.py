"""Contract tests of the TikTok fake (Login Kit v2 + Content Posting API) over real HTTP."""

from __future__ import annotations

import base64
import hashlib
import time
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.media_samples import jpeg_bytes, mp4_bytes, png_bytes

KEY, SECRET = "sandbox-tiktok-key", "sandbox-tiktok-secret"
REDIRECT = "https://app.example/connect/tiktok/callback"
TOM, PRIYA = "-000TomTikT0kOpenIdq7Lh9Kd4eJvXbZ2mR", "-000PriyaPr1vateOpenIdW3nTg8sYcQ5aK"
SCOPES = "user.info.basic,video.publish"
MIB = 1024 * 1024
PUBLISH = "/tiktok/open/v2/post/publish"
HTTP = httpx.Client(timeout=30)  # one pool for the many small calls


# -- helpers ---------------------------------------------------------------------------------
class ConsentForm(HTMLParser):
    """Reads the consent page as a browser would: action, hidden fields, choices."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.action, self.hidden, self.identities, self.scopes = "", {}, [], []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "form":
            self.action = a["action"]
        elif tag == "input" and a.get("type") == "hidden":
            self.hidden[a["name"]] = a.get("value", "")
        elif tag == "input" and a.get("name") == "identity":
            self.identities.append(a["value"])
        elif tag == "input" and a.get("name") == "scope":
            self.scopes.append(a["value"])


def authorize_params(**overrides: str) -> dict[str, str]:
    params = {
        "client_key": KEY,
        "scope": SCOPES,
        "response_type": "code",
        "redirect_uri": REDIRECT,
        "state": "st-123",
    }
    params.update(overrides)
    return {k: v for k, v in params.items() if v is not None}


def consent(sandbox, identity=TOM, decision="allow", untick=(), **overrides) -> httpx.Response:
    """GET the authorize URL, then submit its form; returns the redirect response."""
    page = httpx.get(
        f"{sandbox.url}/tiktok/www/v2/auth/authorize/", params=authorize_params(**overrides)
    )
    assert page.status_code == 200, page.text
    form = ConsentForm(page.text)
    ticked = [s for s in form.scopes if s not in untick]
    data = {**form.hidden, "identity": identity, "decision": decision, "scope": ticked}
    return httpx.post(form.action, data=data)


def callback_params(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(REDIRECT + "?")
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def token_request(sandbox, **form: str) -> httpx.Response:
    data = {"client_key": KEY, "client_secret": SECRET, **form}
    return HTTP.post(
        f"{sandbox.url}/tiktok/open/v2/oauth/token/",
        data={k: v for k, v in data.items() if v is not None},
        headers={"Cache-Control": "no-cache"},
    )


def connect(sandbox, identity=TOM, **overrides) -> dict:
    params = callback_params(consent(sandbox, identity, **overrides))
    response = token_request(
        sandbox, code=params["code"], grant_type="authorization_code", redirect_uri=REDIRECT
    )
    assert response.status_code == 200, response.text
    return response.json()


def api(sandbox, token: str, path: str, json: dict | None = None) -> httpx.Response:
    return HTTP.post(
        f"{sandbox.url}{PUBLISH}{path}",
        json=json,
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json; charset=UTF-8",
        },
    )


def error_code(response: httpx.Response) -> str:
    return response.json()["error"]["code"]


def video_body(privacy="SELF_ONLY", title="a funny #cat video", **source) -> dict:
    source = source or {
        "source": "FILE_UPLOAD",
        "video_size": 1000,
        "chunk_size": 1000,
        "total_chunk_count": 1,
    }
    return {
        "post_info": {"title": title, "privacy_level": privacy, "disable_comment": True},
        "source_info": source,
    }


def file_source(size: int, chunk: int, count: int) -> dict:
    return {
        "source": "FILE_UPLOAD",
        "video_size": size,
        "chunk_size": chunk,
        "total_chunk_count": count,
    }


def put_chunk(
    url: str, data: bytes, first: int, total: int, content_type="video/mp4"
) -> httpx.Response:
    last = first + len(data) - 1
    headers = {"Content-Type": content_type, "Content-Range": f"bytes {first}-{last}/{total}"}
    return HTTP.put(url, content=data, headers=headers, timeout=30)


def status(sandbox, token: str, publish_id: str) -> dict:
    response = api(sandbox, token, "/status/fetch/", {"publish_id": publish_id})
    assert response.status_code == 200, response.text
    assert error_code(response) == "ok"
    return response.json()["data"]


def wait_object(sandbox, object_id: str, done) -> dict:
    """Poll the admin view of a background job (not status/fetch: it is rate limited)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        obj = sandbox.admin.get(f"/objects/{object_id}").json()
        if done(obj):
            return obj
        time.sleep(0.02)
    raise AssertionError(f"{object_id} never got there: {obj}")


def pulled(obj: dict) -> bool:
    return obj["status"] == "FAILED" or obj["ready_at"] is not None


@pytest.fixture
def tom(sandbox) -> str:
    return connect(sandbox)["access_token"]


# -- authorize -------------------------------------------------------------------------------
def test_authorize_refuses_client_id(sandbox):
    params = authorize_params(client_key=None, client_id=KEY)
    page = httpx.get(f"{sandbox.url}/tiktok/www/v2/auth/authorize/", params=params)
    assert page.status_code == 400
    assert "client_key" in page.text and "location" not in page.headers


def test_authorize_refuses_unknown_client_key(sandbox):
    page = httpx.get(
        f"{sandbox.url}/tiktok/www/v2/auth/authorize/", params=authorize_params(client_key="nope")
    )
    assert page.status_code == 400 and "invalid_client" in page.text


@pytest.mark.parametrize(
    ("override", "error"),
    [
        ({"scope": "user.info.basic video.publish"}, "invalid_scope"),  # spaces, not commas
        ({"scope": "user.info.basic,tweet.write"}, "invalid_scope"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"code_challenge": "abc", "code_challenge_method": "plain"}, "invalid_request"),
    ],
)
def test_authorize_redirects_refusals(sandbox, override, error):
    response = httpx.get(
        f"{sandbox.url}/tiktok/www/v2/auth/authorize/", params=authorize_params(**override)
    )
    params = callback_params(response)
    assert params["error"] == error and params["state"] == "st-123" and params["error_description"]


def test_consent_page_offers_identities_and_untickable_scopes(sandbox):
    page = httpx.get(f"{sandbox.url}/tiktok/www/v2/auth/authorize/", params=authorize_params())
    form = ConsentForm(page.text)
    assert form.identities == [TOM, PRIYA]
    assert form.scopes == ["user.info.basic", "video.publish"]
    assert form.action == f"{sandbox.url}/tiktok/www/v2/auth/authorize/"


def test_deny_redirects_access_denied(sandbox):
    params = callback_params(consent(sandbox, decision="deny"))
    assert params["error"] == "access_denied" and params["error_description"]
    assert params["state"] == "st-123" and "code" not in params


# -- token -----------------------------------------------------------------------------------
def test_code_must_be_url_decoded_and_token_is_flat(sandbox):
    response = consent(sandbox)
    raw_query = urlsplit(response.headers["location"]).query
    raw_code = dict(part.split("=", 1) for part in raw_query.split("&"))["code"]
    assert "%" in raw_code  # the code carries characters that need URL-encoding
    params = callback_params(response)
    assert params["scopes"] == SCOPES and params["state"] == "st-123"
    undecoded = token_request(
        sandbox, code=raw_code, grant_type="authorization_code", redirect_uri=REDIRECT
    )
    assert undecoded.json()["error"] == "invalid_grant"
    ok = token_request(
        sandbox, code=params["code"], grant_type="authorization_code", redirect_uri=REDIRECT
    )
    body = ok.json()
    assert set(body) == {
        "access_token",
        "expires_in",
        "open_id",
        "refresh_expires_in",
        "refresh_token",
        "scope",
        "token_type",
    }
    assert body["access_token"].startswith("act.") and body["refresh_token"].startswith("rft.")
    assert (body["expires_in"], body["refresh_expires_in"]) == (86400, 31536000)
    assert (body["open_id"], body["scope"], body["token_type"]) == (TOM, SCOPES, "Bearer")


def test_code_is_single_use(sandbox):
    code = callback_params(consent(sandbox))["code"]
    form = {"code": code, "grant_type": "authorization_code", "redirect_uri": REDIRECT}
    assert token_request(sandbox, **form).status_code == 200
    again = token_request(sandbox, **form).json()
    assert again["error"] == "invalid_grant" and again["log_id"]


def test_code_expires(sandbox):
    code = callback_params(consent(sandbox))["code"]
    sandbox.advance(601)
    response = token_request(
        sandbox, code=code, grant_type="authorization_code", redirect_uri=REDIRECT
    )
    assert response.json()["error"] == "invalid_grant"


def test_redirect_uri_must_match_exactly(sandbox):
    code = callback_params(consent(sandbox))["code"]
    response = token_request(
        sandbox, code=code, grant_type="authorization_code", redirect_uri=REDIRECT + "/"
    )
    assert response.json()["error"] == "invalid_grant"


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({"client_secret": "wrong"}, "invalid_client"),
        ({"grant_type": "password"}, "unsupported_grant_type"),
        ({"grant_type": None}, "invalid_request"),
        ({"code": None}, "invalid_request"),
    ],
)
def test_token_refusals(sandbox, form, error):
    code = callback_params(consent(sandbox))["code"]
    fields = {"code": code, "grant_type": "authorization_code", "redirect_uri": REDIRECT, **form}
    body = token_request(sandbox, **fields).json()
    assert body["error"] == error and set(body) == {"error", "error_description", "log_id"}


def test_token_needs_form_encoding(sandbox):
    code = callback_params(consent(sandbox))["code"]
    response = httpx.post(
        f"{sandbox.url}/tiktok/open/v2/oauth/token/",
        json={
            "client_key": KEY,
            "client_secret": SECRET,
            "code": code,
            "grant_type": "authorization_code",
        },
    )
    assert response.json()["error"] == "invalid_request"


VERIFIER = "v" * 20 + "-._~" + "k" * 30


@pytest.mark.parametrize(
    "challenge",
    [
        base64.urlsafe_b64encode(hashlib.sha256(VERIFIER.encode()).digest()).rstrip(b"=").decode(),
        hashlib.sha256(VERIFIER.encode()).hexdigest(),  # TikTok's desktop form
    ],
)
def test_pkce_accepts_both_challenge_forms(sandbox, challenge):
    code = callback_params(
        consent(sandbox, code_challenge=challenge, code_challenge_method="S256")
    )["code"]
    fields = {"code": code, "grant_type": "authorization_code", "redirect_uri": REDIRECT}
    for wrong in (None, VERIFIER + "x"):
        body = token_request(sandbox, **fields, code_verifier=wrong).json()
        assert body["error"] == "invalid_request"
        assert body["error_description"] == "Code verifier or code challenge is invalid."
    assert token_request(sandbox, **fields, code_verifier=VERIFIER).status_code == 200


def test_refresh_rotates_and_old_refresh_token_dies(sandbox):
    first = connect(sandbox)
    sandbox.advance(1000)
    response = token_request(
        sandbox, grant_type="refresh_token", refresh_token=first["refresh_token"]
    )
    second = response.json()
    assert second["access_token"] != first["access_token"]
    assert second["refresh_token"] != first["refresh_token"] and second["refresh_token"].startswith(
        "rft."
    )
    assert second["expires_in"] == 86400 and second["refresh_expires_in"] <= 31536000 - 1000
    reused = token_request(
        sandbox, grant_type="refresh_token", refresh_token=first["refresh_token"]
    )
    assert reused.json()["error"] == "invalid_grant"
    third = token_request(
        sandbox, grant_type="refresh_token", refresh_token=second["refresh_token"]
    )
    assert third.status_code == 200 and third.json()["scope"] == SCOPES


def test_access_token_expiry_and_configured_lifetimes(sandbox):
    sandbox.configure(tiktok_access_ttl=7200, tiktok_refresh_ttl=15_552_000)  # the "2026" figures
    tokens = connect(sandbox)
    assert (tokens["expires_in"], tokens["refresh_expires_in"]) == (7200, 15_552_000)
    url = f"{sandbox.url}/tiktok/open/v2/user/info/?fields=open_id"
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert httpx.get(url, headers=headers).status_code == 200
    sandbox.advance(7201)
    expired = httpx.get(url, headers=headers)
    assert expired.status_code == 401 and error_code(expired) == "access_token_invalid"
    refreshed = token_request(
        sandbox, grant_type="refresh_token", refresh_token=tokens["refresh_token"]
    ).json()
    ok = httpx.get(url, headers={"Authorization": f"Bearer {refreshed['access_token']}"})
    assert ok.status_code == 200
    sandbox.advance(15_552_000)
    late = token_request(
        sandbox, grant_type="refresh_token", refresh_token=refreshed["refresh_token"]
    )
    assert late.json()["error"] == "invalid_grant"


def test_revoke_kills_access_and_refresh_tokens(sandbox):
    tokens = connect(sandbox)
    url = f"{sandbox.url}/tiktok/open/v2/oauth/revoke/"
    wrong = httpx.post(
        url, data={"client_key": KEY, "client_secret": "x", "token": tokens["access_token"]}
    )
    assert wrong.json()["error"] == "invalid_client"
    response = httpx.post(
        url, data={"client_key": KEY, "client_secret": SECRET, "token": tokens["access_token"]}
    )
    assert response.status_code == 200 and response.json() == {}
    info = httpx.get(
        f"{sandbox.url}/tiktok/open/v2/user/info/?fields=open_id",
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
    )
    assert info.status_code == 401 and error_code(info) == "access_token_invalid"
    refresh = token_request(
        sandbox, grant_type="refresh_token", refresh_token=tokens["refresh_token"]
    )
    assert refresh.json()["error"] == "invalid_grant"


# -- user info -------------------------------------------------------------------------------
def test_user_info_fields_and_scopes(sandbox, tom):
    url = f"{sandbox.url}/tiktok/open/v2/user/info/"
    headers = {"Authorization": f"Bearer {tom}"}
    body = httpx.get(
        url, params={"fields": "open_id,union_id,avatar_url,display_name"}, headers=headers
    ).json()
    assert body["error"]["code"] == "ok" and body["error"]["log_id"]
    user = body["data"]["user"]
    assert set(user) == {"open_id", "union_id", "avatar_url", "display_name"}
    assert (user["open_id"], user["display_name"]) == (TOM, "Tom TikTok")
    avatar = httpx.get(user["avatar_url"])
    assert avatar.headers["content-type"] == "image/jpeg" and avatar.content[:3] == b"\xff\xd8\xff"
    missing = httpx.get(url, headers=headers)
    assert missing.status_code == 400 and error_code(missing) == "invalid_params"
    for field in ("username", "follower_count"):
        refused = httpx.get(url, params={"fields": f"open_id,{field}"}, headers=headers)
        assert refused.status_code == 401 and error_code(refused) == "scope_not_authorized"


def test_user_info_profile_scope_and_rate_limit(sandbox):
    token = connect(sandbox, scope="user.info.basic,user.info.profile")["access_token"]
    url = f"{sandbox.url}/tiktok/open/v2/user/info/?fields=username,display_name"
    with httpx.Client(headers={"Authorization": f"Bearer {token}"}) as client:
        assert client.get(url).json()["data"]["user"]["username"] == "tiktok_tom"
        codes = [client.get(url).status_code for _ in range(600)]
    assert codes.count(200) == 599 and codes[-1] == 429


# -- creator info ----------------------------------------------------------------------------
def test_creator_info_unaudited_offers_self_only(sandbox, tom):
    data = api(sandbox, tom, "/creator_info/query/").json()["data"]
    assert data["privacy_level_options"] == ["SELF_ONLY"]
    assert (data["creator_username"], data["creator_nickname"]) == ("tiktok_tom", "Tom TikTok")
    assert data["max_video_post_duration_sec"] == 600 and data["creator_avatar_url"]
    for key in ("comment_disabled", "duet_disabled", "stitch_disabled"):
        assert isinstance(data[key], bool)


def test_creator_info_audited_public_and_private_accounts(sandbox, tom):
    sandbox.configure(tiktok_audited=True)
    options = api(sandbox, tom, "/creator_info/query/").json()["data"]["privacy_level_options"]
    assert options == ["PUBLIC_TO_EVERYONE", "MUTUAL_FOLLOW_FRIENDS", "SELF_ONLY"]
    priya = connect(sandbox, identity=PRIYA)["access_token"]
    private = api(sandbox, priya, "/creator_info/query/").json()["data"]["privacy_level_options"]
    assert private == ["FOLLOWER_OF_CREATOR", "MUTUAL_FOLLOW_FRIENDS", "SELF_ONLY"]


def test_creator_info_needs_video_publish_and_is_rate_limited(sandbox, tom):
    basic = connect(sandbox, untick=("video.publish",))
    assert basic["scope"] == "user.info.basic"
    refused = api(sandbox, basic["access_token"], "/creator_info/query/")
    assert refused.status_code == 401 and error_code(refused) == "scope_not_authorized"
    codes = [api(sandbox, tom, "/creator_info/query/").status_code for _ in range(21)]
    assert codes[:20] == [200] * 20 and codes[20] == 429


# -- video init rules ------------------------------------------------------------------------
def test_official_chunk_example_is_accepted(sandbox, tom):
    # 50,000,123 bytes in 10,000,000-byte chunks: 5 chunks, the last 10,000,123 bytes.
    response = api(
        sandbox, tom, "/video/init/", video_body(**file_source(50_000_123, 10_000_000, 5))
    )
    data = response.json()["data"]
    assert error_code(response) == "ok" and data["publish_id"].startswith("v_pub_file~v2-1.")
    assert data["upload_url"].startswith(f"{sandbox.url}/tiktok/upload/video/?upload_id=")
    assert "upload_token=" in data["upload_url"]
    wrong_length = put_chunk(data["upload_url"], b"\0" * 100, 0, 50_000_123)
    assert wrong_length.status_code == 400  # a non-final chunk must be chunk_size long


@pytest.mark.parametrize(
    "source",
    [
        file_source(50_000_123, 10_000_000, 4),  # floor() says 5
        file_source(50_000_123, 10_000_000, 6),
        file_source(3 * MIB, 1 * MIB, 3),  # under 5 MB: whole upload only
        file_source(3 * MIB, 3 * MIB, 2),
        file_source(20 * MIB, 4 * MIB, 5),  # chunks below 5 MB
        file_source(200 * MIB, 65 * MIB, 3),  # chunks above 64 MB
        file_source(100 * MIB, 100 * MIB, 1),  # over 64 MB must be chunked
        file_source(8 * MIB, 10 * MIB, 0),
        file_source(5 * 1024 * MIB, 64 * MIB, 80),  # over 4 GB
        file_source(0, 0, 0),
        {"source": "FILE_UPLOAD", "video_size": "1000", "chunk_size": 1000, "total_chunk_count": 1},
        {"source": "PULL_FROM_URL"},
        {"source": "SOMETHING_ELSE"},
    ],
)
def test_chunk_rules_refusals(sandbox, tom, source):
    response = api(sandbox, tom, "/video/init/", video_body(**source))
    assert response.status_code == 400 and error_code(response) == "invalid_params"
    assert response.json()["error"]["message"]


def test_unaudited_and_privacy_option_refusals(sandbox, tom):
    unaudited = api(sandbox, tom, "/video/init/", video_body("PUBLIC_TO_EVERYONE"))
    assert unaudited.status_code == 403
    assert error_code(unaudited) == "unaudited_client_can_only_post_to_private_accounts"
    sandbox.configure(tiktok_audited=True)
    priya = connect(sandbox, identity=PRIYA)["access_token"]
    mismatch = api(sandbox, priya, "/video/init/", video_body("PUBLIC_TO_EVERYONE"))
    assert mismatch.status_code == 403 and error_code(mismatch) == "privacy_level_option_mismatch"
    assert (
        error_code(api(sandbox, priya, "/video/init/", video_body("FOLLOWER_OF_CREATOR"))) == "ok"
    )
    bogus = api(sandbox, priya, "/video/init/", video_body("EVERYONE"))
    assert error_code(bogus) == "invalid_params"


def test_title_limit_counts_utf16_units(sandbox, tom):
    assert error_code(api(sandbox, tom, "/video/init/", video_body(title="😀" * 1100))) == "ok"
    too_long = api(sandbox, tom, "/video/init/", video_body(title="😀" * 1100 + "a"))  # 1,101 chars
    assert too_long.status_code == 400 and error_code(too_long) == "invalid_params"


def test_init_rate_limit_and_daily_post_cap(sandbox):
    tokens = connect(sandbox)
    tom = tokens["access_token"]
    codes = [api(sandbox, tom, "/video/init/", video_body()).status_code for _ in range(7)]
    assert codes == [200] * 6 + [429]
    limited = api(sandbox, tom, "/video/init/", video_body())
    assert error_code(limited) == "rate_limit_exceeded" and limited.headers["retry-after"]
    for batch in (6, 3):  # 6 + 6 + 3 = 15 posts today
        sandbox.advance(61)
        for _ in range(batch):
            assert error_code(api(sandbox, tom, "/video/init/", video_body())) == "ok"
    sandbox.advance(61)
    capped = api(sandbox, tom, "/video/init/", video_body())
    assert capped.status_code == 403 and error_code(capped) == "spam_risk_too_many_posts"
    sandbox.advance(86_400)  # a day later the cap has passed (and the token needs a refresh)
    refresh = token_request(
        sandbox, grant_type="refresh_token", refresh_token=tokens["refresh_token"]
    )
    fresh = refresh.json()["access_token"]
    assert error_code(api(sandbox, fresh, "/video/init/", video_body())) == "ok"


def test_bad_tokens_on_posting_endpoints(sandbox, tom):
    unknown = api(sandbox, "act.unknown", "/video/init/", video_body())
    assert unknown.status_code == 401 and error_code(unknown) == "access_token_invalid"
    assert unknown.json()["data"] == {}
    anonymous = httpx.post(f"{sandbox.url}{PUBLISH}/creator_info/query/")
    assert anonymous.status_code == 401 and error_code(anonymous) == "access_token_invalid"


# -- chunk upload ------------------------------------------------------------------------------
def test_whole_upload_under_5mb_publishes(sandbox, tom):
    sandbox.configure(processing_delay=60)  # the clock, not the wall, ends processing
    video = mp4_bytes(300_000)
    init = api(
        sandbox, tom, "/video/init/", video_body(**file_source(len(video), len(video), 1))
    ).json()
    publish_id, url = init["data"]["publish_id"], init["data"]["upload_url"]
    assert status(sandbox, tom, publish_id) == {"status": "PROCESSING_UPLOAD", "uploaded_bytes": 0}
    assert put_chunk(url, video, 0, len(video)).status_code == 201
    assert status(sandbox, tom, publish_id)["status"] == "PROCESSING_UPLOAD"
    sandbox.advance(61)
    done = status(sandbox, tom, publish_id)
    assert done["status"] == "PUBLISH_COMPLETE" and done["uploaded_bytes"] == len(video)
    assert done["publicaly_available_post_id"] == []  # SELF_ONLY posts have no public id
    [entry] = sandbox.published(platform="tiktok")
    assert (entry["account_id"], entry["kind"], entry["text"]) == (
        TOM,
        "video",
        "a funny #cat video",
    )
    assert entry["url"] == f"{sandbox.url}/tiktok/www/@tiktok_tom/video/{entry['id']}"
    assert entry["media"][0]["bytes"] == len(video)
    page = httpx.get(entry["url"])
    assert page.status_code == 200 and "a funny #cat video" in page.text
    assert httpx.get(entry["url"].replace("@tiktok_tom", "@someone")).status_code == 404


def test_two_chunk_upload_is_sequential(sandbox, tom):
    size, chunk = 11 * MIB - 123, 5 * MIB  # floor() = 2: 5 MiB, then 6 MiB - 123
    video = mp4_bytes(size)
    init = api(sandbox, tom, "/video/init/", video_body(**file_source(size, chunk, 2))).json()[
        "data"
    ]
    url = init["upload_url"]
    early = put_chunk(url, video[chunk:], chunk, size)
    assert early.status_code == 416 and early.headers["content-range"] == f"bytes */{size}"
    assert put_chunk(url, video[: chunk - 1], 0, size).status_code == 400  # wrong chunk length
    assert put_chunk(url, video[:chunk], 0, size).status_code == 206
    again = put_chunk(url, video[:chunk], 0, size)
    assert (
        again.status_code == 416 and again.headers["content-range"] == f"bytes 0-{chunk - 1}/{size}"
    )
    assert status(sandbox, tom, init["publish_id"])["uploaded_bytes"] == chunk
    assert put_chunk(url, video[chunk:], chunk, size).status_code == 201
    sandbox.advance(1)
    assert status(sandbox, tom, init["publish_id"])["status"] == "PUBLISH_COMPLETE"


def test_upload_header_and_url_refusals(sandbox, tom):
    video = mp4_bytes(2000)
    init = api(sandbox, tom, "/video/init/", video_body(**file_source(2000, 2000, 1))).json()[
        "data"
    ]
    url = init["upload_url"]
    assert (
        put_chunk(url, video, 0, 2000, content_type="application/octet-stream").status_code == 400
    )
    assert put_chunk(url, video, 0, 2001).status_code == 400  # total differs from video_size
    bad_range = httpx.put(
        url,
        content=video,
        headers={"Content-Type": "video/mp4", "Content-Range": "bytes 0-99/2000"},
    )
    assert bad_range.status_code == 400
    no_range = httpx.put(url, content=video, headers={"Content-Type": "video/mp4"})
    assert no_range.status_code == 400
    assert (
        put_chunk(url.replace("upload_token=", "upload_token=x"), video, 0, 2000).status_code == 404
    )
    assert put_chunk(url.replace("upload_id=", "upload_id=9"), video, 0, 2000).status_code == 404
    sandbox.advance(3601)
    assert put_chunk(url, video, 0, 2000).status_code == 403


def test_uploaded_non_video_fails_format_check(sandbox, tom):
    data = b"this is not a video" * 10
    init = api(
        sandbox, tom, "/video/init/", video_body(**file_source(len(data), len(data), 1))
    ).json()["data"]
    assert put_chunk(init["upload_url"], data, 0, len(data)).status_code == 201
    sandbox.advance(1)
    result = status(sandbox, tom, init["publish_id"])
    assert (result["status"], result["fail_reason"]) == ("FAILED", "file_format_check_failed")
    assert sandbox.published(platform="tiktok") == []


# -- status ----------------------------------------------------------------------------------
def test_status_refusals_and_rate_limit(sandbox, tom):
    unknown = api(sandbox, tom, "/status/fetch/", {"publish_id": "v_pub_file~v2-1.1"})
    assert unknown.status_code == 400 and error_code(unknown) == "invalid_publish_id"
    missing = api(sandbox, tom, "/status/fetch/", {})
    assert error_code(missing) == "invalid_params"
    publish_id = api(sandbox, tom, "/video/init/", video_body()).json()["data"]["publish_id"]
    priya = connect(sandbox, identity=PRIYA)["access_token"]
    foreign = api(sandbox, priya, "/status/fetch/", {"publish_id": publish_id})
    assert foreign.status_code == 400
    assert error_code(foreign) == "token_not_authorized_for_specified_publish_id"
    codes = [
        api(sandbox, tom, "/status/fetch/", {"publish_id": publish_id}).status_code
        for _ in range(29)
    ]
    assert codes[:27] == [200] * 27 and codes[-1] == 429


# -- pulled media ------------------------------------------------------------------------------
def test_pull_from_url_video(sandbox, tom, media_host):
    sandbox.configure(processing_delay=60, tiktok_audited=True)
    video = mp4_bytes(200_000)
    url = media_host.add("tiktok/clip.mp4", video, "video/mp4")
    body = video_body("PUBLIC_TO_EVERYONE", source="PULL_FROM_URL", video_url=url)
    response = api(sandbox, tom, "/video/init/", body)
    data = response.json()["data"]
    assert set(data) == {"publish_id"} and data["publish_id"].startswith("v_pub_url~v2.")
    wait_object(sandbox, data["publish_id"], pulled)
    mid = status(sandbox, tom, data["publish_id"])
    assert mid == {"status": "PROCESSING_DOWNLOAD", "downloaded_bytes": len(video)}
    sandbox.advance(61)
    done = status(sandbox, tom, data["publish_id"])
    assert done["status"] == "PUBLISH_COMPLETE"
    [entry] = sandbox.published(platform="tiktok")
    assert done["publicaly_available_post_id"] == [int(entry["id"])]
    assert entry["media"][0]["sha256"] == hashlib.sha256(video).hexdigest()


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        (None, b"", "video_pull_failed"),
        ("tiktok/not-a-video.mp4", jpeg_bytes(64, 64), "file_format_check_failed"),
    ],
)
def test_pull_from_url_failures(sandbox, tom, media_host, name, content, reason):
    url = (
        media_host.add(name, content, "video/mp4")
        if name
        else media_host.url + "/tiktok/missing.mp4"
    )
    body = video_body(source="PULL_FROM_URL", video_url=url)
    publish_id = api(sandbox, tom, "/video/init/", body).json()["data"]["publish_id"]
    wait_object(sandbox, publish_id, pulled)
    sandbox.advance(1)
    result = status(sandbox, tom, publish_id)
    assert (result["status"], result["fail_reason"]) == ("FAILED", reason)


def photo_body(images: list[str], mode="DIRECT_POST", **info) -> dict:
    post_info = {
        "title": "funny cat",
        "description": "a #funny photo",
        "privacy_level": "SELF_ONLY",
    }
    post_info.update(info)
    return {
        "post_info": post_info,
        "source_info": {"source": "PULL_FROM_URL", "photo_cover_index": 0, "photo_images": images},
        "post_mode": mode,
        "media_type": "PHOTO",
    }


def test_photo_post(sandbox, tom, media_host):
    images = [
        media_host.add(f"tiktok/p{i}.jpg", jpeg_bytes(320, 320), "image/jpeg") for i in range(2)
    ]
    response = api(sandbox, tom, "/content/init/", photo_body(images))
    publish_id = response.json()["data"]["publish_id"]
    assert publish_id.startswith("p_pub_url~v2.")
    wait_object(sandbox, publish_id, pulled)
    sandbox.advance(1)
    assert status(sandbox, tom, publish_id)["status"] == "PUBLISH_COMPLETE"
    [entry] = sandbox.published(platform="tiktok")
    assert (entry["kind"], entry["text"], entry["description"]) == (
        "photo",
        "funny cat",
        "a #funny photo",
    )
    assert [m["url"] for m in entry["media"]] == images
    assert entry["url"] == f"{sandbox.url}/tiktok/www/@tiktok_tom/photo/{entry['id']}"
    assert httpx.get(entry["url"]).status_code == 200


@pytest.mark.parametrize(
    ("change", "reason"),
    [("png", "file_format_check_failed"), ("missing", "photo_pull_failed")],
)
def test_photo_pull_failures(sandbox, tom, media_host, change, reason):
    good = media_host.add("tiktok/ok.jpg", jpeg_bytes(64, 64), "image/jpeg")
    bad = (
        media_host.add("tiktok/x.png", png_bytes(), "image/png")
        if change == "png"
        else good + ".gone"
    )
    publish_id = api(sandbox, tom, "/content/init/", photo_body([good, bad])).json()["data"][
        "publish_id"
    ]
    wait_object(sandbox, publish_id, pulled)
    sandbox.advance(1)
    result = status(sandbox, tom, publish_id)
    assert (result["status"], result["fail_reason"]) == ("FAILED", reason)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda b: b.update(media_type="VIDEO"),
        lambda b: b.update(post_mode="LATER"),
        lambda b: b["source_info"].update(source="FILE_UPLOAD"),
        lambda b: b["source_info"].update(photo_images=["https://cdn.example/a.jpg"] * 36),
        lambda b: b["source_info"].update(photo_images=[]),
        lambda b: b["source_info"].update(photo_cover_index=5),
        lambda b: b["post_info"].update(title="t" * 91),
        lambda b: b["post_info"].update(description="d" * 4001),
        lambda b: b["post_info"].pop("privacy_level"),
    ],
)
def test_photo_init_refusals(sandbox, tom, mutate):
    body = photo_body(["https://cdn.example/a.jpg"])
    mutate(body)
    response = api(sandbox, tom, "/content/init/", body)
    assert response.status_code == 400 and error_code(response) == "invalid_params"


def test_photo_media_upload_goes_to_inbox(sandbox, tom, media_host):
    image = media_host.add("tiktok/inbox.jpg", jpeg_bytes(64, 64), "image/jpeg")
    refused = api(sandbox, tom, "/content/init/", photo_body([image], mode="MEDIA_UPLOAD"))
    assert refused.status_code == 401 and error_code(refused) == "scope_not_authorized"
    token = connect(sandbox, scope="user.info.basic,video.upload")["access_token"]
    publish_id = api(
        sandbox, token, "/content/init/", photo_body([image], mode="MEDIA_UPLOAD")
    ).json()["data"]["publish_id"]
    wait_object(sandbox, publish_id, pulled)
    sandbox.advance(1)
    assert status(sandbox, token, publish_id)["status"] == "SEND_TO_USER_INBOX"
    assert sandbox.published(platform="tiktok") == []


def test_inbox_video_upload(sandbox):
    token = connect(sandbox, scope="user.info.basic,video.upload")["access_token"]
    video = mp4_bytes(5000)
    body = {"source_info": file_source(len(video), len(video), 1)}
    init = api(sandbox, token, "/inbox/video/init/", body).json()["data"]
    assert put_chunk(init["upload_url"], video, 0, len(video)).status_code == 201
    sandbox.advance(1)
    assert status(sandbox, token, init["publish_id"])["status"] == "SEND_TO_USER_INBOX"


# -- faults ----------------------------------------------------------------------------------
def test_injected_faults_speak_tiktok(sandbox, tom):
    path = "/open/v2/post/publish/video/init"  # recorded paths lose the trailing slash
    sandbox.fault(platform="tiktok", path=path, kind="error", remaining=1)
    sandbox.fault(platform="tiktok", path=path, kind="rate_limit", retry_after=7, remaining=1)
    sandbox.fault(platform="tiktok", path=path, kind="expired_token", remaining=1)
    server = api(sandbox, tom, "/video/init/", video_body())
    assert server.status_code == 500 and error_code(server) == "internal_error"
    limited = api(sandbox, tom, "/video/init/", video_body())
    assert limited.status_code == 429 and error_code(limited) == "rate_limit_exceeded"
    assert limited.headers["retry-after"] == "7"
    expired = api(sandbox, tom, "/video/init/", video_body())
    assert expired.status_code == 401 and error_code(expired) == "access_token_invalid"
    assert error_code(api(sandbox, tom, "/video/init/", video_body())) == "ok"


def test_injected_faults_on_oauth_and_upload_hosts(sandbox, tom):
    sandbox.fault(platform="tiktok", path="/open/v2/oauth/*", kind="error", remaining=1)
    body = token_request(sandbox, grant_type="refresh_token", refresh_token="rft.x").json()
    assert body["error"] == "server_error" and body["log_id"]
    video = mp4_bytes(2000)
    init = api(sandbox, tom, "/video/init/", video_body(**file_source(2000, 2000, 1))).json()[
        "data"
    ]
    sandbox.fault(platform="tiktok", path="/upload/*", kind="error", remaining=1)
    assert put_chunk(init["upload_url"], video, 0, 2000).status_code == 500
    assert put_chunk(init["upload_url"], video, 0, 2000).status_code == 201  # retry the same chunk


# -- journey ---------------------------------------------------------------------------------
def test_journey_connect_then_post_video_file_video_url_and_photos(sandbox, media_host):
    sandbox.configure(tiktok_audited=True)
    # A browser goes through consent; the callback gets a code that must be URL-decoded.
    page = httpx.get(f"{sandbox.url}/tiktok/www/v2/auth/authorize/", params=authorize_params())
    form = ConsentForm(page.text)
    data = {**form.hidden, "identity": TOM, "decision": "allow", "scope": form.scopes}
    redirect = httpx.post(form.action, data=data)
    code = callback_params(redirect)["code"]
    tokens = token_request(
        sandbox, code=code, grant_type="authorization_code", redirect_uri=REDIRECT
    ).json()
    token = tokens["access_token"]

    creator = api(sandbox, token, "/creator_info/query/").json()["data"]
    privacy = creator["privacy_level_options"][0]
    assert privacy == "PUBLIC_TO_EVERYONE"

    # 1. A video sent in chunks.
    size, chunk = 10 * MIB + 777, 5 * MIB
    video = mp4_bytes(size)
    body = video_body(privacy, title="chunked #cat", **file_source(size, chunk, size // chunk))
    init = api(sandbox, token, "/video/init/", body).json()["data"]
    assert put_chunk(init["upload_url"], video[:chunk], 0, size).status_code == 206
    assert put_chunk(init["upload_url"], video[chunk:], chunk, size).status_code == 201
    sandbox.advance(1)
    uploaded = status(sandbox, token, init["publish_id"])
    assert uploaded["status"] == "PUBLISH_COMPLETE" and uploaded["uploaded_bytes"] == size

    # 2. A video TikTok pulls from a URL.
    url = media_host.add("tiktok/journey.mp4", mp4_bytes(100_000), "video/mp4")
    body = video_body(privacy, title="pulled #cat", source="PULL_FROM_URL", video_url=url)
    pulled_id = api(sandbox, token, "/video/init/", body).json()["data"]["publish_id"]
    wait_object(sandbox, pulled_id, lambda o: o["status"] in ("PUBLISH_COMPLETE", "FAILED"))
    assert status(sandbox, token, pulled_id)["status"] == "PUBLISH_COMPLETE"

    # 3. A photo post.
    images = [
        media_host.add(f"tiktok/j{i}.jpg", jpeg_bytes(200, 200), "image/jpeg") for i in range(3)
    ]
    photo = photo_body(images, title="three cats", privacy_level=privacy)
    photo_id = api(sandbox, token, "/content/init/", photo).json()["data"]["publish_id"]
    wait_object(sandbox, photo_id, lambda o: o["status"] in ("PUBLISH_COMPLETE", "FAILED"))
    photo_status = status(sandbox, token, photo_id)
    assert photo_status["status"] == "PUBLISH_COMPLETE"

    published = sandbox.published(platform="tiktok", account_id=TOM)
    assert [(p["kind"], p["text"]) for p in published] == [
        ("video", "chunked #cat"),
        ("video", "pulled #cat"),
        ("photo", "three cats"),
    ]
    assert photo_status["publicaly_available_post_id"] == [int(published[-1]["id"])]
    for entry in published:
        assert httpx.get(entry["url"]).status_code == 200
