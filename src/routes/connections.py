"""Connections: connect, pick pages, refresh and disconnect accounts. Thin: the OAuth
protocol is the publishers', the bookkeeping is the accounts domain's."""

from __future__ import annotations

import json
import secrets
import time
from typing import Annotated, Any

from litestar import Controller, Request, get, post
from litestar.enums import RequestEncodingType
from litestar.exceptions import NotFoundException
from litestar.params import Body, FromPath
from litestar.plugins.flash import flash
from litestar.response import Redirect, Template

from src import accounts, audit
from src.publishers.base import ConnectError, DiscoveredAccount, PlatformError, TokenSet
from src.publishers.registry import PLATFORMS, TITLES, get_publisher
from src.web import current_user, render, signed_in

PENDING = "connect_pending"
CANDIDATES = "connect_candidates"
STATE_COOKIE = "okk_oauth_state"
PENDING_TTL = 600
FormData = Annotated[dict[str, Any], Body(media_type=RequestEncodingType.URL_ENCODED)]


def _redirect_uri(request: Request, platform: str) -> str:
    return f"{request.app.state.settings.public_url}/connections/{platform}/callback"


def _rows(items: list) -> list[dict[str, Any]]:
    return [{"account": a, "status": accounts.status_of(a)} for a in items]


class ConnectionsController(Controller):
    path = "/connections"
    guards = [signed_in]

    @get("/")
    async def index(self, request: Request) -> Template:
        user = current_user(request)
        rows = _rows(await accounts.list_accounts(user.id))
        return render(
            request,
            "pages/connections.html",
            active="connections",
            rows=rows,
            platforms=[(p, TITLES[p]) for p in PLATFORMS],
        )

    @post("/{platform:str}/connect")
    async def start(self, request: Request, platform: FromPath[str]) -> Redirect:
        if platform not in PLATFORMS:
            raise NotFoundException(f"Unknown platform {platform}.")
        publisher = get_publisher(platform, request.app.state.settings)
        auth = publisher.authorization(_redirect_uri(request, platform))
        request.session[PENDING] = {
            "platform": platform,
            "state": auth.state,
            "code_verifier": auth.code_verifier,
            "started": time.time(),
        }
        response = Redirect(auth.url)
        response.set_cookie(
            STATE_COOKIE,
            auth.state,
            max_age=PENDING_TTL,
            path="/connections",
            httponly=True,
            samesite="lax",
            secure=request.app.state.settings.secure_cookies,
        )
        return response

    @get("/{platform:str}/callback")
    async def callback(self, request: Request, platform: FromPath[str]) -> Redirect:
        settings = request.app.state.settings
        user = current_user(request)
        pending = request.session.pop(PENDING, None)
        params = dict(request.query_params)
        response = Redirect("/connections")
        response.delete_cookie(STATE_COOKIE, path="/connections")
        problem = _check_state(pending, platform, params, request.cookies.get(STATE_COOKIE))
        if problem:
            flash(request, problem, category="error")
            return response
        try:
            found = await get_publisher(platform, settings).connect(
                params, _redirect_uri(request, platform), pending.get("code_verifier")
            )
        except ConnectError as exc:
            flash(request, str(exc), category="error")
            return response
        except PlatformError as exc:
            flash(request, f"{TITLES[platform]} refused the connection: {exc.message}", "error")
            return response
        if len(found) > 1:
            cipher = accounts.cipher(settings)
            request.session[CANDIDATES] = cipher.encrypt(json.dumps([_dump(f) for f in found]))
            return Redirect("/connections/pick")
        await _connect_all(request, user.id, found)
        return response

    @get("/pick")
    async def pick(self, request: Request) -> Template | Redirect:
        candidates = _candidates(request)
        if not candidates:
            return Redirect("/connections")
        return render(
            request,
            "pages/connections_pick.html",
            active="connections",
            candidates=candidates,
            title="Facebook",
        )

    @post("/pick")
    async def picked(self, request: Request, data: FormData) -> Redirect:
        candidates = _candidates(request)
        request.session.pop(CANDIDATES, None)
        chosen = data.get("account", [])
        chosen = {chosen} if isinstance(chosen, str) else set(chosen)
        selected = [c for c in candidates if c.external_id in chosen]
        if not selected:
            flash(request, "Nothing was connected: no account was selected.", category="info")
            return Redirect("/connections")
        await _connect_all(request, current_user(request).id, selected)
        return Redirect("/connections")

    @post("/{account_id:int}/disconnect")
    async def disconnect(self, request: Request, account_id: FromPath[int]) -> Template:
        user = current_user(request)
        try:
            result = await accounts.disconnect(user.id, account_id, request.app.state.settings)
        except accounts.NotFound as exc:
            raise NotFoundException("No such account.") from exc
        return _row(
            request, result.account, result.message, "success" if result.revoked else "warning"
        )

    @post("/{account_id:int}/refresh")
    async def refresh(self, request: Request, account_id: FromPath[int]) -> Template:
        user = current_user(request)
        try:
            await accounts.owned(user.id, account_id)
            account = await accounts.refresh(account_id, request.app.state.settings, force=True)
            note, kind = "Tokens refreshed.", "success"
        except accounts.NotFound as exc:
            raise NotFoundException("No such account.") from exc
        except accounts.ReconnectNeeded as exc:
            account, note, kind = await accounts.owned(user.id, account_id), str(exc), "error"
        except PlatformError as exc:
            account = await accounts.owned(user.id, account_id)
            note, kind = f"Could not refresh now ({exc.message}). Try again later.", "warning"
        return _row(request, account, note, kind)


def _row(request: Request, account, note: str, kind: str) -> Template:
    return render(
        request,
        "partials/account_row.html",
        row={"account": account, "status": accounts.status_of(account)},
        note=note,
        note_kind=kind,
    )


def _check_state(pending: dict | None, platform: str, params: dict, cookie: str | None) -> str:
    if not pending or time.time() - pending.get("started", 0) > PENDING_TTL:
        return "This connection attempt has expired. Please start again."
    if pending.get("platform") != platform:
        return "The platform's answer does not belong to this connection attempt."
    state = params.get("state")
    if (
        not state
        or not cookie
        or not secrets.compare_digest(state, pending["state"])
        or (not secrets.compare_digest(cookie, pending["state"]))
    ):
        return "The connection was refused: its state did not match this browser. Start again."
    return ""


async def _connect_all(request: Request, user_id: int, found: list[DiscoveredAccount]) -> None:
    settings = request.app.state.settings
    names = []
    for item in found:
        await accounts.connect(user_id, item, settings)
        names.append(item.display_name or item.handle)
        await audit.record("account_connected", user_id, request, platform=item.platform)
    flash(request, f"Connected: {', '.join(names)}.", category="success")


def _dump(found: DiscoveredAccount) -> dict[str, Any]:
    data = found.__dict__.copy()
    tokens = found.tokens.__dict__.copy()
    for key in ("access_expires_at", "refresh_expires_at"):
        tokens[key] = tokens[key].isoformat() if tokens[key] else None
    data["tokens"] = tokens
    return data


def _candidates(request: Request) -> list[DiscoveredAccount]:
    from datetime import datetime

    sealed = request.session.get(CANDIDATES)
    if not sealed:
        return []
    items = json.loads(accounts.cipher(request.app.state.settings).decrypt(sealed))
    result = []
    for item in items:
        tokens = item.pop("tokens")
        for key in ("access_expires_at", "refresh_expires_at"):
            tokens[key] = datetime.fromisoformat(tokens[key]) if tokens[key] else None
        result.append(DiscoveredAccount(tokens=TokenSet(**tokens), **item))
    return result
