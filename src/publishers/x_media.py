"""X media upload v2 for a post: one-shot for small still images, initialize / append /
finalize for videos, GIFs and large images, then STATUS while X processes. Every media id
is written to `progress` (and checkpointed) as soon as X hands it out, so a crashed
attempt resumes the upload instead of starting over. Contract: shared/platforms.md 4.5."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

from src.publishers.base import MediaItem, PlatformError

SEGMENT_BYTES = 4 * 1024 * 1024  # X's append segments: at most 4 MiB each
ONE_SHOT_MAX = 1024 * 1024  # still images up to this size go in one request
MAX_IMAGES = 4
EXPIRY_MARGIN_S = 600  # re-upload media whose id expires within this margin
Checkpoint = Callable[[dict[str, Any]], Awaitable[None]]


class Api(Protocol):
    """The authenticated X API of one account (errors raised as PlatformError)."""

    async def call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]: ...


def check_media(media: list[MediaItem]) -> None:
    """X takes up to 4 images, or 1 GIF, or 1 video per post: refuse anything else before
    uploading a byte."""
    single = [m for m in media if m.is_video or m.content_type == "image/gif"]
    if single and len(media) > 1:
        raise PlatformError(
            "permanent",
            "An X post takes either one video or GIF, or up to 4 images: remove the extra media.",
            code="media_count",
        )
    if len(media) > MAX_IMAGES:
        raise PlatformError(
            "permanent",
            f"An X post takes at most {MAX_IMAGES} images ({len(media)} attached): "
            "remove some, or post the rest as a reply.",
            code="media_count",
        )


def category(item: MediaItem) -> str:
    if item.is_video:
        return "tweet_video"
    return "tweet_gif" if item.content_type == "image/gif" else "tweet_image"


async def upload_all(
    api: Api, media: list[MediaItem], progress: dict[str, Any], checkpoint: Checkpoint
) -> float:
    """Upload what `progress` does not hold yet. Returns 0 when every media id is ready to
    post, else the seconds X asked us to wait before checking its processing again."""
    _forget_expired(progress)
    ids: list[str] = progress.setdefault("media_ids", [])
    if progress.get("processing"):
        return await _check_processing(api, progress, checkpoint)
    while len(ids) < len(media):
        data = await _upload_one(api, media[len(ids)], len(ids), progress, checkpoint)
        ids.append(str(data["id"]))
        progress.pop("upload", None)
        _note_expiry(progress, data)
        wait = _wait_for(data.get("processing_info"))
        if wait:
            progress["processing"] = str(data["id"])
        await checkpoint(progress)
        if wait:  # one video or GIF per post: nothing else is left to upload
            return wait
    return 0.0


# -- one item ----------------------------------------------------------------------------
async def _upload_one(
    api: Api, item: MediaItem, index: int, progress: dict[str, Any], checkpoint: Checkpoint
) -> dict[str, Any]:
    size = await item.size()
    if category(item) == "tweet_image" and size <= ONE_SHOT_MAX:
        payload = await item.read()
        body = await api.call(
            "POST",
            "/2/media/upload",
            files={"media": ("media", payload, item.content_type)},
            data={"media_category": "tweet_image"},
        )
        return body["data"]
    upload = progress.get("upload")
    stale = not upload or upload.get("index") != index
    if stale or time.time() > upload.get("expires_at", float("inf")) - EXPIRY_MARGIN_S:
        upload = await _initialize(api, item, index, size)
        progress["upload"] = upload
        await checkpoint(progress)
    await _append_from(api, item, size, upload, progress, checkpoint)
    body = await api.call("POST", f"/2/media/upload/{upload['id']}/finalize")
    return body["data"]


async def _initialize(api: Api, item: MediaItem, index: int, size: int) -> dict[str, Any]:
    body = await api.call(
        "POST",
        "/2/media/upload/initialize",
        json={
            "media_type": item.content_type,
            "total_bytes": size,
            "media_category": category(item),
        },
    )
    data = body["data"]
    upload = {"index": index, "id": str(data["id"]), "segment": 0}
    if isinstance(data.get("expires_after_secs"), int | float):
        upload["expires_at"] = time.time() + data["expires_after_secs"]
    return upload


async def _append_from(
    api: Api,
    item: MediaItem,
    size: int,
    upload: dict[str, Any],
    progress: dict[str, Any],
    checkpoint: Checkpoint,
) -> None:
    """Append the segments not yet acknowledged; the next index is checkpointed after each,
    so a crash re-sends at most one segment (X keeps the last copy of a segment index)."""
    async for index, chunk in _segments(item, size, upload["segment"]):
        await api.call(
            "POST",
            f"/2/media/upload/{upload['id']}/append",
            files={"media": ("media", chunk, "application/octet-stream")},
            data={"segment_index": str(index)},
        )
        upload["segment"] = index + 1
        await checkpoint(progress)


async def _segments(item: MediaItem, size: int, start: int) -> AsyncIterator[tuple[int, bytes]]:
    """(index, bytes) of each 4 MiB segment from `start`, read through the item (a local
    file or a ranged read from the media store); one segment in memory at a time."""
    for index in range(start, -(-size // SEGMENT_BYTES)):
        first = index * SEGMENT_BYTES
        yield index, await item.read(first, min(first + SEGMENT_BYTES, size) - 1)


# -- processing --------------------------------------------------------------------------
def _wait_for(info: dict[str, Any] | None) -> float:
    """Seconds to wait while X processes (0 when ready). No processing_info means ready."""
    if not info or info.get("state") == "succeeded":
        return 0.0
    if info.get("state") == "failed":
        return 0.0  # reported by _check_processing on the next look
    return float(min(max(int(info.get("check_after_secs") or 1), 1), 60))


async def _check_processing(api: Api, progress: dict[str, Any], checkpoint: Checkpoint) -> float:
    media_id = progress["processing"]
    body = await api.call(
        "GET", "/2/media/upload", params={"command": "STATUS", "media_id": media_id}
    )
    info = body.get("data", {}).get("processing_info") or {}
    if info.get("state") == "failed":
        # Forget the dead id so a retry after fixing the file uploads it again.
        progress["media_ids"] = [m for m in progress["media_ids"] if m != media_id]
        progress.pop("processing")
        await checkpoint(progress)
        error = info.get("error") or {}
        detail = error.get("message") or "the file is not a video or GIF X can play"
        raise PlatformError(
            "permanent",
            f"X could not process the media ({detail}): check the file's format, "
            "length (0.5 to 140 s) and size, then try again.",
            code=str(error.get("name") or "media_processing_failed"),
        )
    wait = _wait_for(info)
    if not wait:
        progress.pop("processing")
        await checkpoint(progress)
    return wait


# -- expiry ------------------------------------------------------------------------------
def _note_expiry(progress: dict[str, Any], data: dict[str, Any]) -> None:
    seconds = data.get("expires_after_secs")
    if isinstance(seconds, int | float) and seconds > 0:
        expires = time.time() + seconds
        progress["media_expires_at"] = min(progress.get("media_expires_at", expires), expires)


def _forget_expired(progress: dict[str, Any]) -> None:
    """Media ids live about a day: a post resumed later than that uploads again rather than
    being refused for invalid media ids."""
    expires = progress.get("media_expires_at")
    if expires is not None and time.time() > expires - EXPIRY_MARGIN_S:
        for key in ("media_ids", "upload", "processing", "media_expires_at"):
            progress.pop(key, None)
