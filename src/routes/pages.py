"""The landing page, the privacy policy, and the areas later work fills."""

from __future__ import annotations

from litestar import Request, get
from litestar.response import Redirect, Template

from src.web import current_user, render, signed_in

POLICY_UPDATED = "29 November 2026"

EMPTY_STATES: dict[str, tuple[str, str, str]] = {}  # areas not built yet (none left)


@get("/")
async def landing(request: Request) -> Template | Redirect:
    if current_user(request) is not None:
        return Redirect("/calendar")
    return render(request, "pages/landing.html")


@get("/privacy")
async def privacy(request: Request) -> Template:
    return render(request, "pages/privacy.html", policy_updated=POLICY_UPDATED)


def _placeholder(key: str):
    title, empty_title, empty_body = EMPTY_STATES[key]

    @get(f"/{key}", guards=[signed_in], name=f"page-{key}")
    async def page(request: Request) -> Template:
        return render(
            request,
            "pages/placeholder.html",
            active=key,
            page_title=title,
            empty_title=empty_title,
            empty_body=empty_body,
            icon=key,
        )

    return page


PLACEHOLDERS = [_placeholder(key) for key in EMPTY_STATES]
