"""Fault injection and request recording, as one raw ASGI middleware.

Each platform registers how it words a server error, a rate limit and a bad token
(`register_errors`), so an injected fault looks exactly like the real API's."""

from __future__ import annotations

import asyncio
import fnmatch
import json
import random
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from litestar import Response

from src.sandbox.state import FaultRule, SandboxState

# platform -> renderer(kind, rule, state) -> Response
ErrorRenderer = Callable[[str, FaultRule, SandboxState], Response]
ERROR_RENDERERS: dict[str, ErrorRenderer] = {}

RECORDED_BODY_LIMIT = 64 * 1024

# The ASGI scope being answered, for renderers that word errors per request
# (e.g. X's per-endpoint rate-limit headers).
CURRENT_SCOPE: ContextVar[dict | None] = ContextVar("sandbox_current_scope", default=None)


def register_errors(platform: str, renderer: ErrorRenderer) -> None:
    ERROR_RENDERERS[platform] = renderer


def split_platform(path: str) -> tuple[str, str]:
    """'/x/api/2/tweets' -> ('x', '/api/2/tweets')."""
    parts = path.lstrip("/").split("/", 1)
    return parts[0], "/" + (parts[1] if len(parts) > 1 else "")


def matching_rule(state: SandboxState, platform: str, path: str, method: str) -> FaultRule | None:
    for rule in state.faults:
        if rule.platform not in ("*", platform):
            continue
        if rule.method not in ("*", method):
            continue
        if not fnmatch.fnmatchcase(path, rule.path):
            continue
        if rule.remaining is not None and rule.remaining <= 0:
            continue
        if rule.rate < 1.0 and random.random() >= rule.rate:
            continue
        if rule.remaining is not None:
            rule.remaining -= 1
        rule.hits += 1
        return rule
    return None


def _default_error(kind: str, rule: FaultRule, state: SandboxState) -> Response:
    status = {"rate_limit": 429, "expired_token": 401, "revoked_token": 401}.get(kind, 500)
    headers = {"Retry-After": str(rule.retry_after)} if kind == "rate_limit" else {}
    return Response({"error": kind}, status_code=status, headers=headers)


def fault_response(rule: FaultRule, platform: str, state: SandboxState) -> Response:
    if rule.kind == "response":
        return Response(
            rule.body if rule.body is not None else {},
            status_code=rule.status or 500,
            headers=rule.headers,
        )
    renderer = ERROR_RENDERERS.get(platform, _default_error)
    response = renderer(rule.kind, rule, state)
    if rule.status:
        response.status_code = rule.status
    return response


class SandboxMiddleware:
    """Records every request and applies matching fault rules before the fake answers."""

    def __init__(self, app: Any, state: SandboxState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/admin"):
            await self.app(scope, receive, send)
            return
        CURRENT_SCOPE.set(scope)
        platform, path = split_platform(scope["path"])
        method = scope["method"]
        receive = await self._record(scope, receive, platform, path, method)
        rule = matching_rule(self.state, platform, path, method) if self.state.faults else None
        if rule is not None:
            if rule.latency_ms:
                await asyncio.sleep(rule.latency_ms / 1000)
            if rule.kind == "timeout":
                await asyncio.sleep(3600)  # the client gives up first
                return
            if rule.kind != "latency":
                response = fault_response(rule, platform, self.state)
                await response.to_asgi_response(app=None, request=None)(scope, receive, send)  # type: ignore[arg-type]
                return
        await self.app(scope, receive, send)

    async def _record(
        self, scope: dict, receive: Callable, platform: str, path: str, method: str
    ) -> Callable:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        entry: dict[str, Any] = {
            "platform": platform,
            "method": method,
            "path": path,
            "query": scope.get("query_string", b"").decode("latin-1"),
            "content_type": headers.get("content-type", ""),
            "authorization": headers.get("authorization", ""),
            "time": self.state.now(),
            "body": None,
        }
        self.state.record(entry)
        length = int(headers.get("content-length") or 0)
        if method in ("GET", "HEAD", "DELETE") or length > RECORDED_BODY_LIMIT or not length:
            return receive
        # Small bodies are buffered so tests can read what was sent (privacy tests).
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        entry["body"] = _decode(body, entry["content_type"])
        delivered = False

        async def replay() -> dict:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay


def _decode(body: bytes, content_type: str) -> Any:
    if "json" in content_type:
        try:
            return json.loads(body)
        except ValueError:
            pass
    try:
        return body.decode()
    except UnicodeDecodeError:
        return f"<{len(body)} bytes>"
