"""The consent screen every fake OAuth provider shows: pick a test identity, untick
scopes, then allow or deny."""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from litestar import Response

_env = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
)


def render_page(template: str, **context: object) -> Response:
    html = _env.get_template(template).render(**context)
    return Response(html, media_type="text/html")


def consent_page(
    *,
    platform_title: str,
    action: str,
    identities: list,
    scopes: list[str],
    hidden: dict[str, str],
    allow_custom_identity: bool = False,
) -> Response:
    """A form that POSTs back to `action` with: decision=allow|deny, identity=<id>,
    scope=<each ticked scope> (repeated), plus every `hidden` field unchanged."""
    return render_page(
        "consent.html",
        platform_title=platform_title,
        action=action,
        identities=identities,
        scopes=scopes,
        hidden=hidden,
        allow_custom_identity=allow_custom_identity,
    )
