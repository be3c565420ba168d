"""Google sign-in (OpenID Connect, authorization code flow with state, nonce and PKCE).

Knows the protocol, nothing of the web layer: `start()` gives the URL to send the
browser to and the secrets to keep server-side; `finish()` turns the callback into
verified claims or raises SignInRefused with a message a person can act on."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from authlib.common.security import generate_token
from authlib.integrations.httpx_client import AsyncOAuth2Client
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from src import http
from src.config import Settings

GOOGLE_ISSUERS = {"https://accounts.google.com", "accounts.google.com"}
PENDING_TTL = 600  # seconds a sign-in may take between redirect and callback


class SignInRefused(Exception):
    """A sign-in that must not create a session; the message is shown to the person."""


@dataclass(frozen=True)
class OidcClientConfig:
    issuer: str
    client_id: str
    client_secret: str
    redirect_uri: str


def client_config(settings: Settings) -> OidcClientConfig:
    """Google's, or the sandbox provider's when no Google credentials are configured."""
    redirect_uri = f"{settings.public_url}/auth/callback"
    if settings.oidc_client_id and settings.oidc_client_secret:
        return OidcClientConfig(
            settings.oidc_issuer, settings.oidc_client_id, settings.oidc_client_secret, redirect_uri
        )
    from src.sandbox.config import SandboxConfig  # the sandbox's well-known test client

    sandbox = SandboxConfig()
    return OidcClientConfig(
        f"{settings.sandbox_url}/google",
        sandbox.google_client_id,
        sandbox.google_client_secret,
        redirect_uri,
    )


class OidcProvider:
    """Discovery and JWKS of one issuer, cached for the life of the process."""

    def __init__(self, config: OidcClientConfig) -> None:
        self.config = config
        self._metadata: dict[str, Any] | None = None
        self._keys: KeySet | None = None

    async def metadata(self) -> dict[str, Any]:
        if self._metadata is None:
            url = self.config.issuer.rstrip("/") + "/.well-known/openid-configuration"
            response = await http.client().get(url)
            response.raise_for_status()
            self._metadata = response.json()
        return self._metadata

    async def keys(self, refresh: bool = False) -> KeySet:
        if self._keys is None or refresh:
            response = await http.client().get((await self.metadata())["jwks_uri"])
            response.raise_for_status()
            self._keys = KeySet.import_key_set(response.json())
        return self._keys

    async def start(self) -> tuple[str, dict[str, Any]]:
        """The authorization URL and the pending secrets to keep in the session."""
        metadata = await self.metadata()
        pending = {
            "state": generate_token(32),
            "nonce": generate_token(32),
            "code_verifier": generate_token(64),
            "started": time.time(),
        }
        async with self._oauth() as oauth:
            url, _ = oauth.create_authorization_url(
                metadata["authorization_endpoint"],
                state=pending["state"],
                nonce=pending["nonce"],
                code_verifier=pending["code_verifier"],
                prompt="select_account",
            )
        return url, pending

    async def finish(self, params: dict[str, str], pending: dict[str, Any] | None) -> dict:
        """Check the callback and the ID token; return the verified claims."""
        if params.get("error"):
            reason = "you declined" if params["error"] == "access_denied" else params["error"]
            raise SignInRefused(f"Sign-in was cancelled ({reason}). Nothing was saved.")
        if not pending or time.time() - pending.get("started", 0) > PENDING_TTL:
            raise SignInRefused("This sign-in link has expired. Please start again.")
        if not params.get("state") or params["state"] != pending["state"]:
            raise SignInRefused(
                "The sign-in response did not match this browser (state mismatch). "
                "Please start again from this page."
            )
        if not params.get("code"):
            raise SignInRefused("The sign-in response carried no authorization code.")
        token = await self._exchange(params["code"], pending["code_verifier"])
        claims = await self._verify_id_token(token.get("id_token"), pending["nonce"])
        if claims.get("email_verified") is not True:
            raise SignInRefused(
                "Your Google address is not verified. Verify it with Google, then sign in again."
            )
        return claims

    def _oauth(self) -> AsyncOAuth2Client:
        return AsyncOAuth2Client(
            client_id=self.config.client_id,
            client_secret=self.config.client_secret,
            scope="openid email profile",
            redirect_uri=self.config.redirect_uri,
            code_challenge_method="S256",
            timeout=15,
        )

    async def _exchange(self, code: str, code_verifier: str) -> dict[str, Any]:
        metadata = await self.metadata()
        async with self._oauth() as oauth:
            try:
                return await oauth.fetch_token(
                    metadata["token_endpoint"], code=code, code_verifier=code_verifier
                )
            except Exception as exc:  # authlib raises OAuthError or httpx2 errors
                raise SignInRefused(
                    "The sign-in code was refused (it may have expired or been used already). "
                    "Please start again."
                ) from exc

    async def _verify_id_token(self, id_token: str | None, nonce: str) -> dict[str, Any]:
        if not id_token:
            raise SignInRefused("The identity provider sent no ID token.")
        decoded = await self._decode(id_token)
        claims = CodeIDToken(
            decoded.claims,
            decoded.header,
            options={
                "iss": {"essential": True, "values": self._issuers()},
                "aud": {"essential": True, "value": self.config.client_id},
                "nonce": {"essential": True, "value": nonce},
            },
            params={"nonce": nonce, "client_id": self.config.client_id},
        )
        try:
            claims.validate(leeway=60)
        except JoseError as exc:
            raise SignInRefused(_claim_message(exc)) from exc
        if not claims.get("sub"):
            raise SignInRefused("The ID token names no subject.")
        return dict(claims)

    async def _decode(self, id_token: str) -> jwt.Token:
        for refresh in (False, True):  # an unknown key id: re-fetch the key set once
            try:
                return jwt.decode(id_token, await self.keys(refresh=refresh), algorithms=["RS256"])
            except (JoseError, ValueError):
                if refresh:
                    break
        raise SignInRefused("The ID token's signature is not valid. No session was created.")

    def _issuers(self) -> list[str]:
        issuer = self.config.issuer.rstrip("/")
        return sorted(GOOGLE_ISSUERS) if issuer in GOOGLE_ISSUERS else [issuer]


def _claim_message(exc: JoseError) -> str:
    text = str(exc)
    if "exp" in text or "expired" in text.lower():
        return "The ID token has expired. Please sign in again."
    if "aud" in text:
        return "The ID token was issued for another application (wrong audience)."
    if "nonce" in text:
        return "The ID token does not belong to this sign-in (nonce mismatch)."
    if "iss" in text:
        return "The ID token comes from an unexpected issuer."
    return f"The ID token was refused: {text}"
