"""One post with an image to all four platforms, plus a TikTok video and an Instagram
reel, scheduled and published through the app, the worker and the sandbox."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from tests.browser import Browser
from tests.media_samples import jpeg_bytes, mp4_video
from tests.test_publishing import account_ids, compose, local_input, post_id_of, wait_for

pytestmark = pytest.mark.usefixtures("db")


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


async def test_image_everywhere_then_tiktok_video_and_instagram_reel(server):
    browser = Browser(server.url)
    email = browser.signed_in_user()
    for platform in ("x", "tiktok", "instagram"):
        browser.connect(platform)
    back = browser.grant(browser.start_connect("facebook"))
    picker = browser.follow(browser.http.get(back.headers["location"]))
    assert picker.url.path == "/connections/pick"
    pages = re.findall(r'name="account" value="(\d+)"', picker.text)
    browser.follow(browser.post("/connections/pick", {"account": pages[:1]}))
    ids = await account_ids(email)
    image = upload(browser, "square.jpg", jpeg_bytes(1080, 1080), "image/jpeg")
    video = upload(browser, "clip.mp4", mp4_video(), "video/mp4")
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
    targets = await wait_for(first, {"published"}, timeout=120)
    targets += await wait_for(second, {"published"}, timeout=120)
    assert all(t.platform_post_id for t in targets)
    with server.sandbox_admin() as admin:
        published = admin.get("/published").json()
    kinds = sorted(
        (p["platform"], p["kind"])
        for p in published
        if (p.get("text") or p.get("description"))
        in ("Fresh bread, out of the oven #bakery", "Behind the scenes")
    )
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
