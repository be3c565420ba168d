"""Publishing to X over real HTTP against the standalone sandbox: media upload v2 (one-shot,
chunked, processing), the post, replies and threads, checkpoints, recovery after a crash
or a timeout, and every refusal in plain words."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import secrets
import time

import httpx
import pytest

from src.publishers.base import (
    DiscoveredAccount,
    MediaItem,
    PlatformError,
    PublishRequest,
    StepResult,
    Unconfirmed,
)
from src.publishers.x import DUPLICATE, XPublisher
from src.publishers.x_media import SEGMENT_BYTES
from tests.media_samples import jpeg_bytes, mp4_bytes
from tests.publishers.test_x import connected, publisher_for

TWEETS = "/api/2/tweets"


# -- helpers (the TikTok tests use them too) -------------------------------------------------
class Crash(Exception):
    """The worker dies while storing progress."""


class Checkpoints:
    """A checkpoint callable that keeps a copy of every progress stored, as a database
    would, and can crash on its n-th call (before storing anything)."""

    def __init__(self, crash_at: int | None = None) -> None:
        self.saved: list[dict] = []
        self.calls = 0
        self.crash_at = crash_at

    async def __call__(self, progress: dict) -> None:
        self.calls += 1
        if self.calls == self.crash_at:
            raise Crash(f"crashed at checkpoint {self.calls}")
        self.saved.append(copy.deepcopy(progress))

    @property
    def last(self) -> dict:
        return copy.deepcopy(self.saved[-1]) if self.saved else {}


async def drive(publisher, request, sandbox, progress=None, checkpoint=None) -> StepResult:
    """Call publish() until done, moving the sandbox clock instead of sleeping."""
    progress = {} if progress is None else progress
    checkpoint = checkpoint or Checkpoints()
    for _ in range(200):
        result = await publisher.publish(request, progress, checkpoint)
        if result.done:
            return result
        assert result.progress is progress
        sandbox.advance(result.wait_s)
    raise AssertionError(f"never done: {progress}")


async def resume(publisher, request, sandbox, stored: dict) -> StepResult:
    """What the worker does with the last stored progress: recover() first when an
    irreversible call is in doubt, then publish on from where it got."""
    progress = copy.deepcopy(stored)
    if progress.get("attempting"):
        found = await publisher.recover(request, progress)
        if found is not None and found.done:
            return found
        assert "attempting" not in progress
    return await drive(publisher, request, sandbox, progress)


def make_request(account: DiscoveredAccount, text: str, media=(), **options) -> PublishRequest:
    return PublishRequest(
        target_id=1,
        text=text,
        media=list(media),
        options=options,
        account=account,
        tokens=account.tokens,
    )


def media_item(tmp_path, media_host, data: bytes, content_type: str, **extra) -> MediaItem:
    """A file on disk (for uploads) and the same bytes on the media host (for pulls)."""
    name = f"{secrets.token_hex(4)}.{content_type.split('/')[1]}"
    path = tmp_path / name
    path.write_bytes(data)
    return MediaItem(
        path=str(path),
        url=media_host.add(name, data, content_type),
        content_type=content_type,
        bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        **extra,
    )


def records(sandbox, path: str, method: str = "POST") -> list[dict]:
    return [r for r in sandbox.records(platform="x") if r["path"] == path and r["method"] == method]


def posts(sandbox, text: str | None = None) -> list[dict]:
    found = sandbox.published(platform="x")
    return [p for p in found if text is None or p["text"] == text]


@pytest.fixture
def publisher(sandbox) -> XPublisher:
    return publisher_for(sandbox)


@pytest.fixture
async def account(publisher, sandbox) -> DiscoveredAccount:
    return await connected(publisher)


@pytest.fixture
def image(tmp_path, media_host) -> MediaItem:
    return media_item(tmp_path, media_host, jpeg_bytes(640, 480), "image/jpeg")


@pytest.fixture
def video(tmp_path, media_host) -> MediaItem:
    data = mp4_bytes(2 * SEGMENT_BYTES + 1000)  # three segments
    return media_item(tmp_path, media_host, data, "video/mp4", duration_ms=5000)


# -- happy paths -----------------------------------------------------------------------------
async def test_text_post_is_published_once_with_its_permalink(publisher, account, sandbox):
    checkpoint = Checkpoints()
    result = await drive(
        publisher, make_request(account, "Hello from OKKTOPUS"), sandbox, None, checkpoint
    )

    (post,) = posts(sandbox)
    assert post["text"] == "Hello from OKKTOPUS"
    assert result.platform_post_id == post["id"] == result.progress["tweet_id"]
    assert result.url == f"{sandbox.url}/x/www/xavier_x/status/{post['id']}" == post["url"]
    assert httpx.get(result.url).status_code == 200
    # Right before the post: "attempting" stored; the answer goes back with the result,
    # which the engine records (a crash in between is recovered from the timeline).
    assert checkpoint.saved[-1]["attempting"] == "tweet"
    assert result.progress == {"media_ids": [], "tweet_id": post["id"]}


async def test_one_image_goes_in_one_shot_and_its_id_is_stored_before_the_post(
    publisher, account, sandbox, image
):
    checkpoint = Checkpoints()
    result = await drive(
        publisher, make_request(account, "A photo", [image]), sandbox, None, checkpoint
    )

    (upload,) = records(sandbox, "/api/2/media/upload")
    assert upload["content_type"].startswith("multipart/form-data")
    assert not records(sandbox, "/api/2/media/upload/initialize")
    media_id = checkpoint.saved[0]["media_ids"][0]
    assert "attempting" not in checkpoint.saved[0]  # stored before the post was attempted
    assert checkpoint.saved[1]["attempting"] == "tweet"
    (post,) = posts(sandbox)
    assert post["media"] == [media_id]
    assert result.platform_post_id == post["id"]


async def test_four_images_with_a_large_one_uploaded_in_chunks(
    publisher, account, sandbox, tmp_path, media_host
):
    large = jpeg_bytes(200, 200) + b"\0" * (SEGMENT_BYTES + 10)  # over the one-shot size
    images = [media_item(tmp_path, media_host, jpeg_bytes(), "image/jpeg") for _ in range(3)]
    images.insert(1, media_item(tmp_path, media_host, large, "image/jpeg"))

    result = await drive(publisher, make_request(account, "Four at once", images), sandbox)

    assert len(records(sandbox, "/api/2/media/upload")) == 3
    (initialize,) = records(sandbox, "/api/2/media/upload/initialize")
    assert initialize["body"]["media_category"] == "tweet_image"
    assert initialize["body"]["total_bytes"] == len(large)
    (post,) = posts(sandbox)
    assert post["media"] == result.progress["media_ids"]
    appends = [r["path"] for r in sandbox.records(platform="x") if r["path"].endswith("/append")]
    assert appends == [f"/api/2/media/upload/{post['media'][1]}/append"] * 2  # in its place


async def test_video_is_appended_in_segments_and_posted_once_processed(
    publisher, account, sandbox, video
):
    request = make_request(account, "A video", [video])
    progress: dict = {}
    checkpoint = Checkpoints()

    first = await publisher.publish(request, progress, checkpoint)

    assert not first.done and first.wait_s >= 1  # X's check_after_secs
    media_id = first.progress["processing"]
    assert first.progress["media_ids"] == [media_id]
    appends = [r for r in sandbox.records(platform="x") if r["path"].endswith("/append")]
    assert [r["path"] for r in appends] == [f"/api/2/media/upload/{media_id}/append"] * 3
    # The next segment to send is stored after every append.
    segments = [c["upload"]["segment"] for c in checkpoint.saved if "upload" in c]
    assert segments == [0, 1, 2, 3]
    assert not posts(sandbox)

    sandbox.advance(first.wait_s)
    done = await publisher.publish(request, progress, checkpoint)

    assert done.done
    (status,) = records(sandbox, "/api/2/media/upload", "GET")
    assert "command=STATUS" in status["query"]
    (post,) = posts(sandbox)
    assert post["media"] == [media_id]


async def test_reply_and_thread_post_each_reply_after_the_previous(publisher, account, sandbox):
    first = await drive(publisher, make_request(account, "Original"), sandbox)
    texts = ["Thread start", "Second part", "Third part"]
    checkpoint = Checkpoints()
    request = make_request(account, texts[0], reply_to=first.platform_post_id, thread=texts[1:])

    result = await drive(publisher, request, sandbox, None, checkpoint)

    ids = [result.progress["tweet_id"], *result.progress["thread_ids"]]
    assert [posts(sandbox, t)[0]["id"] for t in texts] == ids
    bodies = [r["body"] for r in records(sandbox, TWEETS)][1:]
    assert bodies[0]["reply"] == {"in_reply_to_tweet_id": first.platform_post_id}
    assert bodies[1]["reply"] == {"in_reply_to_tweet_id": ids[0]}
    assert bodies[2]["reply"] == {"in_reply_to_tweet_id": ids[1]}
    assert [c.get("attempting") for c in checkpoint.saved] == [
        "tweet", None, "reply:1", None, "reply:2"
    ]  # fmt: skip
    assert "attempting" not in result.progress  # the last answer travels with the result
    assert result.platform_post_id == ids[0]


# -- refusals before any call ----------------------------------------------------------------
async def test_media_x_cannot_take_are_refused_before_any_upload(
    publisher, account, sandbox, tmp_path, media_host, video
):
    five = [media_item(tmp_path, media_host, jpeg_bytes(), "image/jpeg") for _ in range(5)]
    for media in (five, [video, five[0]]):
        with pytest.raises(PlatformError) as refused:
            await publisher.publish(make_request(account, "Too much", media), {}, Checkpoints())
        assert refused.value.kind == "permanent"
        assert "remove" in refused.value.message
    assert not [r for r in sandbox.records(platform="x") if "media" in r["path"]]


# -- crashes ---------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", ["image and thread", "video"])
async def test_a_crash_at_any_checkpoint_still_posts_exactly_once(
    publisher, account, sandbox, image, video, shape
):
    def request_for(n: int) -> PublishRequest:
        if shape == "video":
            return make_request(account, f"Video {n}", [video])
        return make_request(account, f"Photo {n}", [image], thread=[f"Reply {n}", f"End {n}"])

    clean = Checkpoints()
    await drive(publisher, request_for(0), sandbox, None, clean)
    assert clean.calls >= 5

    for n in range(1, clean.calls + 1):
        request = request_for(n)
        crashing = Checkpoints(crash_at=n)
        with pytest.raises(Crash):
            await drive(publisher, request, sandbox, None, crashing)

        result = await resume(publisher, request, sandbox, crashing.last)

        texts = [request.text, *request.options.get("thread", [])]
        found = [posts(sandbox, t) for t in texts]
        assert [len(f) for f in found] == [1] * len(texts), f"crash at checkpoint {n}"
        assert result.platform_post_id == found[0][0]["id"]


# -- recover ---------------------------------------------------------------------------------
def in_doubt(step: str = "tweet", **progress) -> dict:
    return {"attempting": step, "attempted_at": time.time(), **progress}


async def test_recover_finds_a_text_post_among_recent_posts(publisher, account, sandbox):
    request = make_request(account, "Fish & chips <3 https://example.com/menu")
    posted = await drive(publisher, request, sandbox)
    # X shows the text back with &amp; &lt; and a t.co link; the match still holds.
    progress = in_doubt()

    found = await publisher.recover(request, progress)

    assert found is not None and found.done
    assert found.platform_post_id == posted.platform_post_id
    assert found.url == posted.url
    assert "attempting" not in progress


async def test_recover_knows_a_media_post_by_its_media_ids(publisher, account, sandbox, image):
    request = make_request(account, "", [image])  # no text to match at all
    posted = await drive(publisher, request, sandbox)
    progress = in_doubt(media_ids=posted.progress["media_ids"])

    found = await publisher.recover(request, progress)

    assert found is not None and found.platform_post_id == posted.platform_post_id
    # Other media (a new upload of the same picture) is not this post.
    other = await drive(publisher, make_request(account, "Same picture", [image]), sandbox)
    progress = in_doubt(media_ids=["1" + "0" * 18])
    assert await publisher.recover(request, progress) is None
    assert other.platform_post_id != posted.platform_post_id


async def test_recover_finds_a_reply_and_leaves_the_rest_of_the_thread(publisher, account, sandbox):
    request = make_request(account, "Head", thread=["Middle", "Tail"])
    posted = await drive(publisher, request, sandbox)
    head, middle, _ = posted.progress["tweet_id"], *posted.progress["thread_ids"]

    progress = in_doubt("reply:1", tweet_id=head)
    found = await publisher.recover(request, progress)

    assert found is not None and not found.done  # "Tail" is still to post (for all it knows)
    assert found.progress["thread_ids"] == [middle]
    assert "attempting" not in found.progress


async def test_recover_answers_none_when_the_post_is_not_there(publisher, account, sandbox):
    await drive(publisher, make_request(account, "Something else"), sandbox)
    request = make_request(account, "Never sent")
    progress = in_doubt()

    assert await publisher.recover(request, progress) is None
    assert "attempting" not in progress  # safe to publish again
    result = await drive(publisher, request, sandbox, progress)
    assert len(posts(sandbox, "Never sent")) == 1 and result.done


async def test_recover_is_unconfirmed_when_x_will_not_show_the_posts(publisher, account, sandbox):
    gone = dataclasses.replace(account, external_id="1999999999999999999")

    with pytest.raises(Unconfirmed) as unknown:
        await publisher.recover(make_request(gone, "Lost"), in_doubt())

    assert "check the account on X" in str(unknown.value)


async def test_recover_without_doubt_reports_what_progress_says(publisher, account, sandbox):
    request = make_request(account, "Done already")
    posted = await drive(publisher, request, sandbox)

    again = await publisher.recover(request, posted.progress)
    assert again is not None and again.done and again.platform_post_id == posted.platform_post_id
    assert await publisher.recover(make_request(account, "Not yet"), {}) is None


# -- faults ----------------------------------------------------------------------------------
async def test_a_timeout_on_the_post_leaves_the_attempt_for_recover(account, sandbox):
    impatient = publisher_for(sandbox, timeout=1.0)
    sandbox.fault(platform="x", kind="timeout", path=TWEETS, remaining=1)
    request = make_request(account, "Slow day")
    progress: dict = {}

    with pytest.raises(PlatformError) as failed:
        await impatient.publish(request, progress, Checkpoints())

    assert failed.value.kind == "transient"
    assert progress["attempting"] == "tweet"  # X may have it: look before retrying
    result = await resume(impatient, request, sandbox, progress)
    assert len(posts(sandbox, "Slow day")) == 1 and result.done


async def test_a_server_error_on_the_post_is_transient_and_checked_before_retrying(
    publisher, account, sandbox
):
    sandbox.fault(platform="x", kind="error", path=TWEETS, remaining=1)
    request = make_request(account, "Server trouble")
    checkpoint = Checkpoints()

    with pytest.raises(PlatformError) as failed:
        await publisher.publish(request, {}, checkpoint)

    assert (failed.value.kind, failed.value.status) == ("transient", 503)
    assert checkpoint.last["attempting"] == "tweet"
    await resume(publisher, request, sandbox, checkpoint.last)
    assert len(posts(sandbox, "Server trouble")) == 1


async def test_a_server_error_during_an_upload_resumes_from_the_stored_segment(
    publisher, account, sandbox, video
):
    sandbox.fault(platform="x", kind="error", path="/api/2/media/upload/*/append", remaining=1)
    request = make_request(account, "Video after a hiccup", [video])
    checkpoint = Checkpoints()

    with pytest.raises(PlatformError) as failed:
        await publisher.publish(request, {}, checkpoint)
    assert failed.value.kind == "transient"

    await drive(publisher, request, sandbox, checkpoint.last)
    assert len(records(sandbox, "/api/2/media/upload/initialize")) == 1
    assert len(posts(sandbox, "Video after a hiccup")) == 1


async def test_a_rate_limit_is_deferred_until_the_window_resets(publisher, account, sandbox):
    sandbox.fault(platform="x", kind="rate_limit", path=TWEETS, retry_after=60, remaining=1)
    progress: dict = {}

    with pytest.raises(PlatformError) as limited:
        await publisher.publish(make_request(account, "Busy"), progress, Checkpoints())

    assert limited.value.kind == "rate_limited"
    assert 50 <= limited.value.retry_after <= 61  # from x-rate-limit-reset
    assert "attempting" not in progress  # X refused it: nothing to check


async def test_the_daily_post_limit_defers_until_its_own_reset(publisher, account, sandbox):
    sandbox.configure(x_tweets_per_day_user=1)
    await drive(publisher, make_request(account, "The only one today"), sandbox)

    with pytest.raises(PlatformError) as limited:
        await publisher.publish(make_request(account, "One too many"), {}, Checkpoints())

    assert limited.value.kind == "rate_limited"
    assert 86_000 < limited.value.retry_after <= 86_400


async def test_an_expired_token_is_an_auth_failure(publisher, account, sandbox):
    sandbox.advance(7201)  # X access tokens live two hours
    progress: dict = {}

    with pytest.raises(PlatformError) as refused:
        await publisher.publish(make_request(account, "Late"), progress, Checkpoints())

    assert refused.value.kind == "auth"
    assert "reconnect" in refused.value.message
    assert "attempting" not in progress


async def test_duplicate_text_is_refused_in_plain_words(publisher, account, sandbox):
    await drive(publisher, make_request(account, "Say it once"), sandbox)
    progress: dict = {}

    with pytest.raises(PlatformError) as refused:
        await publisher.publish(make_request(account, "Say it once"), progress, Checkpoints())

    assert refused.value.kind == "permanent"
    assert refused.value.message == DUPLICATE == "X refuses duplicate text: change the wording."
    assert "attempting" not in progress
    assert len(posts(sandbox, "Say it once")) == 1


async def test_over_length_text_is_refused_with_what_to_do(publisher, account, sandbox):
    with pytest.raises(PlatformError) as refused:
        await publisher.publish(make_request(account, "x" * 281), {}, Checkpoints())

    assert refused.value.kind == "permanent"
    assert "shorten it" in refused.value.message
    assert "invalid-request" in refused.value.message
    assert not posts(sandbox)


async def test_a_video_x_cannot_process_fails_with_a_hint(
    publisher, account, sandbox, tmp_path, media_host
):
    fake = media_item(tmp_path, media_host, jpeg_bytes(), "video/mp4")  # a JPEG inside
    request = make_request(account, "Not really a video", [fake])

    with pytest.raises(PlatformError) as refused:
        await drive(publisher, request, sandbox)

    assert refused.value.kind == "permanent"
    assert "X could not process the media" in refused.value.message
    assert not posts(sandbox)
