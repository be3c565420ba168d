"""TikTok Login Kit v2: authorize + consent, token (code and rotating refresh), revoke,
user info, and the helpers the Content Posting fake shares (v2 envelope, bearer check,
rate limits). Contract: shared/platforms.md section 3."""

from __future__ import annotations

import base64
import hashlib
import math
import secrets
import time
from typing import Any
from urllib.parse import urlencode, urlsplit

from litestar import Request, Response, get, post

from src.sandbox.consent import consent_page, render_page
from src.sandbox.state import Grant, Identity, SandboxState

PLATFORM = "tiktok"
AUTHORIZE_PATH = "/tiktok/www/v2/auth/authorize/"
CODE_TTL = 600  # authorization codes live 10 minutes

SCOPE_FIELDS = {
    "user.info.basic": (
        "open_id",
        "union_id",
        "avatar_url",
        "avatar_url_100",
        "avatar_large_url",
        "display_name",
    ),
    "user.info.profile": ("bio_description", "profile_deep_link", "is_verified", "username"),
    "user.info.stats": ("follower_count", "following_count", "likes_count", "video_count"),
}
FIELD_SCOPE = {field: scope for scope, fields in SCOPE_FIELDS.items() for field in fields}
KNOWN_SCOPES = {*SCOPE_FIELDS, "video.list", "video.publish", "video.upload"}

MSG_TOKEN_INVALID = "The access token is invalid or not found in the request."
MSG_TOKEN_EXPIRED = "Access token is invalid, please refresh token and retry"
MSG_SCOPE = "The user did not authorize the scope required for completing this request."
MSG_RATE = "The API rate limit was exceeded. Please try again later."


# -- shared helpers --------------------------------------------------------------------
def sandbox(request: Request) -> SandboxState:
    return request.app.state.sandbox


def log_id(state: SandboxState) -> str:
    """Like TikTok's: UTC timestamp then 20 upper-case hex digits."""
    stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(state.now()))
    return stamp + secrets.token_hex(10).upper()


def oauth_error(state: SandboxState, error: str, description: str, status: int = 400) -> Response:
    """Login Kit errors are flat, without the v2 envelope."""
    body = {"error": error, "error_description": description, "log_id": log_id(state)}
    return Response(body, status_code=status)


def api_ok(state: SandboxState, data: dict[str, Any]) -> Response:
    return Response({"data": data, "error": {"code": "ok", "message": "", "log_id": log_id(state)}})


def api_error(
    state: SandboxState, code: str, message: str, status: int, headers: dict | None = None
) -> Response:
    error = {"code": code, "message": message, "log_id": log_id(state)}
    return Response({"data": {}, "error": error}, status_code=status, headers=headers or {})


def bearer(request: Request, *scopes: str) -> tuple[Grant | None, Response | None]:
    """The caller's live access token, needing any one of `scopes` (none: no check)."""
    state = sandbox(request)
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    grant, reason = state.lookup(
        value.strip() if scheme.lower() == "bearer" else "", PLATFORM, "access"
    )
    if grant is None:
        message = MSG_TOKEN_EXPIRED if reason in ("expired", "revoked") else MSG_TOKEN_INVALID
        return None, api_error(state, "access_token_invalid", message, 401)
    if scopes and not set(scopes) & set(grant.scopes):
        return None, api_error(state, "scope_not_authorized", MSG_SCOPE, 401)
    return grant, None


def rate_limited(state: SandboxState, name: str, user_id: str, limit: int) -> Response | None:
    """Per-user one-minute sliding window, as TikTok counts per user token."""
    allowed, _, reset = state.hit(f"tiktok:{name}:{user_id}", limit, 60)
    if allowed:
        return None
    wait = str(max(1, math.ceil(reset - state.now())))
    return api_error(state, "rate_limit_exceeded", MSG_RATE, 429, {"Retry-After": wait})


def avatar_url(state: SandboxState, identity: Identity, size: str = "") -> str:
    return f"{state.config.base_url}/tiktok/cdn/avatar/{identity.id}{size}.jpeg"


# -- authorize -------------------------------------------------------------------------
def _error_page(error: str, description: str) -> Response:
    """What TikTok shows when it cannot trust the client or its redirect_uri."""
    response = render_page("tiktok_error.html", error=error, description=description)
    response.status_code = 400
    return response


def _redirect(uri: str, params: dict[str, str]) -> Response:
    query = urlencode({k: v for k, v in params.items() if v is not None})
    location = uri + ("&" if "?" in uri else "?") + query
    return Response(b"", status_code=302, headers={"Location": location})


def _valid_redirect_uri(uri: str) -> bool:
    parts = urlsplit(uri)
    return parts.scheme in ("http", "https") and bool(parts.netloc) and not parts.fragment


def _requested_scopes(raw: str) -> list[str]:
    # Comma-separated: a space-separated list is one unknown scope, as at TikTok.
    return list(dict.fromkeys(s.strip() for s in raw.split(",") if s.strip()))


def _check_authorize(state: SandboxState, params: Any) -> Response | None:
    """Refusals shared by the consent page (GET) and its form (POST)."""
    key = params.get("client_key")
    if not key:
        hint = " (the parameter is client_key, not client_id)" if params.get("client_id") else ""
        return _error_page("invalid_request", "Missing required parameter: client_key" + hint)
    if key != state.config.tiktok_client_key:
        return _error_page("invalid_client", "The client_key is unknown.")
    uri = params.get("redirect_uri") or ""
    if not _valid_redirect_uri(uri):
        return _error_page("invalid_request", "redirect_uri is missing or invalid.")
    sent_state = params.get("state")
    if params.get("response_type") != "code":
        return _redirect(
            uri,
            {
                "error": "unsupported_response_type",
                "error_description": "response_type must be code.",
                "state": sent_state,
            },
        )
    scopes = _requested_scopes(params.get("scope") or params.get("requested_scopes") or "")
    unknown = [s for s in scopes if s not in KNOWN_SCOPES]
    if not scopes or unknown:
        text = f"Unknown scope: {', '.join(unknown)}" if unknown else "scope is required."
        return _redirect(
            uri, {"error": "invalid_scope", "error_description": text, "state": sent_state}
        )
    if params.get("code_challenge") and params.get("code_challenge_method") != "S256":
        return _redirect(
            uri,
            {
                "error": "invalid_request",
                "error_description": "code_challenge_method must be S256.",
                "state": sent_state,
            },
        )
    return None


@get(AUTHORIZE_PATH, sync_to_thread=False)
def authorize(request: Request) -> Response:
    state = sandbox(request)
    params = request.query_params
    refused = _check_authorize(state, params)
    if refused is not None:
        return refused
    hidden = {
        name: params.get(name) or ""
        for name in (
            "client_key",
            "redirect_uri",
            "state",
            "response_type",
            "code_challenge",
            "code_challenge_method",
        )
    }
    hidden["requested_scopes"] = params.get("scope")
    return consent_page(
        platform_title="TikTok",
        action=state.config.base_url + AUTHORIZE_PATH,
        identities=state.identities_of(PLATFORM),
        scopes=_requested_scopes(params.get("scope")),
        hidden=hidden,
    )


@post(AUTHORIZE_PATH, status_code=302)
async def consent(request: Request) -> Response:
    state = sandbox(request)
    form = await request.form()
    refused = _check_authorize(state, form)
    if refused is not None:
        return refused
    uri, sent_state = form.get("redirect_uri"), form.get("state") or None
    if form.get("decision") != "allow":
        text = "The user denied the authorization request."
        return _redirect(
            uri, {"error": "access_denied", "error_description": text, "state": sent_state}
        )
    identity = state.identity(PLATFORM, form.get("identity") or "")
    if identity is None:
        return _error_page("invalid_request", "Choose a test identity.")
    ticked = set(form.getall("scope", []))
    granted = [s for s in _requested_scopes(form.get("requested_scopes")) if s in ticked]
    if not granted:
        text = "The user did not grant any permission."
        return _redirect(
            uri, {"error": "access_denied", "error_description": text, "state": sent_state}
        )
    code = _issue_code(state, identity.id, granted, form)
    return _redirect(uri, {"code": code.value, "scopes": ",".join(granted), "state": sent_state})


def _issue_code(state: SandboxState, user_id: str, scopes: list[str], form: Any) -> Grant:
    # Real codes carry '*' and '!' (e.g. "…*0!4321"), so clients must URL-decode them.
    value = f"{secrets.token_urlsafe(48)}*0!{secrets.randbelow(9000) + 1000}"
    grant = Grant(
        value, PLATFORM, "code", user_id, form.get("client_key"), scopes, state.now() + CODE_TTL
    )
    grant.extra.update(
        redirect_uri=form.get("redirect_uri"),
        code_challenge=form.get("code_challenge") or "",
    )
    state.grants[value] = grant
    return grant


# -- token, refresh, revoke --------------------------------------------------------------
async def _form(request: Request) -> dict[str, str] | None:
    if "application/x-www-form-urlencoded" not in request.headers.get("content-type", ""):
        return None
    form = await request.form()
    return {key: form.get(key) for key in form}


def _client_error(state: SandboxState, form: dict[str, str] | None) -> Response | None:
    if form is None:
        text = "Content-Type must be application/x-www-form-urlencoded."
        return oauth_error(state, "invalid_request", text)
    if not form.get("client_key") or not form.get("client_secret"):
        return oauth_error(
            state, "invalid_client", "client_key and client_secret are required.", 401
        )
    config = state.config
    if (form["client_key"], form["client_secret"]) != (
        config.tiktok_client_key,
        config.tiktok_client_secret,
    ):
        return oauth_error(state, "invalid_client", "Client key or secret is incorrect.", 401)
    return None


def _pkce_ok(challenge: str, verifier: str | None) -> bool:
    """Both the RFC 7636 base64url form and TikTok's desktop lowercase-hex form."""
    if not challenge:
        return True
    if not verifier:
        return False
    digest = hashlib.sha256(verifier.encode()).digest()
    rfc = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    return secrets.compare_digest(challenge, rfc) or secrets.compare_digest(challenge, digest.hex())


def _token_response(state: SandboxState, access: Grant, refresh: Grant) -> Response:
    now = state.now()
    return Response(
        {
            "access_token": access.value,
            "expires_in": round(access.expires_at - now),
            "open_id": access.user_id,
            "refresh_expires_in": max(0, round(refresh.expires_at - now)),
            "refresh_token": refresh.value,
            "scope": ",".join(access.scopes),
            "token_type": "Bearer",
        },
        headers={"Cache-Control": "no-store"},
    )


def _issue_pair(
    state: SandboxState, user_id: str, client: str, scopes: list[str], grant_id: str
) -> tuple[Grant, Grant]:
    config = state.config
    access = state.issue(
        PLATFORM, "access", user_id, client, scopes, config.tiktok_access_ttl, "act.",
        grant_id=grant_id,
    )  # fmt: skip
    refresh = state.issue(
        PLATFORM, "refresh", user_id, client, scopes, config.tiktok_refresh_ttl, "rft.",
        grant_id=grant_id,
    )  # fmt: skip
    return access, refresh


def _exchange_code(state: SandboxState, form: dict[str, str]) -> Response:
    if not form.get("code"):
        return oauth_error(state, "invalid_request", "Missing required parameter: code.")
    code, reason = state.lookup(form["code"], PLATFORM, "code")
    if code is None or code.used or code.client_id != form["client_key"]:
        text = "Authorization code is expired." if reason == "expired" else ""
        return oauth_error(state, "invalid_grant", text or "Authorization code is invalid.")
    if not form.get("redirect_uri"):
        return oauth_error(state, "invalid_request", "Missing required parameter: redirect_uri.")
    if form["redirect_uri"] != code.extra["redirect_uri"]:
        text = "redirect_uri does not match the one of the authorization request."
        return oauth_error(state, "invalid_grant", text)
    if not _pkce_ok(code.extra["code_challenge"], form.get("code_verifier")):
        return oauth_error(state, "invalid_request", "Code verifier or code challenge is invalid.")
    code.used = True
    grant_id = secrets.token_hex(8)
    access, refresh = _issue_pair(state, code.user_id, code.client_id, code.scopes, grant_id)
    return _token_response(state, access, refresh)


def _refresh(state: SandboxState, form: dict[str, str]) -> Response:
    if not form.get("refresh_token"):
        return oauth_error(state, "invalid_request", "Missing required parameter: refresh_token.")
    old, _ = state.lookup(form["refresh_token"], PLATFORM, "refresh")
    if old is None or old.client_id != form["client_key"]:
        return oauth_error(state, "invalid_grant", "Refresh token is invalid or expired.")
    # Rotation: "The previous refresh token stops working once a new one is issued."
    old.revoked = True
    grant_id = old.extra["grant_id"]
    access, refresh = _issue_pair(state, old.user_id, old.client_id, old.scopes, grant_id)
    refresh.expires_at = old.expires_at  # the grant's lifetime counts down, it is not renewed
    return _token_response(state, access, refresh)


@post("/tiktok/open/v2/oauth/token/", status_code=200)
async def token(request: Request) -> Response:
    state = sandbox(request)
    form = await _form(request)
    refused = _client_error(state, form)
    if refused is not None:
        return refused
    grant_type = form.get("grant_type")
    if grant_type == "authorization_code":
        return _exchange_code(state, form)
    if grant_type == "refresh_token":
        return _refresh(state, form)
    if not grant_type:
        return oauth_error(state, "invalid_request", "Missing required parameter: grant_type.")
    return oauth_error(state, "unsupported_grant_type", f"Unsupported grant_type: {grant_type}.")


@post("/tiktok/open/v2/oauth/revoke/", status_code=200)
async def revoke(request: Request) -> Response:
    state = sandbox(request)
    form = await _form(request)
    refused = _client_error(state, form)
    if refused is not None:
        return refused
    if not form.get("token"):
        return oauth_error(state, "invalid_request", "Missing required parameter: token.")
    grant = state.grants.get(form["token"])
    if grant is not None and grant.platform == PLATFORM and grant.kind in ("access", "refresh"):
        if grant.client_id != form["client_key"]:
            return oauth_error(state, "invalid_grant", "The token was issued to another client.")
        grant_id = grant.extra.get("grant_id")
        for other in state.grants.values():
            if other.platform == PLATFORM and other.extra.get("grant_id") == grant_id:
                other.revoked = True
    return Response({})


# -- user info -----------------------------------------------------------------------------
def _user_fields(state: SandboxState, identity: Identity) -> dict[str, Any]:
    extra = identity.extra
    videos = sum(
        1 for p in state.published if p["platform"] == PLATFORM and p["account_id"] == identity.id
    )
    return {
        "open_id": identity.id,
        "union_id": extra["union_id"],
        "avatar_url": avatar_url(state, identity),
        "avatar_url_100": avatar_url(state, identity, "_100x100"),
        "avatar_large_url": avatar_url(state, identity, "_1080x1080"),
        "display_name": identity.name,
        "bio_description": extra.get("bio_description", ""),
        "profile_deep_link": f"{state.config.base_url}/tiktok/www/@{identity.username}",
        "is_verified": extra.get("is_verified", False),
        "username": identity.username,
        "follower_count": extra.get("follower_count", 0),
        "following_count": extra.get("following_count", 0),
        "likes_count": extra.get("likes_count", 0),
        "video_count": extra.get("video_count", 0) + videos,
    }


@get("/tiktok/open/v2/user/info/", sync_to_thread=False)
def user_info(request: Request) -> Response:
    state = sandbox(request)
    grant, refused = bearer(request)
    if refused is not None:
        return refused
    limited = rate_limited(state, "user_info", grant.user_id, 600)
    if limited is not None:
        return limited
    fields = [f.strip() for f in (request.query_params.get("fields") or "").split(",") if f.strip()]
    if not fields:
        return api_error(state, "invalid_params", "fields is required.", 400)
    unknown = [f for f in fields if f not in FIELD_SCOPE]
    if unknown:
        return api_error(state, "invalid_params", f"Invalid fields: {','.join(unknown)}", 400)
    if any(FIELD_SCOPE[f] not in grant.scopes for f in fields):
        return api_error(state, "scope_not_authorized", MSG_SCOPE, 401)
    everything = _user_fields(state, state.identity(PLATFORM, grant.user_id))
    return api_ok(state, {"user": {f: everything[f] for f in fields}})


def routes() -> list:
    return [authorize, consent, token, revoke, user_info]
