"""Fake Google OpenID Connect provider under /google (issuer = {base_url}/google).

Endpoints (platforms.md section 5):
  GET  /google/.well-known/openid-configuration   discovery document
  GET  /google/oauth2/v3/certs                    JWKS (one RSA key per process, with kid)
  GET  /google/o/oauth2/v2/auth                   consent page; POST to it decides allow/deny
  POST /google/token                              authorization_code (+PKCE) and refresh_token
  GET  /google/v1/userinfo                        Bearer access token
  POST /google/revoke                             form `token` (access or refresh)
  POST /google/device/code                        refuses, as Google does for a web client
  GET  /google/avatar/{sub}                       the `picture` of a test identity (SVG)

Test identities: Alice Example and Bob Example (verified emails), Una Verified (email NOT
verified), plus any identity typed on the consent page ("Another test identity"), whose
`sub` is derived from the email so it stays the same across sign-ins.

Test knob for sign-in refusal tests: set `google_id_token_tamper` in the sandbox config,
e.g. `PATCH /admin/config {"google_id_token_tamper": "nonce"}`. The NEXT ID token the token
endpoint issues is spoiled, then the knob resets to "":
  "nonce"      nonce claim differs from the one sent on the authorize request
  "audience"   aud (and azp) name another client
  "expired"    iat two hours ago, exp one hour ago
  "signature"  signed by another RSA key that carries the same kid
  "issuer"     iss is a foreign issuer
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import html
import secrets
from functools import cache
from typing import Any
from urllib.parse import unquote, urlencode, urlsplit

from joserfc import jwt
from joserfc.jwk import RSAKey
from litestar import Request, Response, get, post
from litestar.params import FromPath
from litestar.response import Redirect

from src.sandbox.consent import consent_page, render_page
from src.sandbox.faults import register_errors
from src.sandbox.state import FaultRule, Grant, Identity, SandboxState

PLATFORM = "google"
CODE_TTL = 600
TAMPERS = ("nonce", "audience", "expired", "signature", "issuer")
SCOPE_URLS = {
    "email": "https://www.googleapis.com/auth/userinfo.email",
    "profile": "https://www.googleapis.com/auth/userinfo.profile",
}
NO_STORE = {"Cache-Control": "no-cache, no-store, max-age=0, must-revalidate", "Pragma": "no-cache"}
# Authorize-request parameters carried through the consent form unchanged
# (the requested `scope` travels as `requested_scope`: `scope` holds the ticked boxes).
CARRIED = (
    "client_id",
    "redirect_uri",
    "response_type",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "access_type",
    "prompt",
    "login_hint",
    "include_granted_scopes",
    "hd",
)


class OAuthError(Exception):
    """A refusal from the token, userinfo or revoke endpoint, in Google's OAuth JSON."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error, self.description, self.status = error, description, status

    def response(self) -> Response:
        body = {"error": self.error, "error_description": self.description}
        return Response(body, status_code=self.status, headers=NO_STORE)


class PageError(Exception):
    """A refusal on the authorize page: Google shows an error screen, never redirects."""

    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail = status, error, detail

    def response(self) -> Response:
        page = render_page(
            "google_error.html", status=self.status, error=self.error, detail=self.detail
        )
        page.status_code = self.status
        return page


# -- keys ----------------------------------------------------------------------------
@cache
def signing_key() -> RSAKey:
    """The provider's RSA key, generated once per process."""
    key = RSAKey.generate_key(2048, private=True)
    key.ensure_kid()
    return key


@cache
def rogue_key() -> RSAKey:
    """Another key presenting the same kid: for the "signature" tamper."""
    return RSAKey.generate_key(2048, parameters={"kid": signing_key().kid}, private=True)


def jwks() -> dict[str, Any]:
    public = signing_key().as_dict(private=False)
    return {"keys": [{**public, "use": "sig", "alg": "RS256"}]}


# -- identities ----------------------------------------------------------------------
def seed(state: SandboxState) -> None:
    people = [
        ("104583746352819274651", "Alice Example", "alice@example.com", True),
        ("109273645018273645102", "Bob Example", "bob@example.com", True),
        ("112908374650192837465", "Una Verified", "una@example.org", False),
    ]
    for sub, name, email, verified in people:
        add_person(state, sub, name, email, verified)


def add_person(state: SandboxState, sub: str, name: str, email: str, verified: bool) -> Identity:
    given, _, family = name.partition(" ")
    extra = {"email_verified": verified, "given_name": given, "family_name": family}
    return state.add_identity(Identity(PLATFORM, sub, name, email, email=email, extra=extra))


def sub_for_email(email: str) -> str:
    """A stable 21-digit subject for a typed-in identity, like Google's numeric subs."""
    digest = int.from_bytes(hashlib.sha256(email.lower().encode()).digest()[:9], "big")
    return "1" + str(digest).zfill(20)[-20:]


def issuer(state: SandboxState) -> str:
    return f"{state.config.base_url}/google"


def picture(state: SandboxState, sub: str) -> str:
    return f"{issuer(state)}/avatar/{sub}"


# -- discovery -----------------------------------------------------------------------
@cache
def discovery_document(iss: str) -> dict[str, Any]:
    return {
        "issuer": iss,
        "authorization_endpoint": f"{iss}/o/oauth2/v2/auth",
        "device_authorization_endpoint": f"{iss}/device/code",
        "token_endpoint": f"{iss}/token",
        "userinfo_endpoint": f"{iss}/v1/userinfo",
        "revocation_endpoint": f"{iss}/revoke",
        "jwks_uri": f"{iss}/oauth2/v3/certs",
        "response_types_supported": [
            "code",
            "token",
            "id_token",
            "code token",
            "code id_token",
            "token id_token",
            "code token id_token",
            "none",
        ],
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "email", "profile"],
        "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
        "claims_supported": [
            "aud",
            "email",
            "email_verified",
            "exp",
            "family_name",
            "given_name",
            "iat",
            "iss",
            "name",
            "picture",
            "sub",
        ],
        "code_challenge_methods_supported": ["plain", "S256"],
        "grant_types_supported": [
            "authorization_code",
            "refresh_token",
            "urn:ietf:params:oauth:grant-type:device_code",
            "urn:ietf:params:oauth:grant-type:jwt-bearer",
        ],
        "authorization_response_iss_parameter_supported": True,
    }


@get("/google/.well-known/openid-configuration", sync_to_thread=False)
def openid_configuration(request: Request) -> dict[str, Any]:
    return discovery_document(issuer(request.app.state.sandbox))


@get("/google/oauth2/v3/certs", sync_to_thread=False)
def certs() -> dict[str, Any]:
    return jwks()


# -- authorize -----------------------------------------------------------------------
def parse_scopes(raw: str) -> list[str]:
    """Requested scopes in short form ("openid", "email", "profile"); unknown ones refused."""
    short = {url: name for name, url in SCOPE_URLS.items()}
    scopes: list[str] = []
    invalid = []
    for item in raw.split():
        name = short.get(item, item)
        if name not in ("openid", "email", "profile"):
            invalid.append(item)
        elif name not in scopes:
            scopes.append(name)
    if invalid:
        raise PageError(400, "invalid_scope", f"Some requested scopes were invalid. {invalid}")
    return scopes


def scope_string(scopes: list[str]) -> str:
    """Scopes as Google reports them: userinfo URLs for email and profile."""
    return " ".join(SCOPE_URLS.get(s, s) for s in scopes)


def check_authorize(state: SandboxState, params: dict[str, str]) -> list[str]:
    """Validate an authorize request like Google's screen does; return requested scopes."""
    check_client(state, params.get("client_id", ""))
    redirect_uri = params.get("redirect_uri", "")
    if not redirect_uri:
        raise PageError(400, "invalid_request", "Missing required parameter: redirect_uri")
    if urlsplit(redirect_uri).scheme not in ("http", "https"):
        detail = f"Invalid parameter value for redirect_uri: {redirect_uri}"
        raise PageError(400, "invalid_request", detail)
    response_type = params.get("response_type", "")
    if not response_type:
        raise PageError(400, "invalid_request", "Required parameter is missing: response_type")
    if response_type != "code":
        detail = f"Unsupported response_type: {response_type}"
        raise PageError(400, "unsupported_response_type", detail)
    if not params.get("scope", "").strip():
        raise PageError(400, "invalid_request", "Missing required parameter: scope")
    scopes = parse_scopes(params["scope"])
    if "openid" not in scopes:
        detail = "This sandbox signs in with OpenID Connect: the scope must include openid."
        raise PageError(400, "invalid_scope", detail)
    check_challenge(params)
    return scopes


def check_client(state: SandboxState, client_id: str) -> None:
    if not client_id:
        raise PageError(400, "invalid_request", "Missing required parameter: client_id")
    if client_id != state.config.google_client_id:
        raise PageError(401, "invalid_client", "The OAuth client was not found.")


def check_challenge(params: dict[str, str]) -> None:
    challenge = params.get("code_challenge", "")
    method = params.get("code_challenge_method", "")
    if method and not challenge:
        raise PageError(400, "invalid_request", "Missing required parameter: code_challenge")
    if challenge and method not in ("", "plain", "S256"):
        raise PageError(400, "invalid_request", "Invalid code_challenge_method value.")
    if challenge and not 43 <= len(challenge) <= 128:
        raise PageError(400, "invalid_request", "Invalid code_challenge length.")


def redirect_to(redirect_uri: str, params: dict[str, str]) -> Redirect:
    query = urlencode({k: v for k, v in params.items() if v})
    sep = "&" if urlsplit(redirect_uri).query else "?"
    return Redirect(f"{redirect_uri}{sep}{query}", status_code=302)


@get("/google/o/oauth2/v2/auth", sync_to_thread=False)
def authorize(request: Request) -> Response:
    state: SandboxState = request.app.state.sandbox
    params = dict(request.query_params)
    try:
        scopes = check_authorize(state, params)
    except PageError as refusal:
        return refusal.response()
    hidden = {k: params[k] for k in CARRIED if params.get(k)}
    hidden["requested_scope"] = params["scope"]
    return consent_page(
        platform_title="Sign in with Google",
        action=f"{issuer(state)}/o/oauth2/v2/auth",
        identities=ordered_identities(state, params.get("login_hint", "")),
        scopes=scopes,
        hidden=hidden,
        allow_custom_identity=True,
    )


def ordered_identities(state: SandboxState, login_hint: str) -> list[Identity]:
    """Test identities, the one named by login_hint first (it is preselected)."""
    people = state.identities_of(PLATFORM)
    return sorted(people, key=lambda p: p.email.lower() != login_hint.lower())


@post("/google/o/oauth2/v2/auth", status_code=302)
async def decide(request: Request) -> Response:
    state: SandboxState = request.app.state.sandbox
    form = await request.form()
    params = {k: form.get(k, "") for k in CARRIED}
    params["scope"] = form.get("requested_scope", "")
    try:
        requested = check_authorize(state, params)
        iss = issuer(state)
        if form.get("decision") != "allow":
            denial = {"error": "access_denied", "state": params["state"], "iss": iss}
            return redirect_to(params["redirect_uri"], denial)
        person = chosen_identity(state, form)
    except PageError as refusal:
        return refusal.response()
    ticked = set(form.getall("scope", []))
    granted = [s for s in requested if s == "openid" or s in ticked]
    code = state.issue(
        PLATFORM, "code", person.id, params["client_id"], granted, CODE_TTL, prefix="4/0A",
        redirect_uri=params["redirect_uri"], nonce=params["nonce"],
        code_challenge=params["code_challenge"],
        code_challenge_method=params["code_challenge_method"] or "plain",
        offline=params["access_type"] == "offline", issued=[],
    )  # fmt: skip
    answer = {"state": params["state"], "iss": iss, "code": code.value}
    answer |= {"scope": scope_string(granted), "authuser": "0", "prompt": "consent"}
    return redirect_to(params["redirect_uri"], answer)


def chosen_identity(state: SandboxState, form: Any) -> Identity:
    choice = form.get("identity", "")
    if choice != "custom":
        person = state.identity(PLATFORM, choice)
        if person is None:
            raise PageError(400, "invalid_request", "Choose an account to continue.")
        return person
    email = form.get("custom_email", "").strip()
    if "@" not in email:
        raise PageError(400, "invalid_request", "Enter the email of the other test identity.")
    name = form.get("custom_name", "").strip() or email.split("@")[0].replace(".", " ").title()
    verified = not form.get("custom_unverified")
    return add_person(state, sub_for_email(email), name, email, verified)


# -- token endpoint ------------------------------------------------------------------
def client_credentials(request: Request, form: Any) -> tuple[str, str]:
    """client_secret_basic (Authorization header) or client_secret_post (form)."""
    header = request.headers.get("authorization", "")
    if header[:6].lower() == "basic ":
        try:
            pair = base64.b64decode(header[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise OAuthError("invalid_request", "Invalid authorization header.") from None
        client_id, _, secret = pair.partition(":")
        return unquote(client_id), unquote(secret)
    return form.get("client_id", ""), form.get("client_secret", "")


def authenticate(state: SandboxState, request: Request, form: Any) -> str:
    client_id, secret = client_credentials(request, form)
    if not client_id:
        raise OAuthError("invalid_request", "Could not determine client ID from request.")
    if client_id != state.config.google_client_id:
        raise OAuthError("invalid_client", "The OAuth client was not found.", 401)
    if not secrets.compare_digest(secret, state.config.google_client_secret):
        raise OAuthError("invalid_client", "Unauthorized", 401)
    return client_id


@post("/google/token", status_code=200)
async def token(request: Request) -> Response:
    state: SandboxState = request.app.state.sandbox
    form = await request.form()
    try:
        client_id = authenticate(state, request, form)
        grant_type = form.get("grant_type", "")
        if grant_type == "authorization_code":
            body = exchange_code(state, form, client_id)
        elif grant_type == "refresh_token":
            body = refresh(state, form, client_id)
        elif not grant_type:
            raise OAuthError("unsupported_grant_type", "Invalid grant_type: ")
        else:
            raise OAuthError("unsupported_grant_type", f"Invalid grant_type: {grant_type}")
    except OAuthError as refusal:
        return refusal.response()
    return Response(body, headers=NO_STORE)


def exchange_code(state: SandboxState, form: Any, client_id: str) -> dict[str, Any]:
    value = form.get("code", "")
    if not value:
        raise OAuthError("invalid_request", "Missing required parameter: code")
    code = state.grants.get(value)
    if code is not None and code.used and code.platform == PLATFORM:
        revoke_values(state, code.extra["issued"])  # a replayed code undoes what it issued
        raise OAuthError("invalid_grant", "Bad Request")
    code, _reason = state.lookup(value, PLATFORM, "code")
    if code is None or code.client_id != client_id:
        raise OAuthError("invalid_grant", "Bad Request")
    redirect_uri = form.get("redirect_uri", "")
    if not redirect_uri:
        raise OAuthError("invalid_request", "Missing parameter: redirect_uri")
    if redirect_uri != code.extra["redirect_uri"]:
        raise OAuthError("redirect_uri_mismatch", "Bad Request")
    check_verifier(code, form.get("code_verifier", ""))
    code.used = True
    return token_response(state, code, nonce=code.extra["nonce"], offline=code.extra["offline"])


def check_verifier(code: Grant, verifier: str) -> None:
    challenge = code.extra["code_challenge"]
    if not challenge:
        return
    if not verifier:
        raise OAuthError("invalid_grant", "Missing code verifier.")
    if code.extra["code_challenge_method"] == "S256":
        digest = hashlib.sha256(verifier.encode()).digest()
        verifier = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    if not secrets.compare_digest(verifier, challenge):
        raise OAuthError("invalid_grant", "Invalid code verifier.")


def refresh(state: SandboxState, form: Any, client_id: str) -> dict[str, Any]:
    value = form.get("refresh_token", "")
    if not value:
        raise OAuthError("invalid_request", "Missing required parameter: refresh_token")
    grant, _reason = state.lookup(value, PLATFORM, "refresh")
    if grant is None:
        raise OAuthError("invalid_grant", "Token has been expired or revoked.")
    if grant.client_id != client_id:
        raise OAuthError("unauthorized_client", "Unauthorized")
    return token_response(state, grant, nonce="", offline=False)


def token_response(state: SandboxState, origin: Grant, nonce: str, offline: bool) -> dict[str, Any]:
    """Issue an access token (+ refresh token when offline) and an ID token for `origin`."""
    ttl = state.config.google_access_ttl
    args = (PLATFORM, origin.user_id, origin.client_id, origin.scopes)
    access = state.issue(args[0], "access", *args[1:], ttl, prefix="ya29.a0")
    body: dict[str, Any] = {"access_token": access.value, "expires_in": ttl}
    issued = [access.value]
    if offline:
        refresh_grant = state.issue(args[0], "refresh", *args[1:], None, prefix="1//0g")
        body["refresh_token"] = refresh_grant.value
        issued.append(refresh_grant.value)
    origin.extra.setdefault("issued", []).extend(issued)
    body["scope"] = scope_string(origin.scopes)
    body["token_type"] = "Bearer"
    body["id_token"] = id_token(state, origin, access.value, nonce)
    return body


def revoke_values(state: SandboxState, values: list[str]) -> None:
    for value in values:
        grant = state.grants.get(value)
        if grant is not None:
            grant.revoked = True


# -- ID tokens -----------------------------------------------------------------------
def at_hash(access_token: str) -> str:
    digest = hashlib.sha256(access_token.encode()).digest()[:16]
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def id_token(state: SandboxState, origin: Grant, access_token: str, nonce: str) -> str:
    now = int(state.now())
    claims: dict[str, Any] = {"iss": issuer(state), "azp": origin.client_id}
    claims |= {"aud": origin.client_id, "sub": origin.user_id}
    claims |= identity_claims(state, origin.user_id, origin.scopes)
    claims |= {"at_hash": at_hash(access_token), "iat": now, "exp": now + 3600}
    if nonce:
        claims["nonce"] = nonce
    key = tamper(state, claims)
    return jwt.encode({"alg": "RS256", "kid": key.kid, "typ": "JWT"}, claims, key)


def identity_claims(state: SandboxState, sub: str, scopes: list[str]) -> dict[str, Any]:
    """The email and profile claims the granted scopes allow (ID token and userinfo)."""
    person = state.identity(PLATFORM, sub)
    if person is None:
        return {}
    claims: dict[str, Any] = {}
    if "email" in scopes:
        claims |= {"email": person.email, "email_verified": person.extra["email_verified"]}
    if "profile" in scopes:
        claims |= {"name": person.name, "picture": picture(state, sub)}
        claims |= {"given_name": person.extra["given_name"]}
        if person.extra["family_name"]:
            claims["family_name"] = person.extra["family_name"]
    return claims


def tamper(state: SandboxState, claims: dict[str, Any]) -> RSAKey:
    """Apply and consume the config's one-shot tamper knob; return the key to sign with."""
    how = state.config.google_id_token_tamper
    if not how:
        return signing_key()
    state.config.google_id_token_tamper = ""
    if how == "nonce":
        claims["nonce"] = "tampered-" + secrets.token_urlsafe(12)
    elif how == "audience":
        claims["aud"] = claims["azp"] = "someone-else.apps.googleusercontent.com"
    elif how == "expired":
        claims["iat"] -= 7200
        claims["exp"] = claims["iat"] + 3600
    elif how == "issuer":
        claims["iss"] = "https://issuer.invalid"
    elif how == "signature":
        return rogue_key()
    else:
        raise OAuthError("server_error", f"sandbox: unknown google_id_token_tamper {how!r}", 500)
    return signing_key()


# -- userinfo, revoke, device --------------------------------------------------------
def bearer_grant(state: SandboxState, request: Request) -> Grant:
    header = request.headers.get("authorization", "")
    value = header[7:].strip() if header[:7].lower() == "bearer " else ""
    grant, _reason = state.lookup(value, PLATFORM, "access")
    if grant is None:
        raise OAuthError("invalid_request", "Invalid Credentials", 401)
    return grant


@get("/google/v1/userinfo", sync_to_thread=False)
def userinfo(request: Request) -> Response:
    state: SandboxState = request.app.state.sandbox
    try:
        grant = bearer_grant(state, request)
    except OAuthError as refusal:
        response = refusal.response()
        realm = 'Bearer realm="https://accounts.google.com/", error="invalid_token"'
        response.headers["WWW-Authenticate"] = realm
        return response
    claims = {"sub": grant.user_id} | identity_claims(state, grant.user_id, grant.scopes)
    return Response(claims)


@post("/google/revoke", status_code=200)
async def revoke(request: Request) -> Response:
    state: SandboxState = request.app.state.sandbox
    form = await request.form()
    value = form.get("token", "") or request.query_params.get("token", "")
    grant = state.grants.get(value)
    live = grant is not None and grant.platform == PLATFORM and grant.kind != "code"
    if not live or grant.revoked or (grant.expires_at or float("inf")) <= state.now():
        return OAuthError("invalid_token", "Token expired or revoked").response()
    # Google drops the whole grant: every token of this user for this client.
    state.revoke_user_grants(PLATFORM, grant.user_id, grant.client_id)
    return Response({}, headers=NO_STORE)


@post("/google/device/code", sync_to_thread=False, status_code=401)
def device_code() -> Response:
    # The product's client is a web client, which Google refuses on the device flow.
    return OAuthError("invalid_client", "Invalid client type.", 401).response()


@get("/google/avatar/{sub:str}", sync_to_thread=False)
def avatar(request: Request, sub: FromPath[str]) -> Response:
    person = request.app.state.sandbox.identity(PLATFORM, sub)
    initial = html.escape((person.name[:1] if person else "?").upper())
    hue = int(hashlib.sha256(sub.encode()).hexdigest()[:2], 16) * 360 // 256
    svg = (
        '<svg xmlns="http://www.w3.org/2000/svg" width="96" height="96" viewBox="0 0 96 96">'
        f'<circle cx="48" cy="48" r="48" fill="hsl({hue},55%,45%)"/>'
        '<text x="48" y="62" font-size="44" text-anchor="middle" fill="#fff" '
        f'font-family="sans-serif">{initial}</text></svg>'
    )
    return Response(svg, media_type="image/svg+xml")


# -- injected faults -----------------------------------------------------------------
def render_error(kind: str, rule: FaultRule, state: SandboxState) -> Response:
    if kind == "rate_limit":
        response = OAuthError("rate_limit_exceeded", "Rate Limit Exceeded", 429).response()
        response.headers["Retry-After"] = str(rule.retry_after)
        return response
    if kind in ("expired_token", "revoked_token"):
        if "userinfo" in rule.path:
            return OAuthError("invalid_request", "Invalid Credentials", 401).response()
        return OAuthError("invalid_grant", "Token has been expired or revoked.").response()
    return OAuthError("internal_failure", "Backend Error", 500).response()


register_errors(PLATFORM, render_error)


def routes() -> list:
    return [
        openid_configuration,
        certs,
        authorize,
        decide,
        token,
        userinfo,
        revoke,
        device_code,
        avatar,
    ]
