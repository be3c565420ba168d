"""X (Twitter) API v2: OAuth 2.0 Authorization Code with PKCE (S256), a confidential
client authenticating with HTTP Basic, account discovery through GET /2/users/me,
rotating refresh tokens and token revocation. Contract: shared/platforms.md section 4."""

from __future__ import annotations

import contextlib
import html
import re
import time
import unicodedata
from datetime import UTC, datetime
from typing import Any

from authlib.common.security import generate_token
from authlib.integrations.httpx_client import OAuth2ClientAuth
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from src import http
from src.publishers import x_media
from src.publishers.base import (
    AuthorizationRequest,
    Checkpoint,
    ConnectError,
    DiscoveredAccount,
    Endpoints,
    PlatformError,
    PublishRequest,
    StepResult,
    TokenSet,
    Unconfirmed,
    json_object,
    network_error,
    oauth_token_set,
)

PLATFORM = "x"
TITLE = "X"
# offline.access gives us a refresh token; media.write is needed by every v2 media upload.
SCOPES = ["tweet.read", "tweet.write", "users.read", "offline.access", "media.write"]
DEFAULT_TIMEOUT = 30.0
UNAVAILABLE = "X is unavailable right now. Please try connecting again in a few minutes."
DUPLICATE = "X refuses duplicate text: change the wording."
# How far back recover() looks before the attempt (clock skew between us and X).
RECOVER_MARGIN_S = 300
RECOVER_PAGES = 5  # of 100 posts each
# Refusals of POST /2/tweets whose X wording does not tell a person what to do.
REFUSALS = {
    "Tweet text is too long.": (
        "The text is longer than X allows (280 characters; links count 23, emoji and CJK "
        "characters 2): shorten it."
    ),
    "Your media IDs are invalid.": (
        "X did not accept the attached media (expired or not processed): try again."
    ),
    "You attempted to reply to a Tweet that is deleted or not visible to you.": (
        "The post to reply to is deleted or not visible to this account: check the reply link."
    ),
}
# The request of these errors never reached X: nothing can have been posted.
NOT_SENT = (http.httpx.ConnectError, http.httpx.ConnectTimeout, http.httpx.PoolTimeout)


class XPublisher:
    platform = PLATFORM
    title = TITLE
    scopes = SCOPES
    refreshable = True

    def __init__(self, endpoints: Endpoints, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.endpoints = endpoints
        self.timeout = timeout
        self.token_url = f"{endpoints.api_url}/2/oauth2/token"
        self.revoke_url = f"{endpoints.api_url}/2/oauth2/revoke"

    # -- connect -------------------------------------------------------------------------
    def authorization(self, redirect_uri: str) -> AuthorizationRequest:
        state, verifier = generate_token(32), generate_token(64)
        url = prepare_grant_uri(
            f"{self.endpoints.auth_url}/i/oauth2/authorize",
            self.endpoints.client_id,
            "code",
            redirect_uri=redirect_uri,
            scope=" ".join(SCOPES),
            state=state,
            code_challenge=create_s256_code_challenge(verifier),
            code_challenge_method="S256",
        )
        return AuthorizationRequest(url=url, state=state, code_verifier=verifier)

    async def connect(
        self, params: dict[str, str], redirect_uri: str, code_verifier: str | None
    ) -> list[DiscoveredAccount]:
        code = _callback_code(params)
        if not code_verifier:
            raise ConnectError(
                "This connection attempt lost its PKCE verifier. Please start again."
            )
        # X's codes live 30 seconds: exchange first, before anything else.
        tokens = await self._exchange(code, redirect_uri, code_verifier)
        missing = sorted(set(SCOPES) - set(tokens.scopes))
        if missing:
            await self._forget(tokens)
            raise ConnectError(
                f"X did not grant: {', '.join(missing)}. "
                "Reconnect and keep every permission ticked."
            )
        try:
            return [await self._discover(tokens)]
        except PlatformError as error:
            raise ConnectError(f"Could not read your X profile: {error.message}") from error

    async def _exchange(self, code: str, redirect_uri: str, verifier: str) -> TokenSet:
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
        }
        try:
            response = await self._token_call(self.token_url, form)
        except http.HTTPError as error:
            raise ConnectError(UNAVAILABLE) from error
        if response.status_code >= 500:
            raise ConnectError(UNAVAILABLE)
        body = json_object(response)
        if response.status_code != 200 or not body.get("access_token"):
            raise ConnectError(_exchange_refusal(response.status_code, body))
        return _token_set(body)

    async def _discover(self, tokens: TokenSet) -> DiscoveredAccount:
        url = f"{self.endpoints.api_url}/2/users/me"
        try:
            response = await http.client().get(
                url,
                params={"user.fields": "profile_image_url"},
                headers={"Authorization": f"Bearer {tokens.access_token}"},
                timeout=self.timeout,
            )
        except http.HTTPError as error:
            raise network_error("X", error) from error
        body = json_object(response)
        if response.status_code != 200 or not isinstance(body.get("data"), dict):
            raise _api_error(response, body)
        user = body["data"]
        return DiscoveredAccount(
            platform=PLATFORM,
            external_id=str(user.get("id", "")),
            handle=user.get("username", ""),
            display_name=user.get("name", ""),
            avatar_url=user.get("profile_image_url", ""),
            tokens=tokens,
        )

    async def _forget(self, tokens: TokenSet) -> None:
        """Best effort: drop the grant of a connect we refuse, so no live token lingers."""
        with contextlib.suppress(PlatformError):
            await self._revoke_tokens(tokens)

    # -- refresh and revoke --------------------------------------------------------------
    async def refresh(self, tokens: TokenSet) -> TokenSet:
        if not tokens.refresh_token:
            raise PlatformError("auth", "There is no X refresh token: reconnect the account.")
        form = {"grant_type": "refresh_token", "refresh_token": tokens.refresh_token}
        try:
            response = await self._token_call(self.token_url, form)
        except http.HTTPError as error:
            raise network_error("X", error) from error
        body = json_object(response)
        if response.status_code != 200 or not body.get("access_token"):
            raise _oauth_error(response, body, "refresh the X connection")
        fresh = _token_set(body)
        # X rotates refresh tokens: the new one replaces the old, which is now dead.
        fresh.refresh_token = fresh.refresh_token or tokens.refresh_token
        fresh.scopes = fresh.scopes or tokens.scopes
        return fresh

    async def revoke(self, tokens: TokenSet, account: DiscoveredAccount) -> None:
        await self._revoke_tokens(tokens)

    async def _revoke_tokens(self, tokens: TokenSet) -> None:
        """Revoke the access token and the refresh token (each lives on its own at X);
        both are attempted even when the first fails."""
        failures: list[PlatformError] = []
        pairs = [("access_token", tokens.access_token), ("refresh_token", tokens.refresh_token)]
        for hint, token in pairs:
            if not token:
                continue
            try:
                await self._revoke_one(token, hint)
            except PlatformError as error:
                failures.append(error)
        if failures:
            raise failures[0]

    async def _revoke_one(self, token: str, hint: str) -> None:
        form = {"token": token, "token_type_hint": hint}
        try:
            response = await self._token_call(self.revoke_url, form)
        except http.HTTPError as error:
            raise network_error("X", error) from error
        if response.status_code != 200:
            raise _oauth_error(response, json_object(response), "revoke access at X")

    async def _token_call(self, url: str, form: dict[str, str]) -> http.Response:
        """A POST to X's OAuth endpoints as a confidential client (HTTP Basic)."""
        auth = OAuth2ClientAuth(self.endpoints.client_id, self.endpoints.client_secret)
        return await http.client().post(url, data=form, auth=auth, timeout=self.timeout)

    # -- publish -------------------------------------------------------------------------
    async def publish(
        self, request: PublishRequest, progress: dict[str, Any], checkpoint: Checkpoint
    ) -> StepResult:
        """Media (uploaded, processed), then the post, then the rest of the thread as
        replies. Each step resumes from `progress`."""
        texts = _texts(request)
        x_media.check_media(request.media)
        api = _Api(self.endpoints.api_url, request.tokens.access_token, self.timeout)
        if not progress.get("tweet_id"):
            wait = await x_media.upload_all(api, request.media, progress, checkpoint)
            if wait:
                return StepResult(progress, wait_s=wait)
        while (index := _posted(progress)) < len(texts):
            last = index == len(texts) - 1
            await self._post(
                api, _tweet_body(request, texts, index, progress), progress, checkpoint, last
            )
        return self._done(request, progress)

    async def _post(
        self,
        api: _Api,
        body: dict[str, Any],
        progress: dict[str, Any],
        checkpoint: Checkpoint,
        last: bool = True,
    ) -> None:
        """The irreversible POST /2/tweets, bracketed by progress["attempting"]. After the
        last post no checkpoint is needed: the caller records the returned progress, and
        should it die first, recover() finds the post on the timeline."""
        index = _posted(progress)
        progress["attempting"] = "tweet" if index == 0 else f"reply:{index}"
        progress["attempted_at"] = time.time()
        await checkpoint(progress)
        try:
            response = await api.send("POST", "/2/tweets", json=body)
        except PlatformError as error:
            if error.code == "not_sent":
                await _settle(progress, checkpoint)
            raise  # a timeout: X may have posted it, recover() looks before any retry
        answer = json_object(response)
        post_id = str((answer.get("data") or {}).get("id") or "")
        if response.status_code == 201 and post_id:
            _record(progress, index, post_id)
            if last:
                _clear_attempt(progress)
            else:
                await _settle(progress, checkpoint)
            return
        # A 4xx is X refusing the post: it certainly does not exist. A 5xx (or a 201
        # without an id) leaves "attempting" set, so recover() looks at the timeline.
        if response.status_code < 500 and response.status_code != 201:
            await _settle(progress, checkpoint)
        raise _publish_error(response, answer)

    def _done(self, request: PublishRequest, progress: dict[str, Any]) -> StepResult:
        post_id = progress["tweet_id"]
        return StepResult(
            progress, done=True, platform_post_id=post_id, url=self.permalink(request, post_id)
        )

    def permalink(self, request: PublishRequest, post_id: str) -> str:
        # x.com/{handle}/status/{id}; the sandbox serves the same page under /x/www.
        return f"{self.endpoints.auth_url}/{request.account.handle}/status/{post_id}"

    # -- recover -------------------------------------------------------------------------
    async def recover(self, request: PublishRequest, progress: dict[str, Any]) -> StepResult | None:
        """After a crash or timeout during POST /2/tweets: look for the post among the
        account's recent posts. The main post is recognised by its media ids (X names a
        post's media after the ids we uploaded) or, without media, by its text; replies by
        their text after the previous post."""
        texts = _texts(request)
        if not progress.get("attempting"):
            return self._done(request, progress) if _posted(progress) == len(texts) else None
        index = _posted(progress)
        api = _Api(self.endpoints.api_url, request.tokens.access_token, self.timeout)
        found = await self._find(api, request, texts[index], index, progress)
        if found is None:
            _clear_attempt(progress)
            return None
        _record(progress, index, found)
        _clear_attempt(progress)
        if _posted(progress) == len(texts):
            return self._done(request, progress)
        return StepResult(progress)  # the rest of the thread is still to post

    async def _find(
        self, api: _Api, request: PublishRequest, text: str, index: int, progress: dict[str, Any]
    ) -> str | None:
        media_ids = set(progress.get("media_ids") or []) if index == 0 else set()
        params = {
            "max_results": "100",
            "tweet.fields": "created_at,attachments",
            "start_time": _since(progress.get("attempted_at")),
        }
        if index:
            params["since_id"] = _post_ids(progress)[index - 1]
        for _ in range(RECOVER_PAGES):
            page = await api.call(
                "GET", f"/2/users/{request.account.external_id}/tweets", params=params
            )
            if "data" not in page and page.get("errors"):
                raise Unconfirmed(
                    "X would not show this account's recent posts, so we cannot tell whether "
                    "the post went out: check the account on X before retrying."
                )
            for post in page.get("data") or []:
                if _same_post(post, text, media_ids):
                    return str(post["id"])
            token = (page.get("meta") or {}).get("next_token")
            if not token:
                return None
            params["pagination_token"] = token
        raise Unconfirmed(
            "This X account posted too much since the attempt to check them all: "
            "check the account on X before retrying."
        )


def make(endpoints: Endpoints, timeout: float = DEFAULT_TIMEOUT) -> XPublisher:
    return XPublisher(endpoints, timeout)


# -- responses -> values and errors --------------------------------------------------------
def _callback_code(params: dict[str, str]) -> str:
    error = params.get("error")
    if error == "access_denied":
        raise ConnectError("You declined the connection at X. Nothing was connected.")
    if error:
        detail = params.get("error_description") or error
        raise ConnectError(
            f"X could not authorize the connection ({detail}). Nothing was connected."
        )
    if not params.get("code"):
        raise ConnectError("X sent no authorization code back. Please try connecting again.")
    return params["code"]


def _exchange_refusal(status: int, body: dict[str, Any]) -> str:
    error = body.get("error") or f"HTTP {status}"
    if status == 429:
        return "X is limiting requests right now. Please try connecting again in a few minutes."
    if error == "unauthorized_client" or status == 401:
        return f"X refused this app's client credentials ({error}). Check the X app settings."
    # X answers invalid_request for a used, expired or mismatched code alike.
    return (
        "X did not accept the authorization: it expires after 30 seconds and works only "
        f"once ({error}). Please connect again."
    )


def _token_set(body: dict[str, Any]) -> TokenSet:
    return oauth_token_set(body, str(body.get("scope") or "").split())


def _api_error(response: http.Response, body: dict[str, Any]) -> PlatformError:
    """X's problem JSON ({title, detail, type}) as a PlatformError; the problem name is
    the last segment of `type` (api.x.com and api.twitter.com hosts both occur)."""
    problem = str(body.get("type", "")).rsplit("/", 1)[-1]
    code = problem if problem and problem != "about:blank" else str(response.status_code)
    detail = body.get("detail") or body.get("title") or f"HTTP {response.status_code}"
    status = response.status_code
    kind = {401: "auth", 429: "rate_limited"}.get(status, "transient" if status >= 500 else "")
    return PlatformError(
        kind or "permanent",
        f"X answered: {detail} ({code}).",
        code=code,
        retry_after=_retry_after(response),
        status=status,
    )


# -- publishing helpers ----------------------------------------------------------------------
class _Api:
    """The X API as one account, for publishing: errors become PlatformError."""

    def __init__(self, base: str, token: str, timeout: float) -> None:
        self.base = base
        self.headers = {"Authorization": f"Bearer {token}"}
        self.timeout = timeout

    async def send(self, method: str, path: str, **kwargs: Any) -> http.Response:
        try:
            return await http.client().request(
                method, self.base + path, headers=self.headers, timeout=self.timeout, **kwargs
            )
        except http.HTTPError as error:
            failure = network_error("X", error)
            if isinstance(error, NOT_SENT):
                failure.code = "not_sent"
            raise failure from error

    async def call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = await self.send(method, path, **kwargs)
        body = json_object(response)
        if response.status_code >= 300:
            raise _publish_error(response, body)
        return body


def _texts(request: PublishRequest) -> list[str]:
    """The post's text, then the texts of the thread's replies (options["thread"])."""
    thread = request.options.get("thread") or []
    if not isinstance(thread, list) or not all(isinstance(t, str) and t.strip() for t in thread):
        raise PlatformError(
            "permanent", "Every reply of an X thread needs some text.", code="thread"
        )
    return [request.text, *thread]


def _post_ids(progress: dict[str, Any]) -> list[str]:
    first = progress.get("tweet_id")
    return [first, *progress.get("thread_ids", [])] if first else []


def _posted(progress: dict[str, Any]) -> int:
    return len(_post_ids(progress))


def _record(progress: dict[str, Any], index: int, post_id: str) -> None:
    if index == 0:
        progress["tweet_id"] = post_id
    else:
        progress.setdefault("thread_ids", []).append(post_id)


def _tweet_body(
    request: PublishRequest, texts: list[str], index: int, progress: dict[str, Any]
) -> dict[str, Any]:
    body: dict[str, Any] = {"text": texts[index]} if texts[index] else {}
    if index:  # a reply of the thread answers the post before it
        body["reply"] = {"in_reply_to_tweet_id": _post_ids(progress)[index - 1]}
        return body
    if progress.get("media_ids"):
        body["media"] = {"media_ids": list(progress["media_ids"])}
    if request.options.get("reply_to"):
        body["reply"] = {"in_reply_to_tweet_id": str(request.options["reply_to"])}
    return body


def _clear_attempt(progress: dict[str, Any]) -> None:
    progress.pop("attempting", None)
    progress.pop("attempted_at", None)


async def _settle(progress: dict[str, Any], checkpoint: Checkpoint) -> None:
    """The irreversible call answered (or never left): no attempt is in doubt any more."""
    _clear_attempt(progress)
    await checkpoint(progress)


def _since(attempted_at: Any) -> str:
    moment = float(attempted_at) if isinstance(attempted_at, int | float) else time.time() - 86_400
    start = datetime.fromtimestamp(moment - RECOVER_MARGIN_S, UTC)
    return start.strftime("%Y-%m-%dT%H:%M:%SZ")


URL = re.compile(r"https?://\S+")


def _normalized(text: str) -> str:
    """Text as X shows it back, made comparable: X escapes &<> as HTML entities, wraps
    links (and appends media links) as t.co URLs, and normalises to NFC."""
    text = URL.sub(" ", unicodedata.normalize("NFC", html.unescape(text)))
    return " ".join(text.split())


def _same_post(post: dict[str, Any], text: str, media_ids: set[str]) -> bool:
    keys = (post.get("attachments") or {}).get("media_keys") or []
    posted_media = {str(key).rsplit("_", 1)[-1] for key in keys}  # "3_<media id>"
    if media_ids:  # our uploads are ours alone: a post carrying them is ours
        return posted_media == media_ids
    return not posted_media and _normalized(post.get("text", "")) == _normalized(text)


def _publish_error(response: http.Response, body: dict[str, Any]) -> PlatformError:
    """A refused publishing call in words a person can act on, with X's problem name."""
    status = response.status_code
    problem = str(body.get("type", "")).rsplit("/", 1)[-1]
    code = problem if problem and problem != "about:blank" else str(status)
    detail = str(body.get("detail") or body.get("title") or f"HTTP {status}")
    errors = [e.get("message") for e in body.get("errors") or [] if isinstance(e, dict)]
    said = "; ".join(m for m in errors if m) or detail
    retry_after = _retry_after(response)
    if status == 429:
        message = "X is limiting posts from this account or app right now: it will try again later."
        return PlatformError(
            "rate_limited", message, code=code, retry_after=retry_after, status=status
        )
    if status == 401:
        message = "X no longer accepts this account's access: refresh it or reconnect the account."
        return PlatformError("auth", message, code=code, status=status)
    if status >= 500:
        message = f"X is unavailable right now ({detail}): it will try again."
        return PlatformError(
            "transient", message, code=code, retry_after=retry_after, status=status
        )
    if status == 403 and "duplicate" in detail.lower():
        return PlatformError("permanent", DUPLICATE, code="duplicate", status=status)
    message = REFUSALS.get(said) or REFUSALS.get(detail) or f"X refused the post: {said}"
    return PlatformError("permanent", f"{message} ({code}).", code=code, status=status)


def _oauth_error(response: http.Response, body: dict[str, Any], doing: str) -> PlatformError:
    """X's OAuth endpoints answer {error, error_description}. A refused token
    (invalid_request/invalid_grant) means the connection must be renewed: "auth". A
    refused client (401) is our app's configuration, which reconnecting cannot fix."""
    error = str(body.get("error") or response.status_code)
    detail = body.get("error_description") or body.get("detail") or "no details"
    status = response.status_code
    if status == 429:
        kind = "rate_limited"
    elif status >= 500:
        kind = "transient"
    elif error in ("invalid_request", "invalid_grant") and status != 401:
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
    """Seconds to wait: Retry-After when given, else (for a 429) until every exhausted rate
    window resets (epoch seconds; POST /2/tweets also has 24-hour windows), else until
    the x-rate-limit window resets."""
    header = response.headers.get("retry-after", "")
    if header.isdigit():
        return float(header)
    if response.status_code != 429:
        return None
    headers = response.headers
    exhausted = [
        int(headers[f"{family}-reset"])
        for family in ("x-rate-limit", "x-user-limit-24hour", "x-app-limit-24hour")
        if headers.get(f"{family}-remaining") == "0"
        and headers.get(f"{family}-reset", "").isdigit()
    ]
    reset = headers.get("x-rate-limit-reset", "")
    if exhausted:
        return max(0.0, max(exhausted) - time.time())
    return max(0.0, int(reset) - time.time()) if reset.isdigit() else None
