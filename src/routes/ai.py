"""The composer's Suggest panel: a partial, and one endpoint that streams suggestions as
server-sent events (read by static/ai.js with fetch, so the form, its CSRF token and the
draft go in a POST body, never in a URL)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from litestar import Controller, Request, get, post
from litestar.response import Stream, Template

from src import ai
from src.publishers.registry import TITLES
from src.web import current_user, render, signed_in

DEFAULT_PLATFORMS = ("x", "instagram", "tiktok")


def sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


def ask_of(form: Any) -> ai.Ask:
    return ai.Ask(
        action=form.get("action") or "suggest",
        prompt=form.get("prompt") or "",
        tone=form.get("tone") or "friendly",
        platforms=tuple(form.getall("platform", [])),
        text=form.get("text") or "",
    )


async def _events(settings: Any, ask: ai.Ask) -> AsyncIterator[bytes]:
    yield b": suggestions\n\n"  # something at once, so proxies start streaming
    async for kind, data in ai.stream(settings, ask):
        yield sse(kind, data)
    yield sse("end", {})


async def _refusal(message: str) -> AsyncIterator[bytes]:
    yield sse("error", {"message": message})
    yield sse("end", {})


class AIController(Controller):
    path = "/ai"
    guards = [signed_in]

    @get("/panel")
    async def panel(self, request: Request) -> Template:
        settings = request.app.state.settings
        return render(
            request,
            "partials/ai_panel.html",
            ai_ready=ai.available(settings),
            ai_help=ai.ENABLE_HELP,
            tones=ai.TONES,
            platforms={p: TITLES[p] for p in ai.PLATFORMS},
            chosen=DEFAULT_PLATFORMS,
        )

    @post("/suggest", status_code=200)
    async def suggest(self, request: Request) -> Stream:
        """text/event-stream: start, chunk…, done per suggestion; error; then end."""
        settings = request.app.state.settings
        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        try:
            ask = ask_of(await request.form())
            if not ai.available(settings):
                raise ai.NotConfigured
            await ai.take_slot(current_user(request).id)
        except ai.AIError as refusal:
            body = _refusal(str(refusal))
            return Stream(body, media_type="text/event-stream", headers=headers)
        return Stream(_events(settings, ask), media_type="text/event-stream", headers=headers)
