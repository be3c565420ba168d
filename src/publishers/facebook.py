"""Facebook Pages: Facebook Login (code -> short-lived -> long-lived user token), the
permission check through /me/permissions, and one account per Page from /me/accounts
with its Page token. Contract: shared/platforms.md section 1.

Token fields, as the accounts domain stores them:
- `access_token` is the PAGE token (what publishing to the Page needs). Page tokens
  derived from a long-lived user token have no expiry of their own, so the user token's
  expiry (~60 days, from `expires_in`) is recorded as the account's access expiry.
- `refresh_token` holds the long-lived USER token. Meta has no refresh grant; we keep it
  only to revoke (DELETE /me/permissions) and to discover Pages again. It is never sent
  anywhere else."""

from __future__ import annotations

from typing import Any

from src.publishers.base import (
    AuthorizationRequest,
    ConnectError,
    DiscoveredAccount,
    Endpoints,
    PlatformError,
    TokenSet,
)
from src.publishers.meta_common import DEFAULT_TIMEOUT, FacebookLogin, Graph, UserToken

PLATFORM = "facebook"
TITLE = "Facebook Page"
SCOPES = ["pages_show_list", "pages_read_engagement", "pages_manage_posts", "publish_video"]
PAGE_FIELDS = "id,name,access_token,tasks,picture,instagram_business_account"
PUBLISH_TASK = "CREATE_CONTENT"  # the Page task that allows posting as the Page


class FacebookPublisher:
    platform = PLATFORM
    title = TITLE
    scopes = SCOPES
    refreshable = False  # Meta has no refresh: reconnect before the ~60-day expiry

    def __init__(self, endpoints: Endpoints, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.graph = Graph(endpoints, "Facebook", timeout)
        self.login = FacebookLogin(self.graph, SCOPES, TITLE)

    def authorization(self, redirect_uri: str) -> AuthorizationRequest:
        return self.login.authorization(redirect_uri)

    async def connect(
        self, params: dict[str, str], redirect_uri: str, code_verifier: str | None
    ) -> list[DiscoveredAccount]:
        user = await self.login.user_token(params, redirect_uri)
        try:
            pages = await self.graph.pages(user.value, PAGE_FIELDS)
        except PlatformError as error:
            raise self.login.discovery_failed("list your Facebook Pages", error) from error
        accounts = [_account(page, user) for page in pages if page.get("access_token")]
        if not accounts:
            raise ConnectError(
                "Facebook shared no Pages with OKKTOPUS. When Facebook asks which Pages to "
                "use, choose at least one you manage, then reconnect."
            )
        return accounts

    async def refresh(self, tokens: TokenSet) -> TokenSet:
        raise self.login.cannot_refresh(tokens)

    async def revoke(self, tokens: TokenSet, account: DiscoveredAccount) -> None:
        # The Page token cannot deauthorize the app; the user token (refresh_token) can.
        await self.login.revoke(tokens.refresh_token)


def _account(page: dict[str, Any], user: UserToken) -> DiscoveredAccount:
    page_id, name = str(page["id"]), str(page.get("name") or page["id"])
    tasks = [str(task) for task in page.get("tasks") or []]
    linked = page.get("instagram_business_account") or {}
    meta: dict[str, Any] = {
        "tasks": tasks,
        # Listed all the same so the picker can explain why it cannot be chosen.
        "can_publish": PUBLISH_TASK in tasks,
        "user_token_expires_at": user.expires_iso,
        "user_id": user.user_id,
    }
    if linked.get("id"):
        meta["linked_instagram_id"] = str(linked["id"])
    return DiscoveredAccount(
        platform=PLATFORM,
        external_id=page_id,
        handle=name,
        display_name=name,
        avatar_url=_picture_url(page),
        tokens=TokenSet(
            access_token=str(page["access_token"]),
            refresh_token=user.value,
            access_expires_at=user.expires_at,
            refresh_expires_at=user.expires_at,
            scopes=list(user.granted),
        ),
        facebook_page_id=page_id,
        meta=meta,
    )


def _picture_url(node: dict[str, Any]) -> str:
    """`picture` is {"data": {"url": ...}} on Graph nodes."""
    picture = node.get("picture") or {}
    data = picture.get("data") if isinstance(picture, dict) else None
    return str((data or {}).get("url") or "")


def make(endpoints: Endpoints, timeout: float = DEFAULT_TIMEOUT) -> FacebookPublisher:
    return FacebookPublisher(endpoints, timeout)
