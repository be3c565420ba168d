"""The Instagram Graph API (Instagram API with Facebook Login) on graph.facebook.com:
business accounts, media containers processed asynchronously, media_publish with the
daily cap, published media, and the HTML page behind each permalink."""

from __future__ import annotations

import re
from typing import Any

from litestar import Request, Response, get
from litestar.params import FromPath

from src.sandbox.consent import render_page
from src.sandbox.meta_core import (
    VIDEO_KINDS,
    WWW_PREFIX,
    Ctx,
    GraphError,
    View,
    alive,
    as_bool,
    as_list,
    as_text,
    has_scopes,
    ig_error,
    iso,
    jpeg_size,
    media_kind,
    new_id,
    nonexisting_field,
    paginate,
    parse_fields,
    parse_time,
    pull,
    select,
    shortcode,
    spawn,
    unsupported,
)
from src.sandbox.meta_fields import IG_CONTAINER_FIELDS, IG_MEDIA_FIELDS, IG_USER_FIELDS
from src.sandbox.state import SandboxState

PLATFORM = "instagram"
MAX_IMAGE_BYTES = 8 * 1024 * 1024  # "It should be less than 8 MiB."
CAPTION_MAX, HASHTAG_MAX, MENTION_MAX = 2200, 30, 20
CONTAINER_TTL = 24 * 3600  # unpublished containers expire after 24 hours
QUOTA_WINDOW = 24 * 3600
HASHTAG = re.compile(r"#\w+")
MENTION = re.compile(r"@[\w.]+")
STATUS_TEXT = {
    "FINISHED": "Finished: Media has been uploaded and it is ready to be published.",
    "IN_PROGRESS": "In Progress: Media is still being processed.",
    "PUBLISHED": "Published: Media has been successfully published.",
    "EXPIRED": "Expired: Media was not published within 24 hours.",
}
NOT_READY = {
    "title": "Media not ready for publishing",
    "user_msg": "The media is not ready for publishing, please wait for a moment",
}


# -- access ----------------------------------------------------------------------------
def ig_access(ctx: Ctx, ig_user: dict[str, Any], publish: bool = False) -> None:
    """A user token of someone with a role on the linked Page, or that Page's token,
    with instagram_basic (plus instagram_content_publish and pages_read_engagement to post)."""
    caller = ctx.caller
    assert caller is not None
    page = ctx.state.get(ig_user["page_id"]) or {"roles": {}}
    if caller.kind == "page":
        allowed = caller.page_id == page.get("id")
    else:
        allowed = caller.kind == "user" and caller.user_id in page["roles"]
    if not allowed:
        raise unsupported(ctx.method, ctx.node_id)
    needed = ["instagram_basic"]
    if publish:
        needed += ["instagram_content_publish", "pages_read_engagement"]
    if not has_scopes(ctx.state, caller, *needed):
        raise ig_error(10, None, "(#10) Application does not have permission for this action")


def owner_of(ctx: Ctx, obj: dict[str, Any]) -> dict[str, Any]:
    owner = ctx.state.get(obj["ig_user_id"])
    if owner is None:
        raise unsupported(ctx.method, ctx.node_id)
    return owner


# -- IG users --------------------------------------------------------------------------
def published_media(state: SandboxState, ig_id: str) -> list[dict[str, Any]]:
    """Published media, newest first (each account keeps the ids of its media)."""
    ig = state.get(ig_id) or {}
    media = [state.get(media_id) or {} for media_id in reversed(ig.get("media", []))]
    return [m for m in media if m and not m["deleted"]]


def ig_user_view(state: SandboxState, ig: dict[str, Any]) -> View:
    keys = ("id", "ig_id", "username", "name", "profile_picture_url", "biography", "website")
    return {
        **{key: ig.get(key) for key in keys},
        "followers_count": ig.get("followers_count", 0),
        "follows_count": ig.get("follows_count", 0),
        "media_count": len(published_media(state, ig["id"])),
    }


def ig_user_fields(ctx: Ctx, ig_id: str, sub: str) -> dict[str, Any]:
    """For `instagram_business_account{...}` expansions on a Page."""
    ig = ctx.state.get(ig_id) or {"id": ig_id}
    return select(ig_user_view(ctx.state, ig), parse_fields(sub), ["id"], IG_USER_FIELDS, "IGUser")


async def read_ig_user(ctx: Ctx) -> dict[str, Any]:
    assert ctx.node is not None
    ig_access(ctx, ctx.node)
    return select(ig_user_view(ctx.state, ctx.node), ctx.fields, ["id"], IG_USER_FIELDS, "IGUser")


# -- containers ------------------------------------------------------------------------
def container_status(state: SandboxState, container: dict[str, Any]) -> tuple[str, str]:
    """(status_code, status): IN_PROGRESS -> FINISHED | ERROR, EXPIRED after 24 h,
    PUBLISHED after media_publish."""
    if container["media_id"]:
        return "PUBLISHED", STATUS_TEXT["PUBLISHED"]
    if container["error_subcode"]:
        return (
            "ERROR",
            f"Error: Media upload has failed with error code {container['error_subcode']}",
        )
    if state.now() >= container["created"] + CONTAINER_TTL:
        return "EXPIRED", STATUS_TEXT["EXPIRED"]
    if container["media_type"] == "CAROUSEL":
        return _carousel_status(state, container)
    if container["ready_at"] is None or state.now() < container["ready_at"]:
        return "IN_PROGRESS", STATUS_TEXT["IN_PROGRESS"]
    return "FINISHED", STATUS_TEXT["FINISHED"]


def _carousel_status(state: SandboxState, container: dict[str, Any]) -> tuple[str, str]:
    states = [container_status(state, state.get(cid) or {}) for cid in container["children"]]
    for wanted in ("ERROR", "IN_PROGRESS"):
        for code, text in states:
            if code == wanted:
                return code, text
    return "FINISHED", STATUS_TEXT["FINISHED"]


def check_caption(caption: str) -> None:
    if len(caption) > CAPTION_MAX:
        raise ig_error(
            100,
            2207010,
            f"(#100) The caption is too long: {len(caption)} characters, "
            f"at most {CAPTION_MAX} are allowed.",
            title="Caption too long",
            user_msg=f"Captions can have at most {CAPTION_MAX:,} characters.",
        )
    hashtags = len(HASHTAG.findall(caption))
    if hashtags > HASHTAG_MAX:
        raise ig_error(
            100,
            2207010,
            f"(#100) The caption has {hashtags} hashtags, at most {HASHTAG_MAX} are allowed.",
            title="Too many hashtags",
            user_msg=f"Captions can have at most {HASHTAG_MAX} hashtags.",
        )
    mentions = len(MENTION.findall(caption))
    if mentions > MENTION_MAX:
        raise ig_error(
            100,
            2207040,
            f"(#100) The caption has {mentions} @mentions, at most {MENTION_MAX} are allowed.",
            title="Too many mentions",
            user_msg=f"Captions can mention at most {MENTION_MAX} accounts.",
        )


def _new_container(ctx: Ctx, ig: dict[str, Any], media_type: str, **attrs: Any) -> dict[str, Any]:
    state = ctx.state
    defaults = {"children": [], "caption": "", "is_item": False, "url": None}
    return state.put(
        new_id(state, 17),
        _type="ig_container",
        ig_user_id=ig["id"],
        media_type=media_type,
        created=state.now(),
        ready_at=None,
        error_subcode=None,
        media_id=None,
        **{**defaults, **attrs},
    )


async def create_media(ctx: Ctx) -> dict[str, Any]:
    """POST /{ig-user-id}/media: an image, a REELS video, a carousel item or a carousel."""
    ig, params = ctx.node, ctx.params
    assert ig is not None
    ig_access(ctx, ig, publish=True)
    media_type = as_text(params, "media_type").upper()
    is_item = as_bool(params, "is_carousel_item", False)
    caption = as_text(params, "caption")
    check_caption(caption)
    if media_type == "CAROUSEL" and not is_item:
        return await _carousel(ctx, ig, caption)
    if media_type == "REELS" or (media_type == "VIDEO" and is_item):
        return _video(ctx, ig, media_type, caption, is_item)
    if media_type == "VIDEO":
        raise ig_error(
            100,
            2207023,
            "(#100) The VIDEO media type is no longer supported for single feed videos: use REELS",
            title="Unsupported media type",
        )
    if media_type in ("", "IMAGE"):
        return await _image(ctx, ig, caption, is_item)
    raise ig_error(
        100,
        2207023,
        f"(#100) The media type {media_type} is not one of the expected media types"
        + (" (STORIES are not implemented in the sandbox)" if media_type == "STORIES" else ""),
        title="Unknown media type",
    )


async def _image(ctx: Ctx, ig: dict[str, Any], caption: str, is_item: bool) -> dict[str, Any]:
    """Images are fetched while the request waits; the container is FINISHED at once."""
    url = as_text(ctx.params, "image_url")
    if not url:
        raise ig_error(100, None, "(#100) The parameter image_url is required.")
    pulled = await pull(url, MAX_IMAGE_BYTES, keep=True)
    if pulled.error == "too_large":
        raise ig_error(
            36000,
            2207004,
            "The image size is too large.",
            title="Image size too large",
            user_msg="The image is too large to download. It should be less than 8 MiB.",
        )
    if pulled.error == "timeout":
        raise ig_error(-2, 2207003, "It takes too long to download the media.", transient=True)
    if not pulled.ok:
        raise _fetch_failed(url)
    size = jpeg_size(pulled.body) if media_kind(pulled.head) == "jpeg" else None
    if size is None:
        raise ig_error(
            36001,
            2207005,
            "The image format is not supported.",
            title="Unsupported image format",
            user_msg="The image format is not supported. Only JPEG images can be published.",
        )
    width, height = size
    if width * 100 < height * 80 or width * 100 > height * 191:
        raise ig_error(
            36003,
            2207009,
            "The aspect ratio is not supported.",
            title="Invalid aspect ratio",
            user_msg=f"The submitted image with aspect ratio ('{width / height:.3g}') cannot be "
            "published. Please submit an image with a valid aspect ratio.",
        )
    container = _new_container(
        ctx, ig, "IMAGE", caption=caption, is_item=is_item, url=url, width=width, height=height
    )
    container["ready_at"] = container["created"]
    return {"id": container["id"]}


def _fetch_failed(url: str) -> GraphError:
    return ig_error(
        9004,
        2207052,
        "Only photo or video can be accepted as media type.",
        title="Media download has failed.",
        user_msg=f"The media could not be fetched from this uri: {url}",
    )


def _video(
    ctx: Ctx, ig: dict[str, Any], media_type: str, caption: str, is_item: bool
) -> dict[str, Any]:
    """Videos are fetched and processed in the background; poll status_code."""
    params = ctx.params
    url = as_text(params, "video_url")
    if not url:
        if as_text(params, "upload_type") == "resumable":
            raise ig_error(
                100, None, "(#100) upload_type=resumable is not implemented in the sandbox"
            )
        raise ig_error(100, None, "(#100) The parameter video_url is required.")
    container = _new_container(
        ctx,
        ig,
        media_type,
        caption=caption,
        is_item=is_item,
        url=url,
        share_to_feed=as_bool(params, "share_to_feed", True),
        cover_url=as_text(params, "cover_url") or None,
    )
    spawn(_fetch_video(ctx.state, container, url))
    return {"id": container["id"]}


async def _fetch_video(state: SandboxState, container: dict[str, Any], url: str) -> None:
    pulled = await pull(url, state.config.max_pull_bytes, keep=False)
    if not alive(state, container):
        return
    if pulled.error == "timeout":
        container["error_subcode"] = 2207003
    elif not pulled.ok and pulled.error != "too_large":
        container["error_subcode"] = 2207052
    elif not pulled.ok or media_kind(pulled.head) not in VIDEO_KINDS:
        container["error_subcode"] = 2207026
    else:
        container["ready_at"] = state.now() + state.config.processing_delay
        container["size"] = pulled.size


async def _carousel(ctx: Ctx, ig: dict[str, Any], caption: str) -> dict[str, Any]:
    children = as_list(ctx.params.get("children"))
    if not 2 <= len(children) <= 10:
        raise ig_error(
            100,
            2207028,
            "(#100) Carousels need between 2 and 10 photos or videos; "
            f"{len(children)} children were given.",
            title="Carousel item count",
            user_msg="Carousels need 2-10 photos or videos.",
        )
    for child_id in children:
        child = ctx.state.get(child_id) or {}
        if child.get("_type") != "ig_container" or child["ig_user_id"] != ig["id"]:
            raise ig_error(24, 2207006, f"The media with id {child_id} cannot be found.")
        if not child["is_item"]:
            raise ig_error(
                100,
                None,
                f"(#100) The media with id {child_id} was not created with is_carousel_item=true",
            )
    container = _new_container(ctx, ig, "CAROUSEL", caption=caption, children=children)
    container["ready_at"] = container["created"]
    return {"id": container["id"]}


def container_view(state: SandboxState, container: dict[str, Any]) -> View:
    status_code, status = container_status(state, container)
    return {"id": container["id"], "status_code": status_code, "status": status}


async def read_container(ctx: Ctx) -> dict[str, Any]:
    container = ctx.node
    assert container is not None
    ig_access(ctx, owner_of(ctx, container))
    view = container_view(ctx.state, container)
    return select(view, ctx.fields, ["id"], IG_CONTAINER_FIELDS, "ShadowIGMediaBuilder")


# -- publishing ------------------------------------------------------------------------
def quota_usage(state: SandboxState, ig: dict[str, Any], since: float | None = None) -> int:
    now = state.now()
    publishes = ig.setdefault("publishes", [])
    publishes[:] = [ts for ts in publishes if ts > now - QUOTA_WINDOW]  # moving window
    start = max(now - QUOTA_WINDOW, since or 0)
    return sum(1 for ts in publishes if ts > start)


async def media_publish(ctx: Ctx) -> dict[str, Any]:
    """POST /{ig-user-id}/media_publish?creation_id=<container> -> {"id": <media id>}."""
    ig, state = ctx.node, ctx.state
    assert ig is not None
    ig_access(ctx, ig, publish=True)
    creation_id = as_text(ctx.params, "creation_id")
    if not creation_id:
        raise ig_error(100, None, "(#100) The parameter creation_id is required.")
    container = state.get(creation_id) or {}
    if container.get("_type") != "ig_container" or container["ig_user_id"] != ig["id"]:
        raise ig_error(24, 2207006, f"The media with id {creation_id} cannot be found.")
    if container["is_item"]:
        raise ig_error(
            100, None, "(#100) A carousel item cannot be published on its own: publish its carousel"
        )
    _check_publishable(state, container)
    if quota_usage(state, ig) >= state.config.instagram_daily_cap:
        raise ig_error(
            9,
            2207042,
            "Application request limit reached",
            title="Reached publishing limit",
            user_msg="You reached maximum number of posts that is allowed to be published by "
            "Content Publishing API.",
        )
    media = _make_media(state, ig, container)
    return {"id": media["id"]}


def _check_publishable(state: SandboxState, container: dict[str, Any]) -> None:
    status_code, _ = container_status(state, container)
    if status_code == "FINISHED":
        return
    if status_code == "EXPIRED":
        raise ig_error(
            -2,
            2207020,
            "The media you are trying to access has expired. Please try to upload again.",
            title="Media expired",
        )
    if status_code == "PUBLISHED":
        raise ig_error(
            9007,
            2207027,
            "Media ID is not available",
            title="Media already published",
            user_msg="This container was already published; create a new container to post again.",
        )
    raise ig_error(9007, 2207027, "Media ID is not available", **NOT_READY)


MEDIA_TYPES = {"IMAGE": "IMAGE", "REELS": "VIDEO", "VIDEO": "VIDEO", "CAROUSEL": "CAROUSEL_ALBUM"}
KINDS = {"IMAGE": "image", "REELS": "reel", "CAROUSEL": "carousel"}


def _make_media(
    state: SandboxState, ig: dict[str, Any], container: dict[str, Any], parent: str | None = None
):
    code = shortcode()
    base = state.config.base_url.rstrip("/")
    media = state.put(
        new_id(state, 17),
        _type="ig_media",
        ig_user_id=ig["id"],
        caption=container["caption"] if not parent else "",
        media_type=MEDIA_TYPES[container["media_type"]],
        media_product_type="REELS" if container["media_type"] == "REELS" else "FEED",
        media_url=container["url"],
        shortcode=code,
        permalink=f"{base}{WWW_PREFIX}/instagram/p/{code}",
        timestamp=state.now(),
        children=[],
        parent_id=parent,
        deleted=False,
    )
    container["media_id"] = media["id"]
    state.flags.setdefault("instagram_shortcodes", {})[code] = media["id"]
    for child_id in container["children"]:
        child = _make_media(state, ig, state.get(child_id) or {}, parent=media["id"])
        media["children"].append(child["id"])
    if parent is None:
        ig.setdefault("publishes", []).append(state.now())
        ig.setdefault("media", []).append(media["id"])
        urls = [state.get(c)["url"] for c in container["children"]] or [container["url"]]
        state.publish(
            PLATFORM,
            ig["id"],
            KINDS[container["media_type"]],
            media["id"],
            text=container["caption"],
            url=media["permalink"],
            media=urls,
            username=ig["username"],
            container_id=container["id"],
        )
    return media


async def publishing_limit(ctx: Ctx) -> dict[str, Any]:
    """GET /{ig-user-id}/content_publishing_limit?fields=quota_usage,config."""
    ig = ctx.node
    assert ig is not None
    ig_access(ctx, ig)
    since = parse_time(ctx.params["since"]) if ctx.params.get("since") else None
    view = {
        "quota_usage": quota_usage(ctx.state, ig, since),
        "config": {
            "quota_total": ctx.state.config.instagram_daily_cap,
            "quota_duration": QUOTA_WINDOW,
        },
    }
    wanted = ctx.fields or {"quota_usage": None}
    for name in wanted:
        if name not in view:
            raise nonexisting_field(name, "ContentPublishingLimitResponse")
    return {"data": [{name: view[name] for name in wanted}]}


# -- published media -------------------------------------------------------------------
def media_view(ctx: Ctx, media: dict[str, Any]) -> View:
    state = ctx.state
    owner = state.get(media["ig_user_id"]) or {}

    def children(sub: str | None) -> dict[str, Any] | None:
        if not media["children"]:
            return None
        items = [state.get(c) or {"id": c} for c in media["children"]]
        fields = parse_fields(sub)
        return {
            "data": [
                select(media_view(ctx, c), fields, ["id"], IG_MEDIA_FIELDS, "IGMedia")
                for c in items
            ]
        }

    return {
        "id": media["id"],
        "caption": media["caption"] or None,
        "media_type": media["media_type"],
        "media_product_type": media["media_product_type"],
        "media_url": media["media_url"],
        "permalink": media["permalink"],
        "shortcode": media["shortcode"],
        "timestamp": iso(media["timestamp"]),
        "username": owner.get("username"),
        "owner": {"id": media["ig_user_id"]},
        "like_count": 0,
        "comments_count": 0,
        "is_comment_enabled": True,
        "children": children,
    }


async def read_media(ctx: Ctx) -> dict[str, Any]:
    media = ctx.node
    assert media is not None
    if media["deleted"]:
        raise unsupported(ctx.method, ctx.node_id)
    ig_access(ctx, owner_of(ctx, media))
    return select(media_view(ctx, media), ctx.fields, ["id"], IG_MEDIA_FIELDS, "IGMedia")


async def list_media(ctx: Ctx) -> dict[str, Any]:
    """GET /{ig-user-id}/media: newest first (check here before retrying a publish)."""
    ig = ctx.node
    assert ig is not None
    ig_access(ctx, ig)
    items = published_media(ctx.state, ig["id"])
    since, until = ctx.params.get("since"), ctx.params.get("until")
    if since:
        items = [m for m in items if m["timestamp"] >= (parse_time(since) or 0)]
    if until:
        items = [m for m in items if m["timestamp"] <= (parse_time(until) or 0)]
    fields = ctx.fields

    def render(media: dict[str, Any]) -> dict[str, Any]:
        return select(media_view(ctx, media), fields, ["id"], IG_MEDIA_FIELDS, "IGMedia")

    return paginate(items, ctx.params, render, ctx.link(ig["id"], "media"))


async def list_children(ctx: Ctx) -> dict[str, Any]:
    media = ctx.node
    assert media is not None
    ig_access(ctx, owner_of(ctx, media))
    result = media_view(ctx, media)["children"](ctx.params.get("fields"))
    return result or {"data": []}


async def delete_media(ctx: Ctx) -> dict[str, Any]:
    media = ctx.node
    assert media is not None
    if media["deleted"]:
        raise unsupported(ctx.method, ctx.node_id)
    ig_access(ctx, owner_of(ctx, media), publish=True)
    media["deleted"] = True
    return {"success": True}


# -- permalink page --------------------------------------------------------------------
@get(WWW_PREFIX + "/instagram/p/{code:str}", sync_to_thread=False)
def www_instagram(request: Request, code: FromPath[str]) -> Response:
    state: SandboxState = request.app.state.sandbox
    media = state.get(state.flags.get("instagram_shortcodes", {}).get(code, "")) or {}
    if not media or media["deleted"]:
        response = render_page(
            "meta_error.html",
            title="Sorry, this page isn't available.",
            message="The link you followed may be broken, or the page may have been removed.",
        )
        response.status_code = 404
        return response
    owner = state.get(media["ig_user_id"]) or {}
    children = [state.get(c) or {} for c in media["children"]]
    urls = [c.get("media_url") for c in children] or [media["media_url"]]
    return render_page(
        "meta_instagram.html",
        media=media,
        owner=owner,
        urls=urls,
        timestamp=iso(media["timestamp"]),
    )


GET_NODE = {"ig_user": read_ig_user, "ig_container": read_container, "ig_media": read_media}
GET_EDGE = {
    ("ig_user", "media"): list_media,
    ("ig_user", "content_publishing_limit"): publishing_limit,
    ("ig_media", "children"): list_children,
}
POST_EDGE = {("ig_user", "media"): create_media, ("ig_user", "media_publish"): media_publish}
DELETE_NODE = {"ig_media": delete_media}
NODE_LABELS = {"ig_user": "IGUser", "ig_container": "ShadowIGMediaBuilder", "ig_media": "IGMedia"}


def routes() -> list:
    return [www_instagram]
