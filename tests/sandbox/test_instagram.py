"""Contract tests of the Instagram fake (Instagram API with Facebook Login), over real
HTTP with plain httpx, against platforms.md section 2."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from src.sandbox.meta import BAKERY_IG_ID, BAKERY_PAGE_ID, BOOKS_PAGE_ID, FRANK_ID
from tests.media_samples import jpeg_bytes, mp4_bytes, png_bytes
from tests.sandbox.test_facebook import (
    ALL_SCOPES,
    APP_ID,
    APP_SECRET,
    GRAPH,
    HTTP,
    REDIRECT,
    authorize_url,
    consent,
    error_of,
    location_query,
    page_token,
    poll,
    unique,
    user_token,
)

IG = BAKERY_IG_ID


@pytest.fixture
def api(sandbox) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sandbox.url + GRAPH, timeout=15) as client:
        yield client


@pytest.fixture
def token(sandbox) -> str:
    return user_token(sandbox)


@pytest.fixture
def image_url(media_host) -> str:
    return media_host.add(unique("square.jpg"), jpeg_bytes(1080, 1080), "image/jpeg")


@pytest.fixture
def video_url(media_host) -> str:
    return media_host.add(unique("reel.mp4"), mp4_bytes(128 * 1024), "video/mp4")


def create(api: httpx.Client, token: str, **params: Any) -> httpx.Response:
    return api.post(
        f"/{IG}/media", data={**{k: str(v) for k, v in params.items()}, "access_token": token}
    )


def status(api: httpx.Client, token: str, container: str) -> dict[str, Any]:
    return api.get(
        f"/{container}", params={"fields": "status_code,status", "access_token": token}
    ).json()


def finished(api: httpx.Client, token: str, container: str) -> dict[str, Any]:
    return poll(lambda: status(api, token, container), lambda s: s["status_code"] != "IN_PROGRESS")


def publish(api: httpx.Client, token: str, container: str) -> httpx.Response:
    return api.post(f"/{IG}/media_publish", data={"creation_id": container, "access_token": token})


def ig_error_of(response: httpx.Response) -> dict[str, Any]:
    error = error_of(response)
    assert isinstance(error["is_transient"], bool), "Instagram errors carry is_transient"
    return error


# -- finding the account ---------------------------------------------------------------
def test_page_links_the_instagram_business_account(api, token):
    params = {"fields": "instagram_business_account", "access_token": token}
    assert api.get(f"/{BAKERY_PAGE_ID}", params=params).json()["instagram_business_account"] == {
        "id": IG
    }
    assert "instagram_business_account" not in api.get(f"/{BOOKS_PAGE_ID}", params=params).json()


def test_instagram_user_fields(api, token):
    fields = "id,username,name,profile_picture_url,followers_count,media_count"
    body = api.get(f"/{IG}", params={"fields": fields, "access_token": token}).json()
    assert body["id"] == IG and body["username"] == "okkbakery" and body["name"] == "Okk Bakery"
    assert body["followers_count"] > 0 and body["media_count"] == 0
    assert body["profile_picture_url"].startswith("http")


def test_instagram_user_through_page_token_and_field_expansion(sandbox, api, token):
    bakery = page_token(sandbox, token)
    assert (
        api.get(f"/{IG}", params={"fields": "username", "access_token": bakery}).json()["username"]
        == "okkbakery"
    )
    params = {"fields": "instagram_business_account{id,username}", "access_token": token}
    linked = api.get(f"/{BAKERY_PAGE_ID}", params=params).json()["instagram_business_account"]
    assert linked == {"id": IG, "username": "okkbakery"}


def test_someone_without_a_role_on_the_page_cannot_see_it(sandbox, api):
    frank = user_token(sandbox, identity=FRANK_ID)
    error = ig_error_of(api.get(f"/{IG}", params={"access_token": frank}))
    assert (error["code"], error["error_subcode"], error["is_transient"]) == (100, 33, False)


def test_publishing_needs_instagram_content_publish(sandbox, api, image_url):
    token = user_token(sandbox, untick=("instagram_content_publish",))
    error = ig_error_of(create(api, token, image_url=image_url))
    assert error["code"] == 10


# -- single image ----------------------------------------------------------------------
def test_image_container_is_finished_once_fetched_and_publishes(
    sandbox, api, token, image_url, media_host
):
    container = create(api, token, image_url=image_url, caption="Morning bake #bread").json()["id"]
    assert urlsplit(image_url).path in media_host.requests
    assert status(api, token, container)["status_code"] == "FINISHED"
    media_id = publish(api, token, container).json()["id"]
    assert status(api, token, container)["status_code"] == "PUBLISHED"
    fields = "id,permalink,caption,media_type,timestamp"
    media = api.get(f"/{media_id}", params={"fields": fields, "access_token": token}).json()
    assert (media["id"], media["caption"], media["media_type"]) == (
        media_id,
        "Morning bake #bread",
        "IMAGE",
    )
    assert media["timestamp"].endswith("+0000")
    assert media["permalink"].startswith(f"{sandbox.url}/facebook/www/instagram/p/")
    [entry] = sandbox.published(platform="instagram")
    assert (entry["account_id"], entry["kind"], entry["id"]) == (IG, "image", media_id)
    assert (entry["text"], entry["url"], entry["media"]) == (
        "Morning bake #bread",
        media["permalink"],
        [image_url],
    )
    html = HTTP.get(media["permalink"])
    assert html.status_code == 200 and "Morning bake #bread" in html.text


def test_image_url_that_404s_is_refused(api, token, media_host):
    url = media_host.url + "/" + unique("nothing.jpg")
    error = ig_error_of(create(api, token, image_url=url))
    assert (error["code"], error["error_subcode"]) == (9004, 2207052)
    assert urlsplit(url).path in media_host.requests


def test_png_image_is_refused(api, token, media_host):
    url = media_host.add(unique("img.png"), png_bytes(), "image/png")
    error = ig_error_of(create(api, token, image_url=url))
    assert (error["code"], error["error_subcode"]) == (36001, 2207005)


def test_video_bytes_as_image_are_refused(api, token, media_host):
    url = media_host.add(unique("fake.jpg"), mp4_bytes(4096), "image/jpeg")
    assert ig_error_of(create(api, token, image_url=url))["error_subcode"] == 2207005


def test_image_over_8_mib_is_refused(api, token, media_host):
    big = jpeg_bytes(1080, 1080) + b"\0" * (8 * 1024 * 1024)
    url = media_host.add(unique("huge.jpg"), big, "image/jpeg")
    error = ig_error_of(create(api, token, image_url=url))
    assert (error["code"], error["error_subcode"]) == (36000, 2207004)
    assert (
        error["error_user_msg"]
        == "The image is too large to download. It should be less than 8 MiB."
    )


@pytest.mark.parametrize(
    ("width", "height", "ok"),
    [(1080, 1350, True), (1910, 1000, True), (1080, 1360, False), (2000, 1000, False)],
)
def test_aspect_ratio_is_read_from_the_jpeg(api, token, media_host, width, height, ok):
    url = media_host.add(unique(f"{width}x{height}.jpg"), jpeg_bytes(width, height), "image/jpeg")
    response = create(api, token, image_url=url)
    if ok:
        assert response.status_code == 200 and "id" in response.json()
    else:
        error = ig_error_of(response)
        assert (error["code"], error["error_subcode"]) == (36003, 2207009)


@pytest.mark.parametrize(
    ("caption", "subcode"),
    [
        ("x" * 2201, 2207010),
        (" ".join(f"#tag{i}" for i in range(31)), 2207010),
        (" ".join(f"@user{i}" for i in range(21)), 2207040),
    ],
)
def test_caption_limits(api, token, image_url, caption, subcode):
    error = ig_error_of(create(api, token, image_url=image_url, caption=caption))
    assert (error["code"], error["error_subcode"]) == (100, subcode)
    assert "at most" in error["message"]


def test_caption_at_the_limits_is_accepted(api, token, image_url):
    caption = " ".join(f"#t{i}" for i in range(30)) + " " + " ".join(f"@u{i}" for i in range(20))
    assert create(api, token, image_url=image_url, caption=caption).status_code == 200
    assert create(api, token, image_url=image_url, caption="y" * 2200).status_code == 200


def test_missing_image_url_and_unknown_media_type(api, token):
    assert ig_error_of(create(api, token, caption="no media"))["code"] == 100
    assert ig_error_of(create(api, token, media_type="HOLOGRAM"))["error_subcode"] == 2207023


# -- reels -----------------------------------------------------------------------------
def test_reel_moves_in_progress_to_finished_then_publishes(
    sandbox, api, token, video_url, media_host
):
    sandbox.configure(processing_delay=300)
    container = create(api, token, media_type="REELS", video_url=video_url, caption="Reel!").json()[
        "id"
    ]
    assert status(api, token, container)["status_code"] == "IN_PROGRESS"
    early = ig_error_of(publish(api, token, container))
    assert (early["code"], early["error_subcode"], early["message"]) == (
        9007,
        2207027,
        "Media ID is not available",
    )
    assert urlsplit(video_url).path in poll(
        lambda: media_host.requests, lambda r: urlsplit(video_url).path in r
    )

    def later() -> dict[str, Any]:  # the fetch ends at some point; then 300 s must pass
        sandbox.advance(301)
        return status(api, token, container)

    assert poll(later, lambda s: s["status_code"] != "IN_PROGRESS")["status_code"] == "FINISHED"
    media_id = publish(api, token, container).json()["id"]
    media = api.get(
        f"/{media_id}", params={"fields": "media_type,media_product_type", "access_token": token}
    ).json()
    assert (media["media_type"], media["media_product_type"]) == ("VIDEO", "REELS")
    [entry] = sandbox.published(platform="instagram")
    assert (entry["kind"], entry["id"], entry["media"]) == ("reel", media_id, [video_url])


def test_reel_with_a_404_url_ends_in_error(api, token, media_host):
    url = media_host.url + "/" + unique("lost.mp4")
    container = create(api, token, media_type="REELS", video_url=url).json()["id"]
    final = finished(api, token, container)
    assert final["status_code"] == "ERROR" and "2207052" in final["status"]
    assert ig_error_of(publish(api, token, container))["code"] == 9007


def test_reel_of_the_wrong_type_ends_in_error(api, token, media_host):
    url = media_host.add(unique("photo.mp4"), jpeg_bytes(), "video/mp4")
    final = finished(api, token, create(api, token, media_type="REELS", video_url=url).json()["id"])
    assert final["status_code"] == "ERROR" and "2207026" in final["status"]


def test_single_feed_video_type_is_refused(api, token, video_url):
    assert (
        ig_error_of(create(api, token, media_type="VIDEO", video_url=video_url))["error_subcode"]
        == 2207023
    )


# -- carousels -------------------------------------------------------------------------
def carousel_item(api: httpx.Client, token: str, url: str, video: bool = False) -> str:
    params = {"media_type": "VIDEO", "video_url": url} if video else {"image_url": url}
    return create(api, token, is_carousel_item="true", **params).json()["id"]


def test_carousel_of_images_and_a_video(sandbox, api, token, media_host, video_url):
    urls = [
        media_host.add(unique(f"c{i}.jpg"), jpeg_bytes(1080, 1080), "image/jpeg") for i in range(2)
    ]
    children = [carousel_item(api, token, u) for u in urls] + [
        carousel_item(api, token, video_url, video=True)
    ]
    parent = create(
        api, token, media_type="CAROUSEL", children=",".join(children), caption="Three"
    ).json()["id"]
    assert finished(api, token, parent)["status_code"] == "FINISHED"
    media_id = publish(api, token, parent).json()["id"]
    media = api.get(
        f"/{media_id}", params={"fields": "media_type,children,caption", "access_token": token}
    ).json()
    assert media["media_type"] == "CAROUSEL_ALBUM" and len(media["children"]["data"]) == 3
    [entry] = sandbox.published(platform="instagram")
    assert (entry["kind"], entry["id"], entry["media"]) == (
        "carousel",
        media_id,
        [*urls, video_url],
    )
    limit = api.get(f"/{IG}/content_publishing_limit", params={"access_token": token}).json()
    assert limit == {"data": [{"quota_usage": 1}]}  # a carousel counts as one post


@pytest.mark.parametrize("count", [1, 11])
def test_carousel_needs_two_to_ten_children(api, token, image_url, count):
    children = [carousel_item(api, token, image_url) for _ in range(count)]
    error = ig_error_of(create(api, token, media_type="CAROUSEL", children=",".join(children)))
    assert (error["code"], error["error_subcode"]) == (100, 2207028)


def test_carousel_refuses_unknown_or_non_item_children(api, token, image_url):
    item = carousel_item(api, token, image_url)
    plain = create(api, token, image_url=image_url).json()["id"]
    assert (
        ig_error_of(create(api, token, media_type="CAROUSEL", children=f"{item},123"))["code"] == 24
    )
    assert (
        ig_error_of(create(api, token, media_type="CAROUSEL", children=f"{item},{plain}"))["code"]
        == 100
    )


def test_carousel_item_cannot_be_published_alone(api, token, image_url):
    assert ig_error_of(publish(api, token, carousel_item(api, token, image_url)))["code"] == 100


# -- publish refusals, expiry, cap -----------------------------------------------------
def test_publishing_twice_is_refused(sandbox, api, token, image_url):
    container = create(api, token, image_url=image_url).json()["id"]
    assert publish(api, token, container).status_code == 200
    error = ig_error_of(publish(api, token, container))
    assert (error["code"], error["error_subcode"]) == (9007, 2207027)
    assert len(sandbox.published(platform="instagram")) == 1


def test_media_publish_needs_a_known_creation_id(api, token):
    assert (
        ig_error_of(api.post(f"/{IG}/media_publish", data={"access_token": token}))["code"] == 100
    )
    assert ig_error_of(publish(api, token, "17999999999999999"))["error_subcode"] == 2207006


def test_container_expires_after_24_hours(sandbox, api, token, image_url):
    container = create(api, token, image_url=image_url).json()["id"]
    sandbox.advance(24 * 3600 + 1)
    assert status(api, token, container)["status_code"] == "EXPIRED"
    error = ig_error_of(publish(api, token, container))
    assert (error["code"], error["error_subcode"]) == (-2, 2207020)


def test_daily_cap_in_a_moving_window(sandbox, api, token, image_url):
    sandbox.configure(instagram_daily_cap=2)
    for _ in range(2):
        assert (
            publish(api, token, create(api, token, image_url=image_url).json()["id"]).status_code
            == 200
        )
    blocked = create(api, token, image_url=image_url).json()["id"]
    error = ig_error_of(publish(api, token, blocked))
    assert (error["code"], error["error_subcode"]) == (9, 2207042)
    limit = api.get(
        f"/{IG}/content_publishing_limit",
        params={"fields": "quota_usage,config", "access_token": token},
    )
    assert limit.json() == {
        "data": [{"quota_usage": 2, "config": {"quota_total": 2, "quota_duration": 86400}}]
    }
    sandbox.advance(23 * 3600)  # the container is still fresh, the window has not moved yet
    assert ig_error_of(publish(api, token, blocked))["error_subcode"] == 2207042
    sandbox.advance(3600 + 1)
    fresh = create(api, token, image_url=image_url).json()["id"]
    assert publish(api, token, fresh).status_code == 200


def test_recent_media_list_for_checking_before_a_retry(api, token, image_url):
    ids = [
        publish(
            api, token, create(api, token, image_url=image_url, caption=f"n{i}").json()["id"]
        ).json()["id"]
        for i in range(3)
    ]
    body = api.get(
        f"/{IG}/media", params={"fields": "id,caption,permalink", "limit": 2, "access_token": token}
    ).json()
    assert [m["id"] for m in body["data"]] == [ids[2], ids[1]]
    assert "next" in body["paging"]
    rest = HTTP.get(body["paging"]["next"]).json()
    assert [m["id"] for m in rest["data"]] == [ids[0]]


def test_delete_media(sandbox, api, token, image_url):
    media_id = publish(api, token, create(api, token, image_url=image_url).json()["id"]).json()[
        "id"
    ]
    assert api.delete(f"/{media_id}", params={"access_token": token}).json() == {"success": True}
    assert api.get(f"/{IG}/media", params={"access_token": token}).json()["data"] == []
    permalink = sandbox.published(platform="instagram")[0]["url"]
    assert HTTP.get(permalink).status_code == 404


# -- tokens and faults -----------------------------------------------------------------
def test_expired_token_on_instagram_calls(sandbox, api, image_url):
    short = user_token(sandbox, long=False)
    sandbox.advance(7201)
    error = error_of(create(api, short, image_url=image_url))
    assert (error["code"], error["error_subcode"]) == (190, 463)


def test_fault_rate_limit_on_media_publish(sandbox, api, token, image_url):
    container = create(api, token, image_url=image_url).json()["id"]
    sandbox.fault(
        platform="facebook",
        path="/graph/*/media_publish",
        kind="rate_limit",
        retry_after=60,
        remaining=1,
    )
    response = publish(api, token, container)
    assert error_of(response)["code"] == 4 and "x-business-use-case-usage" in response.headers
    assert sandbox.published(platform="instagram") == []
    assert publish(api, token, container).status_code == 200


def test_fault_server_error_on_container_status(sandbox, api, token, image_url):
    container = create(api, token, image_url=image_url).json()["id"]
    sandbox.fault(platform="facebook", path=f"/graph/*/{container}", kind="error", remaining=1)
    response = api.get(f"/{container}", params={"fields": "status_code", "access_token": token})
    assert response.status_code == 500 and error_of(response)["is_transient"] is True
    assert status(api, token, container)["status_code"] == "FINISHED"


def test_fault_spam_block_on_media_publish(sandbox, api, token, image_url):
    container = create(api, token, image_url=image_url).json()["id"]
    body = {"code": 4, "error_subcode": 2207051}
    sandbox.fault(
        platform="facebook", path="/graph/*/media_publish", kind="error", body=body, remaining=1
    )
    error = error_of(publish(api, token, container))
    assert (error["code"], error["error_subcode"]) == (4, 2207051)


# -- journey ---------------------------------------------------------------------------
def test_journey_oauth_to_image_reel_and_carousel(sandbox, media_host):
    """Connect with Facebook Login, find the Instagram account, post all three kinds."""
    consent_page = HTTP.get(authorize_url(sandbox, state="ig-journey"))
    query = location_query(consent(consent_page))
    graph = httpx.Client(base_url=sandbox.url + GRAPH, timeout=15)
    short = graph.get(
        "/oauth/access_token",
        params={
            "client_id": APP_ID,
            "client_secret": APP_SECRET,
            "redirect_uri": REDIRECT,
            "code": query["code"],
        },
    ).json()["access_token"]
    user = graph.get(
        "/oauth/access_token",
        params={
            "grant_type": "fb_exchange_token",
            "client_id": APP_ID,
            "client_secret": APP_SECRET,
            "fb_exchange_token": short,
        },
    ).json()["access_token"]
    granted = graph.get("/me/permissions", params={"access_token": user}).json()["data"]
    assert {p["permission"] for p in granted if p["status"] == "granted"} >= set(ALL_SCOPES)

    pages = graph.get(
        "/me/accounts",
        params={"fields": "id,name,instagram_business_account", "access_token": user},
    )
    ig_id = next(
        p["instagram_business_account"]["id"]
        for p in pages.json()["data"]
        if "instagram_business_account" in p
    )
    auth = {"access_token": user}

    def container(**params: str) -> str:
        return graph.post(f"/{ig_id}/media", data={**params, **auth}).json()["id"]

    def wait_and_publish(creation_id: str) -> str:
        poll(lambda: status(graph, user, creation_id), lambda s: s["status_code"] == "FINISHED")
        return graph.post(
            f"/{ig_id}/media_publish", data={"creation_id": creation_id, **auth}
        ).json()["id"]

    square = media_host.add(unique("j1.jpg"), jpeg_bytes(1080, 1080), "image/jpeg")
    portrait = media_host.add(unique("j2.jpg"), jpeg_bytes(1080, 1350), "image/jpeg")
    reel_url = media_host.add(unique("j.mp4"), mp4_bytes(200_000), "video/mp4")
    image = wait_and_publish(container(image_url=square, caption="Bread #fresh"))
    reel = wait_and_publish(container(media_type="REELS", video_url=reel_url, caption="Bake reel"))
    items = [container(image_url=u, is_carousel_item="true") for u in (square, portrait)]
    carousel = wait_and_publish(
        container(media_type="CAROUSEL", children=",".join(items), caption="Both")
    )

    published = {
        (e["kind"], e["id"]) for e in sandbox.published(platform="instagram", account_id=ig_id)
    }
    assert published == {("image", image), ("reel", reel), ("carousel", carousel)}
    recent = graph.get(f"/{ig_id}/media", params=auth).json()["data"]
    assert [m["id"] for m in recent] == [carousel, reel, image]
    limit = graph.get(
        f"/{ig_id}/content_publishing_limit", params={"fields": "quota_usage,config", **auth}
    ).json()
    assert limit["data"][0]["quota_usage"] == 3
    for entry in sandbox.published(platform="instagram"):
        assert HTTP.get(entry["url"]).status_code == 200
