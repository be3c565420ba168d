"""X media upload v2: one-shot images, chunked initialize/append/finalize, status polling
while videos process, alt text. Types are checked by magic bytes, sizes like X."""

from __future__ import annotations

import base64
import binascii
import json
import math
import struct
from typing import Any

from litestar import Request, Response, get, post
from litestar.datastructures import UploadFile
from litestar.params import FromPath

from src.sandbox.state import SandboxState
from src.sandbox.x_common import ID, PLATFORM, Call, begin, validate

MB = 1024 * 1024
LIMITS = {"image": 5 * MB, "gif": 15 * MB, "video": 512 * MB, "subtitles": 5 * MB}
EXPIRES_AFTER = 86_400  # seconds a media id stays usable
HEAD_BYTES = 64 * 1024  # kept from the first segment to sniff the type and size
KEY_PREFIX = {"image": "3", "gif": "16", "video": "7", "amplify_video": "13", "subtitles": "3"}
CATEGORY_KIND = {
    "tweet_image": "image",
    "dm_image": "image",
    "tweet_gif": "gif",
    "dm_gif": "gif",
    "tweet_video": "video",
    "dm_video": "video",
    "amplify_video": "video",
    "subtitles": "subtitles",
}
MEDIA_TYPES = [
    "video/mp4", "video/webm", "video/mp2t", "video/quicktime", "text/srt", "text/vtt",
    "image/jpeg", "image/gif", "image/bmp", "image/png", "image/webp", "image/pjpeg",
    "image/tiff", "model/gltf-binary", "model/vnd.usdz+zip",
]  # fmt: skip
ONE_SHOT_CATEGORIES = [
    "tweet_image",
    "tweet_video",
    "tweet_gif",
    "dm_image",
    "dm_video",
    "dm_gif",
    "subtitles",
]
INITIALIZE = {
    "type": "object",
    "additionalProperties": False,
    "required": ["media_type", "total_bytes"],
    "properties": {
        "additional_owners": {"type": "array", "items": ID},
        "media_category": {"type": "string", "enum": list(CATEGORY_KIND)},
        "media_type": {"type": "string", "enum": MEDIA_TYPES},
        "shared": {"type": "boolean"},
        "total_bytes": {"type": "integer", "minimum": 0, "maximum": 17_179_869_184},
    },
}
ONE_SHOT = {
    "type": "object",
    "additionalProperties": False,
    "required": ["media", "media_category"],
    "properties": {
        "additional_owners": {"type": "string"},
        "media": {"type": "string"},
        "media_category": {"type": "string", "enum": ONE_SHOT_CATEGORIES},
    },
}
APPEND = {
    "type": "object",
    "additionalProperties": False,
    "required": ["media", "segment_index"],
    "properties": {
        "media": {"type": "string"},
        "segment_index": {"type": "integer", "minimum": 0, "maximum": 999},
    },
}
METADATA = {
    "type": "object",
    "required": ["id"],
    "properties": {
        "id": ID,
        "metadata": {
            "type": "object",
            "properties": {
                "alt_text": {
                    "type": "object",
                    "required": ["text"],
                    "properties": {"text": {"type": "string", "maxLength": 1000}},
                }
            },
        },
    },
}


# -- sniffing --------------------------------------------------------------------------
def sniff(head: bytes) -> str:
    """The real type of a payload from its first bytes ("" when unknown)."""
    if head[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if head[:4] == b"\x89PNG":
        return "image/png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[4:8] == b"ftyp":
        return "video/quicktime" if head[8:12] == b"qt  " else "video/mp4"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "video/webm"
    return ""


def image_size(head: bytes, image_type: str) -> tuple[int, int] | None:
    """(width, height) read from the header, when the header says it."""
    if image_type == "image/png" and len(head) >= 24:
        return struct.unpack(">II", head[16:24])
    if image_type == "image/gif" and len(head) >= 10:
        return struct.unpack("<HH", head[6:10])
    if image_type == "image/jpeg":
        return _jpeg_size(head)
    return None


def _jpeg_size(head: bytes) -> tuple[int, int] | None:
    index = 2
    while index + 9 < len(head) and head[index] == 0xFF:
        marker = head[index + 1]
        length = struct.unpack(">H", head[index + 2 : index + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame
            height, width = struct.unpack(">HH", head[index + 5 : index + 9])
            return width, height
        index += 2 + length
    return None


def payload_ok(kind: str, real_type: str) -> bool:
    if kind == "image":
        return real_type.startswith("image/")
    if kind == "gif":
        return real_type == "image/gif"
    if kind == "video":
        return real_type.startswith("video/")
    return True


# -- store -----------------------------------------------------------------------------
def heads(state: SandboxState) -> dict[str, bytes]:
    return state.flags.setdefault("x", {}).setdefault("media_heads", {})


def find_media(state: SandboxState, media_id: str, user_id: str) -> dict[str, Any] | None:
    """A live media object the user may use (owner or additional owner)."""
    media = state.get(media_id)
    if not media or media.get("platform") != PLATFORM or media.get("kind") != "media":
        return None
    if user_id != media["owner"] and user_id not in media["additional_owners"]:
        return None
    return media if media["expires_at"] > state.now() else None


def _kind(category: str | None, media_type: str) -> str:
    if category:
        return CATEGORY_KIND[category]
    if media_type == "image/gif":
        return "gif"
    return {"image": "image", "video": "video", "text": "subtitles"}.get(
        media_type.split("/")[0], "image"
    )


def _new_media(
    call: Call, media_type: str, kind: str, category: str, total: int, owners: list[str]
) -> dict:
    media_id = call.state.next_id(19)
    prefix = KEY_PREFIX["amplify_video" if category == "amplify_video" else kind]
    return call.state.put(
        media_id,
        platform=PLATFORM,
        kind="media",
        owner=call.user_id,
        additional_owners=owners,
        media_key=f"{prefix}_{media_id}",
        media_type=media_type,
        media_kind=kind,
        media_category=category,
        total_bytes=total,
        segments={},
        status="uploading",
        expires_at=call.state.now() + EXPIRES_AFTER,
        alt_text="",
    )


# -- processing ------------------------------------------------------------------------
def processing(state: SandboxState, media: dict[str, Any]) -> dict[str, Any] | None:
    """X's processing_info for async media (videos, GIFs), moved along by the clock:
    pending for the first fifth of config.processing_delay, then in_progress, then
    succeeded (or failed when the payload is not what was declared)."""
    if media["media_kind"] not in ("video", "gif"):
        return None
    delay = state.config.processing_delay
    elapsed = state.now() - media["finalized_at"]
    if elapsed >= delay:
        media["status"] = "succeeded" if media["payload_ok"] else "failed"
        return {"state": media["status"], "progress_percent": 100 if media["payload_ok"] else 50}
    wait = max(1, math.ceil(delay - elapsed))
    if elapsed < delay / 5:
        return {"state": "pending", "check_after_secs": wait}
    return {
        "state": "in_progress",
        "check_after_secs": wait,
        "progress_percent": int(100 * elapsed / delay),
    }


def describe(state: SandboxState, media: dict[str, Any]) -> dict[str, Any]:
    """The `data` object X returns for an uploaded media id."""
    data: dict[str, Any] = {
        "id": media["id"],
        "media_key": media["media_key"],
        "size": media["size"],
        "expires_after_secs": max(0, int(media["expires_at"] - state.now())),
    }
    if media["media_kind"] == "image":
        data["image"] = {"image_type": media["real_type"] or media["media_type"]}
        if media.get("dimensions"):
            data["image"]["w"], data["image"]["h"] = media["dimensions"]
    info = processing(state, media)
    if info:
        data["processing_info"] = info
        if info["state"] == "succeeded" and media["media_kind"] == "video":
            data["video"] = {"video_type": media["real_type"]}
    return data


def _finish(call: Call, media: dict[str, Any]) -> None:
    """Close the upload: check the declared size and sniff the payload."""
    size = sum(media["segments"].values())
    if not media["segments"] or size != media["total_bytes"]:
        call.invalid("Segments do not add up to provided total file size.", {"id": [media["id"]]})
    head = heads(call.state).get(media["id"], b"")
    real_type = sniff(head)
    kind = media["media_kind"]
    if kind == "image" and not payload_ok(kind, real_type):
        call.invalid("Media type unrecognized.", {"id": [media["id"]]})
    media.update(
        size=size,
        real_type=real_type,
        payload_ok=payload_ok(kind, real_type),
        dimensions=image_size(head, real_type),
        finalized_at=call.state.now(),
        status="succeeded" if kind in ("image", "subtitles") else "pending",
    )


# -- body parsing ----------------------------------------------------------------------
async def json_body(call: Call, request: Request) -> Any:
    if not request.headers.get("content-type", "").startswith("application/json"):
        call.invalid("Requests with bodies must have content-type of application/json.")
    try:
        return json.loads(await request.body())
    except ValueError:
        call.invalid("The request body is not valid JSON.")


async def media_fields(call: Call, request: Request) -> dict[str, Any]:
    """The fields of a multipart form (media as bytes) or of a JSON body (media as base64)."""
    if request.headers.get("content-type", "").startswith("application/json"):
        body = await json_body(call, request)
        if isinstance(body, dict) and isinstance(body.get("media"), str):
            try:
                body["media"] = base64.b64decode(body["media"], validate=True)
            except binascii.Error:
                call.invalid("$.media: is not a valid base64 string")
        return body
    try:
        form = await request.form()
    except (UnicodeDecodeError, ValueError):
        call.invalid("The media part must be sent as a file part of multipart/form-data.")
    fields: dict[str, Any] = {}
    for name, value in form.multi_items():
        fields[name] = await value.read() if isinstance(value, UploadFile) else value
    return fields


def _check_fields(
    call: Call, fields: Any, schema: dict[str, Any], coerce: tuple[str, ...] = ()
) -> None:
    """Validate form/JSON fields (media bytes stand in as strings; numbers from forms)."""
    if not isinstance(fields, dict):
        call.invalid(validate(fields, schema))
    shown = {k: ("" if isinstance(v, bytes) else v) for k, v in fields.items()}
    for name in coerce:
        if isinstance(shown.get(name), str) and shown[name].lstrip("-").isdigit():
            shown[name] = int(shown[name])
    errors = validate(shown, schema)
    if errors:
        call.invalid(errors)


def _check_size(call: Call, kind: str, total: int) -> None:
    if total > LIMITS[kind]:
        call.invalid(f"File size exceeds {LIMITS[kind]} bytes.", {"total_bytes": [str(total)]})


# -- endpoints -------------------------------------------------------------------------
@post("/x/api/2/media/upload/initialize", status_code=200)
async def initialize(request: Request) -> Response:
    call = begin(request, "media_init")
    body = await json_body(call, request)
    _check_fields(call, body, INITIALIZE)
    kind = _kind(body.get("media_category"), body["media_type"])
    _check_size(call, kind, body["total_bytes"])
    category = body.get("media_category") or f"tweet_{kind}"
    media = _new_media(
        call,
        body["media_type"],
        kind,
        category,
        body["total_bytes"],
        body.get("additional_owners", []),
    )
    data = {"id": media["id"], "media_key": media["media_key"], "expires_after_secs": EXPIRES_AFTER}
    return call.ok({"data": data})


def _upload(call: Call, media_id: str) -> dict[str, Any]:
    media = call.state.get(media_id)
    if not media or media.get("kind") != "media" or media.get("owner") != call.user_id:
        call.invalid(f"Media id {media_id} is invalid or expired.", {"id": [media_id]})
    if media["expires_at"] <= call.state.now():
        call.invalid(f"Media id {media_id} is invalid or expired.", {"id": [media_id]})
    return media


@post("/x/api/2/media/upload/{media_id:str}/append", status_code=200)
async def append(request: Request, media_id: FromPath[str]) -> Response:
    call = begin(request, "media_append")
    media = _upload(call, media_id)
    fields = await media_fields(call, request)
    _check_fields(call, fields, APPEND, coerce=("segment_index",))
    if media["status"] != "uploading":
        call.invalid(f"Media id {media_id} was already finalized.", {"id": [media_id]})
    chunk, index = fields["media"], int(fields["segment_index"])
    chunk = chunk if isinstance(chunk, bytes) else chunk.encode()
    media["segments"][str(index)] = len(chunk)
    if index == 0:
        heads(call.state)[media_id] = chunk[:HEAD_BYTES]
    return call.ok({"data": {"expires_at": int(media["expires_at"])}})


@post("/x/api/2/media/upload/{media_id:str}/finalize", sync_to_thread=False, status_code=200)
def finalize(request: Request, media_id: FromPath[str]) -> Response:
    call = begin(request, "media_finalize")
    media = _upload(call, media_id)
    if media["status"] == "uploading":  # finalizing again answers the same status
        _finish(call, media)
    return call.ok({"data": describe(call.state, media)})


@get("/x/api/2/media/upload", sync_to_thread=False)
def status(request: Request) -> Response:
    call = begin(request, "media_status")
    command = request.query_params.get("command", "STATUS")
    media_id = request.query_params.get("media_id", "")
    if command != "STATUS":
        call.invalid("$.command: does not have a value in the enumeration [STATUS]")
    if not media_id:
        call.invalid("The 'media_id' parameter is required.")
    media = _upload(call, media_id)
    if media["status"] == "uploading":
        call.invalid(f"Media id {media_id} has not been finalized.", {"media_id": [media_id]})
    return call.ok({"data": describe(call.state, media)})


@post("/x/api/2/media/upload", status_code=200)
async def upload(request: Request) -> Response:
    """One-shot upload of a small image (or subtitles)."""
    call = begin(request, "media_upload")
    fields = await media_fields(call, request)
    _check_fields(call, fields, ONE_SHOT)
    category, payload = fields["media_category"], fields["media"]
    payload = payload if isinstance(payload, bytes) else payload.encode()
    kind = CATEGORY_KIND[category]
    if kind not in ("image", "subtitles"):
        call.invalid(f"{category} media must be uploaded with initialize, append and finalize.")
    _check_size(call, kind, len(payload))
    owners = [o for o in str(fields.get("additional_owners", "")).split(",") if o]
    real_type = sniff(payload[:HEAD_BYTES])
    if kind == "image" and not payload_ok(kind, real_type):
        call.invalid("Media type unrecognized.", {"media": []})
    media = _new_media(
        call, real_type or "application/octet-stream", kind, category, len(payload), owners
    )
    media["segments"]["0"] = len(payload)
    heads(call.state)[media["id"]] = payload[:HEAD_BYTES]
    _finish(call, media)
    return call.ok({"data": describe(call.state, media)})


@post("/x/api/2/media/metadata", status_code=200)
async def metadata(request: Request) -> Response:
    call = begin(request, "media_metadata")
    body = await json_body(call, request)
    _check_fields(call, body, METADATA)
    media = find_media(call.state, body["id"], call.user_id)
    if media is None:
        call.invalid(f"Media id {body['id']} is invalid or expired.", {"id": [body["id"]]})
    given = body.get("metadata", {})
    media["alt_text"] = given.get("alt_text", {}).get("text", media["alt_text"])
    return call.ok({"data": {"id": media["id"], "associated_metadata": given}})


def routes() -> list:
    return [initialize, append, finalize, status, upload, metadata]
