"""Chunked uploads whose bytes come from the S3-compatible media store (moto's server):
X appends 4 MiB segments and TikTok PUTs 10 MiB chunks, each one ranged GET of the
object, never the whole file in memory or on disk."""

from __future__ import annotations

import hashlib
import os
from functools import partial
from pathlib import Path

from src import media
from src.config import load_settings
from src.publishers import tiktok, x
from src.publishers.base import MediaItem
from src.publishers.tiktok_upload import MIB
from src.publishers.x_media import SEGMENT_BYTES
from tests.media_samples import mp4_bytes
from tests.publishers import test_tiktok, test_x
from tests.publishers.test_x_publish import drive, make_request
from tests.s3 import S3Server


async def stored_item(s3: S3Server, folder: Path, data: bytes, **extra) -> MediaItem:
    """The video saved in the bucket, as publish_item hands it over for an S3 store."""
    store = media.get_store(load_settings(env={**os.environ, **s3.env("uploads")}))
    (folder / "clip.mp4").write_bytes(data)
    key = f"u1/{hashlib.sha256(data).hexdigest()}.mp4"
    await store.save_file(key, folder / "clip.mp4")
    assert not (folder / "clip.mp4").exists()  # consumed: nothing stays on local disk
    return MediaItem(
        path="",
        url="",
        content_type="video/mp4",
        bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        reader=partial(store.open, key),
        **extra,
    )


async def test_x_appends_segments_read_from_the_bucket(s3, sandbox, tmp_path):
    data = mp4_bytes(2 * SEGMENT_BYTES + 1000)  # three segments
    item = await stored_item(s3, tmp_path, data, duration_ms=5000)
    publisher: x.XPublisher = test_x.publisher_for(sandbox)
    account = await test_x.connected(publisher)

    result = await drive(publisher, make_request(account, "A video from S3", [item]), sandbox)

    appends = [r for r in sandbox.records(platform="x") if r["path"].endswith("/append")]
    assert len(appends) == 3  # finalize checked that the segments add up to total_bytes
    (post,) = [p for p in sandbox.published(platform="x") if p["text"] == "A video from S3"]
    assert post["media"] == result.progress["media_ids"]


async def test_tiktok_puts_chunks_read_from_the_bucket(s3, sandbox, tmp_path):
    data = mp4_bytes(21 * MIB)  # 10 MiB, then the 11 MiB remainder
    item = await stored_item(s3, tmp_path, data, duration_ms=30_000)
    publisher: tiktok.TikTokPublisher = test_tiktok.publisher_for(sandbox)
    account = await test_tiktok.connected(publisher)
    request = make_request(account, "Long one from S3", [item], privacy_level="SELF_ONLY")

    result = await drive(publisher, request, sandbox)

    assert result.progress["source"] == "FILE_UPLOAD"
    (post,) = sandbox.published(platform="tiktok")
    assert post["media"][0]["bytes"] == len(data) and post["media"][0]["chunks"] == 2
    assert post["media"][0]["content_type"] == "video/mp4"  # sniffed from the first chunk
