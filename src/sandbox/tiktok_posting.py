"""TikTok Content Posting API: creator info, video init (FILE_UPLOAD with the Media
Transfer Guide's chunk rules, PULL_FROM_URL fetched for real), chunk PUTs, photo posts,
inbox uploads and status polling. Contract: shared/platforms.md sections 3.2-3.8."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import secrets
from typing import Any
from urllib.parse import urlsplit

import httpx
from litestar import Request, Response, post, put

from src.sandbox.state import Identity, SandboxState
from src.sandbox.tiktok_oauth import (
    PLATFORM,
    api_error,
    api_ok,
    avatar_url,
    bearer,
    rate_limited,
    sandbox,
)

API = "/tiktok/open/v2/post/publish"
MIB = 1024 * 1024
MIN_CHUNK, MAX_CHUNK, MAX_CHUNKS = 5 * MIB, 64 * MIB, 1000
MAX_VIDEO_BYTES = 4 * 1024 * MIB
MAX_PHOTO_BYTES = 20 * MIB
UPLOAD_TTL = 3600  # an upload_url is valid for one hour
DAILY_POSTS = 15  # direct posts per creator per 24 h
PRIVACY_LEVELS = ("PUBLIC_TO_EVERYONE", "MUTUAL_FOLLOW_FRIENDS", "FOLLOWER_OF_CREATOR", "SELF_ONLY")
VIDEO_TYPES = ("video/mp4", "video/quicktime", "video/webm")
TERMINAL = ("PUBLISH_COMPLETE", "SEND_TO_USER_INBOX", "FAILED")
CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")

_background: set[asyncio.Task] = set()  # strong references until each task ends


# -- small helpers -------------------------------------------------------------------------
def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _invalid(state: SandboxState, message: str) -> Response:
    return api_error(state, "invalid_params", message, 400)


def _spawn(coro: Any) -> None:
    task = asyncio.get_running_loop().create_task(coro)
    _background.add(task)
    task.add_done_callback(_background.discard)


async def _json_body(request: Request) -> dict[str, Any] | None:
    try:
        body = json.loads(await request.body() or b"null")
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_url(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def privacy_options(state: SandboxState, identity: Identity) -> list[str]:
    """Unaudited clients may only post privately; private accounts get followers instead
    of everyone."""
    if not state.config.tiktok_audited:
        return ["SELF_ONLY"]
    widest = "FOLLOWER_OF_CREATOR" if identity.extra.get("private") else "PUBLIC_TO_EVERYONE"
    return [widest, "MUTUAL_FOLLOW_FRIENDS", "SELF_ONLY"]


def media_kind(head: bytes) -> str:
    """Sniff the type by magic bytes, never by the declared Content-Type."""
    if head[4:8] == b"ftyp":
        return "video/mp4" if head[8:10] != b"qt" else "video/quicktime"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "video/webm"
    if head[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[:4] == b"\x89PNG":
        return "image/png"
    return "application/octet-stream"


async def _authorized(
    request: Request, name: str, limit: int, *scopes: str
) -> tuple[Any, Response | None]:
    """Bearer token (with one of `scopes`), then the per-user rate limit of `name`."""
    grant, refused = bearer(request, *scopes)
    if refused is not None:
        return None, refused
    return grant, rate_limited(sandbox(request), name, grant.user_id, limit)


# -- creator info --------------------------------------------------------------------------
@post(f"{API}/creator_info/query/", status_code=200)
async def creator_info(request: Request) -> Response:
    state = sandbox(request)
    grant, refused = await _authorized(request, "creator_info", 20, "video.publish")
    if refused is not None:
        return refused
    identity = state.identity(PLATFORM, grant.user_id)
    extra = identity.extra
    return api_ok(
        state,
        {
            "creator_avatar_url": avatar_url(state, identity),
            "creator_username": identity.username,
            "creator_nickname": identity.name,
            "privacy_level_options": privacy_options(state, identity),
            "comment_disabled": extra.get("comment_disabled", False),
            "duet_disabled": extra.get("duet_disabled", False),
            "stitch_disabled": extra.get("stitch_disabled", False),
            "max_video_post_duration_sec": extra.get("max_video_post_duration_sec", 600),
        },
    )


# -- validation of init requests -----------------------------------------------------------
def chunk_plan_error(video_size: Any, chunk_size: Any, total: Any) -> str | None:
    """The Media Transfer Guide: total_chunk_count = floor(video_size / chunk_size);
    chunks 5-64 MB (the last one absorbs the remainder, up to 128 MB); videos under 5 MB
    go whole; 1-1000 chunks."""
    if not all(_is_int(v) and v > 0 for v in (video_size, chunk_size, total)):
        return "video_size, chunk_size and total_chunk_count must be positive integers."
    if video_size > MAX_VIDEO_BYTES:
        return "video_size exceeds the 4 GB limit."
    if video_size < MIN_CHUNK:
        if chunk_size != video_size or total != 1:
            return (
                "A video smaller than 5 MB must be uploaded whole: chunk_size must equal "
                "video_size and total_chunk_count must be 1."
            )
        return None
    if not MIN_CHUNK <= chunk_size <= MAX_CHUNK:
        return "chunk_size must be at least 5 MB and at most 64 MB."
    if chunk_size > video_size:
        return "chunk_size must not exceed video_size."
    expected = video_size // chunk_size
    if expected > MAX_CHUNKS:
        return "total_chunk_count must be between 1 and 1000."
    if total != expected:
        return f"total_chunk_count is {total} but floor(video_size / chunk_size) is {expected}."
    return None


def _post_info_error(
    state: SandboxState, identity: Identity, info: Any, photo: bool
) -> Response | None:
    """post_info of a direct post (video or photo)."""
    if not isinstance(info, dict):
        return _invalid(state, "post_info is required.")
    title_max = 90 if photo else 2200
    for key, limit in (("title", title_max), ("description", 4000 if photo else None)):
        value = info.get(key)
        if value is None or limit is None:
            continue
        if not isinstance(value, str):
            return _invalid(state, f"{key} must be a string.")
        if utf16_len(value) > limit:
            return _invalid(state, f"{key} exceeds {limit} UTF-16 code units.")
    flags = ("disable_comment", "disable_duet", "disable_stitch", "brand_content_toggle")
    flags += ("brand_organic_toggle", "is_aigc", "auto_add_music")
    for key in flags:
        if key in info and not isinstance(info[key], bool):
            return _invalid(state, f"{key} must be a boolean.")
    cover = info.get("video_cover_timestamp_ms")
    if cover is not None and not (_is_int(cover) and cover >= 0):
        return _invalid(state, "video_cover_timestamp_ms must be a non-negative integer.")
    return _privacy_error(state, identity, info.get("privacy_level"))


def _privacy_error(state: SandboxState, identity: Identity, level: Any) -> Response | None:
    if level not in PRIVACY_LEVELS:
        return _invalid(state, "privacy_level is missing or invalid.")
    if not state.config.tiktok_audited and level != "SELF_ONLY":
        return api_error(
            state,
            "unaudited_client_can_only_post_to_private_accounts",
            "Unaudited clients can only post with privacy_level SELF_ONLY (private viewing).",
            403,
        )
    if level not in privacy_options(state, identity):
        return api_error(
            state,
            "privacy_level_option_mismatch",
            "privacy_level is not one of the creator's privacy_level_options.",
            403,
        )
    return None


def _daily_cap(state: SandboxState, user_id: str) -> Response | None:
    allowed, _, _ = state.hit(f"tiktok:posts:{user_id}", DAILY_POSTS, 86_400)
    if allowed:
        return None
    message = "The creator has reached the maximum number of posts for today."
    return api_error(state, "spam_risk_too_many_posts", message, 403)


def _source_error(state: SandboxState, source: Any) -> Response | None:
    if not isinstance(source, dict):
        return _invalid(state, "source_info is required.")
    kind = source.get("source")
    if kind == "FILE_UPLOAD":
        sizes = (
            source.get("video_size"),
            source.get("chunk_size"),
            source.get("total_chunk_count"),
        )
        problem = chunk_plan_error(*sizes)
        return _invalid(state, problem) if problem else None
    if kind == "PULL_FROM_URL":
        if not _is_url(source.get("video_url")):
            return _invalid(state, "video_url must be an absolute http(s) URL.")
        return None
    return _invalid(state, "source must be FILE_UPLOAD or PULL_FROM_URL.")


# -- publish tasks -------------------------------------------------------------------------
def _new_task(
    state: SandboxState, prefix: str, user_id: str, media: str, mode: str, body: dict
) -> dict[str, Any]:
    publish_id = f"{prefix}.{state.next_id(18)}"
    source = body["source_info"]
    pulling = source["source"] == "PULL_FROM_URL"
    return state.put(
        publish_id,
        type="tiktok_publish",
        open_id=user_id,
        media_type=media,
        post_mode=mode,
        source=source["source"],
        post_info=body.get("post_info") or {},
        status="PROCESSING_DOWNLOAD" if pulling else "PROCESSING_UPLOAD",
        fail_reason=None,
        ready_at=None,
        uploaded_bytes=0,
        downloaded_bytes=0,
        post_id=None,
        media=[],
    )


def _new_upload(state: SandboxState, task: dict[str, Any], source: dict) -> str:
    upload_id = state.next_id(16)
    token = secrets.token_urlsafe(12)
    state.put(
        upload_id,
        type="tiktok_upload",
        publish_id=task["id"],
        token=token,
        video_size=source["video_size"],
        chunk_size=source["chunk_size"],
        total_chunk_count=source["total_chunk_count"],
        uploaded=0,
        chunks=0,
        busy=False,
        detected="",
        expires_at=state.now() + UPLOAD_TTL,
    )
    return (
        f"{state.config.base_url}/tiktok/upload/video/?upload_id={upload_id}&upload_token={token}"
    )


def _start_processing(state: SandboxState, task: dict[str, Any]) -> None:
    task["ready_at"] = state.now() + state.config.processing_delay
    _spawn(_settle_when_ready(state, task))


async def _settle_when_ready(state: SandboxState, task: dict[str, Any]) -> None:
    # Polls the sandbox clock (no event to wait for: POST /admin/clock may move it ahead).
    while True:
        if state.get(task["id"]) is not task or settle(state, task):
            return
        await asyncio.sleep(min(0.05, max(0.005, task["ready_at"] - state.now())))


def _fail(task: dict[str, Any], reason: str) -> None:
    task.update(status="FAILED", fail_reason=reason)


def settle(state: SandboxState, task: dict[str, Any]) -> bool:
    """Move a task to its final state once processing time has passed. Idempotent;
    True when the task is final."""
    if task["status"] in TERMINAL:
        return True
    if task["ready_at"] is None or state.now() < task["ready_at"]:
        return False
    if task["fail_reason"]:
        _fail(task, task["fail_reason"])
    elif task["post_mode"] != "DIRECT_POST":
        task["status"] = "SEND_TO_USER_INBOX"
    else:
        _publish(state, task)
    return True


def _publish(state: SandboxState, task: dict[str, Any]) -> None:
    identity = state.identity(PLATFORM, task["open_id"])
    post_id = str(7_400_000_000_000_000_000 + int(state.next_id(15)))
    kind = "video" if task["media_type"] == "video" else "photo"
    info = task["post_info"]
    task.update(status="PUBLISH_COMPLETE", post_id=post_id)
    state.publish(
        PLATFORM,
        task["open_id"],
        kind,
        post_id,
        text=info.get("title", ""),
        description=info.get("description", ""),
        privacy_level=info.get("privacy_level"),
        publish_id=task["id"],
        url=f"{state.config.base_url}/tiktok/www/@{identity.username}/{kind}/{post_id}",
        media=task["media"],
    )


# -- pulling media ---------------------------------------------------------------------------
async def pull(url: str, limit: int, progress: Any = None) -> tuple[str, int, str, str]:
    """GET `url` for real (no redirects, as TikTok). Returns (problem, size, type, sha256)
    with problem "" | "unreachable" | "too_large"."""
    digest, head, size = hashlib.sha256(), b"", 0
    try:
        async with (
            httpx.AsyncClient(timeout=30, follow_redirects=False) as client,
            client.stream("GET", url) as response,
        ):
            if response.status_code != 200:
                return "unreachable", 0, "", ""
            async for chunk in response.aiter_bytes():
                head = head if len(head) >= 16 else (head + chunk)[:16]
                size += len(chunk)
                if size > limit:
                    return "too_large", size, media_kind(head), ""
                digest.update(chunk)
                if progress is not None:
                    progress(size)
    except httpx.HTTPError:
        return "unreachable", size, "", ""
    return "", size, media_kind(head), digest.hexdigest()


async def _pull_video(state: SandboxState, task: dict[str, Any], url: str) -> None:
    limit = min(state.config.max_pull_bytes, MAX_VIDEO_BYTES)
    problem, size, kind, sha = await pull(url, limit, lambda n: task.update(downloaded_bytes=n))
    if state.get(task["id"]) is not task:
        return  # the sandbox was reset meanwhile
    if problem:
        _fail(task, "video_pull_failed")
        return
    if kind not in VIDEO_TYPES:
        task["fail_reason"] = "file_format_check_failed"
    task["media"] = [
        {"type": "video", "url": url, "content_type": kind, "bytes": size, "sha256": sha}
    ]
    _start_processing(state, task)


async def _pull_photos(state: SandboxState, task: dict[str, Any], urls: list[str]) -> None:
    limit = min(state.config.max_pull_bytes, MAX_PHOTO_BYTES)
    results = await asyncio.gather(*(pull(url, limit) for url in urls))
    if state.get(task["id"]) is not task:
        return
    task["downloaded_bytes"] = sum(size for _, size, _, _ in results)
    reasons = {"unreachable": "photo_pull_failed", "too_large": "picture_size_check_failed"}
    for url, (problem, size, kind, sha) in zip(urls, results, strict=True):
        if problem:
            _fail(task, reasons[problem])
            return
        if kind not in ("image/jpeg", "image/webp"):  # no PNG on TikTok
            task["fail_reason"] = "file_format_check_failed"
        item = {"type": "image", "url": url, "content_type": kind, "bytes": size, "sha256": sha}
        task["media"].append(item)
    _start_processing(state, task)


# -- video init (direct post and inbox) --------------------------------------------------------
async def _video_init(request: Request, inbox: bool) -> Response:
    state = sandbox(request)
    scope = "video.upload" if inbox else "video.publish"
    name = "inbox_video_init" if inbox else "video_init"
    grant, refused = await _authorized(request, name, 6, scope)
    if refused is not None:
        return refused
    body = await _json_body(request)
    if body is None:
        return _invalid(state, "The request body must be a JSON object.")
    identity = state.identity(PLATFORM, grant.user_id)
    refused = _source_error(state, body.get("source_info"))
    if refused is None and not inbox:
        refused = _post_info_error(state, identity, body.get("post_info"), photo=False)
        refused = refused or _daily_cap(state, grant.user_id)
    if refused is not None:
        return refused
    source = body["source_info"]
    file_upload = source["source"] == "FILE_UPLOAD"
    prefix = ("v_inbox_" if inbox else "v_pub_") + ("file~v2-1" if file_upload else "url~v2")
    mode = "MEDIA_UPLOAD" if inbox else "DIRECT_POST"
    task = _new_task(state, prefix, grant.user_id, "video", mode, body)
    if file_upload:
        upload_url = _new_upload(state, task, source)
        return api_ok(state, {"publish_id": task["id"], "upload_url": upload_url})
    _spawn(_pull_video(state, task, source["video_url"]))
    return api_ok(state, {"publish_id": task["id"]})


@post(f"{API}/video/init/", status_code=200)
async def video_init(request: Request) -> Response:
    return await _video_init(request, inbox=False)


@post(f"{API}/inbox/video/init/", status_code=200)
async def inbox_video_init(request: Request) -> Response:
    return await _video_init(request, inbox=True)


# -- photo post ----------------------------------------------------------------------------------
def _photo_error(state: SandboxState, body: dict[str, Any]) -> Response | None:
    if body.get("media_type") != "PHOTO":
        return _invalid(state, "media_type must be PHOTO.")
    if body.get("post_mode") not in ("DIRECT_POST", "MEDIA_UPLOAD"):
        return _invalid(state, "post_mode must be DIRECT_POST or MEDIA_UPLOAD.")
    source = body.get("source_info")
    if not isinstance(source, dict) or source.get("source") != "PULL_FROM_URL":
        return _invalid(state, "Photo posts only support source PULL_FROM_URL.")
    images = source.get("photo_images")
    if not isinstance(images, list) or not 1 <= len(images) <= 35:
        return _invalid(state, "photo_images must hold 1 to 35 image URLs.")
    if not all(_is_url(url) for url in images):
        return _invalid(state, "Every photo_images entry must be an absolute http(s) URL.")
    cover = source.get("photo_cover_index")
    if not (_is_int(cover) and 0 <= cover < len(images)):
        return _invalid(state, "photo_cover_index must be an index into photo_images.")
    return None


@post(f"{API}/content/init/", status_code=200)
async def content_init(request: Request) -> Response:
    state = sandbox(request)
    grant, refused = await _authorized(request, "content_init", 6)
    if refused is not None:
        return refused
    body = await _json_body(request)
    if body is None:
        return _invalid(state, "The request body must be a JSON object.")
    direct = body.get("post_mode") == "DIRECT_POST"
    refused = _photo_error(state, body)
    if refused is None:  # DIRECT_POST needs video.publish, MEDIA_UPLOAD video.upload
        refused = bearer(request, "video.publish" if direct else "video.upload")[1]
    if refused is None and direct:
        identity = state.identity(PLATFORM, grant.user_id)
        refused = _post_info_error(state, identity, body.get("post_info"), photo=True)
        refused = refused or _daily_cap(state, grant.user_id)
    if refused is not None:
        return refused
    mode = body["post_mode"]
    task = _new_task(state, "p_pub_url~v2", grant.user_id, "photo", mode, body)
    _spawn(_pull_photos(state, task, body["source_info"]["photo_images"]))
    return api_ok(state, {"publish_id": task["id"]})


# -- status ------------------------------------------------------------------------------------
def status_data(task: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = {"status": task["status"]}
    if task["source"] == "FILE_UPLOAD":
        data["uploaded_bytes"] = task["uploaded_bytes"]
    else:
        data["downloaded_bytes"] = task["downloaded_bytes"]
    if task["status"] == "FAILED":
        data["fail_reason"] = task["fail_reason"]
    if task["status"] == "PUBLISH_COMPLETE":
        # Only public posts get a public id (TikTok's spelling of the key).
        public = task["post_info"].get("privacy_level") == "PUBLIC_TO_EVERYONE"
        data["publicaly_available_post_id"] = [int(task["post_id"])] if public else []
    return data


@post(f"{API}/status/fetch/", status_code=200)
async def status_fetch(request: Request) -> Response:
    state = sandbox(request)
    grant, refused = await _authorized(request, "status_fetch", 30, "video.publish", "video.upload")
    if refused is not None:
        return refused
    body = await _json_body(request)
    publish_id = (body or {}).get("publish_id")
    if not isinstance(publish_id, str) or not publish_id:
        return _invalid(state, "publish_id is required.")
    task = state.get(publish_id)
    if task is None or task.get("type") != "tiktok_publish":
        return api_error(state, "invalid_publish_id", "The publish_id does not exist.", 400)
    if task["open_id"] != grant.user_id:
        message = "The access token is not authorized for the specified publish_id."
        return api_error(state, "token_not_authorized_for_specified_publish_id", message, 400)
    settle(state, task)
    return api_ok(state, status_data(task))


# -- chunk upload (the open-upload host) ----------------------------------------------------------
def _raw(status: int, text: str = "", headers: dict | None = None) -> Response:
    return Response(text, status_code=status, media_type="text/plain", headers=headers or {})


async def _drain(request: Request) -> None:
    """Read and drop a refused body so the connection stays usable."""
    async for _ in request.stream():
        pass


def _chunk_error(upload: dict[str, Any], request: Request) -> tuple[Response | None, int]:
    """Check the headers of a chunk PUT. Returns (refusal, length)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip()
    if content_type not in VIDEO_TYPES:
        return _raw(400, "Content-Type must be video/mp4, video/quicktime or video/webm."), 0
    match = CONTENT_RANGE.fullmatch(request.headers.get("content-range", "").strip())
    length = request.headers.get("content-length", "")
    if match is None or not length.isdigit():
        return _raw(400, "Content-Range and Content-Length are required."), 0
    first, last, total = (int(g) for g in match.groups())
    if total != upload["video_size"] or last < first or last >= total:
        return _raw(400, "Content-Range does not match the video_size of the upload."), 0
    if int(length) != last - first + 1:
        return _raw(400, "Content-Length does not match Content-Range."), 0
    done = upload["uploaded"]
    if upload["busy"] or first != done or done == total:
        progress = f"bytes 0-{done - 1}/{total}" if done else f"bytes */{total}"
        return _raw(416, "Chunks must be uploaded in order.", {"Content-Range": progress}), 0
    final = upload["chunks"] == upload["total_chunk_count"] - 1
    expected = total - done if final else upload["chunk_size"]
    if int(length) != expected:
        return _raw(400, f"This chunk must be {expected} bytes long."), 0
    return None, int(length)


async def _receive_chunk(upload: dict[str, Any], request: Request) -> tuple[int, bytes]:
    upload["busy"] = True
    head, size = b"", 0
    try:
        async for piece in request.stream():
            head = head if len(head) >= 16 else (head + piece)[:16]
            size += len(piece)
    finally:
        upload["busy"] = False
    return size, head


@put("/tiktok/upload/video/", status_code=201)
async def upload_chunk(request: Request) -> Response:
    state = sandbox(request)
    params = request.query_params
    upload = state.get(params.get("upload_id") or "")
    if (
        upload is None
        or upload.get("type") != "tiktok_upload"
        or (params.get("upload_token") != upload["token"])
    ):
        await _drain(request)
        return _raw(404, "No upload task for this upload_url.")
    if state.now() > upload["expires_at"]:
        await _drain(request)
        return _raw(403, "The upload_url has expired.")
    refused, length = _chunk_error(upload, request)
    if refused is not None:
        await _drain(request)
        return refused
    size, head = await _receive_chunk(upload, request)
    if size != length:
        return _raw(400, "The body does not match Content-Length.")
    if upload["chunks"] == 0:
        upload["detected"] = media_kind(head)
    upload["uploaded"] += size
    upload["chunks"] += 1
    task = state.get(upload["publish_id"])
    if task is None:
        return _raw(404, "No upload task for this upload_url.")
    task["uploaded_bytes"] = upload["uploaded"]
    if upload["uploaded"] < upload["video_size"]:
        return _raw(206)
    _finish_upload(state, task, upload, request.headers.get("content-type", ""))
    return _raw(201)


def _finish_upload(
    state: SandboxState, task: dict[str, Any], upload: dict[str, Any], declared: str
) -> None:
    if upload["detected"] not in VIDEO_TYPES:
        task["fail_reason"] = "file_format_check_failed"
    task["media"] = [
        {
            "type": "video",
            "content_type": upload["detected"] or declared,
            "bytes": upload["uploaded"],
            "chunks": upload["chunks"],
        }
    ]
    _start_processing(state, task)


def routes() -> list:
    return [
        creator_info,
        video_init,
        inbox_video_init,
        content_init,
        status_fetch,
        upload_chunk,
    ]
