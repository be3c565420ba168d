"""X (Twitter) API v2: OAuth 2.0 Authorization Code with PKCE (S256), a confidential
client authenticating with HTTP Basic, account discovery through GET /2/users/me,
rotating refresh tokens and token revocation. Contract: shared/platforms.md section 4."""

from __future__ import annotations

import contextlib
import time
from typing import Any

from authlib.common.security import generate_token
from authlib.integrations.httpx_client import OAuth2ClientAuth
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri
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

PLATFORM = "x"
TITLE = "X"
# offline.access gives us a refresh token; media.write is needed by every v2 media upload.
SCOPES = ["tweet.read", "tweet.write", "users.read", "offline.access", "media.write"]
DEFAULT_TIMEOUT = 30.0
UNAVAILABLE = "X is unavailable right now. Please try connecting again in a few minutes."


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
        body = _json(response)
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
            raise _network_error(error) from error
        body = _json(response)
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
            raise _network_error(error) from error
        body = _json(response)
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
            raise _network_error(error) from error
        if response.status_code != 200:
            raise _oauth_error(response, _json(response), "revoke access at X")

    async def _token_call(self, url: str, form: dict[str, str]) -> http.Response:
        """A POST to X's OAuth endpoints as a confidential client (HTTP Basic)."""
        auth = OAuth2ClientAuth(self.endpoints.client_id, self.endpoints.client_secret)
        return await http.client().post(url, data=form, auth=auth, timeout=self.timeout)


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
    return TokenSet(
        access_token=body["access_token"],
        refresh_token=body.get("refresh_token") or None,
        access_expires_at=expires_at(body.get("expires_in")),
        refresh_expires_at=expires_at(body.get("refresh_expires_in")),
        scopes=str(body.get("scope") or "").split(),
    )


def _json(response: http.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


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
    """Seconds to wait: Retry-After when given, else (for a 429) until the rate window's
    x-rate-limit-reset (epoch seconds)."""
    header = response.headers.get("retry-after", "")
    if header.isdigit():
        return float(header)
    reset = response.headers.get("x-rate-limit-reset", "")
    if response.status_code == 429 and reset.isdigit():
        return max(0.0, int(reset) - time.time())
    return None


def _network_error(error: Exception) -> PlatformError:
    what = "timed out" if isinstance(error, http.TimeoutException) else "could not be reached"
    return PlatformError("transient", f"X {what} ({type(error).__name__}).", code="network")
