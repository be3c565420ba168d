"""X posts: create (schema, weighted length, media, duplicates), read one, a user's recent
posts, delete; the signed-in user; and the public permalink page of a post."""

from __future__ import annotations

import json
import struct
import zlib
from datetime import UTC, datetime
from typing import Any

from litestar import Request, Response, delete, get, post
from litestar.params import FromPath

from src.sandbox.consent import render_page
from src.sandbox.state import Identity, SandboxState
from src.sandbox.tweet_length import fits
from src.sandbox.x_common import (
    ID,
    PLATFORM,
    PROBLEM_JSON,
    Call,
    XError,
    begin,
    not_found_item,
    sandbox,
    validate,
)
from src.sandbox.x_media import find_media, processing

DUPLICATE = "You are not allowed to create a Tweet with duplicate content."
HIDDEN_REPLY = "You attempted to reply to a Tweet that is deleted or not visible to you."
REPLY_SETTINGS = ["following", "mentionedUsers", "subscribers", "verified"]
OBJECT = {"type": "object"}
# CreatePostsRequest of the spec: unknown keys are refused at every level that says so.
CREATE = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "card_uri": {"type": "string"},
        "community_id": ID,
        "direct_message_deep_link": {"type": "string"},
        "edit_options": {
            "type": "object",
            "additionalProperties": False,
            "required": ["previous_post_id"],
            "properties": {"previous_post_id": ID},
        },
        "for_super_followers_only": {"type": "boolean"},
        "geo": {
            "type": "object",
            "additionalProperties": False,
            "required": ["place_id"],
            "properties": {"place_id": {"type": "string"}},
        },
        "made_with_ai": {"type": "boolean"},
        "media": {
            "type": "object",
            "additionalProperties": False,
            "required": ["media_ids"],
            "properties": {
                "call_to_actions": OBJECT,
                "description": {"type": "string"},
                "embeddable": {"type": "boolean"},
                "media_ids": {"type": "array", "minItems": 1, "maxItems": 4, "items": ID},
                "preview_media_id": ID,
                "tagged_user_ids": {"type": "array", "maxItems": 10, "items": ID},
                "title": {"type": "string"},
            },
        },
        "nullcast": {"type": "boolean"},
        "paid_partnership": {"type": "boolean"},
        "poll": {
            "type": "object",
            "additionalProperties": False,
            "required": ["options", "duration_minutes"],
            "properties": {
                "duration_minutes": {"type": "integer", "minimum": 5, "maximum": 10080},
                "options": {
                    "type": "array",
                    "minItems": 2,
                    "maxItems": 4,
                    "items": {"type": "string", "minLength": 1, "maxLength": 25},
                },
                "reply_settings": {"type": "string", "enum": REPLY_SETTINGS},
            },
        },
        "quote_tweet_id": ID,
        "reply": {
            "type": "object",
            "additionalProperties": False,
            "required": ["in_reply_to_tweet_id"],
            "properties": {
                "auto_populate_reply_metadata": {"type": "boolean"},
                "exclude_reply_user_ids": {"type": "array", "items": {"type": "string"}},
                "in_reply_to_tweet_id": ID,
            },
        },
        "reply_settings": {"type": "string", "enum": REPLY_SETTINGS},
        "share_with_followers": {"type": "boolean"},
        "text": {"type": "string"},
    },
}
MEDIA_TYPE_NAMES = {"image": "photo", "gif": "animated_gif", "video": "video", "subtitles": "photo"}
USER_FIELDS = ("created_at", "description", "profile_image_url", "protected", "url", "verified")


# -- store -----------------------------------------------------------------------------
def index(state: SandboxState) -> dict[str, Any]:
    """Per-user timelines and texts (for duplicate refusal), kept beside the objects."""
    return state.flags.setdefault("x", {}).setdefault("posts", {"timeline": {}, "texts": {}})


def find_post(state: SandboxState, post_id: str) -> dict[str, Any] | None:
    post_ = state.get(post_id)
    if not post_ or post_.get("platform") != PLATFORM or post_.get("kind") != "tweet":
        return None
    return None if post_["deleted"] else post_


def permalink(state: SandboxState, author: Identity, post_id: str) -> str:
    return f"{state.config.base_url}/x/www/{author.username}/status/{post_id}"


def iso(epoch: float) -> str:
    return (
        datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        + f"{int(epoch * 1000) % 1000:03d}Z"
    )


# -- rendering -------------------------------------------------------------------------
def _fields(request: Request, name: str) -> set[str]:
    raw = request.query_params.get(name, "")
    if name == "tweet.fields":  # the spec calls it post.fields; X's API tweet.fields
        raw += "," + request.query_params.get("post.fields", "")
    return {f for f in raw.split(",") if f}


def render_post(post_: dict[str, Any], fields: set[str]) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": post_["id"],
        "text": post_["text"],
        "edit_history_tweet_ids": post_["edit_history"],
        "edit_history_post_ids": post_["edit_history"],
    }
    optional = {
        "author_id": post_["author_id"],
        "created_at": iso(post_["created_at"]),
        "conversation_id": post_["conversation_id"],
        "in_reply_to_user_id": post_.get("in_reply_to_user_id"),
        "attachments": {"media_keys": post_["media_keys"]} if post_["media_keys"] else None,
    }
    data.update({k: v for k, v in optional.items() if k in fields and v is not None})
    return data


def render_user(state: SandboxState, user: Identity, fields: set[str]) -> dict[str, Any]:
    data = {"id": user.id, "name": user.name, "username": user.username}
    extra = {
        "profile_image_url": user.avatar_url
        or f"{state.config.base_url}/x/www/profile_images/{user.id}.png",
        "created_at": user.extra.get("created_at", "2020-01-01T00:00:00.000Z"),
        "description": user.extra.get("description", ""),
        "protected": False,
        "url": "",
        "verified": False,
    }
    data.update({k: v for k, v in extra.items() if k in fields})
    return data


def _includes(state: SandboxState, posts: list[dict[str, Any]], request: Request) -> dict[str, Any]:
    expansions = _fields(request, "expansions")
    includes: dict[str, Any] = {}
    if "author_id" in expansions:
        authors = {p["author_id"] for p in posts}
        users = [state.identity(PLATFORM, a) for a in sorted(authors)]
        includes["users"] = [
            render_user(state, u, _fields(request, "user.fields")) for u in users if u
        ]
    if "attachments.media_keys" in expansions:
        media = [state.get(m) for p in posts for m in p["media_ids"]]
        includes["media"] = [
            {"media_key": m["media_key"], "type": MEDIA_TYPE_NAMES[m["media_kind"]]}
            for m in media
            if m
        ]
    return {"includes": includes} if includes else {}


def _bad_id(call: Call, name: str, value: str) -> None:
    if validate(value, ID):
        call.invalid(
            f"The `{name}` query parameter value [{value}] does not match ^[0-9]{{1,19}}$",
            {name: [value]},
        )


# -- create ----------------------------------------------------------------------------
async def _create_body(call: Call, request: Request) -> dict[str, Any]:
    if not request.headers.get("content-type", "").startswith("application/json"):
        call.invalid("Requests with bodies must have content-type of application/json.")
    try:
        body = json.loads(await request.body())
    except ValueError:
        call.invalid("The request body is not valid JSON.")
    errors = validate(body, CREATE)
    if errors:
        call.invalid(errors)
    return body


def _check_content(call: Call, body: dict[str, Any]) -> None:
    text, media = body.get("text", ""), body.get("media")
    if not text and not media:
        call.invalid("$.text: is missing but it is required unless media is provided")
    clashing = [k for k in ("poll", "quote_tweet_id", "card_uri") if k in body]
    if media and clashing:
        call.invalid(f"$.media: is mutually exclusive with {', '.join('$.' + k for k in clashing)}")
    if not fits(text):
        call.invalid("Tweet text is too long.", {"text": [text]})


def _check_media(call: Call, media_ids: list[str]) -> list[dict[str, Any]]:
    """Every id must be the user's, unexpired and processed; 4 photos or 1 GIF or 1 video."""
    found = [find_media(call.state, m, call.user_id) for m in media_ids]
    usable = all(
        m
        and m.get("status") != "uploading"
        and (processing(call.state, m) or {}).get("state", "succeeded") == "succeeded"
        for m in found
    )
    kinds = [m["media_kind"] for m in found if m]
    single = any(k in ("video", "gif") for k in kinds) and len(kinds) > 1
    if not usable or single or len(set(media_ids)) != len(media_ids):
        call.invalid("Your media IDs are invalid.", {"media.media_ids": media_ids})
    return found  # type: ignore[return-value]


def _check_references(call: Call, body: dict[str, Any]) -> dict[str, Any] | None:
    """The post replied to must be visible; an edited post must be the user's."""
    reply_to = None
    if "reply" in body:
        reply_to = find_post(call.state, body["reply"]["in_reply_to_tweet_id"])
        if reply_to is None:
            call.refuse(403, HIDDEN_REPLY)
    previous = body.get("edit_options", {}).get("previous_post_id")
    if previous:
        edited = find_post(call.state, previous)
        if edited is None or edited["author_id"] != call.user_id:
            call.refuse(403, "You are not permitted to perform this action.")
    return reply_to


def _store(
    call: Call, body: dict[str, Any], media: list[dict[str, Any]], reply_to: dict | None
) -> dict:
    state, text = call.state, body.get("text", "")
    post_id = state.next_id(19)
    previous = find_post(state, body.get("edit_options", {}).get("previous_post_id", ""))
    post_ = state.put(
        post_id,
        platform=PLATFORM,
        kind="tweet",
        author_id=call.user_id,
        text=text,
        media_ids=[m["id"] for m in media],
        media_keys=[m["media_key"] for m in media],
        created_at=state.now(),
        conversation_id=reply_to["conversation_id"] if reply_to else post_id,
        in_reply_to_user_id=reply_to["author_id"] if reply_to else None,
        edit_history=[*(previous["edit_history"] if previous else []), post_id],
        deleted=False,
    )
    posts = index(state)
    posts["timeline"].setdefault(call.user_id, []).append(post_id)
    if text:
        posts["texts"].setdefault(call.user_id, {})[text] = post_id
    return post_


@post("/x/api/2/tweets", status_code=201)
async def create_post(request: Request) -> Response:
    call = begin(request, "tweets_create")
    body = await _create_body(call, request)
    _check_content(call, body)
    media = _check_media(call, body["media"]["media_ids"]) if "media" in body else []
    reply_to = _check_references(call, body)
    if body.get("text") and body["text"] in index(call.state)["texts"].get(call.user_id, {}):
        call.refuse(403, DUPLICATE)
    post_ = _store(call, body, media, reply_to)
    author = call.state.identity(PLATFORM, call.user_id)
    call.state.publish(
        PLATFORM,
        call.user_id,
        "tweet",
        post_["id"],
        text=post_["text"],
        url=permalink(call.state, author, post_["id"]),  # type: ignore[arg-type]
        media=post_["media_ids"],
    )
    return call.ok({"data": render_post(post_, set())}, status=201)


# -- read and delete -------------------------------------------------------------------
@get("/x/api/2/users/me", sync_to_thread=False)
def users_me(request: Request) -> Response:
    call = begin(request, "users_me")
    user = call.state.identity(PLATFORM, call.user_id)
    if user is None:  # the identity was removed after the token was issued
        call.refuse(401)
    return call.ok({"data": render_user(call.state, user, _fields(request, "user.fields"))})


@get("/x/api/2/tweets/{post_id:str}", sync_to_thread=False)
def get_post(request: Request, post_id: FromPath[str]) -> Response:
    call = begin(request, "tweets_get")
    _bad_id(call, "id", post_id)
    post_ = find_post(call.state, post_id)
    if post_ is None:  # X answers 200 with the problem in `errors`
        return call.ok({"errors": [not_found_item("tweet", "id", post_id)]})
    data = render_post(post_, _fields(request, "tweet.fields"))
    return call.ok({"data": data, **_includes(call.state, [post_], request)})


def _timeline_query(call: Call, request: Request) -> tuple[int, dict[str, float]]:
    """Page size and id/time bounds of a timeline request, refused like X when malformed."""
    params = request.query_params
    raw = params.get("max_results", "10")
    if not raw.isdigit() or not 5 <= int(raw) <= 100:
        call.invalid(
            f"The `max_results` query parameter value [{raw}] is not between 5 and 100",
            {"max_results": [raw]},
        )
    bounds: dict[str, float] = {}
    for name in ("since_id", "until_id"):
        if name in params:
            _bad_id(call, name, params[name])
            bounds[name] = int(params[name])
    for name in ("start_time", "end_time"):
        if name in params:
            try:
                bounds[name] = datetime.fromisoformat(params[name]).timestamp()
            except ValueError:
                call.invalid(
                    f"Invalid '{name}':'{params[name]}'. '{name}' must be an ISO 8601 date-time."
                )
    if "pagination_token" in params:
        try:
            bounds["until_id"] = min(
                bounds.get("until_id", 10**19), int(params["pagination_token"], 36)
            )
        except ValueError:
            call.invalid(
                "The `pagination_token` query parameter value is not valid",
                {"pagination_token": []},
            )
    return int(raw), bounds


def _in_bounds(post_: dict[str, Any], bounds: dict[str, float], no_replies: bool) -> bool:
    number, created = int(post_["id"]), post_["created_at"]
    return (
        number > bounds.get("since_id", -1)
        and number < bounds.get("until_id", 10**19)
        and bounds.get("start_time", 0) <= created <= bounds.get("end_time", float("inf"))
        and not (no_replies and post_.get("in_reply_to_user_id"))
    )


@get("/x/api/2/users/{user_id:str}/tweets", sync_to_thread=False)
def user_posts(request: Request, user_id: FromPath[str]) -> Response:
    """A user's most recent posts, newest first (what a publisher checks before a retry)."""
    call = begin(request, "users_tweets")
    _bad_id(call, "id", user_id)
    size, bounds = _timeline_query(call, request)
    if call.state.identity(PLATFORM, user_id) is None:
        return call.ok({"errors": [not_found_item("user", "id", user_id)]})
    no_replies = "replies" in _fields(request, "exclude")
    ids = reversed(index(call.state)["timeline"].get(user_id, []))
    posts = [
        p
        for p in map(call.state.get, ids)
        if p and not p["deleted"] and _in_bounds(p, bounds, no_replies)
    ]
    page, more = posts[:size], len(posts) > size
    if not page:
        return call.ok({"meta": {"result_count": 0}})
    meta = {"result_count": len(page), "newest_id": page[0]["id"], "oldest_id": page[-1]["id"]}
    if more:
        meta["next_token"] = _base36(int(page[-1]["id"]))
    fields = _fields(request, "tweet.fields")
    body = {"data": [render_post(p, fields) for p in page], "meta": meta}
    return call.ok({**body, **_includes(call.state, page, request)})


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while number:
        number, rest = divmod(number, 36)
        out = digits[rest] + out
    return out or "0"


@delete("/x/api/2/tweets/{post_id:str}", sync_to_thread=False, status_code=200)
def delete_post(request: Request, post_id: FromPath[str]) -> Response:
    call = begin(request, "tweets_delete")
    _bad_id(call, "id", post_id)
    post_ = find_post(call.state, post_id)
    if post_ is None:
        problem = {**not_found_item("tweet", "id", post_id), "status": 404}
        raise XError(
            Response(problem, status_code=404, media_type=PROBLEM_JSON, headers=call.headers)
        )
    if post_["author_id"] != call.user_id:
        call.refuse(403, "You are not allowed to delete this Tweet.")
    post_["deleted"] = True
    texts = index(call.state)["texts"].get(call.user_id, {})
    if texts.get(post_["text"]) == post_id:
        del texts[post_["text"]]
    return call.ok({"data": {"deleted": True}})


# -- public pages ----------------------------------------------------------------------
@get("/x/www/{username:str}/status/{post_id:str}", sync_to_thread=False)
def permalink_page(request: Request, username: FromPath[str], post_id: FromPath[str]) -> Response:
    state = sandbox(request)
    post_ = find_post(state, post_id)
    author = state.identity(PLATFORM, post_["author_id"]) if post_ else None
    if post_ is None or author is None:
        page = render_page("x_missing.html")
        page.status_code = 404
        return page
    media = [state.get(m) for m in post_["media_ids"]]
    media_view = [
        {
            "kind": MEDIA_TYPE_NAMES[m["media_kind"]],
            "id": m["id"],
            "media_type": m.get("real_type") or m["media_type"],
            "size": m.get("size", 0),
            "alt_text": m.get("alt_text", ""),
        }
        for m in media
        if m
    ]
    return render_page(
        "x_post.html",
        post=post_,
        author=author,
        media=media_view,
        created_at=iso(post_["created_at"]),
    )


def _png(rgb: tuple[int, int, int], size: int = 48) -> bytes:
    """A plain square PNG, the avatar every sandbox identity shows as profile_image_url."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    rows = b"".join(b"\0" + bytes(rgb) * size for _ in range(size))
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


AVATAR = _png((29, 155, 240))


@get("/x/www/profile_images/{name:str}", sync_to_thread=False)
def avatar(name: FromPath[str]) -> Response:
    return Response(AVATAR, media_type="image/png")


def routes() -> list:
    return [create_post, users_me, get_post, user_posts, delete_post, permalink_page, avatar]
