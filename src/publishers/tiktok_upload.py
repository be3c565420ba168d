"""TikTok FILE_UPLOAD per the Media Transfer Guide: the chunk plan sent with init, then
sequential PUTs of each chunk to the upload_url with Content-Range, streamed from the file
(on disk, or ranged reads from the media store). The uploaded offset is checkpointed after
every chunk, so a crash re-sends at most one chunk; TikTok's 416 answer tells where it
really is. Contract: shared/platforms.md 3.4."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from src import http
from src.publishers.base import MediaItem, PlatformError

MIB = 1024 * 1024
MIN_CHUNK = 5 * MIB  # chunks are 5-64 MB; a video under 5 MB goes whole
CHUNK = 10 * MIB  # TikTok's own worked example; the last chunk takes the remainder
CONFIRMED = re.compile(r"bytes (?:(\d+)-(\d+)|\*)/(\d+)")
Checkpoint = Callable[[dict[str, Any]], Awaitable[None]]


class UploadGone(Exception):
    """The upload_url expired (valid one hour) or the upload task is gone (403/404)."""


def chunk_plan(size: int) -> dict[str, int]:
    """source_info sizes: total_chunk_count = floor(video_size / chunk_size), the last
    chunk absorbing the rest (under 2 x 10 MiB, well within TikTok's 128 MB)."""
    chunk = size if size < MIN_CHUNK else min(CHUNK, size)
    return {"video_size": size, "chunk_size": chunk, "total_chunk_count": max(1, size // chunk)}


def chunk_at(plan: dict[str, int], offset: int) -> tuple[int, int]:
    """(first, last) byte of the chunk starting at `offset`."""
    size, chunk, count = plan["video_size"], plan["chunk_size"], plan["total_chunk_count"]
    index = offset // chunk
    last = size - 1 if index >= count - 1 else offset + chunk - 1
    return offset, last


async def upload(
    progress: dict[str, Any],
    item: MediaItem,
    checkpoint: Checkpoint,
    request_timeout_s: float,
) -> None:
    """PUT every chunk from progress["offset"]; sets progress["uploaded"] when TikTok has
    all bytes. Raises UploadGone when the upload_url no longer works."""
    plan = progress["plan"]
    size = plan["video_size"]
    while progress.get("offset", 0) < size:
        offset = progress.get("offset", 0)
        first, last = chunk_at(plan, offset)
        response = await _put(progress["upload_url"], item, first, last, size, request_timeout_s)
        if response.status_code in (201, 206):
            progress["offset"] = last + 1
        elif response.status_code == 416:  # TikTok holds another offset: continue from it
            progress["offset"] = _confirmed(response, offset)
        else:
            raise _chunk_error(response)
        await checkpoint(progress)
    progress["uploaded"] = True
    await checkpoint(progress)


async def _put(
    url: str,
    item: MediaItem,
    first: int,
    last: int,
    size: int,
    request_timeout_s: float,
) -> http.Response:
    headers = {
        "Content-Type": item.content_type,
        "Content-Length": str(last - first + 1),  # set, so the body is not sent chunked
        "Content-Range": f"bytes {first}-{last}/{size}",
    }  # no Authorization: the upload_url carries its own token
    try:
        return await http.client().put(
            url, content=_read(item, first, last), headers=headers, timeout=request_timeout_s
        )
    except http.HTTPError as error:
        what = "timed out" if isinstance(error, http.TimeoutException) else "failed"
        raise PlatformError(
            "transient",
            f"The upload to TikTok {what} ({type(error).__name__}): it will resume.",
            code="network",
        ) from error


async def _read(item: MediaItem, first: int, last: int) -> AsyncIterator[bytes]:
    """The bytes first..last, in pieces as the item reads them (a local file or a ranged
    read from the media store), checked to be all there."""
    left = last - first + 1
    async for piece in item.chunks(first, last):
        left -= len(piece)
        yield piece
    if left > 0:
        raise PlatformError("permanent", "The video file got shorter while uploading.", code="file")


def _confirmed(response: http.Response, offset: int) -> int:
    """The offset TikTok has (416 answers `Content-Range: bytes 0-{LAST}/{TOTAL}`)."""
    match = CONFIRMED.fullmatch(response.headers.get("content-range", "").strip())
    held = int(match.group(2)) + 1 if match and match.group(2) else 0
    if match is None or held == offset:
        # No progress to resync to: TikTok is still taking an earlier copy of this chunk.
        raise PlatformError(
            "transient",
            "TikTok is still receiving an earlier part of the upload: it will resume.",
            code="http_416",
            status=416,
        )
    return held


def _chunk_error(response: http.Response) -> Exception:
    status = response.status_code
    if status in (403, 404):
        return UploadGone(status)
    if status == 429:
        header = response.headers.get("retry-after", "")
        return PlatformError(
            "rate_limited",
            "TikTok is limiting uploads right now: it will resume.",
            code="http_429",
            retry_after=float(header) if header.isdigit() else None,
            status=status,
        )
    if status >= 500:
        message = f"TikTok's upload host failed (HTTP {status}): the upload will resume."
        return PlatformError("transient", message, code=f"http_{status}", status=status)
    detail = response.text.strip()[:200] or f"HTTP {status}"
    return PlatformError(
        "permanent",
        f"TikTok refused a part of the video upload ({detail}).",
        code=f"http_{status}",
        status=status,
    )
