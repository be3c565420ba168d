"""TikTok Login Kit v2 and the account side of the Content Posting API: consent with
`client_key` and PKCE, the code exchange, discovery (user info + creator info), rotating
refresh tokens and revocation. Contract: shared/platforms.md section 3.

TikTok is not standard OAuth 2 (`client_key` instead of `client_id`, comma-separated
scopes, a trailing-slash token URL answering flat JSON), so the calls go through the
shared HTTP client; authlib supplies the state, the verifier and the PKCE challenge."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from authlib.common.security import generate_token
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from src import http
from src.publishers import tiktok_upload
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
    json_object,
    network_error,
    oauth_token_set,
)

PLATFORM = "tiktok"
TITLE = "TikTok"
# user.info.basic: open_id, avatar, display name; video.publish: direct posts and creator_info.
SCOPES = ["user.info.basic", "video.publish"]
USER_FIELDS = "open_id,union_id,avatar_url,display_name"
DEFAULT_TIMEOUT = 30.0
UNAVAILABLE = "TikTok is unavailable right now. Please try connecting again in a few minutes."
# v2 envelope error codes that are not "permanent".
ENVELOPE_KINDS = {
    "access_token_invalid": "auth",
    "rate_limit_exceeded": "rate_limited",
    "internal_error": "transient",
}
# Login Kit (flat) error codes meaning the token or code we sent is dead.
DEAD_GRANT = ("invalid_grant",)
# The request of these errors never reached TikTok: nothing can have been created.
NOT_SENT = (http.httpx.ConnectError, http.httpx.ConnectTimeout, http.httpx.PoolTimeout)

# -- publishing --------------------------------------------------------------------------
PUBLISH = "/v2/post/publish"
POLL_S = 3.0  # status/fetch allows 30 calls a minute per user: never poll faster than 2 s
PHOTO_TYPES = ("image/jpeg", "image/webp")
MAX_PHOTOS = 35
CHOOSE_PRIVACY = "Choose who can see this TikTok post."
UNCONFIRMED = "TikTok may have received this post; check the TikTok app before retrying."
# fail_reason of a FAILED status, in words; "internal" is TikTok's own retryable failure.
FAIL_REASONS = {
    "file_format_check_failed": (
        "TikTok could not read the file's format: use an MP4, MOV or WebM video (H.264), "
        "or JPEG or WebP photos."
    ),
    "duration_check_failed": (
        "The video's length is outside what TikTok allows for this account: trim it."
    ),
    "frame_rate_check_failed": (
        "TikTok refused the video's frame rate: export it at 23 to 60 frames per second."
    ),
    "picture_size_check_failed": (
        "TikTok refused the picture size: use 360 to 4096 pixels per side (photos at most "
        "1080p and 20 MB each)."
    ),
    "video_pull_failed": (
        "TikTok could not download the video from our link: it must be a public https URL "
        "on a domain verified in the TikTok developer portal."
    ),
    "photo_pull_failed": (
        "TikTok could not download the photos from our links: they must be public https "
        "URLs on a domain verified in the TikTok developer portal."
    ),
    "publish_cancelled": "The post was cancelled at TikTok before it went out.",
    "auth_removed": "The TikTok account removed this app's access: reconnect the account.",
    "spam_risk_too_many_posts": (
        "This TikTok account reached TikTok's daily post limit: try again tomorrow."
    ),
    "spam_risk_user_banned_from_posting": "TikTok has blocked this account from posting for now.",
    "spam_risk_text": "TikTok flagged the text as spam: change the wording.",
    "spam_risk": "TikTok judged this post a spam risk and did not publish it.",
    "internal": "TikTok failed while processing the post: it will try again.",
}
FAIL_KINDS = {"internal": "transient", "auth_removed": "auth"}
# Init refusals whose envelope message does not tell a person what to do: (kind, words).
# The daily caps defer the post (the issue: respect documented limits by deferring).
DAY_CAP_RETRY_S = 3600.0
INIT_REFUSALS = {
    "spam_risk_too_many_posts": (
        "rate_limited",
        "This TikTok account reached TikTok's daily post limit (about 15 a day across all "
        "apps): it will try again later.",
    ),
    "reached_active_user_cap": (
        "rate_limited",
        "This TikTok app reached its daily number of posting accounts (5 until TikTok "
        "audits the app): it will try again later.",
    ),
    "unaudited_client_can_only_post_to_private_accounts": (
        "permanent",
        'Until TikTok audits this app, its posts can only be private: choose "Only me".',
    ),
    "privacy_level_option_mismatch": (
        "permanent",
        "TikTok no longer offers the chosen audience for this account: choose another one.",
    ),
    "url_ownership_unverified": (
        "permanent",
        "TikTok pulls media only from domains verified in the TikTok developer portal: "
        "verify this site's domain there.",
    ),
    "spam_risk_user_banned_from_posting": (
        "permanent",
        "TikTok has blocked this account from posting for now.",
    ),
}


class TikTokPublisher:
    platform = PLATFORM
    title = TITLE
    scopes = SCOPES
    refreshable = True

    def __init__(self, endpoints: Endpoints, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.endpoints = endpoints
        self.timeout = timeout
        self.token_url = f"{endpoints.api_url}/v2/oauth/token/"

    # -- connect -------------------------------------------------------------------------
    def authorization(self, redirect_uri: str) -> AuthorizationRequest:
        state, verifier = generate_token(32), generate_token(64)
        # The standard base64url S256 challenge. TikTok documents a quirk for *desktop*
        # apps, whose challenge must be the lowercase-hex SHA-256 of the verifier; a web
        # app like ours uses the RFC 7636 form (the sandbox accepts both).
        query = {
            "client_key": self.endpoints.client_id,  # TikTok's name for the client id
            "scope": ",".join(SCOPES),  # comma-separated, unlike RFC 6749
            "response_type": "code",
            "redirect_uri": redirect_uri,
            "state": state,
            "code_challenge": create_s256_code_challenge(verifier),
            "code_challenge_method": "S256",
        }
        url = f"{self.endpoints.auth_url}/v2/auth/authorize/?{urlencode(query)}"
        return AuthorizationRequest(url=url, state=state, code_verifier=verifier)

    async def connect(
        self, params: dict[str, str], redirect_uri: str, code_verifier: str | None
    ) -> list[DiscoveredAccount]:
        code = _callback_code(params)
        # The callback names what was granted: refuse before minting tokens we would drop.
        if params.get("scopes") is not None:
            _require_scopes(_split(params["scopes"]))
        tokens = await self._exchange(code, redirect_uri, code_verifier)
        _require_scopes(tokens.scopes)
        try:
            return [await self._discover(tokens)]
        except PlatformError as error:
            raise ConnectError(f"Could not read your TikTok profile: {error.message}") from error

    async def _exchange(self, code: str, redirect_uri: str, verifier: str | None) -> TokenSet:
        # `code` arrives URL-decoded from the callback's query string (TikTok's codes
        # carry '*' and '!'); it is form-encoded exactly once, here, and never unquoted
        # again (a second decode would corrupt a literal '%', a second encode the '*').
        form = {"code": code, "grant_type": "authorization_code", "redirect_uri": redirect_uri}
        if verifier:
            form["code_verifier"] = verifier
        try:
            response = await self._oauth_call(self.token_url, form)
        except http.HTTPError as error:
            raise ConnectError(UNAVAILABLE) from error
        body = json_object(response)
        if response.status_code >= 500 or body.get("error") == "server_error":
            raise ConnectError(UNAVAILABLE)
        if response.status_code != 200 or not body.get("access_token"):
            raise ConnectError(_exchange_refusal(response.status_code, body))
        return _token_set(body)

    async def _discover(self, tokens: TokenSet) -> DiscoveredAccount:
        user = (await self._api("GET", "/v2/user/info/", tokens, {"fields": USER_FIELDS}))["user"]
        # Queried once at connect so the composer can show the creator's options at once;
        # TikTok's UX rules still want a fresh query before every post.
        creator = await self._api("POST", "/v2/post/publish/creator_info/query/", tokens)
        display_name = user.get("display_name", "")
        return DiscoveredAccount(
            platform=PLATFORM,
            external_id=user.get("open_id", ""),
            # username needs user.info.profile, which we do not ask for; creator_info
            # names it under video.publish.
            handle=creator.get("creator_username") or user.get("username") or display_name,
            display_name=display_name,
            avatar_url=user.get("avatar_url", ""),
            tokens=tokens,
            meta={
                "union_id": user.get("union_id", ""),
                "creator_username": creator.get("creator_username", ""),
                "privacy_level_options": list(creator.get("privacy_level_options") or []),
                "max_video_post_duration_sec": creator.get("max_video_post_duration_sec"),
            },
        )

    # -- refresh and revoke --------------------------------------------------------------
    async def refresh(self, tokens: TokenSet) -> TokenSet:
        if not tokens.refresh_token:
            raise PlatformError("auth", "There is no TikTok refresh token: reconnect the account.")
        form = {"grant_type": "refresh_token", "refresh_token": tokens.refresh_token}
        try:
            response = await self._oauth_call(self.token_url, form)
        except http.HTTPError as error:
            raise network_error("TikTok", error) from error
        body = json_object(response)
        if response.status_code != 200 or not body.get("access_token"):
            raise _oauth_error(response, body, "refresh the TikTok connection")
        # Rotation: "the previous refresh token stops working once a new one is issued",
        # so the caller must store this new one (and its own expiry) at once.
        fresh = _token_set(body)
        fresh.scopes = fresh.scopes or tokens.scopes
        return fresh

    async def revoke(self, tokens: TokenSet, account: DiscoveredAccount) -> None:
        """TikTok revokes the whole grant from the access token."""
        try:
            response = await self._oauth_call(
                f"{self.endpoints.api_url}/v2/oauth/revoke/", {"token": tokens.access_token}
            )
        except http.HTTPError as error:
            raise network_error("TikTok", error) from error
        body = json_object(response)
        if response.status_code != 200 or body.get("error"):
            raise _oauth_error(response, body, "revoke access at TikTok")

    # -- publish -------------------------------------------------------------------------
    async def publish(
        self, request: PublishRequest, progress: dict[str, Any], checkpoint: Checkpoint
    ) -> StepResult:
        """creator_info and checks, init (the irreversible step), the chunks of a
        FILE_UPLOAD, then status/fetch until TikTok has published or failed."""
        started = False
        if not progress.get("publish_id"):
            path, body = await self._prepare(request, progress)
            await self._init(request.tokens, path, body, progress, checkpoint)
            started = True
        if progress.get("upload_url") and not progress.get("uploaded"):
            await self._upload(request, progress, checkpoint)
            started = True
        if started:  # TikTok needs a moment, and status/fetch allows one call per 2 s
            return StepResult(progress, wait_s=POLL_S)
        data = await self._status(request.tokens, progress["publish_id"])
        try:
            return self._outcome(data, progress)
        except PlatformError as error:
            if error.code == "internal":
                await checkpoint(progress)  # the dead publish_id is forgotten: start over
            raise

    async def _prepare(
        self, request: PublishRequest, progress: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        """Refuse what TikTok would refuse, query creator_info (TikTok's UX rules want it
        fresh before every direct post), and build the init request."""
        kind = _media_kind(request.media)
        level = request.options.get("privacy_level")
        if not level:
            raise PlatformError("permanent", CHOOSE_PRIVACY, code="privacy_level")
        if level == "SELF_ONLY" and request.options.get("brand_content_toggle"):
            raise PlatformError(
                "permanent",
                "Branded content cannot be private on TikTok: choose another audience.",
                code="privacy_level",
            )
        creator = await self._api("POST", f"{PUBLISH}/creator_info/query/", request.tokens)
        _check_creator(creator, level, request.media, kind)
        progress["media_type"] = kind
        progress["username"] = creator.get("creator_username") or request.account.handle
        post_info = _post_info(request, creator, kind)
        if kind == "photo":
            progress["source"] = "PULL_FROM_URL"
            return f"{PUBLISH}/content/init/", _photo_body(request, post_info)
        item = request.media[0]
        if request.options.get("upload_mode") == "pull" or not item.readable:
            progress["source"] = "PULL_FROM_URL"
            source = {"source": "PULL_FROM_URL", "video_url": item.url}
        else:
            size = await item.size()
            progress["source"] = "FILE_UPLOAD"
            progress["plan"] = tiktok_upload.chunk_plan(size)
            source = {"source": "FILE_UPLOAD", **progress["plan"]}
        return f"{PUBLISH}/video/init/", {"post_info": post_info, "source_info": source}

    async def _init(
        self,
        tokens: TokenSet,
        path: str,
        body: dict[str, Any],
        progress: dict[str, Any],
        checkpoint: Checkpoint,
    ) -> None:
        """The irreversible call, bracketed by progress["attempting"]; publish_id (and the
        upload_url) are stored the moment TikTok answers."""
        progress["attempting"] = "init"
        await checkpoint(progress)
        try:
            data = await self._api("POST", path, tokens, body=body)
        except PlatformError as error:
            if error.code != "network":  # TikTok answered (or never got it): no post
                progress.pop("attempting", None)
                await checkpoint(progress)
            raise _init_refusal(error) from error
        if not data.get("publish_id"):
            raise PlatformError(
                "transient", "TikTok answered the post without a publish id.", code="no_id"
            )
        progress["publish_id"] = str(data["publish_id"])
        if data.get("upload_url"):
            progress["upload_url"] = data["upload_url"]
        progress.pop("attempting", None)
        await checkpoint(progress)

    async def _upload(
        self, request: PublishRequest, progress: dict[str, Any], checkpoint: Checkpoint
    ) -> None:
        item = request.media[0]
        try:
            await tiktok_upload.upload(progress, item, checkpoint, self.timeout)
        except tiktok_upload.UploadGone as gone:
            data = await self._status(request.tokens, progress["publish_id"])
            if data.get("status") != "PROCESSING_UPLOAD":  # TikTok had every byte already
                progress["uploaded"] = True
                await checkpoint(progress)
                return
            # A publish_id whose video never arrived can never be published: start over.
            _forget_publish(progress)
            await checkpoint(progress)
            raise PlatformError(
                "transient",
                "TikTok's upload link expired before the whole video was sent: the post "
                "will start again.",
                code="upload_expired",
            ) from gone

    async def _status(self, tokens: TokenSet, publish_id: str) -> dict[str, Any]:
        return await self._api(
            "POST", f"{PUBLISH}/status/fetch/", tokens, body={"publish_id": publish_id}
        )

    def _outcome(self, data: dict[str, Any], progress: dict[str, Any]) -> StepResult:
        """A status/fetch answer as a StepResult, or the failure as a PlatformError."""
        status = data.get("status")
        if status == "PUBLISH_COMPLETE":
            return self._complete(data, progress)
        if status == "SEND_TO_USER_INBOX":  # an inbox draft: nothing public to link to
            return StepResult(progress, done=True, platform_post_id=progress["publish_id"])
        if status == "FAILED":
            reason = str(data.get("fail_reason") or "unknown")
            if reason == "internal":  # TikTok's retryable failure: a new init will follow
                _forget_publish(progress)
            raise _failure(reason)
        uploading = progress.get("upload_url") and not progress.get("uploaded")
        return StepResult(progress, wait_s=0.0 if uploading else POLL_S)

    def _complete(self, data: dict[str, Any], progress: dict[str, Any]) -> StepResult:
        public = data.get("publicaly_available_post_id") or []  # TikTok's spelling
        if not public:
            # Private (SELF_ONLY) posts never get a public id, and public ones only after
            # moderation: the publish_id stands for the post, with no link to show.
            return StepResult(progress, done=True, platform_post_id=progress["publish_id"])
        post_id = str(public[0])
        kind = progress.get("media_type", "video")
        url = f"{self.endpoints.auth_url}/@{progress.get('username', '')}/{kind}/{post_id}"
        progress["post_id"] = post_id
        return StepResult(progress, done=True, platform_post_id=post_id, url=url)

    # -- recover -------------------------------------------------------------------------
    async def recover(self, request: PublishRequest, progress: dict[str, Any]) -> StepResult | None:
        """A stored publish_id: status/fetch decides. An init that may have happened
        without its answer: TikTok offers no way to look it up (Unconfirmed), except for a
        FILE_UPLOAD, which cannot publish without the bytes only we could have sent."""
        if progress.get("publish_id"):
            progress.pop("attempting", None)
            return self._outcome(
                await self._status(request.tokens, progress["publish_id"]), progress
            )
        if progress.get("attempting") != "init":
            return None
        if progress.get("source") == "FILE_UPLOAD":
            # Its upload_url never reached us, so no video can arrive and TikTok lets the
            # task expire unpublished: publishing again is safe.
            progress.pop("attempting")
            return None
        raise Unconfirmed(UNCONFIRMED)

    # -- HTTP ------------------------------------------------------------------------------
    async def _oauth_call(self, url: str, form: dict[str, str]) -> http.Response:
        """Login Kit endpoints take the app's key and secret in the form body."""
        data = {
            "client_key": self.endpoints.client_id,
            "client_secret": self.endpoints.client_secret,
            **form,
        }
        return await http.client().post(
            url, data=data, headers={"Cache-Control": "no-cache"}, timeout=self.timeout
        )

    async def _api(
        self,
        method: str,
        path: str,
        tokens: TokenSet,
        params: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A v2 data endpoint: its `data`, or PlatformError from its envelope. Network
        failures carry code "network", or "not_sent" when the request never left."""
        headers = {"Authorization": f"Bearer {tokens.access_token}"}
        if method == "POST":
            headers["Content-Type"] = "application/json; charset=UTF-8"
        try:
            response = await http.client().request(
                method,
                f"{self.endpoints.api_url}{path}",
                params=params,
                json=body,
                headers=headers,
                timeout=self.timeout,
            )
        except http.HTTPError as error:
            failure = network_error("TikTok", error)
            if isinstance(error, NOT_SENT):
                failure.code = "not_sent"
            raise failure from error
        return envelope_data(response)


def make(endpoints: Endpoints, timeout: float = DEFAULT_TIMEOUT) -> TikTokPublisher:
    return TikTokPublisher(endpoints, timeout)


# -- responses -> values and errors --------------------------------------------------------
def envelope_data(response: http.Response) -> dict[str, Any]:
    """{"data", "error": {"code", "message", "log_id"}}: success only when code is "ok"."""
    body = json_object(response)
    error = body.get("error") if isinstance(body.get("error"), dict) else {}
    code = str(error.get("code") or "")
    if code == "ok" and response.status_code < 400:
        data = body.get("data")
        return data if isinstance(data, dict) else {}
    if not code:  # no envelope at all (a proxy's error page, say): judge by the status
        status = response.status_code
        code = "internal_error" if status >= 500 else f"http_{status}"
        if status == 429:
            code = "rate_limit_exceeded"
    message = error.get("message") or f"HTTP {response.status_code}"
    log_id = error.get("log_id")
    text = f"TikTok answered: {message} ({code}{', log id ' + log_id if log_id else ''})."
    raise PlatformError(
        ENVELOPE_KINDS.get(code, "permanent"),
        text,
        code=code,
        retry_after=_retry_after(response),
        status=response.status_code,
    )


# -- publishing helpers ----------------------------------------------------------------------
def _media_kind(media: list[MediaItem]) -> str:
    """ "video" (exactly one) or "photo" (1-35 JPEG/WebP images); refuse anything else."""
    videos = [m for m in media if m.is_video]
    if videos:
        if len(media) > 1:
            raise PlatformError(
                "permanent",
                "A TikTok post is one video or a set of photos: remove the other media.",
                code="media",
            )
        return "video"
    if not media:
        raise PlatformError("permanent", "A TikTok post needs a video or photos.", code="media")
    if any(m.content_type not in PHOTO_TYPES for m in media):
        raise PlatformError(
            "permanent",
            "TikTok photo posts take JPEG or WebP images only: convert the PNG (or other) "
            "images to JPEG and attach them again.",
            code="photo_format",
        )
    if len(media) > MAX_PHOTOS:
        raise PlatformError(
            "permanent",
            f"A TikTok photo post takes at most {MAX_PHOTOS} photos: remove some.",
            code="media",
        )
    return "photo"


def _check_creator(creator: dict[str, Any], level: str, media: list[MediaItem], kind: str) -> None:
    """What creator_info says this creator may post right now."""
    offered = list(creator.get("privacy_level_options") or [])
    if level not in offered:
        raise PlatformError(
            "permanent",
            f"TikTok does not offer the audience {level} for this account now: choose one of "
            f"{', '.join(offered) or 'the options TikTok shows'}.",
            code="privacy_level_option_mismatch",
        )
    limit = creator.get("max_video_post_duration_sec")
    duration = media[0].duration_ms if kind == "video" else None
    # An unprobed duration is left to TikTok (duration_check_failed names it later).
    if isinstance(limit, int | float) and duration is not None and duration > limit * 1000:
        raise PlatformError(
            "permanent",
            f"The video lasts {duration / 1000:.0f} s but this TikTok account may post at most "
            f"{limit:.0f} s: trim it.",
            code="duration",
        )


def _post_info(request: PublishRequest, creator: dict[str, Any], kind: str) -> dict[str, Any]:
    """post_info with safe defaults: interactions stay off unless the person allowed them
    (the options say disable_*=False), and are off whenever the creator disabled them."""
    options = request.options

    def disabled(name: str, creator_flag: str) -> bool:
        return bool(creator.get(creator_flag)) or bool(options.get(name, True))

    info: dict[str, Any] = {
        "privacy_level": options["privacy_level"],
        "disable_comment": disabled("disable_comment", "comment_disabled"),
        "brand_content_toggle": bool(options.get("brand_content_toggle", False)),
        "brand_organic_toggle": bool(options.get("brand_organic_toggle", False)),
    }
    if options.get("is_aigc"):
        info["is_aigc"] = True
    if kind == "photo":
        info["description"] = request.text  # photo titles stop at 90 characters
        return info
    info["title"] = request.text
    info["disable_duet"] = disabled("disable_duet", "duet_disabled")
    info["disable_stitch"] = disabled("disable_stitch", "stitch_disabled")
    return info


def _photo_body(request: PublishRequest, post_info: dict[str, Any]) -> dict[str, Any]:
    urls = [m.url for m in request.media]
    cover = request.options.get("photo_cover_index", 0)
    if not isinstance(cover, int) or isinstance(cover, bool) or not 0 <= cover < len(urls):
        raise PlatformError(
            "permanent", "Choose the cover among the attached photos.", code="photo_cover_index"
        )
    return {
        "post_info": post_info,
        "source_info": {
            "source": "PULL_FROM_URL",
            "photo_cover_index": cover,
            "photo_images": urls,
        },
        "post_mode": "DIRECT_POST",
        "media_type": "PHOTO",
    }


def _init_refusal(error: PlatformError) -> PlatformError:
    """An init error in words a person can act on (TikTok's code kept)."""
    known = INIT_REFUSALS.get(error.code)
    if known is None:
        return error
    kind, words = known
    return PlatformError(
        kind,
        f"{words} ({error.code})",
        code=error.code,
        retry_after=error.retry_after or (DAY_CAP_RETRY_S if kind == "rate_limited" else None),
        status=error.status,
    )


def _failure(reason: str) -> PlatformError:
    words = FAIL_REASONS.get(reason, f"TikTok could not publish the post ({reason}).")
    return PlatformError(FAIL_KINDS.get(reason, "permanent"), words, code=reason)


def _forget_publish(progress: dict[str, Any]) -> None:
    """Drop a publish_id that can never publish, so the next attempt inits afresh."""
    for key in ("publish_id", "upload_url", "offset", "uploaded", "attempting"):
        progress.pop(key, None)


def _callback_code(params: dict[str, str]) -> str:
    error = params.get("error")
    if error == "access_denied":
        raise ConnectError("You declined the connection at TikTok. Nothing was connected.")
    if error:
        detail = params.get("error_description") or error
        raise ConnectError(
            f"TikTok could not authorize the connection ({detail}). Nothing was connected."
        )
    if not params.get("code"):
        raise ConnectError("TikTok sent no authorization code back. Please try connecting again.")
    return params["code"]


def _require_scopes(granted: list[str]) -> None:
    missing = sorted(set(SCOPES) - set(granted))
    if missing:
        raise ConnectError(
            f"TikTok did not grant: {', '.join(missing)}. "
            "Reconnect and keep every permission ticked."
        )


def _exchange_refusal(status: int, body: dict[str, Any]) -> str:
    error = body.get("error") or f"HTTP {status}"
    detail = body.get("error_description") or "no details"
    if status == 429:
        return "TikTok is limiting requests right now. Please try connecting again in a minute."
    if error == "invalid_client":
        return f"TikTok refused this app's client key or secret ({error}). Check the app settings."
    if error in DEAD_GRANT:
        return (
            "TikTok did not accept the authorization: it has expired or was already used "
            f"({detail}). Please connect again."
        )
    return f"TikTok refused the connection: {detail} ({error}). Please connect again."


def _split(scopes: Any) -> list[str]:
    return [s.strip() for s in str(scopes or "").split(",") if s.strip()]


def _token_set(body: dict[str, Any]) -> TokenSet:
    return oauth_token_set(body, _split(body.get("scope")))


def _oauth_error(response: http.Response, body: dict[str, Any], doing: str) -> PlatformError:
    """Login Kit's flat {error, error_description, log_id}. A dead refresh token
    (invalid_grant) needs a reconnect: "auth"; invalid_client is our app's configuration."""
    error = str(body.get("error") or f"http_{response.status_code}")
    detail = body.get("error_description") or "no details"
    status = response.status_code
    if status == 429:
        kind = "rate_limited"
    elif status >= 500 or error in ("server_error", "temporarily_unavailable"):
        kind = "transient"
    elif error in DEAD_GRANT:
        kind = "auth"
    else:
        kind = "permanent"
    return PlatformError(
        kind,
        f"Could not {doing}: {detail} ({error}).",
        code=error,
        retry_after=_retry_after(response),
        status=status,
    )


def _retry_after(response: http.Response) -> float | None:
    header = response.headers.get("retry-after", "")
    return float(header) if header.isdigit() else None
