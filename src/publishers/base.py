"""The small protocol every platform module implements, and the values they exchange.

Publishers know HTTP and their platform; they know nothing of the web layer or the
database. The accounts domain stores what they return (tokens encrypted)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from src import http
from src.filechunks import file_chunks


def expires_at(seconds: Any) -> datetime | None:
    """An absolute expiry from a response's `expires_in`-style field (never constants)."""
    try:
        value = int(seconds)
    except (TypeError, ValueError):
        return None
    return datetime.now(UTC) + timedelta(seconds=value) if value > 0 else None


def json_object(response: http.Response) -> dict[str, Any]:
    """A response's JSON object; {} for anything else (an HTML error page, a list)."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def network_error(platform: str, error: Exception) -> PlatformError:
    """A timeout or a connection failure: transient, retried later."""
    what = "timed out" if isinstance(error, http.TimeoutException) else "could not be reached"
    message = f"{platform} {what} ({type(error).__name__})."
    return PlatformError("transient", message, code="network")


def oauth_token_set(body: dict[str, Any], scopes: list[str]) -> TokenSet:
    """The tokens of an OAuth 2.0 token response (RFC 6749 §5.1 names)."""
    return TokenSet(
        access_token=body["access_token"],
        refresh_token=body.get("refresh_token") or None,
        access_expires_at=expires_at(body.get("expires_in")),
        refresh_expires_at=expires_at(body.get("refresh_expires_in")),
        scopes=scopes,
    )


@dataclass
class Endpoints:
    """Where a platform lives and which app credentials we use there."""

    client_id: str
    client_secret: str
    auth_url: str  # the browser-facing host (consent dialog)
    api_url: str  # the API host
    version: str = ""  # Graph API version, for Meta
    upload_url: str = ""


@dataclass
class TokenSet:
    access_token: str
    refresh_token: str | None = None
    access_expires_at: datetime | None = None
    refresh_expires_at: datetime | None = None
    scopes: list[str] = field(default_factory=list)


@dataclass
class DiscoveredAccount:
    """An account the person can connect, as found at the platform after consent."""

    platform: str
    external_id: str
    handle: str
    display_name: str
    avatar_url: str
    tokens: TokenSet
    facebook_page_id: str | None = None
    instagram_business_id: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class AuthorizationRequest:
    """Where to send the browser, and what to keep server-side for the callback."""

    url: str
    state: str
    code_verifier: str | None = None


class ConnectError(Exception):
    """A connect flow that cannot finish; the message is shown to the person as is."""


class PlatformError(Exception):
    """A platform refused or failed a call.

    kind: "auth" (token invalid or expired: refresh once, then reconnect),
          "rate_limited" (defer until retry_after), "transient" (retry with backoff),
          "permanent" (show the message; do not retry)."""

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        code: str = "",
        retry_after: float | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.code = code
        self.retry_after = retry_after
        self.status = status


class Publisher(Protocol):
    """One platform. `platform` is the account platform it connects ("facebook",
    "instagram", "tiktok", "x"); `scopes` are the scopes the privacy policy names."""

    platform: str
    title: str
    scopes: list[str]
    refreshable: bool

    def authorization(self, redirect_uri: str) -> AuthorizationRequest:
        """The consent URL with a fresh state (and PKCE verifier where supported)."""
        ...

    async def connect(
        self, params: dict[str, str], redirect_uri: str, code_verifier: str | None
    ) -> list[DiscoveredAccount]:
        """Exchange the callback's code, check granted scopes (ConnectError naming the
        missing ones), and discover the accounts the person can connect."""
        ...

    async def refresh(self, tokens: TokenSet) -> TokenSet:
        """New tokens from the refresh token (raises PlatformError(kind="auth") when
        the refresh token is dead)."""
        ...

    async def revoke(self, tokens: TokenSet, account: DiscoveredAccount) -> None:
        """Revoke our access at the platform (raises PlatformError on failure)."""
        ...


# -- publishing ---------------------------------------------------------------------------
# A reader of bytes start..end (inclusive; None: to the end) of a stored file, in pieces.
RangeReader = Callable[[int, int | None], AsyncIterator[bytes]]


@dataclass
class MediaItem:
    """One attached file. Platforms that pull media get `url` (short-lived and signed);
    platforms we upload to read its bytes through chunks(): from the media store's
    `reader` when it has no local file (an S3 bucket), else from `path` on disk."""

    path: str
    url: str
    content_type: str  # decided from the content, e.g. image/jpeg, video/mp4
    bytes: int
    sha256: str
    width: int | None = None
    height: int | None = None
    duration_ms: int | None = None
    reader: RangeReader | None = field(default=None, repr=False, compare=False)

    @property
    def is_video(self) -> bool:
        return self.content_type.startswith("video/")

    @property
    def readable(self) -> bool:
        """Whether its bytes can be uploaded (not only pulled by URL)."""
        return bool(self.path) or self.reader is not None

    async def size(self) -> int:
        """The real size: a local file's own (the declared one may be stale), else the
        stored object's, recorded when it was stored."""
        if self.reader is not None:
            return self.bytes
        return await asyncio.to_thread(os.path.getsize, self.path)

    def chunks(self, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Bytes start..end (inclusive; None: to the end), never the whole file at once."""
        if self.reader is not None:
            return self.reader(start, end)
        return file_chunks(self.path, start, end)

    async def read(self, start: int = 0, end: int | None = None) -> bytes:
        """Bytes start..end in one piece: for a bounded range (one upload segment)."""
        return b"".join([chunk async for chunk in self.chunks(start, end)])


@dataclass
class PublishRequest:
    """Everything one target needs: the account at the platform, its tokens, the text
    (already resolved from the post or the override), media and per-platform options."""

    target_id: int
    text: str
    media: list[MediaItem]
    options: dict[str, Any]
    account: DiscoveredAccount  # external_id, facebook_page_id, instagram_business_id, meta
    tokens: TokenSet


@dataclass
class StepResult:
    """What a publish attempt reached. `progress` always holds every platform id made
    so far (container, publish_id, media ids). Not done: come back in `wait_s`."""

    progress: dict[str, Any]
    done: bool = False
    platform_post_id: str | None = None
    url: str | None = None
    wait_s: float = 0.0


class Unconfirmed(Exception):
    """The irreversible step may or may not have happened and the platform cannot tell
    us: the target becomes `unconfirmed`, shown to the person, never retried blindly."""


# checkpoint(progress) stores progress durably before the publisher goes on.
Checkpoint = Any  # Callable[[dict[str, Any]], Awaitable[None]]


class PublishingPublisher(Protocol):
    """The publish side of a platform module (the same object as Publisher).

    publish(): run from `progress` as far as possible. Call `await checkpoint(progress)`
    after each intermediate platform id is known, and, right BEFORE the irreversible
    call that makes the post public (tweet create, media_publish, feed/photos/videos
    POST, TikTok init), set progress["attempting"] = "<step name>" and checkpoint it.
    Clear it (and set the result ids) once the call answered. Return StepResult(done=True,
    platform_post_id, url) when public; StepResult(done=False, wait_s=N) while the
    platform processes; raise PlatformError for failures (kind decides retry/fail).

    recover(): called instead of blindly retrying when progress["attempting"] is set
    (a crash or a timeout during the irreversible call). Look at the platform (container
    status, TikTok status/fetch, the account's recent posts matching the text/marker):
    return StepResult(done=True, …) when the post exists, None when it certainly does not
    (safe to publish again), raise Unconfirmed when it cannot know."""

    async def publish(
        self, request: PublishRequest, progress: dict[str, Any], checkpoint: Checkpoint
    ) -> StepResult: ...

    async def recover(
        self, request: PublishRequest, progress: dict[str, Any]
    ) -> StepResult | None: ...
