"""Facebook Pages: Facebook Login (code -> short-lived -> long-lived user token), the
permission check through /me/permissions, and one account per Page from /me/accounts
with its Page token. Contract: shared/platforms.md section 1.

Token fields, as the accounts domain stores them:
- `access_token` is the PAGE token (what publishing to the Page needs). Page tokens
  derived from a long-lived user token have no expiry of their own, so the user token's
  expiry (~60 days, from `expires_in`) is recorded as the account's access expiry.
- `refresh_token` holds the long-lived USER token. Meta has no refresh grant; we keep it
  only to revoke (DELETE /me/permissions) and to discover Pages again. It is never sent
  anywhere else.

Publishing (platforms.md 1.3), one shape per post: text (+ link) -> POST /{page}/feed;
one photo -> POST /{page}/photos; several photos -> each POST /{page}/photos
published=false, then POST /{page}/feed with attached_media; one video -> POST
/{page}/videos (file_url), then GET /{video}?fields=status until ready. Every id lands in
`progress` before the next step; the POST that makes the post public is bracketed by
progress["attempting"] (see meta_publish.py) and recover() looks in the Page's feed (and
videos) before anything is posted again."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
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
    absolute,
    cannot_look,
    irreversible,
    missing_edge,
    no_checkpoint,
    recent,
    refusal,
    settle,
    since,
)

PLATFORM = "facebook"
TITLE = "Facebook Page"
SCOPES = ["pages_show_list", "pages_read_engagement", "pages_manage_posts", "publish_video"]
PAGE_FIELDS = "id,name,access_token,tasks,picture,instagram_business_account"
PUBLISH_TASK = "CREATE_CONTENT"  # the Page task that allows posting as the Page
VIDEO_WAIT_S = 5.0  # between status checks while Facebook processes a video
FEED_FIELDS = "id,message,permalink_url,attachments"
DUPLICATE = (
    "Facebook refuses the same text twice in a row on a Page: change the wording, or post "
    "something else in between (code 506)."
)
VIDEO_PROBLEMS = {
    6000: "Facebook could not download the video from its link: the link may have expired "
    "or not be publicly reachable. Try again",
    352: "Facebook does not support this video's format: use an MP4 with H.264 video and AAC audio",
}


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

    # -- publish -------------------------------------------------------------------------
    async def publish(
        self, request: PublishRequest, progress: dict[str, Any], checkpoint: Checkpoint
    ) -> StepResult:
        if progress.get(ATTEMPTING):  # a crash or timeout mid-call: look before posting
            found = await self.recover(request, progress)
            if found is not None:
                return found
        post = _PagePost(self, request, progress, checkpoint)
        return await post.run()

    async def recover(self, request: PublishRequest, progress: dict[str, Any]) -> StepResult | None:
        """After a crash or an unanswered call: find a post of the Page created since the
        attempt started with the same message (and, for several photos, our photo ids).
        Edits `progress` in place: the ids found, or the attempt mark dropped."""
        step = progress.get(ATTEMPTING)
        post = _PagePost(self, request, progress, no_checkpoint)
        if step == "video":
            return await post.recover_video()
        if step is None:
            return None
        found = await post.find_in_feed()
        progress.pop(ATTEMPTING, None)
        if found is None:
            return None
        progress["post_id"] = str(found["id"])
        return post.done(str(found["id"]), found.get("permalink_url"))


class _PagePost:
    """One target's publish on a Page, driven by `progress`."""

    def __init__(
        self,
        publisher: FacebookPublisher,
        request: PublishRequest,
        progress: dict[str, Any],
        checkpoint: Checkpoint,
    ) -> None:
        self.graph = publisher.graph
        self.www = publisher.graph.endpoints.auth_url
        self.request, self.progress, self.checkpoint = request, progress, checkpoint
        self.page = request.account.facebook_page_id or request.account.external_id
        self.token = request.tokens.access_token  # the Page token
        self.link = str(request.options.get("link") or "").strip()
        self.message = sent_message(request, self.link)

    async def run(self) -> StepResult:
        shape = post_shape(self.request, self.link)
        if shape == "video":
            return await self.video()
        if not self.progress.get("post_id"):
            await {"text": self.text, "photo": self.photo, "photos": self.photos}[shape]()
        return await self.finish(self.progress["post_id"])

    # -- the shapes ----------------------------------------------------------------------
    async def text(self) -> None:
        fields = {"message": self.message, "link": self.link}
        body = await self.attempt("feed", lambda: self.post("feed", fields))
        await settle(self.progress, self.checkpoint, post_id=str(body["id"]))

    async def photo(self) -> None:
        item = self.request.media[0]
        fields = {"caption": self.message}
        body = await self.attempt("photo", lambda: self.send(item, "photos", "url", fields))
        post_id = str(body.get("post_id") or body["id"])
        await settle(self.progress, self.checkpoint, photo_id=str(body["id"]), post_id=post_id)

    async def photos(self) -> None:
        """Unpublished photos first (invisible, so no attempt mark), then one feed post."""
        ids: list[str] = self.progress.setdefault("photo_ids", [])
        for item in self.request.media[len(ids) :]:
            body = await self.send(item, "photos", "url", {"published": "false"})
            ids.append(str(body["id"]))
            await self.checkpoint(self.progress)
        fields = {"message": self.message}
        for index, photo_id in enumerate(ids):  # Meta's documented form: attached_media[i]
            fields[f"attached_media[{index}]"] = json.dumps({"media_fbid": photo_id})
        body = await self.attempt("feed", lambda: self.post("feed", fields))
        await settle(self.progress, self.checkpoint, post_id=str(body["id"]))

    async def video(self) -> StepResult:
        if not self.progress.get("video_id"):
            item = self.request.media[0]
            fields = {"description": self.message}
            body = await self.attempt(
                "video", lambda: self.send(item, "videos", "file_url", fields)
            )
            await settle(self.progress, self.checkpoint, video_id=str(body["id"]))
        return await self.video_state()

    async def video_state(self) -> StepResult:
        """Ready -> done; error -> permanent (the video id dropped, so a retry starts
        over); otherwise come back later."""
        video_id = self.progress["video_id"]
        video = await self.graph.get(video_id, self.token, fields="status,permalink_url")
        status = video.get("status") or {}
        state = status.get("video_status")
        if state in ("error", "expired"):
            self.progress.pop("video_id", None)
            await self.checkpoint(self.progress)
            raise video_problem(status)
        if state != "ready":
            return StepResult(self.progress, wait_s=VIDEO_WAIT_S)
        link = video.get("permalink_url")
        if not link:  # the post behind the video may be made by the very read that said ready
            again = await self.graph.get(video_id, self.token, fields="permalink_url")
            link = again.get("permalink_url")
        return self.done(video_id, link)

    # -- calls ---------------------------------------------------------------------------
    async def attempt(self, step: str, call: Callable[[], Awaitable[dict[str, Any]]]) -> dict:
        try:
            return await irreversible(self.progress, self.checkpoint, step, call)
        except GraphError as error:
            if error.graph_code == 506:
                raise PlatformError("permanent", DUPLICATE, code="506") from error
            raise

    async def post(self, edge: str, fields: dict[str, str]) -> dict[str, Any]:
        data = {key: value for key, value in fields.items() if value}
        return await self.graph.post(f"{self.page}/{edge}", self.token, **data)

    async def send(
        self, item: MediaItem, edge: str, url_field: str, fields: dict[str, str]
    ) -> dict[str, Any]:
        """Facebook pulls the file from its URL; without one we stream it from disk as
        the multipart `source` field."""
        if item.url:
            return await self.post(edge, {**fields, url_field: item.url})
        data = {key: value for key, value in fields.items() if value}
        try:
            handle = await asyncio.to_thread(Path(item.path).open, "rb")
        except OSError as error:
            raise refusal(
                f"The file to post could not be read ({type(error).__name__}): upload it again.",
                "media_unreadable",
            ) from error
        try:
            source = (Path(item.path).name, handle, item.content_type)
            return await self.graph.call(
                "POST", f"{self.page}/{edge}", token=self.token, data=data, files={"source": source}
            )
        finally:
            handle.close()

    async def finish(self, post_id: str) -> StepResult:
        """The post exists: a failed permalink read must not turn it into a failure."""
        try:
            body = await self.graph.get(post_id, self.token, fields="permalink_url")
        except PlatformError:
            body = {}
        return self.done(post_id, body.get("permalink_url"))

    def done(self, post_id: str, link: Any) -> StepResult:
        # facebook.com/{page-id}_{post-id} opens the post when Graph gave no permalink.
        url = absolute(link, self.www) or f"{self.www.rstrip('/')}/{post_id}"
        return StepResult(self.progress, done=True, platform_post_id=post_id, url=url)

    # -- recovery ------------------------------------------------------------------------
    async def find_in_feed(self) -> dict[str, Any] | None:
        after = since(self.progress)
        try:
            posts = await recent(
                self.graph, f"{self.page}/feed", self.token, FEED_FIELDS, after, "created_time"
            )
        except PlatformError as error:
            raise cannot_look(error, "the Page's posts on Facebook") from error
        photo_ids = set(self.progress.get("photo_ids") or [])
        mine = [post for post in posts if same_post(post, self.message, photo_ids)]
        return mine[-1] if mine else None  # the oldest since the attempt: ours

    async def recover_video(self) -> StepResult | None:
        """GET /{page}/videos shows a video from the moment Facebook took it, even while
        it is processing. A Graph server without that edge (the sandbox) leaves only the
        feed, where a video appears once processed: not there means we cannot know."""
        after = since(self.progress)
        try:
            videos = await recent(
                self.graph,
                f"{self.page}/videos",
                self.token,
                "id,description",
                after,
                "created_time",
            )
        except GraphError as error:
            if not missing_edge(error):
                raise cannot_look(error, "the Page's videos on Facebook") from error
            return await self.video_from_feed()
        mine = [v for v in videos if (v.get("description") or "") == self.message]
        self.progress.pop(ATTEMPTING, None)
        if not mine:
            return None
        self.progress["video_id"] = str(mine[-1]["id"])
        return await self.video_state()

    async def video_from_feed(self) -> StepResult:
        found = await self.find_in_feed()
        if found is None:
            raise Unconfirmed(
                "Facebook may have received this video: it is not on the Page yet, but it "
                "may still be processing, and Facebook would not list the Page's videos. "
                "Check the Page's videos before posting it again."
            )
        targets = attachment_ids(found)
        video_id = next(iter(sorted(targets)), str(found["id"]))
        self.progress.pop(ATTEMPTING, None)
        self.progress["video_id"] = video_id
        return self.done(video_id, found.get("permalink_url"))


def post_shape(request: PublishRequest, link: str = "") -> str:
    """text | photo | photos | video, refusing up front what Facebook cannot post."""
    images = [m for m in request.media if m.content_type.startswith("image/")]
    videos = [m for m in request.media if m.is_video]
    if len(images) + len(videos) < len(request.media):
        odd = next(m for m in request.media if m not in images and m not in videos)
        raise refusal(
            f"Facebook posts take photos and videos only; {odd.content_type} is neither.",
            "unsupported_media",
        )
    if images and videos:
        raise refusal(
            "Facebook cannot mix photos and a video in one post: post the video on its own, "
            "or leave it out.",
            "mixed_media",
        )
    if len(videos) > 1:
        raise refusal(
            "A Facebook post carries one video: post each video separately.", "several_videos"
        )
    if videos:
        return "video"
    if images:
        return "photos" if len(images) > 1 else "photo"
    if not (request.text.strip() or link):
        raise refusal("There is nothing to post: add text, a link, a photo or a video.", "empty")
    return "text"


def sent_message(request: PublishRequest, link: str) -> str:
    """The text as Facebook gets it: only text posts carry a link preview, so with
    photos or a video the link goes at the end of the text."""
    if request.media and link and link not in request.text:
        return f"{request.text}\n\n{link}".strip()
    return request.text


def same_post(post: dict[str, Any], message: str, photo_ids: set[str]) -> bool:
    if (post.get("message") or "") != message:
        return False
    targets = attachment_ids(post)
    return not (photo_ids and targets) or bool(targets & photo_ids)


def attachment_ids(post: dict[str, Any]) -> set[str]:
    """attachments{target{id}}: the photo or video ids a post shows."""
    data = (post.get("attachments") or {}).get("data") or []
    return {str(a["target"]["id"]) for a in data if (a.get("target") or {}).get("id")}


def video_problem(status: dict[str, Any]) -> PlatformError:
    errors = [
        error
        for phase in ("uploading_phase", "processing_phase", "publishing_phase")
        for error in (status.get(phase) or {}).get("errors") or []
        if isinstance(error, dict)
    ]
    first = errors[0] if errors else {}
    code = first.get("code")
    words = VIDEO_PROBLEMS.get(code) or (
        f"Facebook could not process the video: {first.get('message') or 'no reason given'}"
    )
    return PlatformError("permanent", f"{words} (code {code}).", code=str(code or "video_error"))


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
