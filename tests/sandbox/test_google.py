"""Contract tests of the fake Google OpenID Connect provider, over real HTTP."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from joserfc import jwt
from joserfc.errors import BadSignatureError
from joserfc.jwk import KeySet

CLIENT_ID = "sandbox-google-client"
CLIENT_SECRET = "sandbox-google-secret"
REDIRECT_URI = "http://127.0.0.1:9/auth/google/callback"
ALICE = "104583746352819274651"
UNA = "112908374650192837465"


class ConsentForm(HTMLParser):
    """Reads the consent form as a browser would: action, hidden fields, choices."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.action = ""
        self.hidden: dict[str, str] = {}
        self.identities: list[str] = []
        self.checked_identity = ""
        self.scopes: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form":
            self.action = a.get("action") or ""
        if tag != "input":
            return
        if a.get("type") == "hidden":
            self.hidden[a["name"] or ""] = a.get("value") or ""
        elif a.get("name") == "identity":
            self.identities.append(a.get("value") or "")
            if "checked" in a:
                self.checked_identity = a.get("value") or ""
        elif a.get("name") == "scope" and "checked" in a:
            self.scopes.append(a.get("value") or "")


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def authorize_params(**overrides: str) -> dict[str, str]:
    params = {
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT_URI,
        "response_type": "code",
        "scope": "openid email profile",
        "state": secrets.token_urlsafe(16),
        "nonce": secrets.token_urlsafe(16),
    }
    params.update(overrides)
    return {k: v for k, v in params.items() if v is not None}


def consent(sandbox, params: dict[str, str]) -> ConsentForm:
    page = httpx.get(f"{sandbox.url}/google/o/oauth2/v2/auth", params=params)
    assert page.status_code == 200, page.text
    return ConsentForm(page.text)


def decide(sandbox, params: dict[str, str], decision: str = "allow", **fields) -> dict:
    """GET the consent page, POST its form, return the redirect's query parameters."""
    form = consent(sandbox, params)
    data = {**form.hidden, "decision": decision, "identity": form.checked_identity}
    data["scope"] = form.scopes
    data.update(fields)
    response = httpx.post(form.action, data=data)
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(REDIRECT_URI + "?")
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def token(sandbox, auth=None, **form) -> httpx.Response:
    if auth is None:
        form = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, **form}
    return httpx.post(f"{sandbox.url}/google/token", data=form, auth=auth)


def sign_in(sandbox, verifier: str | None = None, **overrides: str) -> tuple[dict, dict]:
    """The whole browser part plus the code exchange; returns (authorize params, tokens)."""
    params = authorize_params(**overrides)
    answer = decide(sandbox, params)
    form = {"grant_type": "authorization_code", "code": answer["code"]}
    form["redirect_uri"] = REDIRECT_URI
    if verifier:
        form["code_verifier"] = verifier
    response = token(sandbox, **form)
    assert response.status_code == 200, response.text
    return params, response.json()


def verify(sandbox, id_token: str) -> dict:
    keys = KeySet.import_key_set(httpx.get(f"{sandbox.url}/google/oauth2/v3/certs").json())
    return jwt.decode(id_token, keys, algorithms=["RS256"]).claims


def userinfo(sandbox, access_token: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {access_token}"}
    return httpx.get(f"{sandbox.url}/google/v1/userinfo", headers=headers)


# -- discovery and keys --------------------------------------------------------------
def test_discovery_document(sandbox):
    doc = httpx.get(f"{sandbox.url}/google/.well-known/openid-configuration").json()
    iss = f"{sandbox.url}/google"
    assert doc["issuer"] == iss
    assert doc["authorization_endpoint"] == f"{iss}/o/oauth2/v2/auth"
    assert doc["token_endpoint"] == f"{iss}/token"
    assert doc["userinfo_endpoint"] == f"{iss}/v1/userinfo"
    assert doc["revocation_endpoint"] == f"{iss}/revoke"
    assert doc["jwks_uri"] == f"{iss}/oauth2/v3/certs"
    assert doc["code_challenge_methods_supported"] == ["plain", "S256"]
    assert doc["id_token_signing_alg_values_supported"] == ["RS256"]
    assert doc["token_endpoint_auth_methods_supported"] == [
        "client_secret_post",
        "client_secret_basic",
    ]
    assert "email_verified" in doc["claims_supported"]
    assert doc["authorization_response_iss_parameter_supported"] is True


def test_jwks_has_one_rs256_key_with_kid(sandbox):
    keys = httpx.get(f"{sandbox.url}/google/oauth2/v3/certs").json()["keys"]
    assert len(keys) == 1
    assert keys[0]["kty"] == "RSA" and keys[0]["alg"] == "RS256" and keys[0]["use"] == "sig"
    assert keys[0]["kid"]
    assert "d" not in keys[0]  # never the private part


# -- the code flow -------------------------------------------------------------------
def test_code_flow_with_pkce_and_nonce(sandbox):
    verifier, challenge = pkce_pair()
    params = authorize_params(code_challenge=challenge, code_challenge_method="S256")
    answer = decide(sandbox, params)
    assert answer["state"] == params["state"]
    assert answer["iss"] == f"{sandbox.url}/google"
    assert answer["code"].startswith("4/0A")
    assert "openid" in answer["scope"].split()

    response = token(
        sandbox,
        grant_type="authorization_code",
        code=answer["code"],
        redirect_uri=REDIRECT_URI,
        code_verifier=verifier,
    )
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"].startswith("no-cache, no-store")
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3599
    assert "refresh_token" not in body  # no access_type=offline
    assert body["scope"].split() == [
        "openid",
        "https://www.googleapis.com/auth/userinfo.email",
        "https://www.googleapis.com/auth/userinfo.profile",
    ]

    claims = verify(sandbox, body["id_token"])
    assert claims["iss"] == f"{sandbox.url}/google"
    assert claims["aud"] == claims["azp"] == CLIENT_ID
    assert claims["sub"] == ALICE
    assert claims["email"] == "alice@example.com" and claims["email_verified"] is True
    assert claims["name"] == "Alice Example"
    assert (claims["given_name"], claims["family_name"]) == ("Alice", "Example")
    assert claims["picture"].startswith(f"{sandbox.url}/google/avatar/")
    assert claims["nonce"] == params["nonce"]
    assert claims["exp"] - claims["iat"] == 3600
    assert abs(claims["iat"] - time.time()) < 60
    digest = hashlib.sha256(body["access_token"].encode()).digest()[:16]
    assert claims["at_hash"] == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    info = userinfo(sandbox, body["access_token"]).json()
    assert info["sub"] == ALICE and info["email"] == "alice@example.com"
    assert httpx.get(claims["picture"]).headers["content-type"].startswith("image/svg+xml")


def test_client_secret_basic_and_plain_pkce(sandbox):
    verifier = secrets.token_urlsafe(48)
    params = authorize_params(code_challenge=verifier)  # method defaults to plain
    answer = decide(sandbox, params)
    form = {"grant_type": "authorization_code", "code": answer["code"]}
    form |= {"redirect_uri": REDIRECT_URI, "code_verifier": verifier}
    response = token(sandbox, auth=(CLIENT_ID, CLIENT_SECRET), **form)
    assert response.status_code == 200, response.text


def test_wrong_or_missing_verifier_is_refused(sandbox):
    _verifier, challenge = pkce_pair()
    answer = decide(
        sandbox, authorize_params(code_challenge=challenge, code_challenge_method="S256")
    )
    base = {"grant_type": "authorization_code", "code": answer["code"]}
    base["redirect_uri"] = REDIRECT_URI
    wrong = token(sandbox, **base, code_verifier=secrets.token_urlsafe(48))
    assert wrong.status_code == 400
    assert wrong.json() == {"error": "invalid_grant", "error_description": "Invalid code verifier."}
    missing = token(sandbox, **base)
    assert missing.json() == {
        "error": "invalid_grant",
        "error_description": "Missing code verifier.",
    }


def test_replayed_code_is_refused_and_revokes_what_it_issued(sandbox):
    params = authorize_params(access_type="offline")
    answer = decide(sandbox, params)
    form = {"grant_type": "authorization_code", "code": answer["code"]}
    form["redirect_uri"] = REDIRECT_URI
    first = token(sandbox, **form)
    assert first.status_code == 200
    assert userinfo(sandbox, first.json()["access_token"]).status_code == 200

    replay = token(sandbox, **form)
    assert replay.status_code == 400
    assert replay.json() == {"error": "invalid_grant", "error_description": "Bad Request"}
    assert userinfo(sandbox, first.json()["access_token"]).status_code == 401
    again = token(sandbox, grant_type="refresh_token", refresh_token=first.json()["refresh_token"])
    assert again.json()["error"] == "invalid_grant"


def test_deny_redirects_with_access_denied(sandbox):
    params = authorize_params()
    answer = decide(sandbox, params, decision="deny")
    assert answer["error"] == "access_denied"
    assert answer["state"] == params["state"]
    assert "code" not in answer


def test_unverified_identity_has_email_verified_false(sandbox):
    params = authorize_params()
    answer = decide(sandbox, params, identity=UNA)
    body = token(
        sandbox, grant_type="authorization_code", code=answer["code"], redirect_uri=REDIRECT_URI
    ).json()
    claims = verify(sandbox, body["id_token"])
    assert (claims["sub"], claims["email"]) == (UNA, "una@example.org")
    assert claims["email_verified"] is False
    assert userinfo(sandbox, body["access_token"]).json()["email_verified"] is False


def test_custom_identity_gets_a_stable_sub(sandbox):
    subs = []
    for _ in range(2):
        fields = {"identity": "custom", "custom_name": "Carla Tester"}
        fields |= {"custom_email": "Carla@Example.net", "custom_unverified": "1"}
        answer = decide(sandbox, authorize_params(), **fields)
        form = {"grant_type": "authorization_code", "code": answer["code"]}
        claims = verify(
            sandbox, token(sandbox, **form, redirect_uri=REDIRECT_URI).json()["id_token"]
        )
        assert claims["name"] == "Carla Tester" and claims["email_verified"] is False
        subs.append(claims["sub"])
    assert subs[0] == subs[1] and len(subs[0]) == 21 and subs[0].isdigit()


def test_unticked_email_scope_leaves_out_email(sandbox):
    answer = decide(sandbox, authorize_params(), scope=["openid", "profile"])
    assert "userinfo.email" not in answer["scope"]
    form = {"grant_type": "authorization_code", "code": answer["code"]}
    body = token(sandbox, **form, redirect_uri=REDIRECT_URI).json()
    claims = verify(sandbox, body["id_token"])
    assert "email" not in claims and claims["name"] == "Alice Example"


def test_login_hint_preselects_the_identity(sandbox):
    form = consent(sandbox, authorize_params(login_hint="bob@example.com"))
    assert form.checked_identity == "109273645018273645102"
    assert "custom" in form.identities


# -- authorize refusals (an error page, never a redirect) -----------------------------
@pytest.mark.parametrize(
    ("overrides", "status", "words"),
    [
        ({"client_id": "nope"}, 401, "The OAuth client was not found."),
        ({"redirect_uri": None}, 400, "Missing required parameter: redirect_uri"),
        ({"response_type": "token"}, 400, "unsupported_response_type"),
        ({"scope": "email profile"}, 400, "invalid_scope"),
        ({"scope": "openid https://www.googleapis.com/auth/drive"}, 400, "invalid_scope"),
        ({"code_challenge": "short", "code_challenge_method": "S256"}, 400, "code_challenge"),
    ],
)
def test_authorize_refusals(sandbox, overrides, status, words):
    params = authorize_params(**overrides)
    response = httpx.get(f"{sandbox.url}/google/o/oauth2/v2/auth", params=params)
    assert response.status_code == status
    assert words in response.text
    assert "location" not in response.headers


# -- token endpoint refusals ---------------------------------------------------------
def test_token_endpoint_refusals(sandbox):
    answer = decide(sandbox, authorize_params())
    form = {"grant_type": "authorization_code", "code": answer["code"]}
    form["redirect_uri"] = REDIRECT_URI
    bad_secret = httpx.post(
        f"{sandbox.url}/google/token",
        data={**form, "client_id": CLIENT_ID, "client_secret": "wrong"},
    )
    assert bad_secret.status_code == 401
    assert bad_secret.json() == {"error": "invalid_client", "error_description": "Unauthorized"}
    unknown = token(sandbox, auth=("someone", "x"), **form)
    assert unknown.json()["error_description"] == "The OAuth client was not found."
    no_client = httpx.post(f"{sandbox.url}/google/token", data=form)
    assert no_client.json()["error_description"] == "Could not determine client ID from request."
    mismatch = token(sandbox, **{**form, "redirect_uri": "http://127.0.0.1:9/other"})
    assert mismatch.json() == {"error": "redirect_uri_mismatch", "error_description": "Bad Request"}
    grant = token(sandbox, **{**form, "grant_type": "password"})
    assert grant.json() == {
        "error": "unsupported_grant_type",
        "error_description": "Invalid grant_type: password",
    }
    # None of these refusals consumed the code.
    assert token(sandbox, **form).status_code == 200


def test_expired_code_is_refused(sandbox):
    answer = decide(sandbox, authorize_params())
    sandbox.advance(601)
    form = {"grant_type": "authorization_code", "code": answer["code"]}
    response = token(sandbox, **form, redirect_uri=REDIRECT_URI)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


# -- tokens over time ----------------------------------------------------------------
def test_access_token_expires_and_refresh_gives_a_new_one(sandbox):
    _params, body = sign_in(sandbox, access_type="offline", prompt="consent")
    assert body["refresh_token"].startswith("1//")
    sandbox.advance(3600)
    expired = userinfo(sandbox, body["access_token"])
    assert expired.status_code == 401
    assert expired.json() == {
        "error": "invalid_request",
        "error_description": "Invalid Credentials",
    }
    assert "invalid_token" in expired.headers["www-authenticate"]

    fresh = token(sandbox, grant_type="refresh_token", refresh_token=body["refresh_token"])
    assert fresh.status_code == 200, fresh.text
    renewed = fresh.json()
    assert "refresh_token" not in renewed and renewed["access_token"] != body["access_token"]
    claims = verify(sandbox, renewed["id_token"])
    assert claims["sub"] == ALICE and "nonce" not in claims
    assert userinfo(sandbox, renewed["access_token"]).status_code == 200


def test_revoke_drops_the_whole_grant(sandbox):
    _params, body = sign_in(sandbox, access_type="offline")
    revoked = httpx.post(f"{sandbox.url}/google/revoke", data={"token": body["refresh_token"]})
    assert revoked.status_code == 200
    assert userinfo(sandbox, body["access_token"]).status_code == 401
    again = httpx.post(f"{sandbox.url}/google/revoke", data={"token": body["refresh_token"]})
    assert again.status_code == 400
    assert again.json() == {
        "error": "invalid_token",
        "error_description": "Token expired or revoked",
    }


# -- the tamper knob -----------------------------------------------------------------
def test_tamper_nonce(sandbox):
    sandbox.configure(google_id_token_tamper="nonce")
    params, body = sign_in(sandbox)
    assert verify(sandbox, body["id_token"])["nonce"] != params["nonce"]


def test_tamper_audience(sandbox):
    sandbox.configure(google_id_token_tamper="audience")
    _params, body = sign_in(sandbox)
    assert verify(sandbox, body["id_token"])["aud"] != CLIENT_ID


def test_tamper_expired(sandbox):
    sandbox.configure(google_id_token_tamper="expired")
    _params, body = sign_in(sandbox)
    claims = verify(sandbox, body["id_token"])
    assert claims["exp"] < time.time() - 3000


def test_tamper_issuer(sandbox):
    sandbox.configure(google_id_token_tamper="issuer")
    _params, body = sign_in(sandbox)
    assert verify(sandbox, body["id_token"])["iss"] != f"{sandbox.url}/google"


def test_tamper_signature(sandbox):
    sandbox.configure(google_id_token_tamper="signature")
    _params, body = sign_in(sandbox)
    with pytest.raises(BadSignatureError):
        verify(sandbox, body["id_token"])


def test_tamper_is_consumed_once(sandbox):
    sandbox.configure(google_id_token_tamper="signature")
    sign_in(sandbox)
    params, body = sign_in(sandbox)
    assert verify(sandbox, body["id_token"])["nonce"] == params["nonce"]


# -- injected faults -----------------------------------------------------------------
def test_injected_rate_limit_and_server_error(sandbox):
    sandbox.fault(platform="google", path="/token", kind="rate_limit", retry_after=7, remaining=1)
    sandbox.fault(platform="google", path="/v1/userinfo", kind="error", remaining=1)
    limited = token(sandbox, grant_type="refresh_token", refresh_token="x")
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "7"
    assert limited.json()["error"] == "rate_limit_exceeded"
    failed = userinfo(sandbox, "x")
    assert failed.status_code == 500
    assert set(failed.json()) == {"error", "error_description"}


# -- one whole journey ---------------------------------------------------------------
def test_journey_sign_in_through_discovery(sandbox):
    """What the product does: discovery, consent, code + PKCE, verify, userinfo, refresh, revoke."""
    doc = httpx.get(f"{sandbox.url}/google/.well-known/openid-configuration").json()
    verifier, challenge = pkce_pair()
    params = authorize_params(
        code_challenge=challenge, code_challenge_method="S256", access_type="offline"
    )
    page = httpx.get(doc["authorization_endpoint"], params=params)
    form = ConsentForm(page.text)
    data = {**form.hidden, "decision": "allow", "identity": form.identities[1]}
    data["scope"] = form.scopes
    redirect = httpx.post(form.action, data=data)
    callback = parse_qs(urlsplit(redirect.headers["location"]).query)
    assert callback["state"] == [params["state"]] and callback["iss"] == [doc["issuer"]]

    tokens = httpx.post(
        doc["token_endpoint"],
        auth=(CLIENT_ID, CLIENT_SECRET),
        data={
            "grant_type": "authorization_code",
            "code": callback["code"][0],
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
        },
    ).json()
    keys = KeySet.import_key_set(httpx.get(doc["jwks_uri"]).json())
    claims = jwt.decode(tokens["id_token"], keys).claims
    jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": doc["issuer"]},
        aud={"essential": True, "value": CLIENT_ID},
        nonce={"essential": True, "value": params["nonce"]},
    ).validate(claims)
    assert claims["email"] == "bob@example.com"

    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    info = httpx.get(doc["userinfo_endpoint"], headers=headers).json()
    assert info["sub"] == claims["sub"]
    refreshed = httpx.post(
        doc["token_endpoint"],
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
        },
    )
    assert refreshed.status_code == 200
    assert httpx.post(doc["revocation_endpoint"], data={"token": tokens["access_token"]}).is_success
    assert httpx.get(doc["userinfo_endpoint"], headers=headers).status_code == 401
    assert [r["path"] for r in sandbox.records(platform="google", method="POST")] == [
        "/o/oauth2/v2/auth",
        "/token",
        "/token",
        "/revoke",
    ]


def test_device_flow_is_refused_for_a_web_client(sandbox):
    response = httpx.post(f"{sandbox.url}/google/device/code", data={"client_id": CLIENT_ID})
    assert response.status_code == 401
    assert response.json() == {
        "error": "invalid_client",
        "error_description": "Invalid client type.",
    }
