"""X OAuth 2.0: Authorization Code with PKCE on x.com, token/refresh/revoke on api.x.com."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from typing import Any
from urllib.parse import urlencode, urlsplit

from litestar import Request, Response, get, post
from litestar.response import Redirect

from src.sandbox.config import SandboxConfig
from src.sandbox.consent import consent_page, render_page
from src.sandbox.x_common import PLATFORM, sandbox

AUTHORIZE_PATH = "/x/www/i/oauth2/authorize"
# The scopes X's OAuth2UserToken scheme knows (spec securitySchemes).
KNOWN_SCOPES = frozenset(
    {
        "block.read", "bookmark.read", "bookmark.write", "broadcast.read", "broadcast.write",
        "dm.read", "dm.write", "follows.read", "follows.write", "like.read", "like.write",
        "list.read", "list.write", "media.write", "mute.read", "mute.write", "offline.access",
        "space.read", "timeline.read", "tweet.moderate.write", "tweet.read", "tweet.write",
        "users.read",
    }
)  # fmt: skip
AUTHORIZE_FIELDS = (
    "response_type",
    "client_id",
    "redirect_uri",
    "state",
    "code_challenge",
    "code_challenge_method",
)
PKCE_VALUE = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")
BAD_CODE = "Value passed for the authorization code was invalid."
BAD_TOKEN = "Value passed for the token was invalid."


# -- authorize (browser) -----------------------------------------------------------------
def _authorize_problem(params: dict[str, str], config: SandboxConfig) -> str:
    """Why X would show its error page instead of the consent screen ("" when fine)."""
    if params.get("client_id") not in (config.x_client_id, config.x_public_client_id):
        return "client_id is not a registered app."
    redirect = params.get("redirect_uri", "")
    if urlsplit(redirect).scheme not in ("http", "https") or not urlsplit(redirect).netloc:
        return "redirect_uri must be an absolute http(s) URL."
    if config.x_callback_urls and redirect not in config.x_callback_urls:
        return "redirect_uri does not match a registered callback URL."
    if params.get("response_type") != "code":
        return "response_type must be code."
    scopes = params.get("scope", "").split()
    if not scopes or not set(scopes) <= KNOWN_SCOPES:
        return "scope is missing or contains an unknown scope."
    if not params.get("state") or len(params["state"]) > 500:
        return "state is required and may be at most 500 characters."
    return _pkce_problem(params)


def _pkce_problem(params: dict[str, str]) -> str:
    method = params.get("code_challenge_method", "")
    if not params.get("code_challenge") or method not in ("S256", "plain"):
        return "PKCE is required: code_challenge with code_challenge_method S256 or plain."
    if not PKCE_VALUE.match(params["code_challenge"]):
        return "code_challenge is malformed."
    return ""


def _error_page(reason: str) -> Response:
    page = render_page("x_error.html", reason=reason)
    page.status_code = 400
    return page


def _back_to_client(redirect_uri: str, **params: str) -> Redirect:
    joiner = "&" if urlsplit(redirect_uri).query else "?"
    return Redirect(redirect_uri + joiner + urlencode(params), status_code=302)


@get(AUTHORIZE_PATH, sync_to_thread=False)
def authorize(request: Request) -> Response:
    state = sandbox(request)
    params = dict(request.query_params)
    problem = _authorize_problem(params, state.config)
    if problem:
        return _error_page(problem)
    hidden = {name: params[name] for name in AUTHORIZE_FIELDS}
    hidden["requested_scope"] = params["scope"]
    return consent_page(
        platform_title="X",
        action=state.config.base_url + AUTHORIZE_PATH,
        identities=state.identities_of(PLATFORM),
        scopes=params["scope"].split(),
        hidden=hidden,
    )


@post(AUTHORIZE_PATH, status_code=302)
async def authorize_decision(request: Request) -> Response:
    """The consent form's answer: back to the app with a code, or with access_denied."""
    state = sandbox(request)
    form = await request.form()
    params = {name: str(form.get(name, "")) for name in AUTHORIZE_FIELDS}
    params["scope"] = str(form.get("requested_scope", ""))
    problem = _authorize_problem(params, state.config)
    if problem:
        return _error_page(problem)
    if (
        form.get("decision") != "allow"
        or state.identity(PLATFORM, str(form.get("identity"))) is None
    ):
        return _back_to_client(params["redirect_uri"], error="access_denied", state=params["state"])
    ticked = set(form.getall("scope")) if "scope" in form else set()
    granted = [scope for scope in params["scope"].split() if scope in ticked]
    code = state.issue(
        PLATFORM,
        "code",
        str(form["identity"]),
        params["client_id"],
        granted,
        ttl=state.config.x_code_ttl,
        redirect_uri=params["redirect_uri"],
        code_challenge=params["code_challenge"],
        code_challenge_method=params["code_challenge_method"],
    )
    return _back_to_client(params["redirect_uri"], state=params["state"], code=code.value)


# -- token endpoint ----------------------------------------------------------------------
def oauth_error(error: str, description: str, status: int = 400) -> Response:
    return Response({"error": error, "error_description": description}, status_code=status)


def _client(request: Request, form: Any, config: SandboxConfig) -> tuple[str, Response | None]:
    """Authenticate the app: HTTP Basic for the confidential client, client_id in the
    body for the public one. Returns (client_id, error response or None)."""
    denied = oauth_error("unauthorized_client", "Missing valid authorization header", 401)
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    body_client = str(form.get("client_id", ""))
    if scheme.lower() == "basic":
        try:
            client_id, _, secret = base64.b64decode(credentials).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return "", denied
        good = client_id == config.x_client_id and hmac.compare_digest(
            secret, config.x_client_secret
        )
        if not good or body_client not in ("", client_id):
            return "", denied
        return client_id, None
    if not body_client:
        return "", oauth_error("invalid_request", "Missing required parameter [client_id].")
    if body_client != config.x_public_client_id:
        return "", denied  # confidential (or unknown) clients must authenticate
    return body_client, None


def _missing(form: Any, *names: str) -> Response | None:
    for name in names:
        if not form.get(name):
            return oauth_error("invalid_request", f"Missing required parameter [{name}].")
    return None


def _verifier_matches(code_grant: Any, verifier: str) -> bool:
    challenge = code_grant.extra["code_challenge"]
    if code_grant.extra["code_challenge_method"] == "plain":
        return hmac.compare_digest(verifier, challenge)
    digest = hashlib.sha256(verifier.encode()).digest()
    return hmac.compare_digest(base64.urlsafe_b64encode(digest).rstrip(b"=").decode(), challenge)


def _tokens(request: Request, user_id: str, client_id: str, scopes: list[str]) -> Response:
    state = sandbox(request)
    ttl = state.config.x_access_ttl
    access = state.issue(PLATFORM, "access", user_id, client_id, scopes, ttl)
    body: dict[str, Any] = {
        "token_type": "bearer",
        "expires_in": ttl,
        "access_token": access.value,
        "scope": " ".join(scopes),
    }
    if "offline.access" in scopes:
        body["refresh_token"] = state.issue(
            PLATFORM, "refresh", user_id, client_id, scopes, None
        ).value
    return Response(body, headers={"Cache-Control": "no-store"})


def _exchange_code(request: Request, form: Any, client_id: str) -> Response:
    missing = _missing(form, "code", "redirect_uri", "code_verifier")
    if missing:
        return missing
    state = sandbox(request)
    grant, _ = state.lookup(str(form["code"]), PLATFORM, "code")
    if (
        grant is None
        or grant.used
        or grant.client_id != client_id
        or grant.extra["redirect_uri"] != form["redirect_uri"]
        or not _verifier_matches(grant, str(form["code_verifier"]))
    ):
        return oauth_error("invalid_request", BAD_CODE)
    grant.used = True  # authorization codes are single-use
    return _tokens(request, grant.user_id, client_id, grant.scopes)


def _refresh(request: Request, form: Any, client_id: str) -> Response:
    missing = _missing(form, "refresh_token")
    if missing:
        return missing
    grant, _ = sandbox(request).lookup(str(form["refresh_token"]), PLATFORM, "refresh")
    if grant is None or grant.client_id != client_id:
        return oauth_error("invalid_request", BAD_TOKEN)
    grant.revoked = True  # rotation: a refresh token works once
    return _tokens(request, grant.user_id, client_id, grant.scopes)


@post("/x/api/2/oauth2/token", status_code=200)
async def token(request: Request) -> Response:
    form = await request.form()
    client_id, denied = _client(request, form, sandbox(request).config)
    if denied:
        return denied
    grant_type = form.get("grant_type")
    if grant_type == "authorization_code":
        return _exchange_code(request, form, client_id)
    if grant_type == "refresh_token":
        return _refresh(request, form, client_id)
    return _missing(form, "grant_type") or oauth_error(
        "invalid_request", "Value passed for the grant type was invalid."
    )


@post("/x/api/2/oauth2/revoke", status_code=200)
async def revoke(request: Request) -> Response:
    """Revoke an access or refresh token; unknown tokens answer the same (RFC 7009)."""
    state = sandbox(request)
    form = await request.form()
    client_id, denied = _client(request, form, state.config)
    if denied:
        return denied
    missing = _missing(form, "token")
    if missing:
        return missing
    grant = state.grants.get(str(form["token"]))
    if (
        grant
        and grant.platform == PLATFORM
        and grant.kind != "code"
        and grant.client_id == client_id
    ):
        grant.revoked = True
    return Response({"revoked": True})


def routes() -> list:
    return [authorize, authorize_decision, token, revoke]
