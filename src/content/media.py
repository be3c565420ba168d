"""Media named by post files: checked without a database (validate) and copied into
media storage at sync time, deduplicated by sha256 per user (through src.media, the
media domain: the same storage, probing and limits as uploads)."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from src.publishers.base import MediaItem

if TYPE_CHECKING:
    from src.config import Settings
    from src.content.sources import Entry, Snapshot

SNIFF_BYTES = 64
EXTENSIONS = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".mp4": "video/mp4",
    ".mov": "video/quicktime",
    ".webm": "video/webm",
}


class MediaProblem(Exception):
    """A media file that cannot be used; the message is for the file's author."""


def _media_module():
    try:
        from src import media
    except ImportError as exc:  # pragma: no cover - the media domain ships with the app
        raise MediaProblem("media storage is not available in this installation") from exc
    return media


def _hash_file(path: Path) -> tuple[str, int, bytes]:
    digest, size, head = hashlib.sha256(), 0, b""
    with path.open("rb") as handle:
        while chunk := handle.read(1024 * 1024):
            if not head:
                head = chunk[:SNIFF_BYTES]
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size, head


async def store(user_id: int, snapshot: Snapshot, entry: Entry, settings: Settings) -> int:
    """The Media id for a repository file: the existing row when the user already has
    the same bytes, otherwise a new one (probed and stored like an upload)."""
    media = _media_module()
    from src.db.tables import Media

    limits = media.Limits.of(settings)
    if entry.size > max(limits.image, limits.video):
        raise MediaProblem(f"'{entry.path}' is {media.human_size(entry.size)}: too large")
    folder = media.temp_dir(settings)
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    temp = folder / f"content-{secrets.token_hex(8)}"
    try:
        await snapshot.copy_out(entry.path, temp)
        sha256, size, head = await asyncio.to_thread(_hash_file, temp)
        found = await Media.select(Media.id).where(
            (Media.user == user_id) & (Media.sha256 == sha256)
        )
        if found:
            return found[0]["id"]
        try:
            kind = media.sniff(head)
        except media.MediaError as exc:
            raise MediaProblem(f"'{entry.path}': {exc}") from None
        if kind is None:
            raise MediaProblem(f"'{entry.path}' is not an image or a video we can read")
        if size > limits.for_kind(kind):
            raise MediaProblem(f"'{entry.path}': {limits.too_large(kind)}")
        name = entry.path.rsplit("/", 1)[-1]
        upload = media.Upload(
            path=temp, name=media.clean_name(name), kind=kind, size=size, sha256=sha256
        )
        try:
            row = await media.store_file(user_id, upload, settings)
        except media.MediaError as exc:
            raise MediaProblem(f"'{entry.path}': {exc}") from None
        return row.id
    finally:
        temp.unlink(missing_ok=True)


def facts(path: Path) -> MediaItem | str:
    """What the platform rules need to know of a local file (validate, no database):
    probed by content when the media domain is installed, else guessed from its name."""
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            head = handle.read(SNIFF_BYTES)
    except OSError as exc:
        return f"cannot read '{path.name}': {exc.strerror}"
    try:
        media = _media_module()
        kind = media.sniff(head)
        if kind is None:
            return f"'{path.name}' is not an image or a video we can read"
        found = media.probe(path, kind)
        return MediaItem(
            path=str(path),
            url="",
            content_type=found.content_type,
            bytes=size,
            sha256="",
            width=found.width,
            height=found.height,
            duration_ms=found.duration_ms,
        )
    except MediaProblem:
        content_type = EXTENSIONS.get(path.suffix.lower())
        if content_type is None:
            return f"'{path.name}' is not an image or a video"
        return MediaItem(str(path), "", content_type, size, "", None, None, None)
    except Exception as exc:  # the media domain's refusals (damaged files…)
        return f"'{path.name}': {exc}"
