"""One post with an image to all four platforms, plus a TikTok video and an Instagram
reel, scheduled and published through the app, the worker and the sandbox: on each media
store (a local folder, and an S3 bucket on moto's server, which platforms pull from)."""

from __future__ import annotations

import hashlib
import re
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from tests.appserver import AppServer
from tests.browser import Browser
from tests.media_samples import jpeg_bytes, mp4_video
from tests.test_publishing import compose, local_input, post_id_of


@pytest.fixture(params=["local", "s3"])
def app(request: pytest.FixtureRequest, server: AppServer) -> AppServer:
    """The app with its worker: the session's (media in a local folder), and one on a
    database of its own storing media in the S3 bucket (so its worker alone publishes)."""
    if request.param == "local":
        return server
    s3 = request.getfixturevalue("s3")
    on_s3 = request.getfixturevalue("fresh_server")(worker=True, **s3.env("publish-tests"))
    on_s3.s3 = s3  # type: ignore[attr-defined]
    return on_s3


def query(app: AppServer, sql: str, *args) -> list[tuple]:
    """Rows from the app's own database (the S3 app's is not the tests' database)."""
    with psycopg.connect(app.env["OKK_DATABASE_URL"]) as connection:
        return connection.execute(sql, args).fetchall()


def account_ids(app: AppServer, email: str) -> dict[str, int]:
    rows = query(
        app,
        'SELECT a.platform, a.handle, a.id FROM accounts a JOIN users u ON u.id = a."user" '
        "WHERE u.email = %s",
        email,
    )
    return {f"{platform}:{handle}": id_ for platform, handle, id_ in rows}


def wait_published(app: AppServer, post_id: int, timeout: float = 120) -> list[str]:
    """The platform ids of the post's targets once all are published."""
    deadline = time.monotonic() + timeout
    while True:
        rows = query(
            app,
            "SELECT status, last_error, platform_post_id FROM post_targets WHERE post = %s",
            post_id,
        )
        if rows and all(status == "published" for status, _, _ in rows):
            return [platform_id for _, _, platform_id in rows]
        assert time.monotonic() < deadline, rows
        time.sleep(0.2)


def upload(browser: Browser, name: str, data: bytes, content_type: str) -> int:
    token = browser.csrf_token()
    response = browser.http.post(
        "/media",
        files={"file": (name, data, content_type)},
        headers={"x-csrftoken": token, "accept": "application/json"},
        timeout=60,
    )
    assert response.status_code in (200, 201), response.text
    return response.json()["id"]


def test_image_everywhere_then_tiktok_video_and_instagram_reel(app: AppServer):
    browser = Browser(app.url)
    email = browser.signed_in_user()
    for platform in ("x", "tiktok", "instagram"):
        browser.connect(platform)
    back = browser.grant(browser.start_connect("facebook"))
    picker = browser.follow(browser.http.get(back.headers["location"]))
    assert picker.url.path == "/connections/pick"
    pages = re.findall(r'name="account" value="(\d+)"', picker.text)
    browser.follow(browser.post("/connections/pick", {"account": pages[:1]}))
    ids = account_ids(app, email)
    picture, clip = jpeg_bytes(1080, 1080), mp4_video()
    image = upload(browser, "square.jpg", picture, "image/jpeg")
    video = upload(browser, "clip.mp4", clip, "video/mp4")
    two_minutes = local_input(datetime.now(UTC) + timedelta(minutes=2))
    everyone = [
        ids["x:xavier_x"],
        ids["tiktok:tiktok_tom"],
        ids["instagram:okkbakery"],
        ids["facebook:Okk Bakery"],
    ]
    first = post_id_of(
        compose(
            browser,
            text="Fresh bread, out of the oven #bakery",
            account=[str(i) for i in everyone],
            media=str(image),
            publish_at=two_minutes,
            opt__tiktok__privacy_level="SELF_ONLY",
        )
    )
    second = post_id_of(
        compose(
            browser,
            text="Behind the scenes",
            account=[str(ids["tiktok:tiktok_tom"]), str(ids["instagram:okkbakery"])],
            media=str(video),
            publish_at=two_minutes,
            opt__tiktok__privacy_level="SELF_ONLY",
        )
    )
    for post_id in (first, second):  # bring them due now instead of waiting two minutes
        browser.post(f"/posts/{post_id}/publish-now")
    assert all(wait_published(app, first) + wait_published(app, second))
    with app.sandbox_admin() as admin:
        published = [
            p
            for p in admin.get("/published").json()
            if (p.get("text") or p.get("description"))
            in ("Fresh bread, out of the oven #bakery", "Behind the scenes")
        ]
    kinds = sorted((p["platform"], p["kind"]) for p in published)
    assert kinds == sorted(
        [
            ("x", "tweet"),
            ("tiktok", "photo"),
            ("instagram", "image"),
            ("facebook", "photo"),
            ("tiktok", "video"),
            ("instagram", "reel"),
        ]
    )
    page = browser.get(f"/posts/{first}").text
    assert page.count("View post") >= 3  # every public post links out
    assert_media_came_from_the_store(app, published, picture, clip)


def assert_media_came_from_the_store(
    app: AppServer, published: list[dict], picture: bytes, clip: bytes
) -> None:
    """Pulling platforms fetched the very bytes from the store's own signed URLs (S3's
    presigned ones, or the app's /m/ route); TikTok got the video in uploaded chunks."""
    s3 = getattr(app, "s3", None)
    source = f"{s3.url}/{s3.bucket}/publish-tests/" if s3 else f"{app.url}/m/"
    by_kind = {(p["platform"], p["kind"]): p for p in published}
    pulled = [
        *by_kind[("instagram", "image")]["media"],
        *by_kind[("instagram", "reel")]["media"],
        *by_kind[("facebook", "photo")]["media"],
    ]
    (photo,) = by_kind[("tiktok", "photo")]["media"]
    assert all(url.startswith(source) for url in [*pulled, photo["url"]]), pulled
    assert photo["sha256"] == hashlib.sha256(picture).hexdigest()
    (video,) = by_kind[("tiktok", "video")]["media"]
    assert (video["bytes"], video["content_type"]) == (len(clip), "video/mp4")
    assert video["chunks"] >= 1 and "url" not in video  # FILE_UPLOAD, not a pull
