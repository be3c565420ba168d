"""Publishing to a Facebook Page over real HTTP against the standalone sandbox: text,
link, one photo (pulled or uploaded), several photos, a video processed across calls;
checkpoints, recovery after a crash or an unanswered call, faults and refusals."""

from __future__ import annotations

import copy
import hashlib
import secrets
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from src.publishers import facebook
from src.publishers.base import (
    DiscoveredAccount,
    MediaItem,
    PlatformError,
    PublishRequest,
    StepResult,
    Unconfirmed,
)
from src.sandbox.meta import BAKERY_PAGE_ID
from src.sandbox.meta_core import iso
from tests.media_samples import jpeg_bytes, mp4_bytes
from tests.publishers.test_facebook import REDIRECT, VERSION, connect, publisher_for

FEED = f"/graph/{VERSION}/{BAKERY_PAGE_ID}/feed"
PHOTOS = f"/graph/{VERSION}/{BAKERY_PAGE_ID}/photos"
VIDEOS = f"/graph/{VERSION}/{BAKERY_PAGE_ID}/videos"


# -- helpers shared with test_instagram_publish.py ---------------------------------------
class Crash(Exception):
    """The worker died at a checkpoint."""


class Checkpoints:
    """Stores a copy of each checkpoint, as the database would. `crash_at` (1-based)
    makes that call die once: after the write landed (`stored`) or before it did."""

    def __init__(self, crash_at: int | None = None, stored: bool = True) -> None:
        self.saved: list[dict[str, Any]] = []
        self.crash_at, self.stored, self.calls = crash_at, stored, 0

    async def __call__(self, progress: dict[str, Any]) -> None:
        self.calls += 1
        if self.calls != self.crash_at or self.stored:
            self.saved.append(copy.deepcopy(progress))
        if self.calls == self.crash_at:
            raise Crash(f"killed at checkpoint {self.calls}")

    @property
    def last(self) -> dict[str, Any]:
        """What a new worker would read back."""
        return copy.deepcopy(self.saved[-1]) if self.saved else {}


def media_item(
    tmp_path: Path, media_host, data: bytes, content_type: str, *, pulled: bool = True
) -> MediaItem:
    """The file on disk for uploads, and the same bytes on the media host for pulls."""
    name = f"{secrets.token_hex(6)}.{content_type.split('/')[-1]}"
    path = tmp_path / name
    path.write_bytes(data)
    url = media_host.add(name, data, content_type) if pulled else ""
    digest = hashlib.sha256(data).hexdigest()
    return MediaItem(str(path), url, content_type, len(data), digest)


def jpeg(tmp_path: Path, media_host, *, pulled: bool = True, size=(1080, 1080)) -> MediaItem:
    return media_item(tmp_path, media_host, jpeg_bytes(*size), "image/jpeg", pulled=pulled)


def mp4(tmp_path: Path, media_host) -> MediaItem:
    return media_item(tmp_path, media_host, mp4_bytes(), "video/mp4")


def request_for(
    account: DiscoveredAccount, text: str, media: list[MediaItem] | None = None, **options
) -> PublishRequest:
    return PublishRequest(
        target_id=1,
        text=text,
        media=list(media or []),
        options=options,
        account=account,
        tokens=account.tokens,
    )


async def drive(
    publisher,
    request: PublishRequest,
    sandbox,
    progress: dict[str, Any] | None = None,
    checkpoint: Checkpoints | None = None,
    limit: int = 60,
) -> StepResult:
    """Call publish() as the worker would until done, moving the sandbox clock by each
    wait instead of sleeping (a background media pull may need a few rounds)."""
    progress = {} if progress is None else progress
    checkpoint = checkpoint or Checkpoints()
    for _ in range(limit):
        result = await publisher.publish(request, progress, checkpoint)
        if result.done:
            return result
        assert 0 < result.wait_s <= 10
        progress = result.progress
        sandbox.advance(result.wait_s)
    raise AssertionError(f"never finished: {progress}")


async def resume(publisher, request, sandbox, checkpoint: Checkpoints) -> StepResult:
    """A new worker picking the target up from its last checkpoint."""
    progress = checkpoint.last
    if progress.get("attempting"):
        found = await publisher.recover(request, progress)
        if found is not None and found.done:
            return found
        if found is not None:
            progress = found.progress
    return await drive(publisher, request, sandbox, progress, Checkpoints())


def page_served(url: str) -> bool:
    return httpx.get(url, timeout=5).status_code == 200


def page_writes(sandbox) -> list[dict]:
    writes = sandbox.records(platform="facebook", method="POST")
    return [w for w in writes if w["path"].startswith(f"/graph/{VERSION}/{BAKERY_PAGE_ID}/")]


def posts_of(sandbox) -> list[dict]:
    return sandbox.published(platform="facebook", account_id=BAKERY_PAGE_ID)


# -- fixtures ----------------------------------------------------------------------------
@pytest.fixture
def publisher(sandbox) -> facebook.FacebookPublisher:
    return publisher_for(facebook, sandbox)


@pytest.fixture
async def page(publisher) -> DiscoveredAccount:
    pages = {a.display_name: a for a in await connect(publisher, REDIRECT)}
    return pages["Okk Bakery"]


# -- happy paths -------------------------------------------------------------------------
async def test_text_post(sandbox, publisher, page):
    checkpoint = Checkpoints()
    result = await publisher.publish(request_for(page, "Fresh rye today"), {}, checkpoint)
    [post] = posts_of(sandbox)
    assert result.done and result.platform_post_id == post["id"] == post["post_id"]
    assert post["kind"] == "text" and post["text"] == "Fresh rye today"
    assert result.url == post["url"] and page_served(result.url)
    first, second = checkpoint.saved
    assert first["attempting"] == "feed" and first["attempt_started"] <= time.time()
    assert "post_id" not in first
    assert second["post_id"] == post["id"] and "attempting" not in second
    assert result.progress == second


async def test_text_with_a_link(sandbox, publisher, page):
    request = request_for(page, "Our new menu", link="https://okkbakery.example/menu")
    result = await publisher.publish(request, {}, Checkpoints())
    assert result.done
    [call] = sandbox.records(platform="facebook", path=FEED, method="POST")
    assert "link=https%3A%2F%2Fokkbakery.example%2Fmenu" in call["body"]
    assert sandbox.state.get(result.platform_post_id)["link"] == "https://okkbakery.example/menu"


async def test_one_photo_pulled_from_its_url(sandbox, publisher, page, tmp_path, media_host):
    item = jpeg(tmp_path, media_host)
    checkpoint = Checkpoints()
    result = await publisher.publish(request_for(page, "Croissants", [item]), {}, checkpoint)
    [post] = posts_of(sandbox)
    assert result.done and result.platform_post_id == post["id"]
    assert post["kind"] == "photo" and post["text"] == "Croissants"
    assert post["media"] == [item.url] and page_served(result.url)
    assert checkpoint.saved[0]["attempting"] == "photo"
    assert checkpoint.saved[1]["photo_id"] and checkpoint.saved[1]["post_id"] == post["id"]


async def test_one_photo_uploaded_from_disk(sandbox, publisher, page, tmp_path, media_host):
    item = jpeg(tmp_path, media_host, pulled=False)
    result = await publisher.publish(request_for(page, "Baguettes", [item]), {}, Checkpoints())
    [call] = sandbox.records(platform="facebook", path=PHOTOS, method="POST")
    assert call["content_type"].startswith("multipart/form-data")
    [post] = posts_of(sandbox)
    assert result.done and post["kind"] == "photo" and page_served(post["media"][0])


async def test_several_photos_become_one_post(sandbox, publisher, page, tmp_path, media_host):
    items = [jpeg(tmp_path, media_host) for _ in range(3)]
    checkpoint = Checkpoints()
    result = await publisher.publish(request_for(page, "Three loaves", items), {}, checkpoint)
    [post] = posts_of(sandbox)
    assert result.done and result.platform_post_id == post["id"]
    assert post["text"] == "Three loaves" and post["media"] == [i.url for i in items]
    photo_ids = [c.get("photo_ids") for c in checkpoint.saved]
    assert [len(ids) for ids in photo_ids[:3]] == [1, 2, 3]  # each id kept as it came
    assert checkpoint.saved[3]["attempting"] == "feed"
    assert checkpoint.saved[4]["post_id"] == post["id"]
    uploads = sandbox.records(platform="facebook", path=PHOTOS, method="POST")
    assert len(uploads) == 3 and all("published=false" in u["body"] for u in uploads)


async def test_video_processing_resumes_across_calls(
    sandbox, publisher, page, tmp_path, media_host
):
    sandbox.configure(processing_delay=30)
    item = mp4(tmp_path, media_host)
    request = request_for(page, "How we bake", [item])
    checkpoint = Checkpoints()
    first = await publisher.publish(request, {}, checkpoint)
    assert not first.done and 0 < first.wait_s <= 10
    video_id = first.progress["video_id"]
    assert checkpoint.saved[0]["attempting"] == "video"
    assert checkpoint.saved[1] == first.progress
    again = await publisher.publish(request, first.progress, checkpoint)
    assert not again.done and again.progress["video_id"] == video_id
    assert posts_of(sandbox) == []
    sandbox.advance(31)
    result = await drive(publisher, request, sandbox, again.progress, checkpoint)
    [post] = posts_of(sandbox)
    assert result.done and result.platform_post_id == video_id == post["id"]
    assert post["kind"] == "video" and post["text"] == "How we bake"
    assert page_served(result.url)
    assert len(sandbox.records(platform="facebook", path=VIDEOS, method="POST")) == 1


# -- refusals up front ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kinds", "words"),
    [
        (["image", "video"], "cannot mix photos and a video"),
        (["video", "video"], "carries one video"),
        ([], "nothing to post"),
    ],
)
async def test_what_facebook_cannot_post_is_refused_up_front(
    sandbox, publisher, page, tmp_path, media_host, kinds, words
):
    media = [
        jpeg(tmp_path, media_host) if k == "image" else mp4(tmp_path, media_host) for k in kinds
    ]
    text = "" if not kinds else "Mixed"
    with pytest.raises(PlatformError) as caught:
        await publisher.publish(request_for(page, text, media), {}, Checkpoints())
    assert caught.value.kind == "permanent" and words in caught.value.message
    assert page_writes(sandbox) == []


async def test_a_file_that_is_neither_photo_nor_video(
    sandbox, publisher, page, tmp_path, media_host
):
    item = media_item(tmp_path, media_host, b"%PDF-1.4", "application/pdf")
    with pytest.raises(PlatformError) as caught:
        await publisher.publish(request_for(page, "Menu", [item]), {}, Checkpoints())
    assert caught.value.kind == "permanent" and "application/pdf" in caught.value.message


# -- refusals by Facebook ------------------------------------------------------------------
async def test_the_same_text_twice_in_a_row_is_refused_in_plain_words(sandbox, publisher, page):
    await publisher.publish(request_for(page, "Open on Sunday"), {}, Checkpoints())
    checkpoint = Checkpoints()
    progress: dict[str, Any] = {}
    with pytest.raises(PlatformError) as caught:
        await publisher.publish(request_for(page, "Open on Sunday"), progress, checkpoint)
    error = caught.value
    assert (error.kind, error.code) == ("permanent", "506")
    assert "refuses the same text twice in a row" in error.message
    assert "attempting" not in progress and "attempting" not in checkpoint.last
    assert len(posts_of(sandbox)) == 1


async def test_a_refused_link_is_permanent_and_clears_the_attempt(sandbox, publisher, page):
    checkpoint = Checkpoints()
    with pytest.raises(PlatformError) as caught:
        await publisher.publish(request_for(page, "See", link="not a url"), {}, checkpoint)
    assert caught.value.kind == "permanent" and "(code 100)" in caught.value.message
    assert "attempting" not in checkpoint.last


async def test_a_video_facebook_cannot_fetch_fails_in_plain_words(
    sandbox, publisher, page, tmp_path
):
    path = tmp_path / "gone.mp4"
    path.write_bytes(mp4_bytes())
    item = MediaItem(str(path), f"{sandbox.url}/nowhere.mp4", "video/mp4", 1, "0")
    progress: dict[str, Any] = {}
    checkpoint = Checkpoints()
    with pytest.raises(PlatformError) as caught:
        await drive(publisher, request_for(page, "Lost", [item]), sandbox, progress, checkpoint)
    assert (
        caught.value.kind == "permanent" and "could not download the video" in caught.value.message
    )
    assert "(code 6000)" in caught.value.message
    assert "video_id" not in checkpoint.last  # a retry starts over with a new video


async def test_a_photo_facebook_cannot_read(sandbox, publisher, page, tmp_path, media_host):
    item = media_item(tmp_path, media_host, b"not an image at all", "image/jpeg")
    with pytest.raises(PlatformError) as caught:
        await publisher.publish(request_for(page, "Broken", [item]), {}, Checkpoints())
    assert caught.value.kind == "permanent" and "(code 324)" in caught.value.message


async def test_a_file_missing_from_disk_is_permanent(sandbox, publisher, page, tmp_path):
    item = MediaItem(str(tmp_path / "vanished.jpg"), "", "image/jpeg", 1, "0")
    checkpoint = Checkpoints()
    with pytest.raises(PlatformError) as caught:
        await publisher.publish(request_for(page, "Vanished", [item]), {}, checkpoint)
    assert caught.value.kind == "permanent" and "could not be read" in caught.value.message
    assert "attempting" not in checkpoint.last and page_writes(sandbox) == []


async def test_png_is_fine_for_facebook(sandbox, publisher, page, tmp_path, media_host):
    from io import BytesIO

    from PIL import Image

    buffer = BytesIO()
    Image.new("RGB", (64, 64)).save(buffer, "PNG")
    item = media_item(tmp_path, media_host, buffer.getvalue(), "image/png")
    result = await publisher.publish(request_for(page, "A PNG", [item]), {}, Checkpoints())
    assert result.done


# -- faults --------------------------------------------------------------------------------
async def test_5xx_on_the_post_is_transient_and_recovery_finds_nothing(sandbox, publisher, page):
    sandbox.fault(platform="facebook", path=FEED, method="POST", kind="error", remaining=1)
    request = request_for(page, "Try again")
    checkpoint = Checkpoints()
    with pytest.raises(PlatformError) as caught:
        await publisher.publish(request, {}, checkpoint)
    assert caught.value.kind == "transient"
    progress = checkpoint.last
    assert progress["attempting"] == "feed"  # the answer was lost: we do not know yet
    assert await publisher.recover(request, progress) is None
    assert "attempting" not in progress
    result = await publisher.publish(request, progress, checkpoint)
    assert result.done and len(posts_of(sandbox)) == 1


async def test_429_is_rate_limited_with_the_wait_and_no_attempt_left(sandbox, publisher, page):
    sandbox.fault(
        platform="facebook",
        path=FEED,
        method="POST",
        kind="rate_limit",
        body={"code": 32},
        retry_after=300,
        status=429,
    )
    checkpoint = Checkpoints()
    with pytest.raises(PlatformError) as caught:
        await publisher.publish(request_for(page, "Busy"), {}, checkpoint)
    assert (caught.value.kind, caught.value.retry_after) == ("rate_limited", 300)
    assert "attempting" not in checkpoint.last


async def test_expired_token_is_auth(sandbox, publisher, page):
    sandbox.fault(platform="facebook", path=FEED, method="POST", kind="expired_token")
    checkpoint = Checkpoints()
    with pytest.raises(PlatformError) as caught:
        await publisher.publish(request_for(page, "Hello"), {}, checkpoint)
    assert caught.value.kind == "auth" and "Reconnect" in caught.value.message
    assert "attempting" not in checkpoint.last


async def test_timeout_on_the_post_leaves_the_attempt_for_recovery(sandbox, page):
    publisher = publisher_for(facebook, sandbox, timeout=0.5)
    sandbox.fault(platform="facebook", path=FEED, method="POST", kind="timeout", remaining=1)
    request = request_for(page, "Slow day")
    checkpoint = Checkpoints()
    with pytest.raises(PlatformError) as caught:
        await publisher.publish(request, {}, checkpoint)
    assert caught.value.kind == "transient"
    assert checkpoint.last["attempting"] == "feed"
    result = await publisher.publish(request, checkpoint.last, checkpoint)
    assert result.done and len(posts_of(sandbox)) == 1


async def test_a_failed_permalink_read_still_reports_the_post(sandbox, publisher, page):
    sandbox.fault(platform="facebook", path=f"/graph/{VERSION}/{BAKERY_PAGE_ID}_*", method="GET")
    result = await publisher.publish(request_for(page, "Link later"), {}, Checkpoints())
    [post] = posts_of(sandbox)
    assert result.done and result.platform_post_id == post["id"]
    assert result.url == post["url"]  # facebook.com/{post-id} opens it all the same


# -- recover() -----------------------------------------------------------------------------
def crashed_during(step: str, started: float | None = None, **ids: Any) -> dict[str, Any]:
    """Progress as a worker left it when it died in the irreversible call."""
    return {"attempting": step, "attempt_started": started or time.time(), **ids}


async def test_recover_finds_a_post_that_went_out(sandbox, publisher, page):
    request = request_for(page, "Made it")
    started = time.time()
    published = await publisher.publish(request, {}, Checkpoints())
    progress = crashed_during("feed", started)
    found = await publisher.recover(request, progress)
    assert found is not None and found.done
    assert (found.platform_post_id, found.url) == (published.platform_post_id, published.url)
    assert progress["post_id"] == published.platform_post_id and "attempting" not in progress


async def test_recover_ignores_older_posts_and_other_text(sandbox, publisher, page):
    await publisher.publish(request_for(page, "Old news"), {}, Checkpoints())
    later = time.time() + 3600
    assert (
        await publisher.recover(request_for(page, "Old news"), crashed_during("feed", later))
        is None
    )
    other = crashed_during("feed")
    assert await publisher.recover(request_for(page, "Something else"), other) is None
    assert "attempting" not in other


async def test_recover_that_may_not_look_is_unconfirmed(sandbox, publisher, page):
    request = request_for(page, "Hidden")
    sandbox.fault(platform="facebook", path=FEED, method="GET", kind="error", body={"code": 10})
    with pytest.raises(Unconfirmed) as caught:
        await publisher.recover(request, crashed_during("feed"))
    assert "could not check the Page's posts" in str(caught.value)


async def test_recover_that_cannot_look_now_is_retried_later(sandbox, publisher, page):
    sandbox.fault(platform="facebook", path=FEED, method="GET", kind="error")
    progress = crashed_during("feed")
    with pytest.raises(PlatformError) as caught:
        await publisher.recover(request_for(page, "Later"), progress)
    assert caught.value.kind == "transient" and progress["attempting"] == "feed"


async def test_recover_several_photos_by_their_ids(sandbox, publisher, page, tmp_path, media_host):
    items = [jpeg(tmp_path, media_host) for _ in range(2)]
    request = request_for(page, "", items)
    checkpoint = Checkpoints()
    published = await publisher.publish(request, {}, checkpoint)
    progress = crashed_during("feed", photo_ids=checkpoint.saved[1]["photo_ids"])
    found = await publisher.recover(request, progress)
    assert found is not None and found.platform_post_id == published.platform_post_id
    strangers = crashed_during("feed", photo_ids=["1", "2"])
    assert await publisher.recover(request, strangers) is None


async def test_recover_a_video_from_the_feed_once_processed(
    sandbox, publisher, page, tmp_path, media_host
):
    request = request_for(page, "Kneading", [mp4(tmp_path, media_host)])
    started = time.time()
    published = await drive(publisher, request, sandbox)
    progress = crashed_during("video", started)
    found = await publisher.recover(request, progress)
    assert found is not None and found.done
    assert found.platform_post_id == published.platform_post_id == progress["video_id"]


async def test_recover_a_video_never_sent_is_safe_to_send(
    sandbox, publisher, page, tmp_path, media_host
):
    """GET /{page}/videos lists processing videos too: absent means never sent."""
    request = request_for(page, "Shaping", [mp4(tmp_path, media_host)])
    assert await publisher.recover(request, crashed_during("video")) is None


async def test_recover_a_video_through_the_page_videos_edge(
    sandbox, publisher, page, tmp_path, media_host
):
    """Real Graph lists a Page's videos (processing ones too): found -> resume polling,
    absent -> certainly not sent. The sandbox lacks the edge, so its answer is given."""
    sandbox.configure(processing_delay=30)
    request = request_for(page, "Proofing", [mp4(tmp_path, media_host)])
    first = await publisher.publish(request, {}, Checkpoints())
    video_id = first.progress["video_id"]
    listing = {
        "data": [{"id": video_id, "description": "Proofing", "created_time": iso(time.time())}]
    }
    rule = sandbox.fault(
        platform="facebook", path=VIDEOS, method="GET", kind="response", status=200, body=listing
    )
    progress = crashed_during("video")
    found = await publisher.recover(request, progress)
    assert found is not None and not found.done and found.wait_s > 0
    assert progress["video_id"] == video_id and "attempting" not in progress
    sandbox.admin.delete(f"/faults/{rule['id']}")
    sandbox.fault(
        platform="facebook",
        path=VIDEOS,
        method="GET",
        kind="response",
        status=200,
        body={"data": []},
    )
    assert await publisher.recover(request, crashed_during("video")) is None


# -- crashes at every checkpoint -----------------------------------------------------------
def shapes(tmp_path: Path, media_host) -> dict[str, list[MediaItem]]:
    return {
        "text": [],
        "photo": [jpeg(tmp_path, media_host)],
        "photos": [jpeg(tmp_path, media_host) for _ in range(3)],
    }


@pytest.mark.parametrize("shape", ["text", "photo", "photos"])
@pytest.mark.parametrize("stored", [True, False], ids=["after-write", "before-write"])
async def test_a_crash_at_any_checkpoint_publishes_exactly_once(
    sandbox, publisher, page, tmp_path, media_host, shape, stored
):
    media = shapes(tmp_path, media_host)[shape]
    checkpoints = {"text": 2, "photo": 2, "photos": 5}[shape]  # see the happy paths
    for crash_at in range(1, checkpoints + 1):
        text = f"{shape} crash {crash_at}"
        request = request_for(page, text, media)
        checkpoint = Checkpoints(crash_at=crash_at, stored=stored)
        with pytest.raises(Crash):
            await publisher.publish(request, {}, checkpoint)
        result = await resume(publisher, request, sandbox, checkpoint)
        posts = [p for p in posts_of(sandbox) if p["text"] == text]
        assert result.done and [p["id"] for p in posts] == [result.platform_post_id], crash_at
    assert len(posts_of(sandbox)) == checkpoints


@pytest.mark.parametrize(("crash_at", "stored"), [(1, False), (2, True)])
async def test_a_crash_around_the_video_post_publishes_exactly_once(
    sandbox, publisher, page, tmp_path, media_host, crash_at, stored
):
    request = request_for(page, "Video crash", [mp4(tmp_path, media_host)])
    checkpoint = Checkpoints(crash_at=crash_at, stored=stored)
    with pytest.raises(Crash):
        await publisher.publish(request, {}, checkpoint)
    result = await resume(publisher, request, sandbox, checkpoint)
    [post] = posts_of(sandbox)
    assert result.done and post["id"] == result.platform_post_id


@pytest.mark.parametrize(("crash_at", "stored", "sent"), [(1, True, 0), (2, False, 1)])
async def test_a_crash_with_the_video_attempt_marked_is_resolved_by_the_page_videos(
    sandbox, publisher, page, tmp_path, media_host, crash_at, stored, sent
):
    """Died after marking the attempt (before or after the POST, its answer unstored):
    GET /{page}/videos tells, even while the video is still processing, so the video is
    neither lost nor sent twice."""
    sandbox.configure(processing_delay=30)
    request = request_for(page, "Lost answer", [mp4(tmp_path, media_host)])
    checkpoint = Checkpoints(crash_at=crash_at, stored=stored)
    with pytest.raises(Crash):
        await publisher.publish(request, {}, checkpoint)
    assert checkpoint.last["attempting"] == "video"
    await publisher.publish(request, checkpoint.last, Checkpoints())
    assert len(sandbox.records(platform="facebook", path=VIDEOS, method="POST")) == 1
