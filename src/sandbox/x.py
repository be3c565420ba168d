"""Sandbox fake of X: OAuth 2.0 with PKCE (x_oauth), API v2 posts and users (x_tweets),
media upload v2 (x_media), all under /x with X's problem bodies and rate-limit headers."""

from __future__ import annotations

from litestar import Response, Router

from src.sandbox import x_media, x_oauth, x_tweets
from src.sandbox.faults import CURRENT_SCOPE, register_errors, split_platform
from src.sandbox.state import FaultRule, Identity, SandboxState
from src.sandbox.x_common import PLATFORM, XError, endpoint_for, generic, on_x_error, rate_headers

__all__ = ["PLATFORM", "routes", "seed"]

# Fixed, X-like numeric ids so tests and the admin page can name the test accounts.
XAVIER_ID = "1721600000000000001"
XENA_ID = "1721600000000000002"


def seed(state: SandboxState) -> None:
    created = "2023-11-06T09:00:00.000Z"
    for user_id, name, username in (
        (XAVIER_ID, "Xavier X", "xavier_x"),
        (XENA_ID, "Xena X", "xena_x"),
    ):
        state.add_identity(
            Identity(
                PLATFORM,
                user_id,
                name,
                username,
                extra={"created_at": created, "description": "Sandbox account"},
            )
        )


def render_fault(kind: str, rule: FaultRule, state: SandboxState) -> Response:
    """Injected faults in X's words, with the rate-limit headers of the endpoint hit."""
    scope = CURRENT_SCOPE.get() or {}
    _, path = split_platform(scope.get("path", "/x/"))
    endpoint = endpoint_for(scope.get("method", "GET"), path)
    token = _bearer(scope)
    grant = state.grants.get(token) if token else None
    headers, _ = rate_headers(state, endpoint, grant, count=False)
    if kind == "rate_limit":
        headers["x-rate-limit-remaining"] = "0"
        headers["x-rate-limit-reset"] = str(int(state.now()) + rule.retry_after)
        headers.setdefault("x-rate-limit-limit", "0")
        return generic(429, headers)
    if kind in ("expired_token", "revoked_token"):
        return generic(401, headers)
    return generic(503, headers)


def _bearer(scope: dict) -> str:
    for key, value in scope.get("headers", []):
        if key.lower() == b"authorization" and value[:7].lower() == b"bearer ":
            return value[7:].decode("latin-1").strip()
    return ""


register_errors(PLATFORM, render_fault)


def routes() -> list:
    handlers = [*x_oauth.routes(), *x_tweets.routes(), *x_media.routes()]
    return [Router(path="/", route_handlers=handlers, exception_handlers={XError: on_x_error})]
