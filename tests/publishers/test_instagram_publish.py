"""Publishing to Instagram over real HTTP against the standalone sandbox: a photo, a
reel processed across calls, a carousel; containers kept in progress; media_publish
bracketed and recovered from the container's own status; the daily cap deferred;
faults and refusals in plain words."""

from __future__ import annotations

import time
from typing import Any

import pytest

from src.publishers import instagram
from src.publishers.base import DiscoveredAccount, MediaItem, PlatformError, Unconfirmed
from src.sandbox.meta import BAKERY_IG_ID
from tests.media_samples import jpeg_bytes, mp4_bytes
from tests.publishers.test_facebook import VERSION, connect, publisher_for
from tests.publishers.test_facebook_publish import (
    Checkpoints,
    Crash,
    drive,
    jpeg,
    media_item,
    mp4,
    page_served,
    request_for,
    resume,
)
from tests.publishers.test_instagram import REDIRECT

MEDIA = f"/graph/{VERSION}/{BAKERY_IG_ID}/media"
MEDIA_PUBLISH = f"/graph/{VERSION}/{BAKERY_IG_ID}/media_publish"
QUOTA = f"/graph/{VERSION}/{BAKERY_IG_ID}/content_publishing_limit"


def posts_of(sandbox) -> list[dict]:
    return sandbox.published(platform="instagram", account_id=BAKERY_IG_ID)


def containers_made(sandbox) -> list[dict]:
    return sandbox.records(platform="facebook", path=MEDIA, method="POST")


def publishes(sandbox) -> list[dict]:
    return sandbox.records(platform="facebook", path=MEDIA_PUBLISH, method="POST")


def crashed_during_publish(container_id: str, started: float | None = None) -> dict[str, Any]:
    return {
        "container_id": container_id,
        "attempting": "media_publish",
        "attempt_started": started or time.time(),
    }


@pytest.fixture
def publisher(sandbox) -> instagram.InstagramPublisher:
    return publisher_for(instagram, sandbox)


@pytest.fixture
async def bakery(publisher) -> DiscoveredAccount:
    [account] = await connect(publisher, REDIRECT)
    return account


# -- happy paths -------------------------------------------------------------------------
async def test_single_photo(sandbox, publisher, bakery, tmp_path, media_host):
    item = jpeg(tmp_path, media_host)
    checkpoint = Checkpoints()
    result = await publisher.publish(
        request_for(bakery, "Sourdough #bread", [item]), {}, checkpoint
    )
    [post] = posts_of(sandbox)
    assert result.done and result.platform_post_id == post["id"]
    assert (post["kind"], post["text"], post["media"]) == ("image", "Sourdough #bread", [item.url])
    assert result.url == post["url"] and page_served(result.url)
    made, attempt, published = checkpoint.saved
    assert made == {"container_id": post["container_id"]}
    assert attempt["attempting"] == "media_publish" and attempt["attempt_started"] <= time.time()
    assert published["media_id"] == post["id"] and "attempting" not in published
    assert len(sandbox.records(platform="facebook", path=QUOTA, method="GET")) == 1


@pytest.mark.parametrize("share", [False, "false"])  # a YAML or form value too
async def test_reel_processing_resumes_from_the_stored_container(
    sandbox, publisher, bakery, tmp_path, media_host, share
):
    sandbox.configure(processing_delay=30)
    request = request_for(
        bakery, "Behind the oven", [mp4(tmp_path, media_host)], share_to_feed=share
    )
    checkpoint = Checkpoints()
    first = await publisher.publish(request, {}, checkpoint)
    assert not first.done and 0 < first.wait_s <= 10
    container = first.progress["container_id"]
    assert checkpoint.saved == [{"container_id": container}]
    again = await publisher.publish(request, first.progress, checkpoint)
    assert not again.done and again.progress["container_id"] == container
    assert len(containers_made(sandbox)) == 1 and publishes(sandbox) == []
    sandbox.advance(31)
    result = await drive(publisher, request, sandbox, again.progress, checkpoint)
    [post] = posts_of(sandbox)
    assert result.done and post["kind"] == "reel" and post["container_id"] == container
    [made] = containers_made(sandbox)
    assert "media_type=REELS" in made["body"] and "share_to_feed=false" in made["body"]
    assert sandbox.state.get(container)["share_to_feed"] is False


async def test_carousel_keeps_every_container(sandbox, publisher, bakery, tmp_path, media_host):
    items = [jpeg(tmp_path, media_host), mp4(tmp_path, media_host), jpeg(tmp_path, media_host)]
    checkpoint = Checkpoints()
    result = await drive(publisher, request_for(bakery, "Our week", items), sandbox, {}, checkpoint)
    [post] = posts_of(sandbox)
    assert result.done and post["kind"] == "carousel"
    assert post["media"] == [i.url for i in items] and page_served(result.url)
    children = [c.get("children") for c in checkpoint.saved[:3]]
    assert [len(ids) for ids in children] == [1, 2, 3]  # each item's id kept as it came
    carousel = next(c for c in checkpoint.saved if "container_id" in c)
    assert carousel["container_id"] == post["container_id"]
    assert carousel["children"] == children[2]
    made = containers_made(sandbox)
    assert len(made) == 4 and all("is_carousel_item=true" in m["body"] for m in made[:3])
    assert "media_type=VIDEO" in made[1]["body"] and "media_type=CAROUSEL" in made[3]["body"]


# -- refused before anything is sent -------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "count", "words"),
    [
        ("x" * 2201, 1, "at most 2,200 characters; this one has 2,201"),
        (" ".join(f"#tag{i}" for i in range(31)), 1, "at most 30 hashtags"),
        (" ".join(f"@friend{i}" for i in range(21)), 1, "at most 20 @mentions"),
        ("No picture", 0, "needs a photo or a video"),
        ("Too many", 11, "at most 10 photos or videos"),
    ],
)
async def test_limits_are_permanent_before_any_call(
    sandbox, publisher, bakery, tmp_path, media_host, text, count, words
):
    media = [jpeg(tmp_path, media_host) for _ in range(count)]
    with pytest.raises(PlatformError) as caught:
        await publisher.publish(request_for(bakery, text, media), {}, Checkpoints())
    assert caught.value.kind == "permanent" and words in caught.value.message
    assert containers_made(sandbox) == []


async def test_exactly_the_limits_are_fine(sandbox, publisher, bakery, tmp_path, media_host):
    tags = " ".join(f"#t{i}" for i in range(30))
    mentions = " ".join(f"@f{i}" for i in range(20))
    text = f"{tags} {mentions} ".ljust(2200, "x")
    result = await publisher.publish(
        request_for(bakery, text, [jpeg(tmp_path, media_host)]), {}, Checkpoints()
    )
    assert result.done and posts_of(sandbox)[0]["text"] == text


# -- refused by Instagram ------------------------------------------------------------------
async def test_an_image_instagram_refuses_is_explained(
    sandbox, publisher, bakery, tmp_path, media_host
):
    wide = jpeg(tmp_path, media_host, size=(1000, 300))
    with pytest.raises(PlatformError) as caught:
        await publisher.publish(request_for(bakery, "Panorama", [wide]), {}, Checkpoints())
    assert caught.value.kind == "permanent"
    assert "shape is outside what Instagram allows" in caught.value.message
    assert "2207009" in caught.value.message


@pytest.mark.parametrize(
    ("content", "words", "subcode"),
    [
        ("missing", "could not fetch the media from its link", "2207052"),
        ("jpeg", "does not support this video's format", "2207026"),
    ],
)
async def test_a_container_in_error_is_permanent_in_plain_words(
    sandbox, publisher, bakery, tmp_path, media_host, content, words, subcode
):
    if content == "missing":
        path = tmp_path / "gone.mp4"
        path.write_bytes(mp4_bytes())
        item = MediaItem(str(path), f"{media_host.url}/nothing-here.mp4", "video/mp4", 1, "0")
    else:  # a JPEG passed off as a video
        item = media_item(tmp_path, media_host, jpeg_bytes(), "video/mp4")
    checkpoint = Checkpoints()
    with pytest.raises(PlatformError) as caught:
        await drive(publisher, request_for(bakery, "Broken reel", [item]), sandbox, {}, checkpoint)
    assert caught.value.kind == "permanent" and words in caught.value.message
    assert subcode in caught.value.message and caught.value.code == subcode
    assert "container_id" not in checkpoint.last  # a retry makes a new container
    assert publishes(sandbox) == []


async def test_an_expired_container_is_made_again(sandbox, publisher, bakery, tmp_path, media_host):
    request = request_for(bakery, "Expired", [jpeg(tmp_path, media_host)])
    checkpoint = Checkpoints(crash_at=1)  # died right after the container was made
    with pytest.raises(Crash):
        await publisher.publish(request, {}, checkpoint)
    old = checkpoint.last["container_id"]
    sandbox.advance(25 * 3600)  # containers expire after 24 hours
    result = await drive(publisher, request, sandbox, checkpoint.last)
    [post] = posts_of(sandbox)
    assert result.done and post["container_id"] != old and len(containers_made(sandbox)) == 2


# -- the daily publishing limit ------------------------------------------------------------
async def test_a_used_up_quota_defers_until_the_window_frees(
    sandbox, publisher, bakery, tmp_path, media_host
):
    sandbox.configure(instagram_daily_cap=2)
    for text in ("one", "two"):
        await publisher.publish(
            request_for(bakery, text, [jpeg(tmp_path, media_host)]), {}, Checkpoints()
        )
    checkpoint = Checkpoints()
    request = request_for(bakery, "three", [jpeg(tmp_path, media_host)])
    with pytest.raises(PlatformError) as caught:
        await publisher.publish(request, {}, checkpoint)
    error = caught.value
    assert error.kind == "rate_limited" and "made the 2 posts" in error.message
    assert 86_400 - 120 <= error.retry_after <= 86_400  # when the first of the two leaves
    assert "attempting" not in checkpoint.last and len(publishes(sandbox)) == 2
    sandbox.configure(instagram_daily_cap=3)  # (the window moved on)
    result = await publisher.publish(request, checkpoint.last, checkpoint)
    assert result.done and len(posts_of(sandbox)) == 3
    assert (
        checkpoint.saved[0]["container_id"]
        == sandbox.published(platform="instagram")[-1]["container_id"]
    )


async def test_the_cap_refused_by_media_publish_also_defers(
    sandbox, publisher, bakery, tmp_path, media_host
):
    await publisher.publish(
        request_for(bakery, "first", [jpeg(tmp_path, media_host)]), {}, Checkpoints()
    )
    sandbox.fault(
        platform="facebook",
        path=MEDIA_PUBLISH,
        kind="error",
        body={"code": 9, "error_subcode": 2207042},
        remaining=1,
    )
    checkpoint = Checkpoints()
    with pytest.raises(PlatformError) as caught:
        await publisher.publish(
            request_for(bakery, "second", [jpeg(tmp_path, media_host)]), {}, checkpoint
        )
    assert caught.value.kind == "rate_limited" and caught.value.code == "2207042"
    assert 86_400 - 120 <= caught.value.retry_after <= 86_400
    assert "attempting" not in checkpoint.last and "container_id" in checkpoint.last


# -- faults --------------------------------------------------------------------------------
async def test_5xx_on_media_publish_is_transient_then_recovered(
    sandbox, publisher, bakery, tmp_path, media_host
):
    sandbox.fault(platform="facebook", path=MEDIA_PUBLISH, kind="error", remaining=1)
    request = request_for(bakery, "Retry me", [jpeg(tmp_path, media_host)])
    checkpoint = Checkpoints()
    with pytest.raises(PlatformError) as caught:
        await publisher.publish(request, {}, checkpoint)
    assert caught.value.kind == "transient"
    assert checkpoint.last["attempting"] == "media_publish"  # the answer is unknown
    result = await publisher.publish(request, checkpoint.last, checkpoint)
    assert result.done and len(posts_of(sandbox)) == 1 and len(containers_made(sandbox)) == 1


@pytest.mark.parametrize(
    ("rule", "kind", "wait"),
    [
        (
            {"kind": "rate_limit", "body": {"code": 4}, "retry_after": 300, "status": 429},
            "rate_limited",
            300,
        ),
        ({"kind": "error", "body": {"code": 4, "error_subcode": 2207051}}, "rate_limited", 3600),
        ({"kind": "expired_token"}, "auth", None),
    ],
)
async def test_refusals_of_media_publish_clear_the_attempt(
    sandbox, publisher, bakery, tmp_path, media_host, rule, kind, wait
):
    sandbox.fault(platform="facebook", path=MEDIA_PUBLISH, **rule)
    checkpoint = Checkpoints()
    request = request_for(bakery, "Not now", [jpeg(tmp_path, media_host)])
    with pytest.raises(PlatformError) as caught:
        await publisher.publish(request, {}, checkpoint)
    assert (caught.value.kind, caught.value.retry_after) == (kind, wait)
    assert "attempting" not in checkpoint.last and "container_id" in checkpoint.last


async def test_429_on_the_container_is_rate_limited(
    sandbox, publisher, bakery, tmp_path, media_host
):
    sandbox.fault(
        platform="facebook",
        path=MEDIA,
        method="POST",
        kind="rate_limit",
        body={"code": 17},
        retry_after=120,
    )
    with pytest.raises(PlatformError) as caught:
        await publisher.publish(
            request_for(bakery, "Busy", [jpeg(tmp_path, media_host)]), {}, Checkpoints()
        )
    assert (caught.value.kind, caught.value.retry_after) == ("rate_limited", 120)


async def test_media_publish_before_the_container_is_ready_waits(
    sandbox, publisher, bakery, tmp_path, media_host
):
    sandbox.configure(processing_delay=30)
    request = request_for(bakery, "Too early", [mp4(tmp_path, media_host)])
    first = await publisher.publish(request, {}, Checkpoints())
    sandbox.fault(
        platform="facebook",
        path=f"/graph/{VERSION}/{first.progress['container_id']}",
        kind="response",
        status=200,
        body={"id": "1", "status_code": "FINISHED"},
        remaining=1,
    )
    result = await publisher.publish(request, first.progress, Checkpoints())
    assert not result.done and result.wait_s > 0 and "attempting" not in result.progress
    assert posts_of(sandbox) == [] and len(publishes(sandbox)) == 1  # refused: not ready
    assert result.progress["container_id"] == first.progress["container_id"]


# -- recover() -----------------------------------------------------------------------------
async def test_recover_published_finds_the_media(sandbox, publisher, bakery, tmp_path, media_host):
    request = request_for(bakery, "Found", [jpeg(tmp_path, media_host)])
    started = time.time()
    published = await publisher.publish(request, {}, Checkpoints())
    container = published.progress["container_id"]
    progress = crashed_during_publish(container, started)
    found = await publisher.recover(request, progress)
    assert found is not None and found.done
    assert (found.platform_post_id, found.url) == (published.platform_post_id, published.url)
    assert progress["media_id"] == published.platform_post_id and "attempting" not in progress


async def test_recover_published_but_not_findable_is_unconfirmed(
    sandbox, publisher, bakery, tmp_path, media_host
):
    request = request_for(bakery, "Gone", [jpeg(tmp_path, media_host)])
    published = await publisher.publish(request, {}, Checkpoints())
    await publisher.graph.delete(published.platform_post_id, bakery.tokens.access_token)
    with pytest.raises(Unconfirmed):
        await publisher.recover(request, crashed_during_publish(published.progress["container_id"]))


async def test_recover_that_may_not_list_the_media_is_unconfirmed(
    sandbox, publisher, bakery, tmp_path, media_host
):
    request = request_for(bakery, "Private", [jpeg(tmp_path, media_host)])
    published = await publisher.publish(request, {}, Checkpoints())
    sandbox.fault(platform="facebook", path=MEDIA, method="GET", kind="error", body={"code": 10})
    with pytest.raises(Unconfirmed) as caught:
        await publisher.recover(request, crashed_during_publish(published.progress["container_id"]))
    assert "could not check the account's posts" in str(caught.value)


async def test_recover_finished_means_not_published(
    sandbox, publisher, bakery, tmp_path, media_host
):
    request = request_for(bakery, "Not yet", [jpeg(tmp_path, media_host)])
    checkpoint = Checkpoints(crash_at=2)  # died after marking media_publish, before calling
    with pytest.raises(Crash):
        await publisher.publish(request, {}, checkpoint)
    progress = checkpoint.last
    assert await publisher.recover(request, progress) is None
    assert progress == {
        "container_id": checkpoint.saved[0]["container_id"],
        "attempt_started": progress["attempt_started"],
    }


async def test_recover_in_progress_comes_back_later(
    sandbox, publisher, bakery, tmp_path, media_host
):
    sandbox.configure(processing_delay=30)
    request = request_for(bakery, "Processing", [mp4(tmp_path, media_host)])
    first = await publisher.publish(request, {}, Checkpoints())
    progress = crashed_during_publish(first.progress["container_id"])
    found = await publisher.recover(request, progress)
    assert found is not None and not found.done and found.wait_s > 0
    assert "attempting" not in progress and progress["container_id"]


@pytest.mark.parametrize("state", ["EXPIRED", "ERROR"])
async def test_recover_a_dead_container_starts_over(
    sandbox, publisher, bakery, tmp_path, media_host, state
):
    request = request_for(bakery, f"Dead {state}", [jpeg(tmp_path, media_host)])
    checkpoint = Checkpoints(crash_at=2)
    with pytest.raises(Crash):
        await publisher.publish(request, {}, checkpoint)
    progress = checkpoint.last
    if state == "EXPIRED":
        sandbox.advance(25 * 3600)
    else:  # Instagram's words for a container that failed
        failed = {"status_code": "ERROR", "status": "Error: failed with error code 2207052"}
        path = f"/graph/{VERSION}/{progress['container_id']}"
        sandbox.fault(
            platform="facebook", path=path, kind="response", status=200, body=failed, remaining=1
        )
    assert await publisher.recover(request, progress) is None
    assert "container_id" not in progress and "attempting" not in progress
    result = await drive(publisher, request, sandbox, progress)
    assert result.done and len(posts_of(sandbox)) == 1 and len(containers_made(sandbox)) == 2


async def test_recover_a_vanished_container_is_unconfirmed(sandbox, publisher, bakery):
    request = request_for(bakery, "Where", [])
    with pytest.raises(Unconfirmed):
        await publisher.recover(request, crashed_during_publish("17999999999999999"))


# -- crashes at every checkpoint -----------------------------------------------------------
@pytest.mark.parametrize("shape", ["image", "reel", "carousel"])
@pytest.mark.parametrize("stored", [True, False], ids=["after-write", "before-write"])
async def test_a_crash_at_any_checkpoint_publishes_exactly_once(
    sandbox, publisher, bakery, tmp_path, media_host, shape, stored
):
    media = {
        "image": [jpeg(tmp_path, media_host)],
        "reel": [mp4(tmp_path, media_host)],
        "carousel": [jpeg(tmp_path, media_host), jpeg(tmp_path, media_host)],
    }[shape]
    checkpoints = {"image": 3, "reel": 3, "carousel": 5}[shape]  # see the happy paths
    for crash_at in range(1, checkpoints + 1):
        text = f"{shape} crash {crash_at}"
        request = request_for(bakery, text, media)
        checkpoint = Checkpoints(crash_at=crash_at, stored=stored)
        with pytest.raises(Crash):
            await drive(publisher, request, sandbox, {}, checkpoint)
        result = await resume(publisher, request, sandbox, checkpoint)
        posts = [p for p in posts_of(sandbox) if p["text"] == text]
        assert result.done and [p["id"] for p in posts] == [result.platform_post_id], crash_at
    assert len(posts_of(sandbox)) == checkpoints
