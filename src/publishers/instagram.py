"""Instagram business accounts through the Instagram API with Facebook Login: the same
Facebook Login as the Facebook publisher, then the Instagram business account linked to
each granted Page. Contract: shared/platforms.md sections 1.2 and 2.

Token fields, as the accounts domain stores them:
- `access_token` is the long-lived Facebook USER token. The IG Container and IG User
  Media references (platforms.md section 2) name a User access token with
  instagram_basic + instagram_content_publish + pages_read_engagement for content
  publishing; a Page token works only "in practice", so we keep to the documented one.
  It lives ~60 days (`expires_in` of the exchange), after which the person reconnects.
- `refresh_token` holds the same user token, the one used to revoke (DELETE
  /me/permissions) and to discover again; Meta has no refresh grant."""

from __future__ import annotations

import asyncio
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

PLATFORM = "instagram"
TITLE = "Instagram"
# pages_show_list lists the Pages behind which the business accounts sit;
# pages_read_engagement is required by media_publish.
SCOPES = [
    "pages_show_list",
    "pages_read_engagement",
    "instagram_basic",
    "instagram_content_publish",
]
IG_FIELDS = "id,username,name,profile_picture_url"
NO_ACCOUNT = (
    "No Instagram business account is linked to the Facebook Pages you granted. "
    "Link one in Meta Business Suite, then reconnect."
)


class InstagramPublisher:
    platform = PLATFORM
    title = TITLE
    scopes = SCOPES
    refreshable = False  # Meta has no refresh: reconnect before the ~60-day expiry

    def __init__(self, endpoints: Endpoints, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.graph = Graph(endpoints, "Instagram", timeout)
        self.login = FacebookLogin(self.graph, SCOPES, TITLE)

    def authorization(self, redirect_uri: str) -> AuthorizationRequest:
        return self.login.authorization(redirect_uri)

    async def connect(
        self, params: dict[str, str], redirect_uri: str, code_verifier: str | None
    ) -> list[DiscoveredAccount]:
        user = await self.login.user_token(params, redirect_uri)
        try:
            pages = await self.graph.pages(user.value, "id,name")
            found = await asyncio.gather(*(self._behind(page, user) for page in pages))
        except PlatformError as error:
            raise self.login.discovery_failed("find your Instagram accounts", error) from error
        accounts = [account for account in found if account is not None]
        if not accounts:
            raise ConnectError(NO_ACCOUNT)
        return accounts

    async def _behind(self, page: dict[str, Any], user: UserToken) -> DiscoveredAccount | None:
        """The business account linked to one Page (platforms.md 2.1), or None."""
        page_id = str(page["id"])
        node = await self.graph.get(page_id, user.value, fields="instagram_business_account")
        ig_id = (node.get("instagram_business_account") or {}).get("id")
        if not ig_id:
            return None
        ig = await self.graph.get(str(ig_id), user.value, fields=IG_FIELDS)
        username = str(ig.get("username") or ig_id)
        return DiscoveredAccount(
            platform=PLATFORM,
            external_id=str(ig.get("id") or ig_id),
            handle=username,
            display_name=str(ig.get("name") or username),
            avatar_url=str(ig.get("profile_picture_url") or ""),
            tokens=TokenSet(
                access_token=user.value,
                refresh_token=user.value,
                access_expires_at=user.expires_at,
                refresh_expires_at=user.expires_at,
                scopes=list(user.granted),
            ),
            facebook_page_id=page_id,
            instagram_business_id=str(ig_id),
            meta={
                "page_name": str(page.get("name") or ""),
                "user_token_expires_at": user.expires_iso,
                "user_id": user.user_id,
            },
        )

    async def refresh(self, tokens: TokenSet) -> TokenSet:
        raise self.login.cannot_refresh(tokens)

    async def revoke(self, tokens: TokenSet, account: DiscoveredAccount) -> None:
        await self.login.revoke(tokens.refresh_token or tokens.access_token)


def make(endpoints: Endpoints, timeout: float = DEFAULT_TIMEOUT) -> InstagramPublisher:
    return InstagramPublisher(endpoints, timeout)
