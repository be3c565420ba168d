"""Publishing to TikTok over real HTTP against the standalone sandbox: creator_info before
every post, videos by FILE_UPLOAD (chunked per the Media Transfer Guide) or PULL_FROM_URL,
photo posts, status polling, checkpoints, recovery and every refusal in plain words."""

from __future__ import annotations

import copy

import httpx
import pytest

from src.publishers.base import DiscoveredAccount, PlatformError, Unconfirmed
from src.publishers.tiktok import CHOOSE_PRIVACY, UNCONFIRMED, TikTokPublisher
from src.publishers.tiktok_upload import MIB
from tests.media_samples import jpeg_bytes, mp4_bytes, png_bytes
from tests.publishers.test_tiktok import connected, publisher_for
from tests.publishers.test_x_publish import (
    Checkpoints,
    Crash,
    drive,
    make_request,
    media_item,
    resume,
)

API = "/open/v2/post/publish"  # paths as the sandbox records them (no trailing /)
CREATOR_INFO = f"{API}/creator_info/query"
VIDEO_INIT, CONTENT_INIT = f"{API}/video/init", f"{API}/content/init"
STATUS, CHUNKS = f"{API}/status/fetch", "/upload/video"
PRIVATE = {"privacy_level": "SELF_ONLY"}  # all an unaudited app may post
PUBLIC = {"privacy_level": "PUBLIC_TO_EVERYONE"}


def calls(sandbox, *paths: str) -> list[dict]:
    return [r for r in sandbox.records(platform="tiktok") if r["path"] in paths]


def posts(sandbox) -> list[dict]:
    return sandbox.published(platform="tiktok")


@pytest.fixture
def publisher(sandbox) -> TikTokPublisher:
    return publisher_for(sandbox)


@pytest.fixture
async def account(publisher, sandbox) -> DiscoveredAccount:
    return await connected(publisher)


@pytest.fixture
def audited(sandbox) -> None:
    sandbox.configure(tiktok_audited=True)  # public posts allowed, public ids returned


@pytest.fixture
def small_video(tmp_path, media_host):
    return media_item(tmp_path, media_host, mp4_bytes(), "video/mp4", duration_ms=8000)


@pytest.fixture
def big_video(tmp_path, media_host):
    """21 MiB: two chunks, 10 MiB then the 11 MiB remainder."""
    return media_item(tmp_path, media_host, mp4_bytes(21 * MIB), "video/mp4", duration_ms=30_000)


# -- happy paths -----------------------------------------------------------------------------
async def test_small_video_goes_whole_after_creator_info(publisher, account, sandbox, small_video):
    checkpoint = Checkpoints()
    request = make_request(account, "My cat #cat", [small_video], **PRIVATE)

    result = await drive(publisher, request, sandbox, None, checkpoint)

    made = calls(sandbox, CREATOR_INFO, VIDEO_INIT, CHUNKS)[1:]  # after connect's own query
    assert [c["path"] for c in made] == [CREATOR_INFO, VIDEO_INIT, CHUNKS]
    init = made[1]["body"]
    size = len(mp4_bytes())
    assert init["source_info"] == {
        "source": "FILE_UPLOAD",
        "video_size": size,
        "chunk_size": size,
        "total_chunk_count": 1,
    }
    assert init["post_info"] == {
        "title": "My cat #cat",
        "privacy_level": "SELF_ONLY",
        "disable_comment": True,  # interactions stay off unless allowed
        "disable_duet": True,
        "disable_stitch": True,
        "brand_content_toggle": False,
        "brand_organic_toggle": False,
    }
    publish_id = result.progress["publish_id"]
    # Before init: the attempt; right after: publish_id and upload_url; then the offset.
    assert checkpoint.saved[0]["attempting"] == "init"
    assert "publish_id" not in checkpoint.saved[0]
    assert (
        checkpoint.saved[1]["publish_id"] == publish_id and "attempting" not in checkpoint.saved[1]
    )
    assert checkpoint.saved[1]["upload_url"].startswith(f"{sandbox.url}/tiktok/upload/video/")
    assert checkpoint.saved[2]["offset"] == size
    (post,) = posts(sandbox)
    assert post["publish_id"] == publish_id and post["privacy_level"] == "SELF_ONLY"
    # A private post has no public id: the publish_id stands for it, with no link.
    assert (result.platform_post_id, result.url) == (publish_id, None)


async def test_big_public_video_goes_in_chunks_with_content_range(
    publisher, account, sandbox, audited, big_video
):
    checkpoint = Checkpoints()
    request = make_request(account, "Long one", [big_video], disable_comment=False, **PUBLIC)

    result = await drive(publisher, request, sandbox, None, checkpoint)

    total = 21 * MIB
    (init,) = calls(sandbox, VIDEO_INIT)
    assert init["body"]["source_info"]["chunk_size"] == 10 * MIB
    assert init["body"]["source_info"]["total_chunk_count"] == 2
    assert init["body"]["post_info"]["disable_comment"] is False
    assert init["body"]["post_info"]["disable_stitch"] is True  # the creator disabled stitches
    puts = calls(sandbox, CHUNKS)
    assert all(not p["authorization"] for p in puts)  # the upload_url carries its token
    assert [c["offset"] for c in checkpoint.saved if "offset" in c] == [10 * MIB, total, total]
    (post,) = posts(sandbox)
    assert post["media"][0]["bytes"] == total and post["media"][0]["chunks"] == 2
    assert result.platform_post_id == post["id"]
    assert result.url == f"{sandbox.url}/tiktok/www/@tiktok_tom/video/{post['id']}" == post["url"]
    assert httpx.get(result.url).status_code == 200


async def test_video_pulled_from_its_url(publisher, account, sandbox, media_host, small_video):
    request = make_request(account, "Pulled", [small_video], upload_mode="pull", **PRIVATE)

    await drive(publisher, request, sandbox)

    (init,) = calls(sandbox, VIDEO_INIT)
    assert init["body"]["source_info"] == {"source": "PULL_FROM_URL", "video_url": small_video.url}
    assert not calls(sandbox, CHUNKS)
    (post,) = posts(sandbox)
    assert post["media"][0]["sha256"] == small_video.sha256


async def test_photos_are_pulled_with_a_cover(
    publisher, account, sandbox, audited, tmp_path, media_host
):
    photos = [media_item(tmp_path, media_host, jpeg_bytes(), "image/jpeg") for _ in range(2)]
    request = make_request(account, "Two views", photos, photo_cover_index=1, **PUBLIC)

    result = await drive(publisher, request, sandbox)

    (init,) = calls(sandbox, CONTENT_INIT)
    body = init["body"]
    assert (body["post_mode"], body["media_type"]) == ("DIRECT_POST", "PHOTO")
    assert body["source_info"] == {
        "source": "PULL_FROM_URL",
        "photo_cover_index": 1,
        "photo_images": [p.url for p in photos],
    }
    assert body["post_info"]["description"] == "Two views"
    (post,) = posts(sandbox)
    assert post["kind"] == "photo" and len(post["media"]) == 2
    assert result.url == f"{sandbox.url}/tiktok/www/@tiktok_tom/photo/{post['id']}"


async def test_processing_resumes_from_progress_across_calls(
    publisher, account, sandbox, small_video
):
    sandbox.configure(processing_delay=30)
    request = make_request(account, "Patience", [small_video], **PRIVATE)
    progress: dict = {}

    first = await publisher.publish(request, progress, Checkpoints())
    assert not first.done and first.wait_s >= 2  # status/fetch: 30 a minute
    second = await publisher.publish(request, progress, Checkpoints())
    assert not second.done and second.wait_s >= 2
    assert not posts(sandbox)

    sandbox.advance(30)
    done = await publisher.publish(request, progress, Checkpoints())

    assert done.done and len(posts(sandbox)) == 1
    assert len(calls(sandbox, VIDEO_INIT)) == 1 and len(calls(sandbox, STATUS)) == 2


# -- refusals before init --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("what", "options", "words"),
    [
        ("png", PRIVATE, "JPEG or WebP"),
        ("video", {}, CHOOSE_PRIVACY),
        ("video", PUBLIC, "choose one of SELF_ONLY"),  # unaudited: private only
        ("long video", PRIVATE, "at most 600 s"),
        ("video and photo", PRIVATE, "one video or a set of photos"),
        ("branded private", {**PRIVATE, "brand_content_toggle": True}, "cannot be private"),
    ],
)
async def test_what_tiktok_would_refuse_is_refused_before_init(
    publisher, account, sandbox, tmp_path, media_host, small_video, what, options, words
):
    png = media_item(tmp_path, media_host, png_bytes(), "image/png")
    jpeg = media_item(tmp_path, media_host, jpeg_bytes(), "image/jpeg")
    long = media_item(tmp_path, media_host, mp4_bytes(), "video/mp4", duration_ms=601_000)
    media = {
        "png": [jpeg, png],
        "video": [small_video],
        "long video": [long],
        "video and photo": [small_video, jpeg],
        "branded private": [small_video],
    }[what]
    progress: dict = {}

    with pytest.raises(PlatformError) as refused:
        await publisher.publish(
            make_request(account, "No", media, **options), progress, Checkpoints()
        )

    assert refused.value.kind == "permanent"
    assert words in refused.value.message
    assert not calls(sandbox, VIDEO_INIT, CONTENT_INIT)
    assert "attempting" not in progress


async def test_creator_info_is_queried_before_every_post(publisher, account, sandbox, small_video):
    for n in range(2):
        await drive(
            publisher, make_request(account, f"Post {n}", [small_video], **PRIVATE), sandbox
        )

    order = [c["path"] for c in calls(sandbox, CREATOR_INFO, VIDEO_INIT)]
    # One query at connect, then one right before each init.
    assert order == [CREATOR_INFO, CREATOR_INFO, VIDEO_INIT, CREATOR_INFO, VIDEO_INIT]


# -- failures TikTok reports -----------------------------------------------------------------
async def test_a_file_tiktok_cannot_read_fails_in_plain_words(
    publisher, account, sandbox, tmp_path, media_host
):
    fake = media_item(tmp_path, media_host, jpeg_bytes(), "video/mp4")  # a JPEG inside

    with pytest.raises(PlatformError) as failed:
        await drive(publisher, make_request(account, "Odd", [fake], **PRIVATE), sandbox)

    assert failed.value.kind == "permanent"
    assert failed.value.code == "file_format_check_failed"
    assert "use an MP4, MOV or WebM video" in failed.value.message


async def test_a_pull_that_fails_says_what_to_check(publisher, account, sandbox, small_video):
    missing = copy.copy(small_video)
    missing.url = small_video.url + ".gone"

    with pytest.raises(PlatformError) as failed:
        await drive(
            publisher,
            make_request(account, "Lost", [missing], upload_mode="pull", **PRIVATE),
            sandbox,
        )

    assert (failed.value.kind, failed.value.code) == ("permanent", "video_pull_failed")
    assert "verified in the TikTok developer portal" in failed.value.message


async def test_an_internal_failure_is_transient_and_starts_over(
    publisher, account, sandbox, small_video
):
    failed = {"data": {"status": "FAILED", "fail_reason": "internal"}, "error": {"code": "ok"}}
    sandbox.fault(platform="tiktok", kind="response", status=200, body=failed, path=STATUS)
    checkpoint = Checkpoints()
    request = make_request(account, "Try again", [small_video], **PRIVATE)

    with pytest.raises(PlatformError) as retry:
        await drive(publisher, request, sandbox, None, checkpoint)

    assert retry.value.kind == "transient"
    assert "publish_id" not in checkpoint.last  # that task is dead: the retry inits anew


async def test_a_too_long_title_is_a_permanent_refusal(publisher, account, sandbox, small_video):
    progress: dict = {}

    with pytest.raises(PlatformError) as refused:
        await publisher.publish(
            make_request(account, "x" * 2201, [small_video], **PRIVATE), progress, Checkpoints()
        )

    assert (refused.value.kind, refused.value.code) == ("permanent", "invalid_params")
    assert "title exceeds 2200" in refused.value.message
    assert "attempting" not in progress  # TikTok answered: no post was made


# -- recover ---------------------------------------------------------------------------------
async def test_recover_asks_status_fetch_about_a_stored_publish_id(
    publisher, account, sandbox, small_video, tmp_path, media_host
):
    sandbox.configure(processing_delay=30)
    request = make_request(account, "Checked", [small_video], **PRIVATE)
    progress: dict = {}
    await publisher.publish(request, progress, Checkpoints())

    waiting = await publisher.recover(request, {**progress, "attempting": "init"})
    assert waiting is not None and not waiting.done and waiting.wait_s >= 2

    sandbox.advance(30)
    done = await publisher.recover(request, dict(progress))
    assert done is not None and done.done and done.platform_post_id == progress["publish_id"]

    fake = media_item(tmp_path, media_host, jpeg_bytes(), "video/mp4")
    bad = make_request(account, "Broken", [fake], **PRIVATE)
    broken: dict = {}
    await publisher.publish(bad, broken, Checkpoints())
    sandbox.advance(30)
    with pytest.raises(PlatformError) as failed:
        await publisher.recover(bad, broken)
    assert failed.value.code == "file_format_check_failed"


async def test_recover_cannot_know_about_an_unanswered_pull_init(publisher, account, small_video):
    request = make_request(account, "Maybe", [small_video], upload_mode="pull", **PRIVATE)
    in_doubt = {"attempting": "init", "source": "PULL_FROM_URL", "media_type": "video"}

    with pytest.raises(Unconfirmed) as unknown:
        await publisher.recover(request, in_doubt)

    assert str(unknown.value) == UNCONFIRMED


async def test_recover_lets_an_unanswered_file_upload_init_start_over(
    publisher, account, small_video
):
    # Without the upload_url TikTok would have answered, no video can ever reach that task.
    request = make_request(account, "Again", [small_video], **PRIVATE)
    progress = {"attempting": "init", "source": "FILE_UPLOAD", "plan": {}}

    assert await publisher.recover(request, progress) is None
    assert "attempting" not in progress
    assert await publisher.recover(request, {}) is None  # nothing was ever attempted


# -- crashes ---------------------------------------------------------------------------------
@pytest.mark.parametrize("crash_at", range(1, 6))
async def test_a_crash_during_a_chunked_upload_still_posts_exactly_once(
    publisher, account, sandbox, big_video, crash_at
):
    request = make_request(account, "Crash test", [big_video], **PRIVATE)
    crashing = Checkpoints(crash_at=crash_at)

    with pytest.raises(Crash):
        await drive(publisher, request, sandbox, None, crashing)
    result = await resume(publisher, request, sandbox, crashing.last)

    (post,) = posts(sandbox)
    assert post["publish_id"] == result.platform_post_id
    assert post["media"][0]["bytes"] == 21 * MIB
    # 2: init never answered for us, so a fresh init (the first task never gets bytes);
    # 3, 4: the chunk sent before the crash is sent again, TikTok's 416 says where it is.
    assert len(calls(sandbox, VIDEO_INIT)) == (2 if crash_at == 2 else 1)
    assert len(calls(sandbox, CHUNKS)) == (3 if crash_at in (3, 4) else 2)


@pytest.mark.parametrize("crash_at", [1, 2])
async def test_a_crash_around_a_pull_init_never_posts_twice(
    publisher, account, sandbox, small_video, crash_at
):
    request = make_request(account, "Pull crash", [small_video], upload_mode="pull", **PRIVATE)
    crashing = Checkpoints(crash_at=crash_at)

    with pytest.raises(Crash):
        await drive(publisher, request, sandbox, None, crashing)

    if crash_at == 1:  # before init: nothing happened, publishing again is safe
        await resume(publisher, request, sandbox, crashing.last)
        assert len(posts(sandbox)) == 1
    else:  # init answered but its publish_id was lost: shown to the person, not retried
        with pytest.raises(Unconfirmed):
            await resume(publisher, request, sandbox, crashing.last)
    assert len(calls(sandbox, VIDEO_INIT)) == 1


# -- faults ----------------------------------------------------------------------------------
async def test_a_server_error_on_init_is_transient_and_safe_to_retry(
    publisher, account, sandbox, small_video
):
    sandbox.fault(platform="tiktok", kind="error", path=VIDEO_INIT, remaining=1)
    request = make_request(account, "Retry me", [small_video], **PRIVATE)
    checkpoint = Checkpoints()

    with pytest.raises(PlatformError) as failed:
        await publisher.publish(request, {}, checkpoint)

    assert (failed.value.kind, failed.value.code) == ("transient", "internal_error")
    assert "attempting" not in checkpoint.last  # TikTok answered: no task was made
    await resume(publisher, request, sandbox, checkpoint.last)
    assert len(posts(sandbox)) == 1


async def test_a_timeout_on_init_is_left_for_recover(account, sandbox, small_video):
    impatient = publisher_for(sandbox, timeout=1.0)
    sandbox.fault(platform="tiktok", kind="timeout", path=VIDEO_INIT, remaining=1)
    request = make_request(account, "Hung", [small_video], upload_mode="pull", **PRIVATE)
    progress: dict = {}

    with pytest.raises(PlatformError) as failed:
        await impatient.publish(request, progress, Checkpoints())

    assert failed.value.kind == "transient"
    assert progress["attempting"] == "init"
    with pytest.raises(Unconfirmed):
        await impatient.recover(request, progress)


async def test_a_rate_limited_init_waits_for_retry_after(publisher, account, sandbox, small_video):
    sandbox.fault(platform="tiktok", kind="rate_limit", path=VIDEO_INIT, retry_after=7)
    progress: dict = {}

    with pytest.raises(PlatformError) as limited:
        await publisher.publish(
            make_request(account, "Later", [small_video], **PRIVATE), progress, Checkpoints()
        )

    assert (limited.value.kind, limited.value.retry_after) == ("rate_limited", 7.0)
    assert "attempting" not in progress


async def test_a_server_error_on_a_chunk_resumes_from_the_stored_offset(
    publisher, account, sandbox, big_video
):
    sandbox.fault(platform="tiktok", kind="error", path=CHUNKS, remaining=1, method="PUT")
    checkpoint = Checkpoints()
    request = make_request(account, "Hiccup", [big_video], **PRIVATE)

    progress: dict = {}
    with pytest.raises(PlatformError) as failed:
        await publisher.publish(request, progress, checkpoint)
    assert failed.value.kind == "transient"

    await drive(publisher, request, sandbox, progress)
    assert len(calls(sandbox, VIDEO_INIT)) == 1
    assert len(posts(sandbox)) == 1


async def test_an_expired_upload_link_starts_the_upload_over(
    publisher, account, sandbox, big_video
):
    sandbox.fault(platform="tiktok", kind="expired_token", path=CHUNKS, remaining=1)
    request = make_request(account, "Expired link", [big_video], **PRIVATE)
    checkpoint = Checkpoints()

    with pytest.raises(PlatformError) as failed:
        await publisher.publish(request, {}, checkpoint)
    assert (failed.value.kind, failed.value.code) == ("transient", "upload_expired")
    assert "publish_id" not in checkpoint.last

    await drive(publisher, request, sandbox, checkpoint.last)
    assert len(calls(sandbox, VIDEO_INIT)) == 2
    assert len(posts(sandbox)) == 1  # the first task never got its video


async def test_an_expired_token_is_an_auth_failure(publisher, account, sandbox, small_video):
    sandbox.advance(86_401)  # the sandbox's TikTok access tokens live a day

    with pytest.raises(PlatformError) as refused:
        await publisher.publish(
            make_request(account, "Late", [small_video], **PRIVATE), {}, Checkpoints()
        )

    assert (refused.value.kind, refused.value.code) == ("auth", "access_token_invalid")
