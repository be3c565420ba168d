"""Meta Graph plumbing shared by the Facebook and Instagram publishers: one Graph caller
(`Graph`), the error envelope mapped onto PlatformError (`error_from`), and Facebook
Login (`FacebookLogin`: dialog URL, code -> short-lived -> long-lived user token,
/me/permissions check, revoke). The publish steps (meta_publish.py, facebook.py,
instagram.py) reuse `Graph` and `error_from`.

Contract: shared/platforms.md sections 1.2 (login), 1.4 (errors, usage headers), 2.1 and
2.4 (Instagram lookups and errors)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from authlib.common.security import generate_token

from src import http
from src.publishers.base import (
    AuthorizationRequest,
    ConnectError,
    Endpoints,
    PlatformError,
    TokenSet,
    expires_at,
)

DEFAULT_TIMEOUT = 30.0
PAGE_LIMIT = 100  # Graph's largest page size for /me/accounts
MAX_PAGES = 50  # a runaway cursor must not loop forever (5,000 Pages is plenty)

# Graph error codes (platforms.md 1.4 and 2.4), grouped by what the caller should do.
AUTH_CODES = frozenset({102, 104, 190})  # token expired, revoked, invalid or missing
RATE_LIMIT_CODES = frozenset({4, 17, 32, 613, 80001})
TRANSIENT_CODES = frozenset({1, 2, -1, -2})
BLOCKED_CODES = frozenset({368})  # "temporarily blocked for policy violations"
BLOCKED_SUBCODES = frozenset({2207051})  # Instagram: action restricted as spam (code 4)
DEAUTHORIZED = 458  # 190/458: the person already removed the app
DEFAULT_RATE_WAIT = 60.0  # no usage header said how long: try again in a minute
BLOCKED_WAIT = 3600.0  # blocks last hours; an hour keeps us from hammering
USAGE_HEADERS = ("x-business-use-case-usage", "x-page-usage", "x-app-usage")

# Token-endpoint subcodes (Meta's words for a dead authorization code).
CODE_EXPIRED, CODE_REDIRECT_MISMATCH, CODE_USED = 36007, 36008, 36009


class GraphError(PlatformError):
    """A PlatformError that keeps the parts of Meta's envelope the publish steps key on
    (Instagram's subcodes tell "retry the step" from "make a new container")."""

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        code: int | None = None,
        subcode: int | None = None,
        status: int | None = None,
        retry_after: float | None = None,
        transient: bool | None = None,
        raw_message: str = "",
    ) -> None:
        super().__init__(
            kind,
            message,
            code="" if code is None else str(code),
            retry_after=retry_after,
            status=status,
        )
        self.graph_code = code
        self.subcode = subcode
        self.is_transient = transient
        self.raw_message = raw_message  # Graph's own text, for matching (never shown raw)


# -- the error envelope ----------------------------------------------------------------
def classify(code: int | None, subcode: int | None, transient: bool | None, status: int) -> str:
    """auth | rate_limited | transient | permanent, keyed on Graph's code (the HTTP
    status of Graph errors is nearly always 400, so it only decides the leftovers)."""
    if code in AUTH_CODES:
        return "auth"
    if code in BLOCKED_CODES or subcode in BLOCKED_SUBCODES or code in RATE_LIMIT_CODES:
        return "rate_limited"
    if code in TRANSIENT_CODES or transient is True or status >= 500:
        return "transient"
    if code is None and status == 429:
        return "rate_limited"
    return "permanent"


def retry_after(headers: Any, default: float | None) -> float | None:
    """Seconds to wait: the longest `estimated_time_to_regain_access` (minutes) in the
    usage headers, else Retry-After, else `default`."""
    minutes = [m for name in USAGE_HEADERS for m in _regain_minutes(headers.get(name))]
    if any(m > 0 for m in minutes):
        return max(minutes) * 60.0
    try:
        return max(0.0, float(headers.get("retry-after")))
    except (TypeError, ValueError):
        return default


def _regain_minutes(raw: str | None) -> list[float]:
    """X-Business-Use-Case-Usage is {"<id>": [{..., "estimated_time_to_regain_access": m}]};
    X-App-Usage / X-Page-Usage are flat dicts that normally lack it."""
    try:
        data = json.loads(raw) if raw else None
    except ValueError:
        return []
    if not isinstance(data, dict):
        return []
    entries: list[Any] = [data]
    for value in data.values():
        if isinstance(value, list):
            entries.extend(value)
    found = []
    for entry in entries:
        value = entry.get("estimated_time_to_regain_access") if isinstance(entry, dict) else None
        if isinstance(value, int | float):
            found.append(float(value))
    return found


def error_from(
    response: http.Response, product: str, secrets: tuple[str | None, ...] = ()
) -> GraphError:
    """Map a failed Graph answer onto a GraphError in plain words plus Meta's code.
    `secrets` (tokens, app secret, code) are cut out of any text, just in case."""
    status = response.status_code
    envelope = _json(response).get("error")
    if not isinstance(envelope, dict):
        kind = classify(None, None, None, status)
        wait = retry_after(response.headers, DEFAULT_RATE_WAIT if kind == "rate_limited" else None)
        text = f"{product} answered HTTP {status} without an explanation"
        return GraphError(kind, _sentence(kind, text, product), status=status, retry_after=wait)
    code, subcode = _int(envelope.get("code")), _int(envelope.get("error_subcode"))
    transient = envelope.get("is_transient")
    transient = transient if isinstance(transient, bool) else None
    kind = classify(code, subcode, transient, status)
    raw = _scrub(str(envelope.get("message") or ""), secrets)
    shown = _scrub(str(envelope.get("error_user_msg") or ""), secrets) or raw
    label = f"code {code}" + (f"/{subcode}" if subcode is not None else "")
    default = None
    if kind == "rate_limited":
        blocked = code in BLOCKED_CODES or subcode in BLOCKED_SUBCODES
        default = BLOCKED_WAIT if blocked else DEFAULT_RATE_WAIT
    return GraphError(
        kind,
        _sentence(kind, f"{shown or 'no description'} ({label})", product),
        code=code,
        subcode=subcode,
        status=status,
        retry_after=retry_after(response.headers, default),
        transient=transient,
        raw_message=raw,
    )


def _sentence(kind: str, detail: str, product: str) -> str:
    if kind == "auth":
        return f"{product} no longer accepts this connection: {detail}. Reconnect the account."
    if kind == "rate_limited":
        return f"{product} asked us to slow down: {detail}."
    if kind == "transient":
        return f"{product} had a temporary problem: {detail}."
    return f"{product} refused the request: {detail}."


def network_error(product: str, error: Exception) -> GraphError:
    """Timeouts and connection failures: retry later."""
    what = "did not answer in time" if isinstance(error, http.TimeoutException) else "unreachable"
    return GraphError("transient", f"{product} is {what} ({type(error).__name__}).")


def _json(response: http.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {"result": body}


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _scrub(text: str, secrets: tuple[str | None, ...]) -> str:
    for secret in secrets:
        if secret and len(secret) >= 6:
            text = text.replace(secret, "[redacted]")
    return text


# -- calling Graph ---------------------------------------------------------------------
class Graph:
    """Calls graph.facebook.com/{version}/... through the one HTTP client. Tokens travel
    in the Authorization header (Graph accepts `Bearer`), never in the URL, so they stay
    out of access logs."""

    def __init__(self, endpoints: Endpoints, product: str, timeout: float = DEFAULT_TIMEOUT):
        self.endpoints = endpoints
        self.product = product
        self.timeout = timeout

    def url(self, path: str) -> str:
        parts = [self.endpoints.api_url.rstrip("/"), self.endpoints.version, path.strip("/")]
        return "/".join(part for part in parts if part)

    async def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        params: dict[str, str] | None = None,
        data: dict[str, str] | None = None,
        files: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """`files` makes a multipart body; file objects in it are streamed in chunks."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            response = await http.client().request(
                method,
                self.url(path),
                params=params,
                data=data,
                files=files,
                headers=headers,
                timeout=self.timeout,
            )
        except http.HTTPError as error:
            raise network_error(self.product, error) from error
        body = _json(response)
        if response.status_code >= 400 or "error" in body:
            raise error_from(response, self.product, (token, self.endpoints.client_secret))
        return body

    async def get(self, path: str, token: str, **params: str) -> dict[str, Any]:
        return await self.call("GET", path, token=token, params=params or None)

    async def post(self, path: str, token: str, **data: str) -> dict[str, Any]:
        return await self.call("POST", path, token=token, data=data or None)

    async def delete(self, path: str, token: str) -> dict[str, Any]:
        return await self.call("DELETE", path, token=token)

    async def pages(self, token: str, fields: str) -> list[dict[str, Any]]:
        """Every Page of GET /me/accounts, following the `after` cursor while Graph says
        there is a next page (the cursor, not the `next` URL, so we stay on our host)."""
        pages: list[dict[str, Any]] = []
        after = ""
        for _ in range(MAX_PAGES):
            params = {"fields": fields, "limit": str(PAGE_LIMIT)}
            if after:
                params["after"] = after
            body = await self.get("me/accounts", token, **params)
            pages.extend(item for item in body.get("data") or [] if isinstance(item, dict))
            paging = body.get("paging") or {}
            after = (paging.get("cursors") or {}).get("after") or ""
            if not paging.get("next") or not after:
                break
        return pages


# -- Facebook Login --------------------------------------------------------------------
@dataclass
class UserToken:
    """The long-lived Facebook user token of one connect, and what it may do."""

    value: str
    expires_at: datetime | None
    granted: list[str]
    user_id: str = ""
    user_name: str = ""
    declined: list[str] = field(default_factory=list)

    @property
    def expires_iso(self) -> str | None:
        return self.expires_at.isoformat() if self.expires_at else None


class FacebookLogin:
    """Facebook Login, "manually build a login flow" (platforms.md 1.2). No PKCE: Meta's
    PKCE/OIDC variant of the manual flow is marked "still in testing", so we use the
    confidential-client code flow with the app secret, as Meta documents it."""

    def __init__(self, graph: Graph, scopes: list[str], product: str) -> None:
        self.graph = graph
        self.scopes = scopes
        self.product = product  # what is being connected, e.g. "Instagram"

    def authorization(self, redirect_uri: str) -> AuthorizationRequest:
        endpoints = self.graph.endpoints
        state = generate_token(32)
        query = {
            "client_id": endpoints.client_id,
            "redirect_uri": redirect_uri,
            "state": state,
            "scope": ",".join(self.scopes),  # Facebook wants commas
            "response_type": "code",
            # Without rerequest Facebook silently skips permissions the person declined
            # before, so "reconnect and keep every permission ticked" could never work.
            "auth_type": "rerequest",
        }
        parts = [endpoints.auth_url.rstrip("/"), endpoints.version, "dialog/oauth"]
        base = "/".join(part for part in parts if part)
        return AuthorizationRequest(url=f"{base}?{urlencode(query)}", state=state)

    async def user_token(self, params: dict[str, str], redirect_uri: str) -> UserToken:
        """Callback params -> long-lived user token with every required permission, or
        ConnectError saying what went wrong in plain words."""
        code = self._callback_code(params)
        endpoints = self.graph.endpoints
        short = await self._token(
            {
                "client_id": endpoints.client_id,
                "redirect_uri": redirect_uri,
                "client_secret": endpoints.client_secret,
                "code": code,
            },
            secrets=(code,),
        )
        # Trade the ~2 h token at once for a ~60-day one: Meta has no refresh token,
        # and Page tokens derived from a long-lived user token do not expire.
        long = await self._token(
            {
                "grant_type": "fb_exchange_token",
                "client_id": endpoints.client_id,
                "client_secret": endpoints.client_secret,
                "fb_exchange_token": short["access_token"],
            },
            secrets=(short["access_token"],),
        )
        user = UserToken(long["access_token"], expires_at(long.get("expires_in")), [])
        try:
            await self._check_permissions(user)
            me = await self.graph.get("me", user.value, fields="id,name")
        except PlatformError as error:
            raise self.discovery_failed("check the permissions you granted", error) from error
        user.user_id, user.user_name = str(me.get("id", "")), str(me.get("name", ""))
        return user

    def _callback_code(self, params: dict[str, str]) -> str:
        error = params.get("error")
        if error == "access_denied" or params.get("error_reason") == "user_denied":
            raise ConnectError(
                f"You declined the {self.product} connection at Facebook. Nothing was connected."
            )
        if error:
            detail = params.get("error_description") or error
            raise ConnectError(
                f"Facebook could not finish the sign-in ({detail}). Nothing was connected."
            )
        code = params.get("code")
        if not code:
            raise ConnectError("Facebook sent no authorization code. Please connect again.")
        return code

    async def _token(self, form: dict[str, str], secrets: tuple[str, ...]) -> dict[str, Any]:
        """/oauth/access_token. Meta documents it as a GET with query parameters, but
        Graph takes any parameter in a form body too (platforms.md 1.3), and a POST keeps
        the app secret, the code and the short-lived token out of the URL, which the
        HTTP client logs at INFO and proxies record."""
        graph = self.graph
        try:
            response = await http.client().post(
                graph.url("oauth/access_token"), data=form, timeout=graph.timeout
            )
        except http.HTTPError as error:
            raise ConnectError(_unavailable()) from error
        body = _json(response)
        if response.status_code == 200 and body.get("access_token"):
            return body
        all_secrets = (*secrets, graph.endpoints.client_secret)
        raise ConnectError(_token_refusal(error_from(response, "Facebook", all_secrets)))

    async def _check_permissions(self, user: UserToken) -> None:
        """GET /me/permissions: each permission is "granted" or "declined"; anything
        required that is not granted is named in the ConnectError."""
        body = await self.graph.get("me/permissions", user.value)
        statuses = {
            str(item.get("permission")): str(item.get("status"))
            for item in body.get("data") or []
            if isinstance(item, dict)
        }
        user.granted = sorted(name for name, status in statuses.items() if status == "granted")
        user.declined = sorted(name for name, status in statuses.items() if status == "declined")
        missing = [scope for scope in self.scopes if statuses.get(scope) != "granted"]
        if missing:
            # We do not revoke here: DELETE /me/permissions would deauthorize the whole
            # app for this person, killing their other Facebook/Instagram connections.
            raise ConnectError(
                f"Facebook did not grant: {', '.join(missing)}. "
                "Reconnect and keep every permission ticked."
            )

    def discovery_failed(self, doing: str, error: PlatformError) -> ConnectError:
        if error.kind in ("transient", "rate_limited"):
            return ConnectError(
                f"Facebook is unavailable right now, so we could not {doing} "
                f"({error.message}). Nothing was connected; please try again in a few minutes."
            )
        return ConnectError(f"We could not {doing}: {error.message} Nothing was connected.")

    async def revoke(self, user_token: str | None) -> None:
        """DELETE /me/permissions with the user token: deauthorizes the app for this
        person, which kills the user token and every Page token derived from it."""
        if not user_token:
            raise PlatformError(
                "permanent",
                "No Facebook user token is stored for this account, so access cannot be "
                "revoked from here. Remove OKKTOPUS under Facebook Settings > Business "
                "Integrations.",
            )
        try:
            body = await self.graph.delete("me/permissions", user_token)
        except GraphError as error:
            if error.graph_code == 190 and error.subcode == DEAUTHORIZED:
                return  # the person already removed the app: nothing left to revoke
            raise
        if body.get("success") is not True:
            raise PlatformError("transient", "Facebook did not confirm the revocation.")

    def cannot_refresh(self, tokens: TokenSet) -> PlatformError:
        """Meta has no refresh grant; the accounts domain warns ahead of the expiry."""
        when = tokens.refresh_expires_at or tokens.access_expires_at
        if when is None:
            advice = "reconnect the account when it stops working"
        elif when <= datetime.now(UTC):
            advice = f"the connection expired on {when:%d %B %Y}; reconnect the account"
        else:
            advice = f"reconnect before {when:%d %B %Y} to keep publishing"
        return PlatformError("auth", f"Facebook tokens cannot be refreshed; {advice}.")


def _unavailable() -> str:
    return "Facebook is unavailable right now. Nothing was connected; please try again shortly."


def _token_refusal(error: GraphError) -> str:
    """Plain words for a refused code or token exchange."""
    code, subcode = error.graph_code, error.subcode
    label = f"code {code}" + (f"/{subcode}" if subcode is not None else "")
    bad_secret = code == 1 and "secret" in error.raw_message.lower()
    if code == 101 or bad_secret:
        return (
            f"Facebook refused this server's app credentials ({label}). Check "
            "OKK_FACEBOOK_APP_ID and OKK_FACEBOOK_APP_SECRET. Nothing was connected."
        )
    if error.kind in ("transient", "rate_limited"):
        return _unavailable()
    if subcode == CODE_REDIRECT_MISMATCH or code == 191:
        return (
            f"Facebook rejected the redirect address ({label}): it must match the one "
            "registered for the app. Nothing was connected."
        )
    if code == 100 or code in AUTH_CODES:
        return (
            f"This Facebook sign-in has expired or was already used ({label}). "
            "Nothing was connected; please connect again."
        )
    return f"Facebook refused the sign-in: {error.message} Nothing was connected."
