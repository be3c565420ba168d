"""Contract tests of the Facebook fake (Facebook Login + Pages Graph API), over real
HTTP with plain httpx, against platforms.md section 1."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from src.sandbox.config import SandboxConfig
from src.sandbox.meta import (
    BAKERY_IG_ID,
    BAKERY_PAGE_ID,
    BOOKS_PAGE_ID,
    FIONA_ID,
    FITNESS_PAGE_ID,
    FRANK_ID,
)
from tests.media_samples import jpeg_bytes, mp4_bytes, png_bytes

APP_ID = SandboxConfig.facebook_app_id
APP_SECRET = SandboxConfig.facebook_app_secret
REDIRECT = "http://okk.test/connect/facebook/callback"
GRAPH = "/facebook/graph/v24.0"
HTTP = httpx.Client(timeout=15)  # one pooled client for the helpers (a browser, a backend)
ALL_SCOPES = [
    "pages_show_list",
    "pages_read_engagement",
    "pages_manage_posts",
    "publish_video",
    "instagram_basic",
    "instagram_content_publish",
]


# -- helpers shared with test_instagram.py --------------------------------------------
class ConsentForm(HTMLParser):
    """Reads the consent page the way a browser would: form action, hidden fields,
    identity radios and scope checkboxes."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.action = ""
        self.hidden: dict[str, str] = {}
        self.identities: list[str] = []
        self.scopes: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.action = a["action"]
        elif tag == "input" and a.get("type") == "hidden":
            self.hidden[a["name"]] = a["value"]
        elif tag == "input" and a.get("name") == "identity":
            self.identities.append(a["value"])
        elif tag == "input" and a.get("name") == "scope":
            self.scopes.append(a["value"])


def authorize_url(
    sandbox, scopes: list[str] = ALL_SCOPES, state: str = "st4te", **extra: str
) -> str:
    query = {
        "client_id": APP_ID,
        "redirect_uri": REDIRECT,
        "state": state,
        "scope": ",".join(scopes),
        "response_type": "code",
        **extra,
    }
    return str(httpx.URL(sandbox.url + "/facebook/www/v24.0/dialog/oauth", params=query))


def consent(
    page: httpx.Response,
    identity: str = FIONA_ID,
    untick: tuple[str, ...] = (),
    decision: str = "allow",
) -> httpx.Response:
    """POST the consent form as a browser would (without following the redirect)."""
    form = ConsentForm(page.text)
    data = {**form.hidden, "identity": identity, "decision": decision}
    data["scope"] = [s for s in form.scopes if s not in untick]
    return HTTP.post(form.action, data=data)


def location_query(response: httpx.Response) -> dict[str, str]:
    assert response.status_code in (302, 303), response.text
    return {k: v[0] for k, v in parse_qs(urlsplit(response.headers["location"]).query).items()}


def login_code(sandbox, scopes: list[str] = ALL_SCOPES, identity: str = FIONA_ID, untick=()) -> str:
    page = HTTP.get(authorize_url(sandbox, scopes))
    assert page.status_code == 200
    return location_query(consent(page, identity, tuple(untick)))["code"]


def redeem(
    sandbox, code: str, redirect_uri: str = REDIRECT, secret: str = APP_SECRET
) -> httpx.Response:
    params = {
        "client_id": APP_ID,
        "client_secret": secret,
        "redirect_uri": redirect_uri,
        "code": code,
    }
    return HTTP.get(sandbox.url + GRAPH + "/oauth/access_token", params=params)


def exchange(sandbox, short_token: str) -> httpx.Response:
    params = {
        "grant_type": "fb_exchange_token",
        "client_id": APP_ID,
        "client_secret": APP_SECRET,
        "fb_exchange_token": short_token,
    }
    return HTTP.get(sandbox.url + GRAPH + "/oauth/access_token", params=params)


def user_token(
    sandbox, scopes: list[str] = ALL_SCOPES, identity: str = FIONA_ID, untick=(), long: bool = True
) -> str:
    short = redeem(sandbox, login_code(sandbox, scopes, identity, untick)).json()["access_token"]
    return exchange(sandbox, short).json()["access_token"] if long else short


def page_token(sandbox, token: str, page_id: str = BAKERY_PAGE_ID) -> str:
    response = HTTP.get(
        sandbox.url + GRAPH + f"/{page_id}",
        params={"fields": "access_token", "access_token": token},
    )
    return response.json()["access_token"]


def error_of(response: httpx.Response) -> dict[str, Any]:
    assert "error" in response.json(), response.text
    return response.json()["error"]


def poll(fetch: Callable[[], Any], done: Callable[[Any], bool], seconds: float = 10.0) -> Any:
    """Bounded polling, as a client of an asynchronous API does."""
    deadline = time.monotonic() + seconds
    while True:
        value = fetch()
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def unique(name: str) -> str:
    return f"{uuid.uuid4().hex[:8]}-{name}"


@pytest.fixture
def api(sandbox) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sandbox.url + GRAPH, timeout=15) as client:
        yield client


@pytest.fixture
def fiona(sandbox) -> str:
    return user_token(sandbox)


@pytest.fixture
def bakery(sandbox, fiona) -> str:
    return page_token(sandbox, fiona)


# -- OAuth dialog ----------------------------------------------------------------------
def test_dialog_shows_consent_with_test_people_and_scopes(sandbox):
    page = HTTP.get(authorize_url(sandbox))
    assert page.status_code == 200
    form = ConsentForm(page.text)
    assert "Fiona Facebook" in page.text and "Frank Facebook" in page.text
    assert set(form.identities) == {FIONA_ID, FRANK_ID}
    assert form.scopes == ALL_SCOPES
    assert form.action == sandbox.url + "/facebook/www/v24.0/dialog/oauth"


def test_dialog_accepts_no_version_prefix(sandbox):
    url = authorize_url(sandbox).replace("/v24.0/dialog", "/dialog")
    assert HTTP.get(url).status_code == 200


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ({"client_id": "someone-else"}, "Invalid App ID"),
        ({"redirect_uri": "not a url"}, "URL Blocked"),
        (
            {"scope": "pages_show_list,manage_pages_everything"},
            "Invalid Scopes: manage_pages_everything",
        ),
    ],
)
def test_dialog_refuses_bad_requests_with_an_error_page(sandbox, extra, words):
    response = HTTP.get(authorize_url(sandbox, **extra))
    assert response.status_code == 400
    assert words in response.text


def test_allow_redirects_with_code_and_state(sandbox):
    response = consent(HTTP.get(authorize_url(sandbox, state="abc123")))
    assert response.status_code == 302
    location = response.headers["location"]
    assert location.startswith(REDIRECT + "?") and location.endswith("#_=_")
    query = location_query(response)
    assert query["state"] == "abc123" and query["code"]


def test_deny_redirects_with_the_real_denial_parameters(sandbox):
    response = consent(HTTP.get(authorize_url(sandbox, state="s1")), decision="deny")
    assert location_query(response) == {
        "error": "access_denied",
        "error_code": "200",
        "error_description": "Permissions error",
        "error_reason": "user_denied",
        "state": "s1",
    }


# -- tokens ----------------------------------------------------------------------------
def test_code_gives_short_lived_bearer_token(sandbox):
    response = redeem(sandbox, login_code(sandbox))
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == SandboxConfig.facebook_short_token_ttl


def test_code_is_single_use(sandbox):
    code = login_code(sandbox)
    assert redeem(sandbox, code).status_code == 200
    error = error_of(redeem(sandbox, code))
    assert (error["code"], error["error_subcode"]) == (100, 36009)


def test_code_refuses_other_redirect_uri_and_bad_secret(sandbox):
    code = login_code(sandbox)
    error = error_of(redeem(sandbox, code, redirect_uri="http://evil.test/cb"))
    assert (error["code"], error["error_subcode"], error["type"]) == (100, 36008, "OAuthException")
    assert error_of(redeem(sandbox, code, secret="wrong"))["code"] == 1
    assert redeem(sandbox, code).status_code == 200  # still unused after the refusals


def test_code_expires_after_ten_minutes(sandbox):
    code = login_code(sandbox)
    sandbox.advance(601)
    error = error_of(redeem(sandbox, code))
    assert (error["code"], error["error_subcode"]) == (100, 36007)


def test_exchange_gives_long_lived_token(sandbox):
    short = redeem(sandbox, login_code(sandbox)).json()["access_token"]
    body = exchange(sandbox, short).json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == SandboxConfig.facebook_long_token_ttl
    assert body["access_token"] != short


def test_expired_short_token_cannot_be_exchanged(sandbox, api):
    short = redeem(sandbox, login_code(sandbox)).json()["access_token"]
    sandbox.advance(SandboxConfig.facebook_short_token_ttl + 1)
    error = error_of(exchange(sandbox, short))
    assert (error["code"], error["error_subcode"]) == (190, 463)
    assert "Session has expired" in error["message"]


def test_long_lived_token_expires_after_its_lifetime(sandbox, api, fiona):
    sandbox.advance(SandboxConfig.facebook_long_token_ttl - 60)
    assert api.get("/me", params={"access_token": fiona}).status_code == 200
    sandbox.advance(120)
    response = api.get("/me", params={"access_token": fiona})
    assert response.status_code == 400
    assert (error_of(response)["code"], error_of(response)["error_subcode"]) == (190, 463)
    assert response.headers["www-authenticate"].startswith(
        'OAuth "Facebook Platform" "invalid_token"'
    )


def test_token_in_header_or_param_and_any_version(sandbox, fiona):
    for prefix in ("/facebook/graph/v24.0", "/facebook/graph/v19.0", "/facebook/graph"):
        for headers, params in (
            ({"Authorization": f"Bearer {fiona}"}, {}),
            ({"Authorization": f"OAuth {fiona}"}, {}),
            ({}, {"access_token": fiona}),
        ):
            response = HTTP.get(sandbox.url + prefix + "/me", headers=headers, params=params)
            assert response.json()["id"] == FIONA_ID, (prefix, headers)


def test_missing_and_garbage_tokens_are_refused(api):
    assert error_of(api.get("/me"))["code"] == 104
    error = error_of(api.get("/me", params={"access_token": "EAAnonsense"}))
    assert (error["code"], error["error_subcode"], error["type"]) == (190, 467, "OAuthException")
    assert error["fbtrace_id"]


# -- permissions -----------------------------------------------------------------------
def test_permissions_list_granted_and_declined(sandbox, api):
    token = user_token(sandbox, untick=("publish_video",))
    data = api.get("/me/permissions", params={"access_token": token}).json()["data"]
    statuses = {entry["permission"]: entry["status"] for entry in data}
    assert statuses["public_profile"] == "granted"
    assert statuses["pages_manage_posts"] == "granted"
    assert statuses["publish_video"] == "declined"
    one = api.get("/me/permissions/publish_video", params={"access_token": token}).json()
    assert one == {"data": [{"permission": "publish_video", "status": "declined"}]}


def test_delete_one_permission(api, fiona):
    response = api.delete("/me/permissions/pages_manage_posts", params={"access_token": fiona})
    assert response.json() == {"success": True}
    data = api.get("/me/permissions", params={"access_token": fiona}).json()["data"]
    assert {"permission": "pages_manage_posts", "status": "declined"} in data


def test_delete_permissions_revokes_user_and_page_tokens(sandbox, api, fiona, bakery):
    assert api.delete("/me/permissions", params={"access_token": fiona}).json() == {"success": True}
    for token in (fiona, bakery):
        error = error_of(api.get("/me", params={"access_token": token}))
        assert error["code"] == 190
        assert error["error_subcode"] == 458


def test_debug_token_describes_a_token(sandbox, api, fiona):
    app_token = f"{APP_ID}|{APP_SECRET}"
    data = api.get("/debug_token", params={"input_token": fiona, "access_token": app_token}).json()[
        "data"
    ]
    assert data["is_valid"] is True and data["user_id"] == FIONA_ID and data["type"] == "USER"
    assert "pages_manage_posts" in data["scopes"]
    bad = api.get("/debug_token", params={"input_token": "junk", "access_token": app_token}).json()
    assert bad["data"]["is_valid"] is False


# -- users, pages, page tokens ---------------------------------------------------------
def test_me_with_fields(api, fiona):
    body = api.get("/me", params={"access_token": fiona, "fields": "id,name,picture"}).json()
    assert body["id"] == FIONA_ID and body["name"] == "Fiona Facebook"
    assert body["picture"]["data"]["url"].startswith("http")
    assert api.get("/me", params={"access_token": fiona}).json() == {
        "name": "Fiona Facebook",
        "id": FIONA_ID,
    }


def test_unknown_field_and_unknown_node(api, fiona):
    error = error_of(api.get("/me", params={"access_token": fiona, "fields": "id,shoe_size"}))
    assert error["code"] == 100
    assert "nonexisting field (shoe_size)" in error["message"]
    error = error_of(api.get("/999999999", params={"access_token": fiona}))
    assert (error["code"], error["error_subcode"], error["type"]) == (
        100,
        33,
        "GraphMethodException",
    )


def test_accounts_lists_pages_with_tokens_and_tasks(api, fiona):
    body = api.get("/me/accounts", params={"access_token": fiona}).json()
    pages = {page["id"]: page for page in body["data"]}
    assert set(pages) == {BAKERY_PAGE_ID, BOOKS_PAGE_ID}
    bakery = pages[BAKERY_PAGE_ID]
    assert bakery["name"] == "Okk Bakery" and bakery["access_token"].startswith("EAA")
    assert "CREATE_CONTENT" in bakery["tasks"]
    assert bakery["category_list"][0]["name"] == bakery["category"]
    assert set(body["paging"]["cursors"]) == {"before", "after"}


def test_accounts_paging_with_limit_and_after(api, fiona):
    first = api.get("/me/accounts", params={"access_token": fiona, "limit": 1}).json()
    assert len(first["data"]) == 1 and "next" in first["paging"]
    second = HTTP.get(first["paging"]["next"]).json()
    assert len(second["data"]) == 1 and second["data"][0]["id"] != first["data"][0]["id"]
    assert "next" not in second["paging"]


def test_accounts_fields_include_instagram_business_account(api, fiona):
    params = {"access_token": fiona, "fields": "id,name,instagram_business_account"}
    pages = {p["id"]: p for p in api.get("/me/accounts", params=params).json()["data"]}
    assert pages[BAKERY_PAGE_ID]["instagram_business_account"] == {"id": BAKERY_IG_ID}
    assert "instagram_business_account" not in pages[BOOKS_PAGE_ID]


def test_accounts_without_pages_show_list_is_empty(sandbox, api):
    token = user_token(sandbox, untick=("pages_show_list",))
    assert api.get("/me/accounts", params={"access_token": token}).json() == {"data": []}


def test_frank_sees_only_his_page(sandbox, api):
    token = user_token(sandbox, identity=FRANK_ID)
    data = api.get("/me/accounts", params={"access_token": token}).json()["data"]
    assert [(p["id"], p["name"]) for p in data] == [(FITNESS_PAGE_ID, "Frank's Fitness")]


def test_page_instagram_business_account_present_or_absent(api, fiona):
    params = {"access_token": fiona, "fields": "instagram_business_account"}
    linked = api.get(f"/{BAKERY_PAGE_ID}", params=params).json()
    assert linked == {"instagram_business_account": {"id": BAKERY_IG_ID}, "id": BAKERY_PAGE_ID}
    assert api.get(f"/{BOOKS_PAGE_ID}", params=params).json() == {"id": BOOKS_PAGE_ID}


def test_page_token_from_short_lived_user_token_lasts_one_hour(sandbox, api):
    short = user_token(sandbox, long=False)
    token = page_token(sandbox, short)
    assert api.get("/me", params={"access_token": token}).json()["id"] == BAKERY_PAGE_ID
    sandbox.advance(3601)
    assert error_of(api.get("/me", params={"access_token": token}))["error_subcode"] == 463


def test_page_token_from_long_lived_user_token_does_not_expire(sandbox, api, bakery):
    sandbox.advance(SandboxConfig.facebook_long_token_ttl + 86400)
    assert api.get("/me", params={"access_token": bakery}).json()["id"] == BAKERY_PAGE_ID


# -- text posts ------------------------------------------------------------------------
def test_text_post_is_published_and_readable(sandbox, api, bakery):
    response = api.post(
        f"/{BAKERY_PAGE_ID}/feed", data={"message": "Fresh rye today", "access_token": bakery}
    )
    assert response.status_code == 200
    post_id = response.json()["id"]
    assert post_id.startswith(BAKERY_PAGE_ID + "_")
    fields = "id,message,created_time,permalink_url"
    post = api.get(f"/{post_id}", params={"fields": fields, "access_token": bakery}).json()
    assert post["message"] == "Fresh rye today" and post["created_time"].endswith("+0000")
    [entry] = sandbox.published(platform="facebook")
    assert (entry["account_id"], entry["kind"], entry["id"], entry["text"]) == (
        BAKERY_PAGE_ID,
        "text",
        post_id,
        "Fresh rye today",
    )
    assert entry["url"] == post["permalink_url"] == f"{sandbox.url}/facebook/www/{post_id}"
    html = HTTP.get(post["permalink_url"])
    assert html.status_code == 200 and "Fresh rye today" in html.text


def test_feed_lists_recent_posts_newest_first(api, bakery):
    for text in ("one", "two", "three"):
        api.post(f"/{BAKERY_PAGE_ID}/feed", data={"message": text, "access_token": bakery})
    body = api.get(f"/{BAKERY_PAGE_ID}/feed", params={"access_token": bakery, "limit": 2}).json()
    assert [p["message"] for p in body["data"]] == ["three", "two"]
    assert "next" in body["paging"]


def test_json_body_and_bearer_header_are_accepted(api, bakery):
    response = api.post(
        f"/{BAKERY_PAGE_ID}/feed",
        json={"message": "from json", "link": "https://okk.test/menu"},
        headers={"Authorization": f"Bearer {bakery}"},
    )
    assert response.json()["id"].startswith(BAKERY_PAGE_ID)


def test_duplicate_post_twice_in_a_row_is_refused(api, bakery):
    data = {"message": "Same again", "access_token": bakery}
    assert api.post(f"/{BAKERY_PAGE_ID}/feed", data=data).status_code == 200
    error = error_of(api.post(f"/{BAKERY_PAGE_ID}/feed", data=data))
    assert error["code"] == 506 and error["error_user_title"] == "Duplicate Post"
    assert api.post(f"/{BAKERY_PAGE_ID}/feed", data={**data, "message": "Other"}).status_code == 200
    assert api.post(f"/{BAKERY_PAGE_ID}/feed", data=data).status_code == 200  # not in a row


def test_empty_post_is_refused(api, bakery):
    error = error_of(api.post(f"/{BAKERY_PAGE_ID}/feed", data={"access_token": bakery}))
    assert error["code"] == 100


def test_publishing_needs_a_page_token(api, fiona):
    response = api.post(
        f"/{BAKERY_PAGE_ID}/feed", data={"message": "as user", "access_token": fiona}
    )
    assert error_of(response)["code"] == 200


def test_publishing_needs_pages_manage_posts(sandbox, api):
    token = page_token(sandbox, user_token(sandbox, untick=("pages_manage_posts",)))
    error = error_of(
        api.post(f"/{BAKERY_PAGE_ID}/feed", data={"message": "x", "access_token": token})
    )
    assert error["code"] == 200


def test_publishing_needs_the_create_content_task(sandbox, api, bakery):
    sandbox.state.get(BAKERY_PAGE_ID)["roles"][FIONA_ID] = ["ANALYZE", "MODERATE"]
    error = error_of(
        api.post(f"/{BAKERY_PAGE_ID}/feed", data={"message": "x", "access_token": bakery})
    )
    assert error["code"] == 200


def test_page_token_of_another_page_is_refused(sandbox, api, fiona):
    books = page_token(sandbox, fiona, BOOKS_PAGE_ID)
    error = error_of(
        api.post(f"/{BAKERY_PAGE_ID}/feed", data={"message": "x", "access_token": books})
    )
    assert error["code"] == 200


def test_scheduled_post_goes_live_at_its_time(sandbox, api, bakery):
    when = int(sandbox.state.now()) + 3600
    data = {
        "message": "Later",
        "published": "false",
        "scheduled_publish_time": str(when),
        "access_token": bakery,
    }
    post_id = api.post(f"/{BAKERY_PAGE_ID}/feed", data=data).json()["id"]
    assert api.get(f"/{BAKERY_PAGE_ID}/feed", params={"access_token": bakery}).json()["data"] == []
    scheduled = api.get(
        f"/{BAKERY_PAGE_ID}/scheduled_posts", params={"access_token": bakery}
    ).json()
    assert [p["id"] for p in scheduled["data"]] == [post_id]
    assert sandbox.published(platform="facebook") == []
    sandbox.advance(3601)
    feed = api.get(f"/{BAKERY_PAGE_ID}/feed", params={"access_token": bakery}).json()["data"]
    assert [p["id"] for p in feed] == [post_id]
    assert [p["id"] for p in sandbox.published(platform="facebook")] == [post_id]


@pytest.mark.parametrize(
    ("published", "offset"),
    [("false", 300), ("false", 40 * 86400), ("true", 3600), (None, 3600)],
)
def test_scheduled_publish_time_rules(sandbox, api, bakery, published, offset):
    data = {
        "message": "x",
        "scheduled_publish_time": str(int(sandbox.state.now()) + offset),
        "access_token": bakery,
    }
    if published is not None:
        data["published"] = published
    error = error_of(api.post(f"/{BAKERY_PAGE_ID}/feed", data=data))
    assert error["code"] == 100


def test_delete_post(sandbox, api, bakery):
    post_id = api.post(
        f"/{BAKERY_PAGE_ID}/feed", data={"message": "oops", "access_token": bakery}
    ).json()["id"]
    assert api.delete(f"/{post_id}", params={"access_token": bakery}).json() == {"success": True}
    error = error_of(api.get(f"/{post_id}", params={"access_token": bakery}))
    assert (error["code"], error["error_subcode"]) == (100, 33)
    assert api.get(f"/{BAKERY_PAGE_ID}/feed", params={"access_token": bakery}).json()["data"] == []
    assert HTTP.get(f"{sandbox.url}/facebook/www/{post_id}").status_code == 404


# -- photos ----------------------------------------------------------------------------
def test_photo_from_url_is_pulled_and_published(sandbox, api, bakery, media_host):
    url = media_host.add(unique("bread.jpg"), jpeg_bytes(800, 600), "image/jpeg")
    data = {"url": url, "caption": "Our sourdough", "access_token": bakery}
    body = api.post(f"/{BAKERY_PAGE_ID}/photos", data=data).json()
    assert set(body) == {"id", "post_id"} and body["post_id"].startswith(BAKERY_PAGE_ID + "_")
    assert urlsplit(url).path in media_host.requests
    [entry] = sandbox.published(platform="facebook")
    assert (entry["kind"], entry["id"], entry["text"], entry["media"]) == (
        "photo",
        body["post_id"],
        "Our sourdough",
        [url],
    )
    photo = api.get(
        f"/{body['id']}", params={"fields": "id,width,height,name", "access_token": bakery}
    ).json()
    assert (photo["width"], photo["height"], photo["name"]) == (800, 600, "Our sourdough")


def test_photo_upload_as_multipart_source(sandbox, api, bakery):
    files = {"source": ("cake.jpg", jpeg_bytes(640, 640), "image/jpeg")}
    body = api.post(
        f"/{BAKERY_PAGE_ID}/photos", data={"message": "Cake", "access_token": bakery}, files=files
    ).json()
    assert body["post_id"]
    [entry] = sandbox.published(platform="facebook")
    stored = HTTP.get(entry["media"][0])
    assert stored.status_code == 200 and stored.content[:3] == b"\xff\xd8\xff"


def test_photo_url_that_404s_is_refused(api, bakery, media_host):
    url = media_host.url + "/" + unique("missing.jpg")
    error = error_of(
        api.post(f"/{BAKERY_PAGE_ID}/photos", data={"url": url, "access_token": bakery})
    )
    assert error["code"] == 324
    assert urlsplit(url).path in media_host.requests


def test_photo_of_the_wrong_type_is_refused(api, bakery, media_host):
    url = media_host.add(unique("clip.jpg"), mp4_bytes(4096), "image/jpeg")
    error = error_of(
        api.post(f"/{BAKERY_PAGE_ID}/photos", data={"url": url, "access_token": bakery})
    )
    assert error["code"] == 324 and error["message"] == "(#324) Missing or invalid image file"


def test_multi_photo_post_with_attached_media(sandbox, api, bakery, media_host):
    ids = []
    for index in range(2):
        url = media_host.add(unique(f"p{index}.jpg"), jpeg_bytes(500, 500), "image/jpeg")
        body = api.post(
            f"/{BAKERY_PAGE_ID}/photos",
            data={"url": url, "published": "false", "access_token": bakery},
        ).json()
        assert set(body) == {"id"}
        ids.append(body["id"])
    assert sandbox.published(platform="facebook") == []
    attached = json.dumps([{"media_fbid": i} for i in ids])
    data = {"message": "Two loaves", "attached_media": attached, "access_token": bakery}
    post_id = api.post(f"/{BAKERY_PAGE_ID}/feed", data=data).json()["id"]
    [entry] = sandbox.published(platform="facebook")
    assert (entry["id"], entry["kind"], len(entry["media"])) == (post_id, "photo", 2)
    # A photo already attached cannot be attached again.
    again = api.post(f"/{BAKERY_PAGE_ID}/feed", data={**data, "message": "Again"})
    assert error_of(again)["code"] == 100


def test_attached_media_in_indexed_form_fields(sandbox, api, bakery, media_host):
    url = media_host.add(unique("i.jpg"), jpeg_bytes(500, 500), "image/jpeg")
    photo = api.post(
        f"/{BAKERY_PAGE_ID}/photos", data={"url": url, "published": "false", "access_token": bakery}
    ).json()
    data = {"attached_media[0]": json.dumps({"media_fbid": photo["id"]}), "access_token": bakery}
    assert api.post(f"/{BAKERY_PAGE_ID}/feed", data=data).status_code == 200


# -- videos ----------------------------------------------------------------------------
def video_status(api: httpx.Client, video_id: str, token: str) -> dict[str, Any]:
    return api.get(
        f"/{video_id}", params={"fields": "status,permalink_url,post_id", "access_token": token}
    ).json()


def test_video_from_file_url_processes_then_publishes(sandbox, api, bakery, media_host):
    url = media_host.add(unique("clip.mp4"), mp4_bytes(256 * 1024), "video/mp4")
    data = {
        "file_url": url,
        "title": "Kneading",
        "description": "How we knead",
        "access_token": bakery,
    }
    video_id = api.post(f"/{BAKERY_PAGE_ID}/videos", data=data).json()["id"]
    first = video_status(api, video_id, bakery)
    assert first["status"]["video_status"] in ("processing", "ready")
    final = poll(
        lambda: video_status(api, video_id, bakery),
        lambda s: s["status"]["video_status"] == "ready",
    )
    assert final["status"]["processing_phase"]["status"] == "complete"
    assert final["status"]["publishing_phase"]["publish_status"] == "published"
    assert urlsplit(url).path in media_host.requests
    [entry] = sandbox.published(platform="facebook")
    assert (entry["kind"], entry["id"], entry["text"]) == ("video", video_id, "How we knead")
    assert entry["url"] == final["permalink_url"]


def test_video_stays_processing_until_the_clock_moves(sandbox, api, bakery, media_host):
    sandbox.configure(processing_delay=600)
    url = media_host.add(unique("slow.mp4"), mp4_bytes(), "video/mp4")
    video_id = api.post(
        f"/{BAKERY_PAGE_ID}/videos", data={"file_url": url, "access_token": bakery}
    ).json()["id"]
    status = poll(
        lambda: video_status(api, video_id, bakery),
        lambda s: s["status"]["uploading_phase"]["status"] == "complete",
    )
    assert status["status"]["video_status"] == "processing"
    assert status["status"]["processing_phase"]["status"] == "in_progress"
    sandbox.advance(601)
    assert video_status(api, video_id, bakery)["status"]["video_status"] == "ready"


def test_video_url_that_404s_ends_in_error(sandbox, api, bakery, media_host):
    url = media_host.url + "/" + unique("gone.mp4")
    video_id = api.post(
        f"/{BAKERY_PAGE_ID}/videos", data={"file_url": url, "access_token": bakery}
    ).json()["id"]
    status = poll(
        lambda: video_status(api, video_id, bakery),
        lambda s: s["status"]["video_status"] != "processing",
    )
    assert status["status"]["video_status"] == "error"
    assert status["status"]["uploading_phase"]["errors"][0]["code"] == 6000
    assert sandbox.published(platform="facebook") == []


def test_video_of_the_wrong_type_ends_in_error(sandbox, api, bakery, media_host):
    url = media_host.add(unique("still.mp4"), png_bytes(), "video/mp4")
    video_id = api.post(
        f"/{BAKERY_PAGE_ID}/videos", data={"file_url": url, "access_token": bakery}
    ).json()["id"]
    status = poll(
        lambda: video_status(api, video_id, bakery),
        lambda s: s["status"]["video_status"] != "processing",
    )
    assert status["status"]["video_status"] == "error"
    assert status["status"]["processing_phase"]["errors"][0]["code"] == 352


def test_video_needs_publish_video(sandbox, api, media_host):
    token = page_token(sandbox, user_token(sandbox, untick=("publish_video",)))
    url = media_host.add(unique("v.mp4"), mp4_bytes(), "video/mp4")
    error = error_of(
        api.post(f"/{BAKERY_PAGE_ID}/videos", data={"file_url": url, "access_token": token})
    )
    assert error["code"] == 200


def resumable_upload(api: httpx.Client, user: str, data: bytes, parts: int = 2) -> str:
    params = {
        "file_name": "clip.mp4",
        "file_length": len(data),
        "file_type": "video/mp4",
        "access_token": user,
    }
    session = api.post(f"/{APP_ID}/uploads", params=params).json()["id"]
    assert session.startswith("upload:")
    assert api.get(f"/{session}", headers={"Authorization": f"OAuth {user}"}).json() == {
        "id": session,
        "file_offset": 0,
    }
    step = -(-len(data) // parts)
    result: dict[str, Any] = {}
    for offset in range(0, len(data), step):
        headers = {"Authorization": f"OAuth {user}", "file_offset": str(offset)}
        result = api.post(
            f"/{session}", headers=headers, content=data[offset : offset + step]
        ).json()
    return result["h"]


def test_resumable_upload_then_publish_video(sandbox, api, fiona, bakery):
    handle = resumable_upload(api, fiona, mp4_bytes(300_000), parts=3)
    data = {
        "fbuploader_video_file_chunk": handle,
        "title": "Oven",
        "description": "Oven tour",
        "access_token": bakery,
    }
    video_id = api.post(f"/{BAKERY_PAGE_ID}/videos", data=data).json()["id"]
    final = poll(
        lambda: video_status(api, video_id, bakery),
        lambda s: s["status"]["video_status"] == "ready",
    )
    assert final["status"]["video_status"] == "ready"
    [entry] = sandbox.published(platform="facebook")
    assert (entry["kind"], entry["id"]) == ("video", video_id)


def test_resumable_upload_reports_offset_and_refuses_a_wrong_one(api, fiona):
    data = mp4_bytes(10_000)
    params = {
        "file_name": "a.mp4",
        "file_length": len(data),
        "file_type": "video/mp4",
        "access_token": fiona,
    }
    session = api.post(f"/{APP_ID}/uploads", params=params).json()["id"]
    auth = {"Authorization": f"OAuth {fiona}"}
    part = api.post(f"/{session}", headers={**auth, "file_offset": "0"}, content=data[:4000]).json()
    assert part == {"id": session, "file_offset": 4000}
    assert api.get(f"/{session}", headers=auth).json()["file_offset"] == 4000
    assert (
        error_of(
            api.post(f"/{session}", headers={**auth, "file_offset": "0"}, content=data[4000:])
        )["code"]
        == 100
    )
    assert (
        "h"
        in api.post(
            f"/{session}", headers={**auth, "file_offset": "4000"}, content=data[4000:]
        ).json()
    )


def test_upload_session_refuses_bad_file_type_and_length(api, fiona):
    bad_type = {"file_length": 10, "file_type": "video/x-msvideo", "access_token": fiona}
    assert error_of(api.post(f"/{APP_ID}/uploads", params=bad_type))["code"] == 100
    no_length = {"file_type": "video/mp4", "access_token": fiona}
    assert error_of(api.post(f"/{APP_ID}/uploads", params=no_length))["code"] == 100


def test_unknown_upload_handle_is_refused(api, bakery):
    data = {"fbuploader_video_file_chunk": "4:bm9wZQ:video/mp4:xyz", "access_token": bakery}
    assert error_of(api.post(f"/{BAKERY_PAGE_ID}/videos", data=data))["code"] == 100


# -- rate limits, usage headers, faults ------------------------------------------------
def test_usage_headers_on_normal_responses(api, fiona, bakery):
    user = api.get("/me", params={"access_token": fiona})
    assert set(json.loads(user.headers["x-app-usage"])) == {
        "call_count",
        "total_cputime",
        "total_time",
    }
    page = api.get("/me", params={"access_token": bakery})
    buc = json.loads(page.headers["x-business-use-case-usage"])
    assert buc[BAKERY_PAGE_ID][0]["type"] == "pages"
    assert "x-page-usage" in page.headers and "x-app-usage" in page.headers


def test_app_rate_limit_gives_code_4_until_the_hour_passes(sandbox, api, fiona):
    sandbox.configure(facebook_app_call_limit=3)
    for _ in range(3):
        assert api.get("/me", params={"access_token": fiona}).status_code == 200
    response = api.get("/me", params={"access_token": fiona})
    error = error_of(response)
    assert (error["code"], error["is_transient"]) == (4, True)
    assert json.loads(response.headers["x-app-usage"])["call_count"] == 100
    sandbox.advance(3601)
    assert api.get("/me", params={"access_token": fiona}).status_code == 200


def test_page_rate_limit_gives_code_32_with_regain_estimate(sandbox, api, bakery):
    sandbox.configure(facebook_page_call_limit=2)
    for _ in range(2):
        assert api.get("/me", params={"access_token": bakery}).status_code == 200
    response = api.get("/me", params={"access_token": bakery})
    assert error_of(response)["code"] == 32
    usage = json.loads(response.headers["x-business-use-case-usage"])[BAKERY_PAGE_ID][0]
    assert usage["call_count"] == 100 and usage["estimated_time_to_regain_access"] > 0


def test_fault_server_error(sandbox, api, bakery):
    sandbox.fault(
        platform="facebook", path="/graph/*/feed", method="POST", kind="error", remaining=1
    )
    response = api.post(f"/{BAKERY_PAGE_ID}/feed", data={"message": "hi", "access_token": bakery})
    assert response.status_code == 500
    error = error_of(response)
    assert (error["code"], error["is_transient"], error["type"]) == (2, True, "OAuthException")
    assert (
        api.post(
            f"/{BAKERY_PAGE_ID}/feed", data={"message": "hi", "access_token": bakery}
        ).status_code
        == 200
    )


@pytest.mark.parametrize(("code", "status"), [(368, 400), (1, 500), (1609005, 400)])
def test_fault_other_graph_errors(sandbox, api, bakery, code, status):
    sandbox.fault(platform="facebook", path="/graph/*/feed", kind="error", body={"code": code})
    response = api.post(f"/{BAKERY_PAGE_ID}/feed", data={"message": "hi", "access_token": bakery})
    assert response.status_code == status
    error = error_of(response)
    assert error["code"] == code and error["type"] == "OAuthException"


@pytest.mark.parametrize(
    ("code", "header"), [(4, "x-app-usage"), (32, "x-page-usage"), (17, "x-app-usage")]
)
def test_fault_rate_limit(sandbox, api, bakery, code, header):
    sandbox.fault(
        platform="facebook",
        path="/graph/*",
        kind="rate_limit",
        retry_after=120,
        body={"code": code},
    )
    response = api.get("/me", params={"access_token": bakery})
    assert error_of(response)["code"] == code
    assert header in response.headers
    buc = json.loads(response.headers["x-business-use-case-usage"])
    assert next(iter(buc.values()))[0]["estimated_time_to_regain_access"] == 2


@pytest.mark.parametrize(("kind", "subcode"), [("expired_token", 463), ("revoked_token", 460)])
def test_fault_token_errors(sandbox, api, fiona, kind, subcode):
    sandbox.fault(platform="facebook", path="/graph/*/me", kind=kind)
    error = error_of(api.get("/me", params={"access_token": fiona}))
    assert (error["code"], error["error_subcode"]) == (190, subcode)


def test_admin_token_expiry_is_seen_as_190(sandbox, api, fiona):
    sandbox.admin.post("/tokens/expire", json={"platform": "facebook", "user_id": FIONA_ID})
    assert error_of(api.get("/me", params={"access_token": fiona}))["error_subcode"] == 463


# -- journey ---------------------------------------------------------------------------
def test_journey_oauth_to_text_photo_and_video(sandbox, media_host):
    """A product's whole path: connect Facebook, pick the Page, publish three posts."""
    browser = httpx.Client(timeout=15)
    consent_page = browser.get(authorize_url(sandbox, state="journey"))
    callback = consent(consent_page)
    query = location_query(callback)
    assert query["state"] == "journey"

    graph = httpx.Client(base_url=sandbox.url + GRAPH, timeout=15)
    token_params = {
        "client_id": APP_ID,
        "client_secret": APP_SECRET,
        "redirect_uri": REDIRECT,
        "code": query["code"],
    }
    short = graph.get("/oauth/access_token", params=token_params).json()["access_token"]
    long_params = {
        "grant_type": "fb_exchange_token",
        "client_id": APP_ID,
        "client_secret": APP_SECRET,
        "fb_exchange_token": short,
    }
    long = graph.get("/oauth/access_token", params=long_params).json()
    assert long["expires_in"] > 50 * 86400
    user = long["access_token"]
    granted = graph.get("/me/permissions", params={"access_token": user}).json()["data"]
    assert {p["permission"] for p in granted if p["status"] == "granted"} >= set(ALL_SCOPES)

    pages = graph.get("/me/accounts", params={"access_token": user}).json()["data"]
    page = next(p for p in pages if p["name"] == "Okk Bakery")
    token = page["access_token"]

    text = graph.post(
        f"/{page['id']}/feed", data={"message": "Open at 7", "access_token": token}
    ).json()
    image_url = media_host.add(unique("j.jpg"), jpeg_bytes(1200, 900), "image/jpeg")
    photo = graph.post(
        f"/{page['id']}/photos",
        data={"url": image_url, "caption": "Croissants", "access_token": token},
    ).json()
    handle = resumable_upload(graph, user, mp4_bytes(200_000))
    video = graph.post(
        f"/{page['id']}/videos",
        data={
            "fbuploader_video_file_chunk": handle,
            "title": "Bake",
            "description": "Morning bake",
            "access_token": token,
        },
    ).json()
    ready = poll(
        lambda: video_status(graph, video["id"], token),
        lambda s: s["status"]["video_status"] == "ready",
    )
    assert ready["status"]["video_status"] == "ready"

    published = {
        (e["kind"], e["id"]) for e in sandbox.published(platform="facebook", account_id=page["id"])
    }
    assert published == {("text", text["id"]), ("photo", photo["post_id"]), ("video", video["id"])}
    feed = graph.get(f"/{page['id']}/feed", params={"access_token": token}).json()["data"]
    assert {p["id"] for p in feed} >= {text["id"], photo["post_id"]}
    for entry in sandbox.published(platform="facebook"):
        assert HTTP.get(entry["url"]).status_code == 200


def test_page_videos_lists_videos_newest_first_even_while_processing(api, bakery, media_host):
    """What a publisher reads before retrying a video it may already have sent."""
    url = media_host.add(unique("listed.mp4"), mp4_bytes(), "video/mp4")
    data = {"file_url": url, "description": "Listed video", "access_token": bakery}
    made = api.post(f"/{BAKERY_PAGE_ID}/videos", data=data).json()
    listed = api.get(
        f"/{BAKERY_PAGE_ID}/videos", params={"fields": "id,description", "access_token": bakery}
    ).json()
    assert listed["data"][0] == {"id": made["id"], "description": "Listed video"}
