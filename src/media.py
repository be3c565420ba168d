"""The media domain: storage behind a small interface (a local folder or an S3-compatible
bucket), streamed uploads (hashed and size-checked on the way to disk, never held in
memory), probing by content, thumbnails, per-user deduplication, signed URLs for
platforms that pull media, and purging."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import logging
import os
import re
import secrets
import shutil
import tempfile
import time
import unicodedata
import warnings
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache, partial
from pathlib import Path
from typing import IO, Any, Protocol

import multipart

from src.config import Settings
from src.db.tables import Media
from src.filechunks import file_chunks
from src.publishers.base import MediaItem
from src.security import check_signature, signed_query

log = logging.getLogger(__name__)

CHUNK = 256 * 1024  # read size when serving
FLUSH_AT = 1024 * 1024  # uploads are written (and hashed) in a thread per megabyte
SNIFF_BYTES = 64  # enough for every magic number we recognise
MULTIPART_SLACK = 64 * 1024  # boundaries and part headers around the file
THUMB_SIZE = (320, 320)
MAX_IMAGE_PIXELS = 64_000_000  # beyond this decoding alone would take hundreds of MB
NAME_MAX = 120
TEMP_MAX_AGE_S = 6 * 3600  # abandoned temp uploads (a crash mid-upload) are removed after

EMPTY = "The file is empty."
NOT_MEDIA = "This file is not an image or a video we can read."
VIDEO_DAMAGED = "The video is truncated or damaged."
IMAGE_DAMAGED = "The image is truncated or damaged."
UNAVAILABLE = "The media storage cannot be reached right now: please try again in a moment."

IMAGE_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "WEBP": "image/webp"}
EXTENSIONS = {
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/gif": ".gif",
    "image/webp": ".webp",
    "video/mp4": ".mp4",
    "video/quicktime": ".mov",
    "video/webm": ".webm",
}
# Post statuses whose media must stay: removing it would change what was or will be sent.
KEEP_FOR = ("scheduled", "publishing", "published", "partial", "failed", "unconfirmed")


# -- errors -------------------------------------------------------------------------------
class MediaError(Exception):
    """A refusal with a message meant for the person; `status` is the HTTP answer."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Interrupted(MediaError):
    """The client went away mid-upload (nobody reads the answer; nothing is kept)."""


class TooLarge(MediaError):
    status = 413


class NotFound(MediaError):
    status = 404


class InUse(MediaError):
    status = 409


class RangeNotSatisfiable(MediaError):
    status = 416


class StoreUnavailable(MediaError):
    """The object store failed or cannot be reached (logged; the person tries again)."""

    status = 503


# -- storage ------------------------------------------------------------------------------
class StoreSettingsError(ValueError):
    """The media store settings cannot work; said at startup, in the operator's terms."""


class MediaStore(Protocol):
    """Where media bytes live. Keys are relative, '/'-separated and chosen by us."""

    async def save(self, key: str, chunks: AsyncIterable[bytes]) -> str:
        """Store a stream under `key`; returns the key."""
        ...

    async def save_file(self, key: str, path: Path) -> str:
        """Store a finished local file under `key`, consuming it (a move where possible)."""
        ...

    def open(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Bytes start..end (inclusive; None: to the end) in chunks; FileNotFoundError
        when the key is missing."""
        ...

    async def exists(self, key: str) -> bool: ...

    async def delete(self, key: str) -> None:
        """Remove `key`; a missing key is not an error."""
        ...

    async def delete_prefix(self, prefix: str) -> None:
        """Remove every key under `prefix` (a folder such as "u12/")."""
        ...

    def local_path(self, key: str) -> Path | None:
        """A filesystem path for the key when the store has one; None for remote stores."""
        ...

    def signed_url(self, key: str, ttl: int) -> str | None:
        """A URL anyone may GET the object through for `ttl` seconds, when the store can
        serve one itself; None: the app serves it (signed_url() below)."""
        ...


def _checked(key: str) -> str:
    # Keys are ours, but a bad one must never escape the folder or the prefix.
    if not key or key.startswith("/") or ".." in key.split("/") or "\\" in key:
        raise ValueError(f"invalid storage key {key!r}")
    return key


class LocalStore:
    """Files in a folder (OKK_DATA_DIR/media). Writes go to a temporary name in the
    destination folder and are renamed into place, so readers never see half a file."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        return self.root / _checked(key)

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    def signed_url(self, key: str, ttl: int) -> str | None:
        return None

    async def save(self, key: str, chunks: AsyncIterable[bytes]) -> str:
        path = self._path(key)
        temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
        await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
        try:
            with temp.open("wb") as handle:
                async for chunk in chunks:
                    await asyncio.to_thread(handle.write, chunk)
            await asyncio.to_thread(os.replace, temp, path)
        finally:
            temp.unlink(missing_ok=True)
        return key

    async def save_file(self, key: str, path: Path) -> str:
        target = self._path(key)

        def move() -> None:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(path, target)  # a rename on the same filesystem

        await asyncio.to_thread(move)
        return key

    def open(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        return file_chunks(self._path(key), start, end, CHUNK)

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self._path(key).is_file)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._path(key).unlink, missing_ok=True)

    async def delete_prefix(self, prefix: str) -> None:
        await asyncio.to_thread(shutil.rmtree, self._path(prefix.rstrip("/")), True)


@dataclass(frozen=True)
class S3Config:
    bucket: str
    endpoint_url: str
    region: str
    access_key_id: str
    secret_access_key: str = field(repr=False)  # never in a log line or a traceback
    prefix: str

    @classmethod
    def of(cls, settings: Settings) -> S3Config:
        if not settings.s3_bucket:
            raise StoreSettingsError(
                "OKK_MEDIA_STORE=s3 needs a bucket: set OKK_S3_BUCKET (and OKK_S3_ENDPOINT_URL "
                "for an S3-compatible service other than AWS)."
            )
        if bool(settings.s3_access_key_id) != bool(settings.s3_secret_access_key):
            raise StoreSettingsError(
                "Set both OKK_S3_ACCESS_KEY_ID and OKK_S3_SECRET_ACCESS_KEY, or neither "
                "(then the AWS default credential chain is used)."
            )
        prefix = settings.s3_prefix.strip("/")
        return cls(
            bucket=settings.s3_bucket,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            access_key_id=settings.s3_access_key_id,
            secret_access_key=settings.s3_secret_access_key,
            prefix=f"{prefix}/" if prefix else "",
        )


S3_PART = 16 * 1024 * 1024  # multipart upload above this size, in parts of this size
S3_SPOOL = 8 * 1024 * 1024  # streamed saves (thumbnails) stay in memory up to this
PRESIGN_MAX_S = 7 * 24 * 3600  # the longest a SigV4 presigned URL may live
CONTENT_TYPES = {ext: kind for kind, ext in EXTENSIONS.items()}


@contextlib.contextmanager
def _s3_errors(action: str, key: str) -> Iterator[None]:
    """Client and network failures of the bucket become StoreUnavailable, logged with the
    service's own message (which never holds the secret key)."""
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except (BotoCoreError, ClientError, Boto3Error) as error:
        log.warning("media store: %s %s failed: %s", action, key, error)
        raise StoreUnavailable(UNAVAILABLE) from error


class S3Store:
    """Objects in a bucket of an S3-compatible service (AWS S3, MinIO, R2, Ceph…) through
    boto3, whose blocking calls run in threads. Objects are private; platforms pull them
    through presigned GET URLs."""

    def __init__(self, config: S3Config) -> None:
        import boto3
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config

        self.config = config
        self.transfer = TransferConfig(
            multipart_threshold=S3_PART, multipart_chunksize=S3_PART, max_concurrency=4
        )
        self.client = boto3.session.Session().client(
            "s3",
            endpoint_url=config.endpoint_url or None,
            region_name=config.region or None,
            aws_access_key_id=config.access_key_id or None,
            aws_secret_access_key=config.secret_access_key or None,
            config=Config(
                signature_version="s3v4",
                retries={"mode": "standard"},
                max_pool_connections=50,  # one per concurrent stream (serving, uploads)
                # Self-hosted services rarely have a DNS name per bucket.
                s3={"addressing_style": "path" if config.endpoint_url else "auto"},
            ),
        )

    def __repr__(self) -> str:
        return f"S3Store({self.config!r})"

    def _key(self, key: str) -> str:
        return self.config.prefix + _checked(key)

    def _extra(self, key: str) -> dict[str, str]:
        return {"ContentType": CONTENT_TYPES.get(Path(key).suffix, "application/octet-stream")}

    def local_path(self, key: str) -> Path | None:
        return None

    def signed_url(self, key: str, ttl: int) -> str | None:
        return self.client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.config.bucket, "Key": self._key(key)},
            ExpiresIn=min(ttl, PRESIGN_MAX_S),
        )

    async def save(self, key: str, chunks: AsyncIterable[bytes]) -> str:
        with tempfile.SpooledTemporaryFile(S3_SPOOL) as spool:
            async for chunk in chunks:
                await asyncio.to_thread(spool.write, chunk)
            spool.seek(0)
            with _s3_errors("save", key):
                await asyncio.to_thread(
                    self.client.upload_fileobj,
                    spool,
                    self.config.bucket,
                    self._key(key),
                    ExtraArgs=self._extra(key),
                    Config=self.transfer,
                )
        return key

    async def save_file(self, key: str, path: Path) -> str:
        # Multipart above S3_PART, parts read from the file: memory stays bounded.
        with _s3_errors("save", key):
            await asyncio.to_thread(
                self.client.upload_file,
                str(path),
                self.config.bucket,
                self._key(key),
                ExtraArgs=self._extra(key),
                Config=self.transfer,
            )
        await asyncio.to_thread(path.unlink, missing_ok=True)
        return key

    async def open(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        request = {"Bucket": self.config.bucket, "Key": self._key(key)}
        if start or end is not None:
            request["Range"] = f"bytes={start}-{'' if end is None else end}"
        with _s3_errors("read", key):
            try:
                response = await asyncio.to_thread(self.client.get_object, **request)
            except self.client.exceptions.NoSuchKey:
                raise FileNotFoundError(key) from None
            body = response["Body"]
            try:
                while chunk := await asyncio.to_thread(body.read, CHUNK):
                    yield chunk
            finally:
                await asyncio.to_thread(body.close)

    async def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        with _s3_errors("check", key):
            try:
                await asyncio.to_thread(
                    self.client.head_object, Bucket=self.config.bucket, Key=self._key(key)
                )
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") in ("404", "NotFound"):
                    return False
                raise
        return True

    async def delete(self, key: str) -> None:
        # S3 answers a delete of a missing key with success.
        with _s3_errors("delete", key):
            await asyncio.to_thread(
                self.client.delete_object, Bucket=self.config.bucket, Key=self._key(key)
            )

    async def delete_prefix(self, prefix: str) -> None:
        with _s3_errors("delete", prefix):
            await asyncio.to_thread(self._delete_prefix, self._key(prefix.rstrip("/")) + "/")

    def _delete_prefix(self, prefix: str) -> None:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.config.bucket, Prefix=prefix
        )
        for page in pages:  # at most 1000 keys a page: one DeleteObjects each
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if not keys:
                continue
            answer = self.client.delete_objects(
                Bucket=self.config.bucket, Delete={"Objects": keys, "Quiet": True}
            )
            if answer.get("Errors"):  # refused one by one, not as an error of the call
                first = answer["Errors"][0]
                log.warning("media store: delete %s failed: %s", first["Key"], first["Message"])
                raise StoreUnavailable(UNAVAILABLE)


@cache
def _local_store(root: Path) -> LocalStore:
    return LocalStore(root)


@cache
def _s3_store(config: S3Config) -> S3Store:
    return S3Store(config)


def get_store(settings: Settings) -> MediaStore:
    """The store the settings choose; StoreSettingsError when they cannot work."""
    if settings.media_store == "local":
        return _local_store(settings.data_dir / "media")
    if settings.media_store == "s3":
        return _s3_store(S3Config.of(settings))
    raise StoreSettingsError(
        f"OKK_MEDIA_STORE must be “local” or “s3”, not {settings.media_store!r}."
    )


def temp_dir(settings: Settings) -> Path:
    """Uploads in progress: inside the media folder, so finishing one is a rename."""
    return settings.data_dir / "media" / ".incoming"


def media_key(user_id: int, sha256: str, content_type: str) -> str:
    return f"u{user_id}/{sha256[:2]}/{sha256}{EXTENSIONS[content_type]}"


def thumbnail_key(user_id: int, sha256: str) -> str:
    return f"u{user_id}/{sha256[:2]}/{sha256}.thumb.webp"


# -- names and sizes ------------------------------------------------------------------------
def clean_name(filename: str | None) -> str:
    """A display label from a client-supplied file name: the base name only, without
    control characters, bounded in length. Never used as a path."""
    name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = unicodedata.normalize("NFC", name)
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C")
    name = re.sub(r"\s+", " ", name).strip().lstrip(".").strip()
    if len(name) > NAME_MAX:
        _, dot, ext = name.rpartition(".")
        keep = ext if dot and len(ext) <= 10 else ""
        name = name[: NAME_MAX - len(keep) - 2].rstrip() + "…" + ("." + keep if keep else "")
    return name or "upload"


def human_size(size: int) -> str:
    for unit, factor in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if size >= factor:
            value = size / factor
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{size} bytes"


@dataclass(frozen=True)
class Limits:
    image: int
    video: int

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        # Media.bytes is a 32-bit integer column: files of 2 GiB and more cannot be recorded.
        video = min(settings.media_max_video_bytes, 2**31 - 1)
        return cls(settings.media_max_image_bytes, video)

    @property
    def request(self) -> int:
        """The most a whole upload request may carry."""
        return max(self.image, self.video) + MULTIPART_SLACK

    def for_kind(self, kind: str) -> int:
        return self.image if kind == "image" else self.video

    def too_large(self, kind: str) -> TooLarge:
        noun = "Images" if kind == "image" else "Videos"
        return TooLarge(f"{noun} can be at most {human_size(self.for_kind(kind))}.")

    def request_too_large(self) -> TooLarge:
        return TooLarge(
            f"This file is too large: images can be at most {human_size(self.image)}, "
            f"videos at most {human_size(self.video)}."
        )


# -- recognising content ------------------------------------------------------------------
EBML = b"\x1a\x45\xdf\xa3"
UNSUPPORTED_BRANDS = {b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1", b"avif"}


def sniff(head: bytes) -> str | None:
    """'image' or 'video' from the magic bytes (the probe confirms it); None otherwise."""
    if head.startswith((b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a")):
        return "image"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image"
    if head[4:8] == b"ftyp":
        if head[8:12] in UNSUPPORTED_BRANDS:
            raise MediaError("HEIC and AVIF images are not supported yet: please use JPEG or PNG.")
        return "video"
    if head[4:8] in (b"moov", b"mdat", b"wide", b"free"):  # QuickTime without ftyp
        return "video"
    if head.startswith(EBML):  # WebM (other Matroska is refused by the probe)
        return "video"
    return None


# -- receiving an upload ------------------------------------------------------------------
@dataclass
class Upload:
    """One received file, on disk in the temp folder, not yet probed."""

    path: Path
    name: str
    kind: str
    size: int
    sha256: str


class _FileSink:
    """Writes the file part to a temp file: hashing on the way, deciding the kind from
    the first bytes (refusing unknown content early), enforcing the kind's size limit."""

    def __init__(self, path: Path, limits: Limits, name: str) -> None:
        self.path, self.limits, self.name = path, limits, name
        self.handle: IO[bytes] = path.open("wb")
        self.hash = hashlib.sha256()
        self.size = 0
        self.kind: str | None = None
        self.buffer = bytearray()

    async def write(self, data: bytes) -> None:
        self.size += len(data)
        self.buffer += data
        if self.kind is None and len(self.buffer) >= SNIFF_BYTES:
            self._decide()
        if self.size > self.limits.for_kind(self.kind or "video"):
            raise self.limits.too_large(self.kind or "video")
        if len(self.buffer) >= FLUSH_AT:
            await self.flush()

    def _decide(self) -> None:
        self.kind = sniff(bytes(self.buffer[:SNIFF_BYTES]))
        if self.kind is None:
            raise MediaError(NOT_MEDIA)

    async def flush(self) -> None:
        data, self.buffer = self.buffer, bytearray()
        # hashlib and file writes release the GIL: the event loop keeps serving others.
        await asyncio.to_thread(self._write, data)

    def _write(self, data: bytearray) -> None:
        self.hash.update(data)
        self.handle.write(data)

    async def finish(self) -> Upload:
        if self.size == 0:
            raise MediaError(EMPTY)
        if self.kind is None:
            self._decide()
        await self.flush()
        await asyncio.to_thread(self.handle.close)
        assert self.kind is not None
        return Upload(self.path, self.name, self.kind, self.size, self.hash.hexdigest())

    def close(self) -> None:
        self.handle.close()


def _boundary(content_type: str) -> str:
    kind, options = multipart.parse_options_header(content_type or "")
    if kind != "multipart/form-data" or not options.get("boundary"):
        raise MediaError("Send the file as multipart/form-data in a field named “file”.")
    return options["boundary"]


async def receive(
    body: AsyncIterable[bytes],
    content_type: str,
    content_length: int | None,
    settings: Settings,
) -> Upload:
    """Stream a multipart request body with one file field "file" to a temp file."""
    limits = Limits.of(settings)
    if content_length is not None and content_length > limits.request:
        raise limits.request_too_large()  # before reading anything
    parser = multipart.PushMultipartParser(
        _boundary(content_type), max_segment_count=8, max_header_count=8
    )
    folder = temp_dir(settings)
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    stream = aiter(body)
    state = _Receiving(folder, limits)
    try:
        await _consume(stream, parser, state, limits)
        if state.sink is None:
            raise MediaError("No file was sent: expected a form field named “file”.")
        return await state.sink.finish()
    except MediaError:
        state.discard()
        await _drain(stream, state.received, limits.request)
        raise
    except BaseException:
        state.discard()
        raise


@dataclass
class _Receiving:
    folder: Path
    limits: Limits
    sink: _FileSink | None = None
    in_file: bool = False
    received: int = 0
    path: Path | None = None

    def start(self, segment: multipart.MultipartSegment) -> None:
        self.in_file = segment.name == "file"
        if not self.in_file:
            return
        if self.sink is not None:
            raise MediaError("Send one file per upload.")
        self.path = self.folder / f"upload-{secrets.token_hex(8)}"
        self.sink = _FileSink(self.path, self.limits, clean_name(segment.filename))

    def discard(self) -> None:
        if self.sink is not None:
            self.sink.close()
        if self.path is not None:
            self.path.unlink(missing_ok=True)


async def _consume(
    stream: AsyncIterator[bytes],
    parser: multipart.PushMultipartParser,
    state: _Receiving,
    limits: Limits,
) -> None:
    try:
        async for chunk in stream:
            state.received += len(chunk)
            if state.received > limits.request:
                raise limits.request_too_large()
            for event in parser.parse(chunk):
                if isinstance(event, multipart.MultipartSegment):
                    state.start(event)
                elif event is None:
                    state.in_file = False
                elif state.in_file and state.sink is not None:
                    await state.sink.write(event)
            if parser.closed:
                break
        parser.close()  # raises on a stream that ended before its final boundary
    except multipart.MultipartError as exc:
        raise MediaError("The upload is not valid multipart/form-data.") from exc


async def _drain(stream: AsyncIterator[bytes], received: int, limit: int) -> None:
    """Read (and drop) the rest of a refused upload, so the client, still sending, gets
    our answer instead of a reset connection. Bounded by the request limit."""
    with contextlib.suppress(Exception):
        async for chunk in stream:
            received += len(chunk)
            if received > limit:
                return


# -- probing ------------------------------------------------------------------------------
@dataclass
class Probe:
    content_type: str
    width: int | None
    height: int | None
    duration_ms: int | None
    info: dict[str, Any]
    thumbnail: bytes | None


def probe(path: Path, kind: str) -> Probe:
    """Decide what the file really is by reading it (blocking: run it in a thread)."""
    return _probe_image(path) if kind == "image" else _probe_video(path)


def _webp(image: Any) -> bytes:
    from PIL import Image

    if image.mode not in ("RGB", "RGBA"):
        image = image.convert(
            "RGBA" if "A" in image.getbands() or "transparency" in image.info else "RGB"
        )
    image = image.copy()
    image.thumbnail(THUMB_SIZE, Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, "WEBP", quality=80)
    return buffer.getvalue()


def _probe_image(path: Path) -> Probe:
    from PIL import Image, ImageOps, UnidentifiedImageError

    formats = list(IMAGE_TYPES)
    with warnings.catch_warnings():
        # A "decompression bomb" warning becomes a refusal, not a giant allocation.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
        try:
            with Image.open(path, formats=formats) as image:
                image.verify()  # structure and checksums, without decoding
            with Image.open(path, formats=formats) as image:
                return _read_image(image, ImageOps)
        except UnidentifiedImageError as exc:
            raise MediaError(NOT_MEDIA) from exc
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            limit = MAX_IMAGE_PIXELS // 1_000_000
            raise MediaError(
                f"The image has too many pixels (at most {limit} megapixels)."
            ) from exc
        except (OSError, SyntaxError, ValueError, EOFError, IndexError) as exc:
            raise MediaError(IMAGE_DAMAGED) from exc


def _read_image(image: Any, image_ops: Any) -> Probe:
    fmt, (width, height) = image.format, image.size
    frames = getattr(image, "n_frames", 1)
    orientation = image.getexif().get(0x0112, 1)
    if frames > 1:
        for index in range(frames):  # every frame decodes: a cut animation is caught
            image.seek(index)
            image.load()
        image.seek(0)
    else:
        image.draft("RGB", THUMB_SIZE)  # JPEG decodes at a reduced scale: cheap, still complete
    image.load()  # decoding reaches the end of the data: truncation raises here
    if orientation in (5, 6, 7, 8):  # shown rotated by a quarter turn
        width, height = height, width
    thumbnail = _webp(image_ops.exif_transpose(image))
    info = {"format": fmt, "mode": image.mode, "frames": frames, "orientation": orientation}
    return Probe(IMAGE_TYPES[fmt], width, height, None, info, thumbnail)


def _probe_video(path: Path) -> Probe:
    import av

    with path.open("rb") as handle:
        head = handle.read(SNIFF_BYTES)
    # The demuxer follows the magic bytes: FFmpeg never guesses among its many formats.
    matroska = head.startswith(EBML)
    if matroska and b"webm" not in head:
        raise MediaError("Videos must be MP4, MOV or WebM.")
    try:
        container = av.open(str(path), format="matroska" if matroska else "mp4")
    except (av.FFmpegError, EOFError, OSError, ValueError) as exc:
        raise MediaError(VIDEO_DAMAGED) from exc
    with container:
        if not container.streams.video:
            raise MediaError("This file has no video track.")
        try:
            frame, packets = _scan(container)
        except (av.FFmpegError, EOFError, OSError, ValueError) as exc:
            raise MediaError(VIDEO_DAMAGED) from exc
        return _video_probe(container, _video_type(container, matroska), frame, packets)


def _video_type(container: Any, matroska: bool) -> str:
    if matroska:
        return "video/webm"
    brand = container.metadata.get("major_brand", "").strip()
    return "video/quicktime" if brand == "qt" else "video/mp4"


def _scan(container: Any) -> tuple[Any, int]:
    """Read every packet (no decoding beyond the first picture): a file cut short shows
    as corrupt or missing packets. Returns the first frame and the video packet count."""
    video = container.streams.video[0]
    frame, packets = None, 0
    for packet in container.demux():
        if packet.is_corrupt:
            raise MediaError(VIDEO_DAMAGED)
        if packet.stream is not video or not packet.size:
            continue
        packets += 1
        if frame is None:
            frame = next(iter(packet.decode()), None)
    if frame is None:
        frame = next(iter(video.codec_context.decode(None)), None)  # flush delayed frames
    if frame is None or (video.frames and packets < video.frames):
        raise MediaError(VIDEO_DAMAGED)
    return frame, packets


def _video_probe(container: Any, content_type: str, frame: Any, packets: int) -> Probe:
    import av

    video = container.streams.video[0]
    audio = container.streams.audio[0] if container.streams.audio else None
    width, height = video.codec_context.width, video.codec_context.height
    rotation = int(getattr(frame, "rotation", 0) or 0)
    if rotation % 180:  # phones store portrait video as landscape plus a rotation
        width, height = height, width
    if container.duration:
        duration_ms = int(container.duration * 1000 / av.time_base)
    elif video.duration:
        duration_ms = int(video.duration * video.time_base * 1000)
    else:
        duration_ms = None
    image = frame.to_image()
    if rotation:
        image = image.rotate(rotation, expand=True)
    info = {
        "format": container.format.name,
        "video_codec": video.codec_context.name,
        "audio_codec": audio.codec_context.name if audio else None,
        "fps": round(float(video.average_rate), 3) if video.average_rate else None,
        "frames": packets,
        "rotation": rotation,
        "bit_rate": container.bit_rate,
    }
    return Probe(content_type, width, height, duration_ms, info, _webp(image))


# -- the domain operations ----------------------------------------------------------------
async def upload(
    user_id: int,
    body: AsyncIterable[bytes],
    content_type: str,
    content_length: int | None,
    settings: Settings,
) -> Media:
    """Receive, probe, deduplicate and store one upload; returns its Media row."""
    received = await receive(body, content_type, content_length, settings)
    try:
        return await store_file(user_id, received, settings)
    finally:
        received.path.unlink(missing_ok=True)


async def store_file(user_id: int, received: Upload, settings: Settings) -> Media:
    """Probe a received file and keep it (once per user and content)."""
    found = await asyncio.to_thread(probe, received.path, received.kind)
    key = media_key(user_id, received.sha256, found.content_type)
    thumb_key = thumbnail_key(user_id, received.sha256) if found.thumbnail else None
    # The row first, then the bytes: a purge deleting the same content holds the row until
    # its files are gone, so our files are written after its deletes (see purge_orphans).
    media_id = await _upsert(user_id, received, found, key, thumb_key)
    store = get_store(settings)
    if not await store.exists(key):
        await store.save_file(key, received.path)
    if thumb_key and found.thumbnail and not await store.exists(thumb_key):
        await store.save(thumb_key, _once(found.thumbnail))
    return await Media.objects().get(Media.id == media_id)


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _upsert(
    user_id: int, received: Upload, found: Probe, key: str, thumb_key: str | None
) -> int:
    """Insert the row, or touch the existing one for the same content (so a purge that
    runs now leaves it alone)."""
    row = Media(
        {
            Media.user: user_id,
            Media.storage_key: key,
            Media.thumbnail_key: thumb_key,
            Media.original_name: received.name,
            Media.content_type: found.content_type,
            Media.bytes: received.size,
            Media.sha256: received.sha256,
            Media.width: found.width,
            Media.height: found.height,
            Media.duration_ms: found.duration_ms,
            Media.probe: found.info,
            Media.updated_at: datetime.now(UTC),
        }
    )
    result = (
        await Media.insert(row)
        .on_conflict(
            target=(Media.user, Media.sha256), action="DO UPDATE", values=[Media.updated_at]
        )
        .returning(Media.id)
    )
    return result[0]["id"]


async def get_owned(user_id: int, media_id: int) -> Media:
    """The media if it belongs to the user; NotFound otherwise (never say it exists)."""
    media = await Media.objects().get((Media.id == media_id) & (Media.user == user_id))
    if media is None:
        raise NotFound("No such media.")
    return media


async def get(media_id: int) -> Media:
    media = await Media.objects().get(Media.id == media_id)
    if media is None:
        raise NotFound("No such media.")
    return media


async def remove(user_id: int, media_id: int, settings: Settings) -> None:
    """The composer's remove button: delete an upload unless a post that is scheduled or
    already went out uses it (drafts and cancelled posts just lose it)."""
    async with Media._meta.db.transaction():
        rows = await Media.raw(
            'SELECT id FROM media WHERE id = {} AND "user" = {} FOR UPDATE', media_id, user_id
        )
        if not rows:
            raise NotFound("No such media.")
        busy = await Media.raw(
            "SELECT 1 FROM post_media pm JOIN posts p ON p.id = pm.post "
            "WHERE pm.media = {} AND p.status = ANY({}) LIMIT 1",
            media_id,
            list(KEEP_FOR),
        )
        if busy:
            raise InUse("This file is part of a scheduled or published post, so it stays.")
        await Media.raw("DELETE FROM post_media WHERE media = {}", media_id)
        deleted = await Media.raw(
            "DELETE FROM media WHERE id = {} RETURNING storage_key, thumbnail_key", media_id
        )
        await _delete_files(get_store(settings), deleted)


async def purge_orphans(
    settings: Settings, grace: timedelta | None = None, now: datetime | None = None
) -> int:
    """Delete uploads attached to no post and untouched for `grace` (row, file and
    thumbnail); returns how many. Files are deleted before the transaction commits: an
    upload of the same content waits on our row lock and writes its files after us."""
    grace = grace if grace is not None else timedelta(seconds=settings.media_orphan_grace_s)
    cutoff = (now or datetime.now(UTC)) - grace
    store, total = get_store(settings), 0
    while True:
        async with Media._meta.db.transaction():
            deleted = await Media.raw(
                "DELETE FROM media WHERE id IN (SELECT m.id FROM media m WHERE m.updated_at < {} "
                "AND NOT EXISTS (SELECT 1 FROM post_media pm WHERE pm.media = m.id) "
                "ORDER BY m.id LIMIT 200 FOR UPDATE SKIP LOCKED) "
                "RETURNING storage_key, thumbnail_key",
                cutoff,
            )
            await _delete_files(store, deleted)
        total += len(deleted)
        if len(deleted) < 200:
            break
    await asyncio.to_thread(_clean_temp, temp_dir(settings))
    return total


async def _delete_files(store: MediaStore, rows: list[dict[str, Any]]) -> None:
    for row in rows:
        for key in (row["storage_key"], row["thumbnail_key"]):
            if key:
                await store.delete(key)


def _clean_temp(folder: Path) -> None:
    if not folder.is_dir():
        return
    cutoff = time.time() - TEMP_MAX_AGE_S
    for path in folder.iterdir():
        with contextlib.suppress(OSError):
            if path.stat().st_mtime < cutoff:
                path.unlink()


# -- serving ------------------------------------------------------------------------------
def signed_path(media_id: int) -> str:
    return f"/m/{media_id}"


def signed_url(
    media: Media, settings: Settings, ttl: int | None = None, now: float | None = None
) -> str:
    """A public, short-lived URL for platforms that pull media (no session needed)."""
    path = signed_path(media.id)
    ttl = ttl if ttl is not None else settings.media_signed_url_ttl_s
    return f"{settings.public_url}{path}?{signed_query(settings.secret_key, path, ttl, now)}"


def publish_item(media: Media, settings: Settings) -> MediaItem:
    """What a publisher gets: a short-lived URL for platforms that pull (the store's own
    presigned URL when it has one, else ours), and a reader of byte ranges for platforms
    we upload to in chunks (plus the local path when the store has one)."""
    store = get_store(settings)
    key, ttl = media.storage_key, settings.media_signed_url_ttl_s
    path = store.local_path(key)
    return MediaItem(
        path=str(path) if path else "",
        url=store.signed_url(key, ttl) or signed_url(media, settings, ttl),
        content_type=media.content_type,
        bytes=media.bytes,
        sha256=media.sha256,
        width=media.width,
        height=media.height,
        duration_ms=media.duration_ms,
        reader=None if path else partial(store.open, key),
    )


def check_signed(media_id: int, expires: str, signature: str, settings: Settings) -> bool:
    return check_signature(settings.secret_key, signed_path(media_id), expires, signature)


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The (start, end) of a single `bytes=` range, inclusive; None: send everything.
    Several ranges are answered with the whole file, which HTTP allows."""
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    first, _, last = header[6:].strip().partition("-")
    try:
        if first:
            start, end = int(first), int(last) if last else size - 1
        else:
            start, end = max(size - int(last), 0), size - 1  # the last N bytes
    except ValueError:
        return None
    if start >= size or start > end or (not first and not last):
        raise RangeNotSatisfiable("Requested range not satisfiable.")
    return start, min(end, size - 1)
