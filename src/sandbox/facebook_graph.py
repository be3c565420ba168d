"""The Facebook Pages part of the Graph API: users, /me/accounts with Page tokens, Page
feed/photos/videos publishing, the resumable upload API, posts, and the HTML pages
behind permalinks."""

from __future__ import annotations

import base64
import json
import re
import secrets
from typing import Any

from litestar import Request, Response, get
from litestar.datastructures import UploadFile
from litestar.params import FromPath

from src.sandbox.consent import render_page
from src.sandbox.meta_core import (
    IMAGE_KINDS,
    PLATFORM,
    VIDEO_KINDS,
    WWW_PREFIX,
    Caller,
    Ctx,
    GraphError,
    View,
    alive,
    as_bool,
    as_text,
    has_scopes,
    iso,
    jpeg_size,
    media_kind,
    new_id,
    nonexisting_field,
    paginate,
    parse_time,
    pull,
    select,
    spawn,
    unsupported,
    wait_until,
)
from src.sandbox.meta_fields import (
    PAGE_FIELDS,
    PHOTO_FIELDS,
    POST_FIELDS,
    USER_FIELDS,
    VIDEO_FIELDS,
)
from src.sandbox.state import SandboxState

PAGE_TOKEN_SHORT_TTL = 3600  # Page tokens from a short-lived user token: one hour
ALL_TASKS = ["ANALYZE", "ADVERTISE", "MODERATE", "CREATE_CONTENT", "MANAGE"]
UPLOAD_TYPES = {"application/pdf", "image/jpeg", "image/jpg", "image/png", "video/mp4"}
PUBLISH_DENIED = (
    "(#200) If posting to a group, requires app being installed in the group, and either "
    "publish_to_groups permission with user token, or both pages_read_engagement and "
    "pages_manage_posts permission with page token; If posting to a page, requires both "
    "pages_read_engagement and pages_manage_posts as an admin with sufficient administrative "
    "permission"
)
READ_DENIED = (
    "(#10) This endpoint requires the 'pages_read_engagement' permission or the 'Page Public "
    "Content Access' feature. Refer to "
    "https://developers.facebook.com/docs/apps/review/login-permissions#manage-pages and "
    "https://developers.facebook.com/docs/apps/review/feature#reference-PAGES_ACCESS for details."
)
VIDEO_FETCH_FAILED = {
    "code": 6000,
    "message": "There was a problem uploading your video file. Please try again with another file.",
}
VIDEO_BAD_FORMAT = {
    "code": 352,
    "message": "Sorry, the video file you selected is in a format that we don't support.",
}


def caller_of(ctx: Ctx) -> Caller:
    assert ctx.caller is not None
    return ctx.caller


def permalink(state: SandboxState, object_id: str) -> str:
    return f"{state.config.base_url.rstrip('/')}{WWW_PREFIX}/{object_id}"


def picture(state: SandboxState, object_id: str) -> dict[str, Any]:
    url = f"{state.config.base_url.rstrip('/')}{WWW_PREFIX}/avatar/{object_id}"
    return {"data": {"height": 50, "is_silhouette": False, "url": url, "width": 50}}


# -- users -----------------------------------------------------------------------------
def user_view(ctx: Ctx, user: dict[str, Any]) -> View:
    email_ok = has_scopes(ctx.state, caller_of(ctx), "email")
    return {
        "id": user["id"],
        "name": user["name"],
        "first_name": user["name"].split()[0],
        "last_name": user["name"].split()[-1],
        "short_name": user["name"].split()[0],
        "email": user.get("email") if email_ok else None,
        "picture": lambda sub: picture(ctx.state, user["id"]),
    }


async def read_user(ctx: Ctx) -> dict[str, Any]:
    caller = caller_of(ctx)
    if caller.kind == "user" and caller.user_id != ctx.node_id:
        raise unsupported("get", ctx.node_id)
    view = user_view(ctx, ctx.node or {})
    return select(view, ctx.fields, ["name", "id"], USER_FIELDS, "User")


# -- pages and Page tokens -------------------------------------------------------------
def managed_pages(state: SandboxState, user_id: str) -> list[dict[str, Any]]:
    pages = [state.get(page_id) or {} for page_id in state.flags.get("facebook_pages", [])]
    return [page for page in pages if user_id in page.get("roles", {})]


def page_token(state: SandboxState, caller: Caller, page: dict[str, Any]) -> str | None:
    """The Page token a user token yields: no expiry from a long-lived user token, one
    hour from a short-lived one. Reused while it lives, as Graph does."""
    grant = caller.grant
    if caller.kind != "user" or grant is None or caller.user_id not in page["roles"]:
        return None
    cache: dict[str, str] = grant.extra.setdefault("page_tokens", {})
    current = cache.get(page["id"])
    if current and state.lookup(current, PLATFORM, "access")[0] is not None:
        return current
    ttl = None if grant.extra.get("long") else PAGE_TOKEN_SHORT_TTL
    token = state.issue(
        PLATFORM,
        "access",
        grant.user_id,
        grant.client_id,
        grant.scopes,
        ttl,
        prefix="EAA",
        type="page",
        page_id=page["id"],
        parent=grant.value,
    )
    cache[page["id"]] = token.value
    return token.value


def page_view(ctx: Ctx, page: dict[str, Any]) -> View:
    state, caller = ctx.state, caller_of(ctx)
    ig_id = page.get("ig_user_id")

    def instagram(sub: str | None) -> dict[str, Any] | None:
        if not ig_id:
            return None
        if sub is None:
            return {"id": ig_id}
        from src.sandbox.instagram_graph import ig_user_fields

        return ig_user_fields(ctx, ig_id, sub)

    return {
        **{
            k: page.get(k) for k in ("id", "name", "category", "category_list", "username", "about")
        },
        "fan_count": page.get("fan_count", 0),
        "followers_count": page.get("followers_count", 0),
        "link": permalink(state, page["id"]),
        "is_published": True,
        "picture": lambda sub: picture(state, page["id"]),
        "instagram_business_account": instagram,
        "connected_instagram_account": instagram,
        "access_token": lambda sub: page_token(state, caller, page),
        "tasks": page["roles"].get(caller.user_id) if caller.kind == "user" else None,
    }


async def read_page(ctx: Ctx) -> dict[str, Any]:
    assert ctx.node is not None
    return select(page_view(ctx, ctx.node), ctx.fields, ["name", "id"], PAGE_FIELDS, "Page")


async def list_accounts(ctx: Ctx) -> dict[str, Any]:
    caller = caller_of(ctx)
    if caller.kind == "page":
        raise nonexisting_field("accounts", "Page")
    if caller.kind == "user" and caller.user_id != ctx.node_id:
        raise unsupported("get", ctx.node_id)
    # Without pages_show_list Graph answers with an empty list rather than an error.
    pages = (
        managed_pages(ctx.state, ctx.node_id)
        if has_scopes(ctx.state, caller, "pages_show_list")
        else []
    )
    default = ["access_token", "category", "category_list", "name", "id", "tasks"]
    fields = ctx.fields

    def render(page: dict[str, Any]) -> dict[str, Any]:
        return select(page_view(ctx, page), fields, default, PAGE_FIELDS, "Page")

    return paginate(pages, ctx.params, render, ctx.link(ctx.node_id, "accounts"))


# -- who may read and publish ----------------------------------------------------------
def require_reader(ctx: Ctx) -> None:
    if not has_scopes(ctx.state, caller_of(ctx), "pages_read_engagement"):
        raise GraphError(10, READ_DENIED)


def require_publisher(ctx: Ctx, page: dict[str, Any], video: bool = False) -> None:
    """A Page token of this Page, from a person with the CREATE_CONTENT task, with
    pages_manage_posts + pages_read_engagement (and publish_video for videos)."""
    caller = caller_of(ctx)
    if caller.kind != "page" or caller.page_id != page["id"]:
        raise GraphError(200, PUBLISH_DENIED)
    if "CREATE_CONTENT" not in page["roles"].get(caller.user_id or "", []):
        raise GraphError(200, PUBLISH_DENIED)
    if not has_scopes(ctx.state, caller, "pages_manage_posts", "pages_read_engagement"):
        raise GraphError(200, PUBLISH_DENIED)
    if video and not has_scopes(ctx.state, caller, "publish_video"):
        raise GraphError(200, "(#200) Subject does not have permission to post videos on this page")


def schedule_time(ctx: Ctx, published: bool) -> float | None:
    """scheduled_publish_time: only with published=false, 10 minutes to 30 days ahead."""
    raw = ctx.params.get("scheduled_publish_time")
    if raw in (None, ""):
        return None
    if published:
        raise GraphError(
            100, "(#100) You cannot specify a scheduled publish time on a published post"
        )
    when, now = parse_time(raw), ctx.state.now()
    if when is None or when < now + 600 or when > now + 30 * 86400:
        raise GraphError(100, "(#100) The specified scheduled publish time is invalid.")
    return when


# -- posts -----------------------------------------------------------------------------
def create_post(
    state: SandboxState,
    page: dict[str, Any],
    *,
    kind: str,
    message: str = "",
    link: str = "",
    media: list[str] | None = None,
    attachments: list[str] | None = None,
    published: bool = True,
    when: float | None = None,
    publish_id: str | None = None,
) -> dict[str, Any]:
    now = state.now()
    post = state.put(
        f"{page['id']}_{new_id(state)}",
        _type="fb_post",
        page_id=page["id"],
        kind=kind,
        message=message,
        link=link,
        media=media or [],
        attachments=attachments or [],
        created=now,
        updated=now,
        scheduled=when,
        is_published=False,
        deleted=False,
        publish_id=publish_id,
    )
    page.setdefault("posts", []).append(post["id"])
    if published:
        go_live(state, post)
    elif when is not None:
        state.flags.setdefault("facebook_scheduled", []).append(post["id"])
    return post


def go_live(state: SandboxState, post: dict[str, Any]) -> None:
    post["is_published"] = True
    post["created"] = post["updated"] = post["scheduled"] or state.now()
    page = state.get(post["page_id"]) or {}
    page["last_post_id"] = post["id"]
    page.setdefault("feed", []).append(post["id"])
    state.publish(
        PLATFORM,
        post["page_id"],
        post["kind"],
        post["publish_id"] or post["id"],
        text=post["message"],
        url=permalink(state, post["id"]),
        media=list(post["media"]),
        page_name=page.get("name", ""),
        post_id=post["id"],
    )


def release_due(state: SandboxState) -> None:
    """Scheduled posts go live once the (possibly advanced) clock passes their time."""
    pending: list[str] = state.flags.get("facebook_scheduled") or []
    if not pending:
        return
    now = state.now()
    for post_id in list(pending):
        post = state.get(post_id)
        if post is None or post["deleted"]:
            pending.remove(post_id)
        elif post["scheduled"] <= now:
            pending.remove(post_id)
            go_live(state, post)


def page_posts(state: SandboxState, page_id: str, published: bool = True) -> list[dict[str, Any]]:
    """The Page's posts, newest first. Each Page keeps the ids of its posts in the order
    they went live ("feed"), and of all its posts ("posts") for the scheduled ones."""
    page = state.get(page_id) or {}
    if published:
        posts = [state.get(post_id) or {} for post_id in reversed(page.get("feed", []))]
        return [post for post in posts if post and not post["deleted"]]
    posts = [state.get(post_id) or {} for post_id in page.get("posts", [])]
    pending = [
        p for p in posts if p and not p["deleted"] and not p["is_published"] and p["scheduled"]
    ]
    return sorted(pending, key=lambda post: post["scheduled"])


def post_view(ctx: Ctx, post: dict[str, Any]) -> View:
    state = ctx.state
    page = state.get(post["page_id"]) or {}
    media_type = {"photo": "photo", "video": "video"}.get(post["kind"])
    status_type = {"photo": "added_photos", "video": "added_video"}.get(
        post["kind"], "shared_story" if post["link"] else "mobile_status_update"
    )
    attachments = [{"media_type": media_type, "target": {"id": a}} for a in post["attachments"]]
    return {
        "id": post["id"],
        "message": post["message"] or None,
        "created_time": iso(post["created"]),
        "updated_time": iso(post["updated"]),
        "permalink_url": permalink(state, post["id"]),
        "is_published": post["is_published"],
        "scheduled_publish_time": int(post["scheduled"]) if post["scheduled"] else None,
        "from": {"name": page.get("name"), "id": post["page_id"]},
        "status_type": status_type,
        "full_picture": post["media"][0] if post["kind"] == "photo" and post["media"] else None,
        "attachments": (lambda sub: {"data": attachments}) if attachments else None,
        "link": post["link"] or None,
    }


async def read_post(ctx: Ctx) -> dict[str, Any]:
    require_reader(ctx)
    assert ctx.node is not None
    view = post_view(ctx, ctx.node)
    return select(view, ctx.fields, ["created_time", "message", "id"], POST_FIELDS, "Post")


async def list_feed(ctx: Ctx) -> dict[str, Any]:
    """GET /{page-id}/feed|posts|published_posts: newest first; scheduled_posts too."""
    require_reader(ctx)
    posts = page_posts(ctx.state, ctx.node_id, published=ctx.edge != "scheduled_posts")
    fields = ctx.fields

    def render(post: dict[str, Any]) -> dict[str, Any]:
        return select(
            post_view(ctx, post), fields, ["created_time", "message", "id"], POST_FIELDS, "Post"
        )

    return paginate(posts, ctx.params, render, ctx.link(ctx.node_id, ctx.edge or "feed"))


def attached_ids(params: dict[str, Any]) -> list[str]:
    """attached_media as a JSON array, or as attached_media[0]=..., attached_media[1]=..."""
    items: list[Any] = []
    raw = params.get("attached_media")
    if raw:
        parsed = json.loads(raw) if isinstance(raw, str) else raw
        items.extend(parsed if isinstance(parsed, list) else [parsed])
    indexed = [k for k in params if re.fullmatch(r"attached_media\[\d+\]", k)]
    for key in sorted(indexed, key=lambda k: int(k[15:-1])):
        items.append(params[key])
    ids = []
    for item in items:
        entry = json.loads(item) if isinstance(item, str) and item.startswith("{") else item
        if not isinstance(entry, dict) or "media_fbid" not in entry:
            raise GraphError(
                100, "(#100) param attached_media must be an array of {media_fbid} objects"
            )
        ids.append(str(entry["media_fbid"]))
    return ids


def _attachable(ctx: Ctx, page_id: str, ids: list[str]) -> list[dict[str, Any]]:
    photos = []
    for index, photo_id in enumerate(ids):
        photo = ctx.state.get(photo_id)
        if (
            photo is None
            or photo.get("_type") != "fb_photo"
            or photo["page_id"] != page_id
            or photo["published"]
            or photo["post_id"]
        ):
            raise GraphError(
                100, f"(#100) param attached_media[{index}] must be a valid unpublished photo id"
            )
        photos.append(photo)
    return photos


async def post_feed(ctx: Ctx) -> dict[str, Any]:
    page = ctx.node
    assert page is not None
    require_publisher(ctx, page)
    params = ctx.params
    message, link = as_text(params, "message"), as_text(params, "link")
    try:
        photos = _attachable(ctx, page["id"], attached_ids(params))
    except ValueError as exc:
        raise GraphError(100, "(#100) param attached_media must be valid JSON") from exc
    if not (message or link or photos):
        raise GraphError(100, "(#100) Missing message or attachment")
    if link and not re.match(r"https?://", link):
        raise GraphError(100, "(#100) The parameter link is not a valid URL")
    published = as_bool(params, "published", True)
    when = schedule_time(ctx, published)
    if published:
        _refuse_duplicate(ctx.state, page["id"], message, link)
    post = create_post(
        ctx.state,
        page,
        kind="photo" if photos else "text",
        message=message,
        link=link,
        media=[p["url"] for p in photos] or ([link] if link else []),
        attachments=[p["id"] for p in photos],
        published=published,
        when=when,
    )
    for photo in photos:
        photo["post_id"] = post["id"]
    return {"id": post["id"]}


def _refuse_duplicate(state: SandboxState, page_id: str, message: str, link: str) -> None:
    """Graph refuses the same status twice in a row on a Page (code 506)."""
    page = state.get(page_id) or {}
    latest = state.get(page.get("last_post_id") or "")
    if message and latest and latest["message"] == message and latest["link"] == link:
        raise GraphError(
            506,
            "(#506) Duplicate status message",
            title="Duplicate Post",
            user_msg="You can't post the same content twice in a row.",
        )


async def delete_object(ctx: Ctx) -> dict[str, Any]:
    """DELETE /{post-id} (also a photo or video): needs that Page's token."""
    obj = ctx.node
    assert obj is not None
    page = ctx.state.get(obj["page_id"]) or {}
    require_publisher(ctx, page)
    obj["deleted"] = True
    post = ctx.state.get(obj.get("post_id") or "")
    if post is not None and obj.get("_type") != "fb_post":
        post["deleted"] = True
    return {"success": True}


# -- photos ----------------------------------------------------------------------------
INVALID_IMAGE = "(#324) Missing or invalid image file"


async def _photo_bytes(ctx: Ctx) -> tuple[bytes, str | None]:
    """The photo's bytes: pulled from `url` for real, or the multipart `source` field."""
    url, source = ctx.params.get("url"), ctx.params.get("source")
    if isinstance(source, UploadFile):
        return await source.read(), None
    if not url:
        raise GraphError(324, "(#324) Requires upload file")
    pulled = await pull(str(url), ctx.state.config.max_pull_bytes, keep=True)
    if not pulled.ok:
        raise GraphError(
            324, INVALID_IMAGE, user_msg=f"The image at {url} could not be downloaded."
        )
    return pulled.body, str(url)


async def post_photo(ctx: Ctx) -> dict[str, Any]:
    page, state, params = ctx.node, ctx.state, ctx.params
    assert page is not None
    require_publisher(ctx, page)
    data, url = await _photo_bytes(ctx)
    kind = media_kind(data[:64])
    if kind not in IMAGE_KINDS:
        raise GraphError(324, INVALID_IMAGE)
    published = as_bool(params, "published", True)
    when = schedule_time(ctx, published)
    photo_id = new_id(state)
    if url is None:  # keep uploaded bytes so the permalink page can show them
        state.flags.setdefault("facebook_media", {})[photo_id] = (data, f"image/{kind}")
        url = f"{state.config.base_url.rstrip('/')}{WWW_PREFIX}/media/{photo_id}"
    width, height = (jpeg_size(data) if kind == "jpeg" else None) or (None, None)
    caption = as_text(params, "caption") or as_text(params, "message")
    photo = state.put(
        photo_id,
        _type="fb_photo",
        page_id=page["id"],
        caption=caption,
        url=url,
        width=width,
        height=height,
        published=published or when is not None,
        created=state.now(),
        deleted=False,
        post_id=None,
    )
    if not photo["published"]:
        return {"id": photo_id}
    post = create_post(
        state,
        page,
        kind="photo",
        message=caption,
        media=[url],
        attachments=[photo_id],
        published=published,
        when=when,
    )
    photo["post_id"] = post["id"]
    return {"id": photo_id, "post_id": post["id"]}


def photo_view(ctx: Ctx, photo: dict[str, Any]) -> View:
    image = {"height": photo["height"], "width": photo["width"], "source": photo["url"]}
    return {
        "id": photo["id"],
        "created_time": iso(photo["created"]),
        "name": photo["caption"] or None,
        "link": permalink(ctx.state, photo["post_id"]) if photo["post_id"] else None,
        "page_story_id": photo["post_id"],
        "width": photo["width"],
        "height": photo["height"],
        "images": [image],
        "from": {"id": photo["page_id"]},
    }


async def read_photo(ctx: Ctx) -> dict[str, Any]:
    require_reader(ctx)
    assert ctx.node is not None
    return select(
        photo_view(ctx, ctx.node), ctx.fields, ["created_time", "id"], PHOTO_FIELDS, "Photo"
    )


# -- videos ----------------------------------------------------------------------------
async def post_video(ctx: Ctx) -> dict[str, Any]:
    page, state, params = ctx.node, ctx.state, ctx.params
    assert page is not None
    require_publisher(ctx, page, video=True)
    if params.get("upload_phase"):
        raise GraphError(
            100,
            "(#100) upload_phase (the legacy chunked upload) is not implemented in the sandbox: "
            "use the resumable upload API (POST /{app-id}/uploads)",
        )
    file_url, handle, source = (
        params.get("file_url"),
        params.get("fbuploader_video_file_chunk"),
        params.get("source"),
    )
    upload = _handle_upload(ctx, str(handle)) if handle else None
    if not (file_url or upload or isinstance(source, UploadFile)):
        raise GraphError(
            100, "(#100) No video: pass file_url, source or fbuploader_video_file_chunk"
        )
    published = as_bool(params, "published", True)
    when = schedule_time(ctx, published)
    video = state.put(
        new_id(state),
        _type="fb_video",
        page_id=page["id"],
        title=as_text(params, "title"),
        description=as_text(params, "description"),
        published=published,
        scheduled=when,
        created=state.now(),
        source=str(file_url or handle or "upload"),
        bytes=0,
        upload_status="in_progress",
        upload_error=None,
        processing_error=None,
        ready_at=None,
        finalized=False,
        deleted=False,
        post_id=None,
    )
    if file_url:
        spawn(_fetch_video(state, video, str(file_url)))
    elif upload is not None:
        _start_processing(state, video, bytes.fromhex(upload["head"]), upload["offset"])
        spawn(_settle(state, video))
    else:
        assert isinstance(source, UploadFile)
        data = await source.read()
        _start_processing(state, video, data[:64], len(data))
        spawn(_settle(state, video))
    return {"id": video["id"]}


def _handle_upload(ctx: Ctx, handle: str) -> dict[str, Any]:
    ref = ctx.state.get(handle)
    upload = ctx.state.get(ref["upload_id"]) if ref and ref.get("_type") == "fb_handle" else None
    if upload is None or upload["offset"] != upload["file_length"]:
        raise GraphError(
            100, "(#100) Invalid fbuploader_video_file_chunk: unknown or incomplete upload handle"
        )
    return upload


def _start_processing(state: SandboxState, video: dict[str, Any], head: bytes, size: int) -> None:
    video["bytes"], video["upload_status"] = size, "complete"
    if media_kind(head) not in VIDEO_KINDS:
        video["processing_error"] = VIDEO_BAD_FORMAT
    else:
        video["ready_at"] = state.now() + state.config.processing_delay


async def _fetch_video(state: SandboxState, video: dict[str, Any], url: str) -> None:
    pulled = await pull(url, state.config.max_pull_bytes, keep=False)
    if not alive(state, video):
        return
    if not pulled.ok:
        video["upload_status"], video["upload_error"] = "error", VIDEO_FETCH_FAILED
        return
    _start_processing(state, video, pulled.head, pulled.size)
    await _settle(state, video)


async def _settle(state: SandboxState, video: dict[str, Any]) -> None:
    if video["ready_at"] is not None:
        await wait_until(state, video["ready_at"])
        if alive(state, video):
            finalize_video(state, video)


def finalize_video(state: SandboxState, video: dict[str, Any]) -> None:
    """Once processed, the video's post goes out (now, or at its scheduled time)."""
    ready_at = video["ready_at"]
    if video["finalized"] or ready_at is None or state.now() < ready_at:
        return
    video["finalized"] = True
    if not (video["published"] or video["scheduled"]):
        return
    page = state.get(video["page_id"]) or {}
    when = video["scheduled"]
    post = create_post(
        state,
        page,
        kind="video",
        message=video["description"] or video["title"],
        media=[video["source"]],
        attachments=[video["id"]],
        published=video["published"] or (when is not None and when <= state.now()),
        when=when,
        publish_id=video["id"],
    )
    video["post_id"] = post["id"]


def video_status(state: SandboxState, video: dict[str, Any]) -> dict[str, Any]:
    finalize_video(state, video)
    upload_error, processing_error = video["upload_error"], video["processing_error"]
    uploading: dict[str, Any] = {
        "status": video["upload_status"],
        "bytes_transferred": video["bytes"],
    }
    if upload_error:
        uploading = {"status": "error", "errors": [upload_error]}
    ready = video["finalized"]
    if processing_error:
        processing: dict[str, Any] = {"status": "error", "errors": [processing_error]}
    elif ready:
        processing = {"status": "complete"}
    else:
        processing = {
            "status": "in_progress" if video["upload_status"] == "complete" else "not_started"
        }
    published = bool(video["post_id"]) and (state.get(video["post_id"]) or {}).get("is_published")
    publishing: dict[str, Any] = {"status": "complete" if ready else "not_started"}
    publishing["publish_status"] = "published" if published else "not_published"
    overall = "error" if upload_error or processing_error else "ready" if ready else "processing"
    return {
        "video_status": overall,
        "uploading_phase": uploading,
        "processing_phase": processing,
        "publishing_phase": publishing,
    }


def video_view(ctx: Ctx, video: dict[str, Any]) -> View:
    state = ctx.state
    return {
        "id": video["id"],
        "title": video["title"] or None,
        "description": video["description"] or None,
        "created_time": iso(video["created"]),
        "updated_time": iso(video["created"]),
        "published": video["published"],
        "scheduled_publish_time": int(video["scheduled"]) if video["scheduled"] else None,
        "status": lambda sub: video_status(state, video),
        "post_id": video["post_id"],
        "permalink_url": permalink(state, video["post_id"]) if video["post_id"] else None,
        "source": video["source"],
        "from": {"id": video["page_id"]},
    }


async def read_video(ctx: Ctx) -> dict[str, Any]:
    assert ctx.node is not None
    view = video_view(ctx, ctx.node)
    return select(view, ctx.fields, ["updated_time", "description", "id"], VIDEO_FIELDS, "Video")


async def list_videos(ctx: Ctx) -> dict[str, Any]:
    """GET /{page-id}/videos: the Page's videos, newest first, processing or not (a
    publisher checks here whether a video it may have sent already exists)."""
    require_reader(ctx)
    videos = [
        obj
        for obj in ctx.state.objects.values()
        if obj.get("_type") == "fb_video"
        and obj.get("page_id") == ctx.node_id
        and not obj.get("deleted")
    ]
    videos.sort(key=lambda video: video["created"], reverse=True)

    def render(video: dict[str, Any]) -> dict[str, Any]:
        return select(
            video_view(ctx, video),
            ctx.fields,
            ["updated_time", "description", "id"],
            VIDEO_FIELDS,
            "Video",
        )

    return paginate(videos, ctx.params, render, ctx.link(ctx.node_id, "videos"))


# -- resumable upload API --------------------------------------------------------------
async def create_upload(ctx: Ctx) -> dict[str, Any]:
    """POST /{app-id}/uploads?file_name&file_length&file_type -> {"id": "upload:<id>"}."""
    caller, params = caller_of(ctx), ctx.params
    if caller.kind == "app" or ctx.node_id != caller.app_id:
        raise unsupported("post", ctx.node_id)
    try:
        length = int(params.get("file_length") or 0)
    except ValueError:
        length = 0
    if length <= 0:
        raise GraphError(
            100, "(#100) The parameter file_length is required and must be a positive integer"
        )
    file_type = as_text(params, "file_type")
    if file_type not in UPLOAD_TYPES:
        raise GraphError(
            100, f"(#100) Param file_type must be one of {{{', '.join(sorted(UPLOAD_TYPES))}}}"
        )
    session = "upload:" + base64.urlsafe_b64encode(secrets.token_bytes(18)).decode()
    ctx.state.put(
        session,
        _type="fb_upload",
        app_id=caller.app_id,
        user_id=caller.user_id,
        file_name=as_text(params, "file_name") or "file",
        file_length=length,
        file_type=file_type,
        offset=0,
        head="",
        handle=None,
    )
    return {"id": session}


def _own_upload(ctx: Ctx) -> dict[str, Any]:
    upload = ctx.node
    assert upload is not None
    if caller_of(ctx).user_id != upload["user_id"]:
        raise unsupported(ctx.method, ctx.node_id)
    return upload


async def read_upload(ctx: Ctx) -> dict[str, Any]:
    upload = _own_upload(ctx)
    return {"id": upload["id"], "file_offset": upload["offset"]}


async def upload_chunk(ctx: Ctx) -> dict[str, Any]:
    """POST /upload:<id> with header file_offset and the raw bytes as body."""
    upload = _own_upload(ctx)
    raw = ctx.request.headers.get("file_offset") or ctx.params.get("file_offset")
    if raw is None or not str(raw).isdigit():
        raise GraphError(100, "(#100) The file_offset header is required")
    if int(raw) != upload["offset"]:
        raise GraphError(
            100, f"(#100) Invalid file_offset {raw}: the upload continues at {upload['offset']}"
        )
    head, received = bytes.fromhex(upload["head"]), 0
    async for chunk in ctx.request.stream():
        if len(head) < 64:
            head += chunk[: 64 - len(head)]
        received += len(chunk)
    if upload["offset"] + received > upload["file_length"]:
        raise GraphError(100, "(#100) The uploaded bytes exceed file_length")
    upload["offset"] += received
    upload["head"] = head.hex()
    if upload["offset"] < upload["file_length"]:
        return {"id": upload["id"], "file_offset": upload["offset"]}
    if not upload["handle"]:
        name = base64.urlsafe_b64encode(upload["file_name"].encode()).decode()
        upload["handle"] = f"4:{name}:{upload['file_type']}:{secrets.token_urlsafe(24)}"
        ctx.state.put(upload["handle"], _type="fb_handle", upload_id=upload["id"])
    return {"h": upload["handle"]}


# -- HTML pages behind permalinks ------------------------------------------------------
def _not_found() -> Response:
    response = render_page(
        "meta_error.html",
        title="This content isn't available right now",
        message="When this happens, it's usually because the owner deleted it.",
    )
    response.status_code = 404
    return response


@get(WWW_PREFIX + "/{object_id:str}", sync_to_thread=False)
def www_object(request: Request, object_id: FromPath[str]) -> Response:
    state: SandboxState = request.app.state.sandbox
    release_due(state)  # a scheduled post's permalink works once its time has come
    obj = state.get(object_id) or {}
    if obj.get("_type") == "page":
        posts = page_posts(state, object_id)[:50]
        return render_page("meta_page.html", page=obj, posts=[_post_ctx(state, p) for p in posts])
    if obj.get("_type") != "fb_post" or obj["deleted"] or not obj["is_published"]:
        return _not_found()
    return render_page("meta_post.html", post=_post_ctx(state, obj), page=state.get(obj["page_id"]))


def _post_ctx(state: SandboxState, post: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": post["id"],
        "kind": post["kind"],
        "message": post["message"],
        "link": post["link"],
        "media": post["media"],
        "created_time": iso(post["created"]),
        "url": permalink(state, post["id"]),
    }


@get(WWW_PREFIX + "/media/{media_id:str}", sync_to_thread=False)
def www_media(request: Request, media_id: FromPath[str]) -> Response:
    stored = request.app.state.sandbox.flags.get("facebook_media", {}).get(media_id)
    if stored is None:
        return _not_found()
    data, content_type = stored
    return Response(data, media_type=content_type)


@get(WWW_PREFIX + "/avatar/{object_id:str}", sync_to_thread=False)
def www_avatar(request: Request, object_id: FromPath[str]) -> Response:
    """A small SVG with the person's or Page's initials."""
    state: SandboxState = request.app.state.sandbox
    obj = state.get(object_id) or {}
    name = obj.get("name") or obj.get("username") or "?"
    initials = "".join(word[0] for word in str(name).split()[:2]).upper()
    svg = (
        '<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100">'
        '<rect width="100" height="100" rx="50" fill="#1877f2"/>'
        '<text x="50" y="62" font-size="36" text-anchor="middle" fill="#fff" '
        f'font-family="sans-serif">{initials}</text></svg>'
    )
    return Response(svg, media_type="image/svg+xml")


GET_NODE = {
    "user": read_user,
    "page": read_page,
    "fb_post": read_post,
    "fb_photo": read_photo,
    "fb_video": read_video,
    "fb_upload": read_upload,
}
GET_EDGE = {
    ("user", "accounts"): list_accounts,
    ("page", "feed"): list_feed,
    ("page", "posts"): list_feed,
    ("page", "published_posts"): list_feed,
    ("page", "scheduled_posts"): list_feed,
    ("page", "videos"): list_videos,
}
POST_NODE = {"fb_upload": upload_chunk}
POST_EDGE = {
    ("page", "feed"): post_feed,
    ("page", "photos"): post_photo,
    ("page", "videos"): post_video,
    ("app", "uploads"): create_upload,
}
DELETE_NODE = {"fb_post": delete_object, "fb_photo": delete_object, "fb_video": delete_object}
NODE_LABELS = {
    "user": "User",
    "page": "Page",
    "fb_post": "Post",
    "fb_photo": "Photo",
    "fb_video": "Video",
    "fb_upload": "Upload",
    "app": "Application",
}


def routes() -> list:
    return [www_media, www_avatar, www_object]
