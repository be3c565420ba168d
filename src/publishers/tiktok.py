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
from src.publishers.base import (
    AuthorizationRequest,
    ConnectError,
    DiscoveredAccount,
    Endpoints,
    PlatformError,
    TokenSet,
    expires_at,
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
        body = _json(response)
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
            raise _network_error(error) from error
        body = _json(response)
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
            raise _network_error(error) from error
        body = _json(response)
        if response.status_code != 200 or body.get("error"):
            raise _oauth_error(response, body, "revoke access at TikTok")

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
        self, method: str, path: str, tokens: TokenSet, params: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """A v2 data endpoint: its `data`, or PlatformError from its envelope."""
        headers = {"Authorization": f"Bearer {tokens.access_token}"}
        if method == "POST":
            headers["Content-Type"] = "application/json; charset=UTF-8"
        try:
            response = await http.client().request(
                method,
                f"{self.endpoints.api_url}{path}",
                params=params,
                headers=headers,
                timeout=self.timeout,
            )
        except http.HTTPError as error:
            raise _network_error(error) from error
        return envelope_data(response)


def make(endpoints: Endpoints, timeout: float = DEFAULT_TIMEOUT) -> TikTokPublisher:
    return TikTokPublisher(endpoints, timeout)


# -- responses -> values and errors --------------------------------------------------------
def envelope_data(response: http.Response) -> dict[str, Any]:
    """{"data", "error": {"code", "message", "log_id"}}: success only when code is "ok"."""
    body = _json(response)
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
    return TokenSet(
        access_token=body["access_token"],
        refresh_token=body.get("refresh_token") or None,
        access_expires_at=expires_at(body.get("expires_in")),
        refresh_expires_at=expires_at(body.get("refresh_expires_in")),
        scopes=_split(body.get("scope")),
    )


def _json(response: http.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


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


def _network_error(error: Exception) -> PlatformError:
    what = "timed out" if isinstance(error, http.TimeoutException) else "could not be reached"
    return PlatformError("transient", f"TikTok {what} ({type(error).__name__}).", code="network")
