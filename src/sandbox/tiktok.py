"""Sandbox fake of TikTok: Login Kit v2 (tiktok_oauth) and the Content Posting API
(tiktok_posting), plus the test identities, injected-fault wording, the avatar CDN and
the public post pages. URL layout: /tiktok/www (www.tiktok.com), /tiktok/open
(open.tiktokapis.com), /tiktok/upload (open-upload.tiktokapis.com), /tiktok/cdn."""

from __future__ import annotations

import base64

from litestar import Request, Response, get
from litestar.params import FromPath

from src.sandbox import faults, tiktok_oauth, tiktok_posting
from src.sandbox.consent import render_page
from src.sandbox.faults import register_errors, split_platform
from src.sandbox.state import FaultRule, Identity, SandboxState
from src.sandbox.tiktok_oauth import PLATFORM, api_error, log_id, oauth_error, sandbox

__all__ = ["PLATFORM", "routes", "seed"]

# An 8x8 grey JPEG, served for every avatar size.
AVATAR = base64.b64decode(
    "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDABsSFBcUERsXFhceHBsgKEIrKCUlKFE6PTBCYFVlZF9VXVtqeJmBanGQ"
    "c1tdhbWGkJ6jq62rZ4C8ybqmx5moq6T/wAALCAAIAAgBAREA/8QAFAABAAAAAAAAAAAAAAAAAAAAAv/EABQQAQAA"
    "AAAAAAAAAAAAAAAAAAD/2gAIAQEAAD8AL//Z"
)


def seed(state: SandboxState) -> None:
    """Two creators: a public account and a private one."""
    base = f"{state.config.base_url}/tiktok/cdn/avatar"
    people = [
        ("-000TomTikT0kOpenIdq7Lh9Kd4eJvXbZ2mR", "Tom TikTok", "tiktok_tom", False, {
            "union_id": "c9c60f44-a68e-4f5d-84dd-ce22faeb0ba1",
            "bio_description": "Cats, mostly.",
            "follower_count": 1234, "following_count": 56, "likes_count": 7890, "video_count": 42,
            "max_video_post_duration_sec": 600, "stitch_disabled": True,
        }),
        ("-000PriyaPr1vateOpenIdW3nTg8sYcQ5aK", "Priya Private", "priya_private", True, {
            "union_id": "7d1e2b90-3c4f-4a8e-9b21-5f6a7c8d9e01",
            "bio_description": "Friends only.",
            "follower_count": 87, "following_count": 120, "likes_count": 310, "video_count": 5,
            "max_video_post_duration_sec": 300, "duet_disabled": True,
        }),
    ]  # fmt: skip
    for open_id, name, username, private, extra in people:
        state.add_identity(
            Identity(
                platform=PLATFORM,
                id=open_id,
                name=name,
                username=username,
                avatar_url=f"{base}/{open_id}.jpeg",
                extra={"private": private, **extra},
            )
        )


def _faulted_path(rule: FaultRule) -> str:
    """The path being answered when the middleware shares it, else the rule's pattern."""
    current = getattr(faults, "CURRENT_SCOPE", None)
    scope = current.get() if current is not None else None
    return split_platform(scope["path"])[1] if scope else rule.path


def render_fault(kind: str, rule: FaultRule, state: SandboxState) -> Response:
    """Injected faults in TikTok's words: raw statuses on the upload host, flat errors on
    Login Kit endpoints, the v2 envelope everywhere else."""
    retry = {"Retry-After": str(rule.retry_after)}
    path = _faulted_path(rule)
    if path.startswith("/upload"):
        status = {"rate_limit": 429, "expired_token": 403, "revoked_token": 403}.get(kind, 500)
        return Response("", status_code=status, headers=retry if status == 429 else {})
    if "/oauth/" in path:
        if kind == "rate_limit":
            response = oauth_error(state, "temporarily_unavailable", "Too many requests.", 429)
            response.headers.update(retry)
            return response
        if kind in ("expired_token", "revoked_token"):
            return oauth_error(state, "invalid_grant", "Refresh token is invalid or expired.")
        return oauth_error(state, "server_error", "Internal server error.", 500)
    if kind == "rate_limit":
        message = tiktok_oauth.MSG_RATE
        return api_error(state, "rate_limit_exceeded", message, 429, retry)
    if kind in ("expired_token", "revoked_token"):
        return api_error(state, "access_token_invalid", tiktok_oauth.MSG_TOKEN_EXPIRED, 401)
    message = "Something went wrong. Please try again later."
    return api_error(state, "internal_error", message, 500)


register_errors(PLATFORM, render_fault)


@get("/tiktok/cdn/avatar/{file_name:str}", sync_to_thread=False)
def avatar(file_name: FromPath[str]) -> Response:
    return Response(AVATAR, media_type="image/jpeg")


@get("/tiktok/www/{handle:str}/{kind:str}/{post_id:str}", sync_to_thread=False)
def post_page(
    request: Request, handle: FromPath[str], kind: FromPath[str], post_id: FromPath[str]
) -> Response:
    """The public page of a published video or photo post."""
    state = sandbox(request)
    entry = next(
        (
            p
            for p in reversed(state.published)
            if p["platform"] == PLATFORM and p["id"] == post_id and p["kind"] == kind
        ),
        None,
    )
    identity = entry and state.identity(PLATFORM, entry["account_id"])
    if entry is None or identity is None or handle != f"@{identity.username}":
        response = render_page("tiktok_post.html", entry=None, identity=None, log_id=log_id(state))
        response.status_code = 404
        return response
    return render_page("tiktok_post.html", entry=entry, identity=identity, log_id=log_id(state))


def routes() -> list:
    return [*tiktok_oauth.routes(), *tiktok_posting.routes(), avatar, post_page]
