"""What every page shares: who is signed in, the guard for private pages, rendering with
the common context, and turning errors into pages (or htmx redirects)."""

from __future__ import annotations

import hmac
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from litestar import Request, Response
from litestar.connection import ASGIConnection
from litestar.exceptions import HTTPException, NotAuthorizedException
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import ASGIMiddleware
from litestar.middleware.csrf import CSRF_SECRET_LENGTH, generate_csrf_hash
from litestar.plugins.htmx import HTMXRequest
from litestar.response import Redirect, Template
from litestar.types import ASGIApp, Receive, Scope, Send

from src.db.tables import User

SESSION_USER = "user_id"


class CurrentUserMiddleware(ASGIMiddleware):
    """Loads the signed-in user (if any) into scope["user"] for every request."""

    scopes = ("http",)  # type: ignore[assignment]

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        session = scope.get("session") or {}
        user_id = session.get(SESSION_USER) if isinstance(session, dict) else None
        user = None
        if isinstance(user_id, int):
            user = await User.objects().get(User.id == user_id)
        scope["user"] = user  # type: ignore[typeddict-unknown-key]
        await next_app(scope, receive, send)


class StaleCsrfCookieMiddleware(ASGIMiddleware):
    """After the operator changes OKK_SECRET_KEY, the browser's csrftoken cookie no longer
    verifies, and Litestar keeps it on page loads: every form would be refused until the
    person cleared their cookies. A page load drops such a cookie from the request, so a
    fresh one is issued with the page."""

    scopes = ("http",)  # type: ignore[assignment]

    def __init__(self, secret: str, cookie_name: str) -> None:
        self.secret, self.prefix = secret, f"{cookie_name}="

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        if scope["method"] in ("GET", "HEAD"):
            scope["headers"] = [
                (name, self._without_stale(value) if name == b"cookie" else value)
                for name, value in scope["headers"]
            ]
        await next_app(scope, receive, send)

    def _without_stale(self, header: bytes) -> bytes:
        parts = header.decode("latin-1").split(";")
        kept = [p for p in parts if not p.strip().startswith(self.prefix) or self._valid(p)]
        return ";".join(kept).encode("latin-1")

    def _valid(self, part: str) -> bool:
        token = part.strip()[len(self.prefix) :].strip('"')
        secret, signature = token[:CSRF_SECRET_LENGTH], token[CSRF_SECRET_LENGTH:]
        return hmac.compare_digest(signature, generate_csrf_hash(secret, self.secret))


def current_user(connection: ASGIConnection) -> User | None:
    return connection.scope.get("user")  # type: ignore[return-value]


def signed_in(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    """Guard: private pages need a signed-in user who has given first-run consent."""
    user = current_user(connection)
    if user is None:
        raise NotAuthorizedException("Please sign in.")
    if user.age_confirmed_at is None or user.policy_accepted_at is None:
        raise NotAuthorizedException("welcome")


def localtime(moment: datetime | None, zone: str = "UTC", fmt: str = "%a %d %b %Y, %H:%M") -> str:
    """A UTC moment shown in the person's zone (Jinja filter)."""
    if moment is None:
        return ""
    try:
        tz = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        tz, zone = ZoneInfo("UTC"), "UTC"
    return f"{moment.astimezone(tz).strftime(fmt)} ({zone})"


def register_filters(engine: Any) -> None:
    engine.engine.filters["localtime"] = localtime


def render(request: Request, template: str, *, active: str = "", **context: Any) -> Template:
    return Template(
        template_name=template,
        context={
            "current_user": current_user(request),
            "active": active,
            "settings": request.app.state.settings,
            **context,
        },
    )


def _wants_html(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "text/html" in accept or request.headers.get("hx-request") == "true"


def not_authorized(request: Request, exc: NotAuthorizedException) -> Response:
    target = "/auth/welcome" if exc.detail == "welcome" else "/"
    if request.headers.get("hx-request") == "true":
        return Response(None, status_code=401, headers={"HX-Redirect": target})
    if _wants_html(request):
        return Redirect(target)
    return Response({"detail": "Not signed in"}, status_code=401)


def http_error(request: Request, exc: HTTPException) -> Response:
    if not _wants_html(request) or not hasattr(request.app.state, "settings"):
        return Response(
            {"status_code": exc.status_code, "detail": exc.detail}, status_code=exc.status_code
        )
    titles = {403: "Not allowed", 404: "Not found", 413: "Too large", 429: "Slow down"}
    response = render(
        HTMXRequest(request.scope, receive=request.receive),
        "pages/error.html",
        status_code=exc.status_code,
        title=titles.get(exc.status_code, "Something went wrong"),
        message=exc.detail,
    )
    response.status_code = exc.status_code
    return response
