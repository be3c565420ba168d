"""The small protocol every platform module implements, and the values they exchange.

Publishers know HTTP and their platform; they know nothing of the web layer or the
database. The accounts domain stores what they return (tokens encrypted)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol


def expires_at(seconds: Any) -> datetime | None:
    """An absolute expiry from a response's `expires_in`-style field (never constants)."""
    try:
        value = int(seconds)
    except (TypeError, ValueError):
        return None
    return datetime.now(UTC) + timedelta(seconds=value) if value > 0 else None


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
