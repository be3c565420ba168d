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
  /me/permissions) and to discover again; Meta has no refresh grant.

Publishing (platforms.md 2.2 and 2.3): a container per post (a carousel's items first,
each with is_carousel_item=true), polled until FINISHED, then media_publish, the one
irreversible call, then the permalink. Every container id is in `progress` before the
next step; media_publish is bracketed by progress["attempting"] (meta_publish.py), and
recover() asks the container itself whether it was published."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

from src.publishers.base import (
    AuthorizationRequest,
    Checkpoint,
    ConnectError,
    DiscoveredAccount,
    Endpoints,
    MediaItem,
    PlatformError,
    PublishRequest,
    StepResult,
    TokenSet,
    Unconfirmed,
)
from src.publishers.meta_common import DEFAULT_TIMEOUT, FacebookLogin, Graph, GraphError, UserToken
from src.publishers.meta_publish import (
    ATTEMPTING,
    cannot_look,
    graph_time,
    irreversible,
    no_checkpoint,
    recent,
    refusal,
    settle,
    since,
)

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

# Publishing limits (platforms.md 2.3): refused before anything is sent.
CAPTION_MAX, HASHTAG_MAX, MENTION_MAX, CAROUSEL_MAX = 2200, 30, 20, 10
HASHTAG = re.compile(r"#\w+")
MENTION = re.compile(r"@[\w.]+")
VIDEO_WAIT_S = 5.0  # between status checks while Instagram processes a video
IMAGE_WAIT_S = 2.0  # images are normally FINISHED at once
MIN_QUOTA_WAIT_S = 60.0
DEFAULT_QUOTA_WINDOW_S = 86_400.0
FINISHED, IN_PROGRESS, PUBLISHED = "FINISHED", "IN_PROGRESS", "PUBLISHED"
ERROR, EXPIRED = "ERROR", "EXPIRED"
QUOTA_USED_UP, NOT_READY, MEDIA_EXPIRED, NOT_FOUND = 2207042, 2207027, 2207020, 2207006
# Instagram's error subcodes (platforms.md 2.4) in words a person can act on, with what
# to do: "transient" ones are tried again later with fresh containers.
SUBCODES: dict[int, tuple[str, str]] = {
    2207001: ("transient", "Instagram had a server error while preparing the media"),
    2207003: ("transient", "Instagram took too long to download the media"),
    2207004: ("permanent", "The image is larger than Instagram's 8 MB limit: use a smaller one"),
    2207005: (
        "permanent",
        "Instagram takes only JPEG photos through its API: convert the image to JPEG",
    ),
    2207009: (
        "permanent",
        "The image's shape is outside what Instagram allows (from 4:5 portrait to 1.91:1 "
        "landscape): crop it",
    ),
    2207010: (
        "permanent",
        "The caption is over Instagram's limits (2,200 characters and 30 hashtags)",
    ),
    2207020: ("transient", "The prepared media expired before it was published"),
    2207023: ("permanent", "Instagram does not accept this kind of media"),
    2207026: (
        "permanent",
        "Instagram does not support this video's format: use an MP4 or MOV file with H.264 "
        "video and AAC audio",
    ),
    2207028: ("permanent", "An Instagram carousel takes 2 to 10 photos or videos"),
    2207040: ("permanent", "The caption mentions more than 20 accounts, Instagram's limit"),
    2207052: (
        "permanent",
        "Instagram could not fetch the media from its link: the link may have expired or "
        "not be publicly reachable",
    ),
    2207053: ("transient", "Instagram had an unknown problem with the uploaded video"),
    2207057: ("permanent", "The video's cover frame offset lies outside the video"),
}


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

    # -- publish -------------------------------------------------------------------------
    async def publish(
        self, request: PublishRequest, progress: dict[str, Any], checkpoint: Checkpoint
    ) -> StepResult:
        if progress.get(ATTEMPTING):  # a crash or timeout in media_publish: look first
            found = await self.recover(request, progress)
            if found is not None:
                return found
        return await _IgPost(self, request, progress, checkpoint).run()

    async def recover(self, request: PublishRequest, progress: dict[str, Any]) -> StepResult | None:
        """The container knows whether media_publish happened: PUBLISHED -> find the
        media id among the account's recent posts; FINISHED -> not published, publish
        again; IN_PROGRESS -> come back; ERROR/EXPIRED -> start over with new containers.
        Edits `progress` in place."""
        container = progress.get("container_id")
        if progress.get(ATTEMPTING) != "media_publish" or not container:
            progress.pop(ATTEMPTING, None)
            return None
        post = _IgPost(self, request, progress, no_checkpoint)
        try:
            body = await post.call("GET", container, params={"fields": "status_code,status"})
        except GraphError as error:
            if error.kind != "permanent":
                raise  # could not look now: the caller tries again later
            raise Unconfirmed(
                "Instagram no longer shows the prepared post, so we cannot tell whether it "
                "was published: check the account on Instagram before posting it again."
            ) from error
        code = body.get("status_code")
        if code == PUBLISHED:
            return await post.published()
        if code not in (FINISHED, IN_PROGRESS, ERROR, EXPIRED):
            raise Unconfirmed(
                f"Instagram gave an unknown state ({code}) for the prepared post: check the "
                "account on Instagram before posting it again."
            )
        progress.pop(ATTEMPTING, None)
        if code == IN_PROGRESS:
            return post.later()
        if code != FINISHED:
            post.drop()
        return None


class _IgPost:
    """One target's publish on an Instagram business account, driven by `progress`."""

    def __init__(
        self,
        publisher: InstagramPublisher,
        request: PublishRequest,
        progress: dict[str, Any],
        checkpoint: Checkpoint,
    ) -> None:
        self.graph = publisher.graph
        self.request, self.progress, self.checkpoint = request, progress, checkpoint
        self.ig = request.account.instagram_business_id or request.account.external_id
        self.token = request.tokens.access_token  # the user token (see the module doc)
        self.caption = request.text

    async def run(self) -> StepResult:
        if not self.progress.get("media_id"):
            check_post(self.request)
            waiting = await self.prepare()
            if waiting is not None:
                return waiting
            await self.check_quota()
            waiting = await self.publish_container()
            if waiting is not None:
                return waiting
        return await self.finish()

    # -- containers ----------------------------------------------------------------------
    async def prepare(self) -> StepResult | None:
        """None once the container is FINISHED; otherwise what to tell the caller."""
        for _ in range(2):  # an expired container is made again, once per call
            if len(self.request.media) > 1:
                state = await self.carousel_items()
                if state == IN_PROGRESS:
                    return self.later()
                if state == EXPIRED:
                    continue
            if not self.progress.get("container_id"):
                await self.create_container()
            state = await self.settled(self.progress["container_id"])
            if state == FINISHED:
                return None
            if state == IN_PROGRESS:
                return self.later()
            if state == PUBLISHED:  # published by an earlier call whose answer was lost
                return await self.published()
        return self.later(1.0)

    async def carousel_items(self) -> str:
        """Each item's container (ids kept as they come), then wait until all are ready:
        the carousel container is made from finished items only."""
        children: list[str] = self.progress.setdefault("children", [])
        for item in self.request.media[len(children) :]:
            body = await self.call("POST", f"{self.ig}/media", data=self.item_fields(item, True))
            children.append(str(body["id"]))
            await self.checkpoint(self.progress)
        if self.progress.get("container_id"):
            return FINISHED  # the carousel's own status covers its items from now on
        for child in list(children):
            state = await self.settled(child)
            if state != FINISHED:
                return state
        return FINISHED

    async def create_container(self) -> None:
        if len(self.request.media) > 1:
            fields = {"media_type": "CAROUSEL", "children": ",".join(self.progress["children"])}
        else:
            fields = self.item_fields(self.request.media[0], False)
        if self.caption:
            fields["caption"] = self.caption
        body = await self.call("POST", f"{self.ig}/media", data=fields)
        self.progress["container_id"] = str(body["id"])
        await self.checkpoint(self.progress)

    def item_fields(self, item: MediaItem, carousel: bool) -> dict[str, str]:
        if not item.is_video:
            fields = {"image_url": item.url}
        elif carousel:
            fields = {"media_type": "VIDEO", "video_url": item.url}
        else:  # a single feed video is a reel since July 2023
            fields = {"media_type": "REELS", "video_url": item.url}
            share = self.request.options.get("share_to_feed")
            if share is not None:  # YAML and forms may say "false": not truthy here
                on = str(share).strip().lower() in ("true", "1", "yes", "on")
                fields["share_to_feed"] = "true" if on else "false"
        if carousel:
            fields["is_carousel_item"] = "true"
        return fields

    async def settled(self, container: str) -> str:
        """FINISHED | IN_PROGRESS | PUBLISHED | EXPIRED (containers dropped, start over);
        ERROR raises with the reason in words (containers dropped too)."""
        body = await self.call("GET", container, params={"fields": "status_code,status"})
        code = str(body.get("status_code") or "")
        if code in (ERROR, EXPIRED):
            self.drop()
            await self.checkpoint(self.progress)
            if code == ERROR:
                raise container_error(str(body.get("status") or ""))
        elif code not in (FINISHED, IN_PROGRESS, PUBLISHED):
            raise PlatformError(
                "transient", f"Instagram gave an unknown processing state ({code or 'none'})."
            )
        return code

    def drop(self) -> None:
        """Forget containers that can never be published (expired or failed)."""
        for key in ("container_id", "children"):
            self.progress.pop(key, None)

    def later(self, wait: float | None = None) -> StepResult:
        if wait is None:
            wait = VIDEO_WAIT_S if any(m.is_video for m in self.request.media) else IMAGE_WAIT_S
        return StepResult(self.progress, wait_s=wait)

    # -- publishing ----------------------------------------------------------------------
    async def publish_container(self) -> StepResult | None:
        container = self.progress["container_id"]
        try:
            body = await irreversible(
                self.progress,
                self.checkpoint,
                "media_publish",
                lambda: self.call(
                    "POST", f"{self.ig}/media_publish", data={"creation_id": container}
                ),
            )
        except GraphError as error:
            return await self.refused(error)
        await settle(self.progress, self.checkpoint, media_id=str(body["id"]))
        return None

    async def refused(self, error: GraphError) -> StepResult:
        """media_publish failed. Some refusals only mean "not now" or "not this container"."""
        if error.subcode == QUOTA_USED_UP:
            _, total, window = await self.quota()
            raise await self.used_up(total, window) from error
        if error.subcode == NOT_READY:  # not FINISHED yet, or published already
            state = await self.settled(self.progress["container_id"])
            if state == PUBLISHED:
                return await self.published()
            return self.later(1.0 if state == EXPIRED else None)
        if error.subcode in (MEDIA_EXPIRED, NOT_FOUND):  # the container is gone: not posted
            self.drop()
            self.progress.pop(ATTEMPTING, None)
            await self.checkpoint(self.progress)
            return self.later(1.0)
        raise error

    async def published(self) -> StepResult:
        """The container says PUBLISHED: find the media among the account's recent posts
        (the oldest one with our caption since the attempt started)."""
        try:
            media = await recent(
                self.graph,
                f"{self.ig}/media",
                self.token,
                "id,caption,permalink",
                since(self.progress),
                "timestamp",
            )
        except PlatformError as error:
            raise cannot_look(error, "the account's posts on Instagram") from error
        mine = [m for m in media if (m.get("caption") or "") == self.caption]
        if not mine:
            raise Unconfirmed(
                "Instagram says this post was published, but it is not among the account's "
                "recent posts: check the account on Instagram before posting it again."
            )
        found = mine[-1]
        self.progress["media_id"] = str(found["id"])
        self.progress.pop(ATTEMPTING, None)
        await self.checkpoint(self.progress)
        return self.done(found.get("permalink"))

    async def finish(self) -> StepResult:
        try:
            body = await self.graph.get(self.progress["media_id"], self.token, fields="permalink")
        except PlatformError:
            body = {}  # the post is out: a missing link must not make it a failure
        # options["first_comment"] would be POST /{media-id}/comments message=... here. It
        # is not sent: the sandbox Graph fake serves no comments edge, so it could not be
        # tested, and a half-tested second public write is worse than none.
        return self.done(body.get("permalink"))

    def done(self, url: Any) -> StepResult:
        media_id = self.progress["media_id"]
        return StepResult(self.progress, done=True, platform_post_id=media_id, url=url or None)

    # -- the daily publishing limit ------------------------------------------------------
    async def quota(self) -> tuple[int | None, int, float]:
        """(used, total, window seconds) from content_publishing_limit."""
        body = await self.call(
            "GET",
            f"{self.ig}/content_publishing_limit",
            params={"fields": "quota_usage,config"},
        )
        data = (body.get("data") or [{}])[0]
        config = data.get("config") or {}
        used, total = data.get("quota_usage"), config.get("quota_total")
        window = config.get("quota_duration") or DEFAULT_QUOTA_WINDOW_S
        return (
            used if isinstance(used, int) else None,
            total if isinstance(total, int) else 0,
            float(window),
        )

    async def check_quota(self) -> None:
        """Defer (rate_limited) rather than fail when the 24-hour allowance is used up."""
        used, total, window = await self.quota()
        if used is not None and total and used >= total:
            raise await self.used_up(total, window)

    async def used_up(self, total: int, window: float) -> PlatformError:
        wait = await self.frees_in(total, window)
        return PlatformError(
            "rate_limited",
            f"This Instagram account has made the {total or 'maximum number of'} posts "
            f"Instagram allows through its API in {window / 3600:.0f} hours; the post goes "
            f"out when the oldest of them leaves that window, in about {wait / 60:.0f} minutes.",
            code=str(QUOTA_USED_UP),
            retry_after=wait,
        )

    async def frees_in(self, total: int, window: float) -> float:
        """Seconds until the total-th newest post leaves the window. Posts made by hand are
        listed too, which can only make this later than needed, never earlier."""
        limit = min(max(total, 1), 100)
        body = await self.call(
            "GET", f"{self.ig}/media", params={"fields": "timestamp", "limit": str(limit)}
        )
        stamps = [graph_time(m.get("timestamp")) for m in body.get("data") or []]
        known = [stamp for stamp in stamps if stamp is not None]
        if not known:
            return window
        oldest = known[min(limit, len(known)) - 1]
        return max(MIN_QUOTA_WAIT_S, min(window, oldest + window - time.time()))

    # -- calls ---------------------------------------------------------------------------
    async def call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            return await self.graph.call(method, path, token=self.token, **kwargs)
        except GraphError as error:
            raise in_words(error) from error


def check_post(request: PublishRequest) -> None:
    """What Instagram would refuse, refused before anything is sent."""
    media, caption = request.media, request.text
    if not media:
        raise refusal(
            "Instagram needs a photo or a video: add one, or leave Instagram out of this post.",
            "media_required",
        )
    if len(media) > CAROUSEL_MAX:
        raise refusal(
            f"An Instagram carousel takes at most {CAROUSEL_MAX} photos or videos; this post "
            f"has {len(media)}.",
            "too_many_media",
        )
    for item in media:
        if not (item.is_video or item.content_type.startswith("image/")):
            raise refusal(
                f"Instagram posts take photos and videos only; {item.content_type} is neither.",
                "unsupported_media",
            )
        if not item.url:  # Instagram fetches media itself; it cannot be sent bytes here
            raise refusal("This file has no link Instagram could fetch it from.", "media_url")
    limits = (
        (len(caption), CAPTION_MAX, "characters"),
        (len(HASHTAG.findall(caption)), HASHTAG_MAX, "hashtags"),
        (len(MENTION.findall(caption)), MENTION_MAX, "@mentions"),
    )
    for count, most, what in limits:
        if count > most:
            raise refusal(
                f"Instagram captions can have at most {most:,} {what}; this one has {count:,}.",
                "caption_limit",
            )


def in_words(error: GraphError) -> GraphError:
    """Instagram's subcodes in plain words (the kind they imply), keeping the codes."""
    known = SUBCODES.get(error.subcode or 0)
    if known is None:
        return error
    kind, words = known
    return GraphError(
        kind,
        f"{words} (code {error.graph_code}/{error.subcode}).",
        code=error.graph_code,
        subcode=error.subcode,
        status=error.status,
        retry_after=error.retry_after,
        transient=error.is_transient,
        raw_message=error.raw_message,
    )


def container_error(status: str) -> PlatformError:
    """status_code ERROR: `status` reads "Error: ... failed with error code 2207026"."""
    found = re.search(r"\b(\d{7})\b", status)
    subcode = int(found.group(1)) if found else None
    kind, words = SUBCODES.get(subcode or 0, ("permanent", ""))
    words = words or f"Instagram could not prepare the media ({status or 'no reason given'})"
    label = f" (error code {subcode})" if subcode else ""
    return PlatformError(kind, f"{words}{label}.", code=str(subcode or "container_error"))


def make(endpoints: Endpoints, timeout: float = DEFAULT_TIMEOUT) -> InstagramPublisher:
    return InstagramPublisher(endpoints, timeout)
