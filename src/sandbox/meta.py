"""Sandbox fake of Meta: Facebook Login, the Facebook Pages Graph API and the Instagram
Graph API (Instagram API with Facebook Login), per platforms.md sections 1 and 2.

URL layout: the www.facebook.com host lives under /facebook/www (OAuth dialog,
permalink pages), graph.facebook.com under /facebook/graph with any /vNN.0/ prefix or
none. One dispatcher resolves each Graph path to a node and an edge, the way Graph does,
and hands it to facebook_graph, instagram_graph or meta_oauth."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any

from litestar import Request, Response, route
from litestar.params import FromPath

from src.sandbox import facebook_graph as fb
from src.sandbox import instagram_graph as ig
from src.sandbox import meta_oauth as oauth
from src.sandbox.faults import register_errors
from src.sandbox.meta_core import (
    DEFAULT_VERSION,
    GRAPH_PREFIX,
    VERSION_RE,
    Ctx,
    GraphError,
    buc_json,
    count_call,
    expired_error,
    nonexisting_field,
    peek_usage,
    read_params,
    resolve_token,
    revoked_error,
    token_from,
    unsupported,
    usage_json,
)
from src.sandbox.state import FaultRule, Identity, SandboxState

PLATFORM = "facebook"

# Seeded test accounts (numeric ids, like Graph's).
FIONA_ID = "100094000000101"
FRANK_ID = "100094000000102"
BAKERY_PAGE_ID = "104500000000201"
BOOKS_PAGE_ID = "104500000000202"
FITNESS_PAGE_ID = "104500000000203"
BAKERY_IG_ID = "17841400000000301"

APP_WINDOW = 3600  # Platform rate limits: rolling hour per app
PAGE_WINDOW = 24 * 3600  # Business Use Case limits for Page tokens: rolling 24 hours


# -- seed ------------------------------------------------------------------------------
def seed(state: SandboxState) -> None:
    base = state.config.base_url.rstrip("/")
    for user_id, name, username in (
        (FIONA_ID, "Fiona Facebook", "fiona.facebook"),
        (FRANK_ID, "Frank Facebook", "frank.facebook"),
    ):
        email = f"{username}@sandbox.test"
        avatar = f"{base}/facebook/www/avatar/{user_id}"
        state.add_identity(
            Identity(PLATFORM, user_id, name, username, email, avatar, {"kind": "user"})
        )
        state.put(user_id, _type="user", name=name, email=email)
    state.flags["facebook_pages"] = [BAKERY_PAGE_ID, BOOKS_PAGE_ID, FITNESS_PAGE_ID]
    _page(
        state,
        BAKERY_PAGE_ID,
        "Okk Bakery",
        "okkbakery",
        ("Bakery", "197048876974495"),
        FIONA_ID,
        BAKERY_IG_ID,
    )
    _page(
        state, BOOKS_PAGE_ID, "Okk Books", "okkbooks", ("Book Store", "197817313562497"), FIONA_ID
    )
    _page(
        state,
        FITNESS_PAGE_ID,
        "Frank's Fitness",
        "franksfitness",
        ("Gym/Physical Fitness Center", "2236"),
        FRANK_ID,
    )
    state.put(
        BAKERY_IG_ID,
        _type="ig_user",
        ig_id=int(BAKERY_IG_ID[-10:]),
        page_id=BAKERY_PAGE_ID,
        username="okkbakery",
        name="Okk Bakery",
        biography="Fresh bread every morning (sandbox).",
        website="https://okkbakery.example",
        profile_picture_url=f"{base}/facebook/www/avatar/{BAKERY_IG_ID}",
        followers_count=1280,
        follows_count=96,
        publishes=[],
        media=[],
    )
    state.add_identity(
        Identity(
            "instagram", BAKERY_IG_ID, "Okk Bakery", "okkbakery", extra={"page_id": BAKERY_PAGE_ID}
        )
    )


def _page(
    state: SandboxState,
    page_id: str,
    name: str,
    username: str,
    category: tuple[str, str],
    owner: str,
    ig_user_id: str | None = None,
) -> None:
    state.put(
        page_id,
        _type="page",
        name=name,
        username=username,
        category=category[0],
        category_list=[{"id": category[1], "name": category[0]}],
        about=f"{name} (sandbox Page)",
        fan_count=420,
        followers_count=512,
        roles={owner: list(fb.ALL_TASKS)},
        ig_user_id=ig_user_id,
    )


# -- errors injected by the fault middleware -------------------------------------------
RATE_LIMITS = {
    4: "(#4) Application request limit reached",
    17: "(#17) User request limit reached",
    32: "(#32) Page request limit reached",
    613: "(#613) Calls to this api have exceeded the rate limit.",
    80001: "(#80001) There have been too many calls to this Page account. "
    "Wait a bit and try again.",
}


# code -> (message, error_subcode, is_transient, HTTP status) for injected "error" faults
KNOWN_ERRORS: dict[int, tuple[str, int | None, bool, int]] = {
    1: ("An unknown error has occurred.", None, True, 500),
    2: ("An unexpected error has occurred. Please retry your request later.", None, True, 500),
    341: ("(#341) Application limit reached", None, True, 400),
    368: (
        "(#368) The action attempted has been deemed abusive or is otherwise disallowed",
        None,
        False,
        400,
    ),
    1609005: ("(#1609005) Error Posting Link", None, False, 400),
    -1: ("An unexpected error has occurred. Please retry your request later.", 2207001, True, 400),
    -2: ("It takes too long to download the media.", 2207003, True, 400),
}


def render_fault(kind: str, rule: FaultRule, state: SandboxState) -> Response:
    """Faults in Meta's words. `body={"code": N}` picks the error: for "rate_limit"
    4 (default, app level) | 17 | 32 | 613 | 80001, and retry_after becomes the headers'
    estimated_time_to_regain_access (minutes, rounded up); for "error" 2 (default,
    HTTP 500) | 1 | 341 | 368 | 1609005 | -1 | -2 or any code, with an optional
    "error_subcode" (e.g. {"code": 4, "error_subcode": 2207051}, Instagram's spam block)."""
    wanted = rule.body if isinstance(rule.body, dict) else {}
    if kind == "rate_limit":
        code = int(wanted.get("code", 4))
        return rate_limit_error(code, rule.retry_after, "sandbox").response()
    if kind == "expired_token":
        now = state.now()
        return expired_error(now - 3600, now).response()
    if kind == "revoked_token":
        return revoked_error().response()
    code = int(wanted.get("code", 2))
    message, subcode, transient, status = KNOWN_ERRORS.get(
        code, (f"(#{code}) An error injected by the sandbox", None, False, 400)
    )
    subcode = wanted.get("error_subcode", subcode)
    error = GraphError(code, message, subcode=subcode, status=status, transient=transient)
    return error.response()


def rate_limit_error(code: int, retry_after: float, object_id: str) -> GraphError:
    minutes = max(1, math.ceil(retry_after / 60))
    headers = {"X-App-Usage": usage_json(100)}
    if code in (32, 80001, 613):
        headers["X-Page-Usage"] = usage_json(100)
    headers["X-Business-Use-Case-Usage"] = buc_json(object_id, 100, minutes)
    message = RATE_LIMITS.get(code, RATE_LIMITS[4])
    return GraphError(code, message, transient=True, headers=headers)


register_errors(PLATFORM, render_fault)


# -- the Graph dispatcher --------------------------------------------------------------
Handler = Callable[[Ctx], Awaitable[Any]]
GET_NODE: dict[str, Handler] = {**fb.GET_NODE, **ig.GET_NODE}
GET_EDGE: dict[tuple[str, str], Handler] = {
    **fb.GET_EDGE,
    **ig.GET_EDGE,
    ("user", "permissions"): oauth.list_permissions,
}
POST_NODE: dict[str, Handler] = dict(fb.POST_NODE)
POST_EDGE: dict[tuple[str, str], Handler] = {**fb.POST_EDGE, **ig.POST_EDGE}
DELETE_NODE: dict[str, Handler] = {**fb.DELETE_NODE, **ig.DELETE_NODE}
DELETE_EDGE: dict[tuple[str, str], Handler] = {("user", "permissions"): oauth.delete_permissions}
NODE_LABELS = {**fb.NODE_LABELS, **ig.NODE_LABELS}


@route(GRAPH_PREFIX + "/{path:path}", http_method=["GET", "POST", "DELETE"])
async def graph(request: Request, path: FromPath[str]) -> Response:
    state: SandboxState = request.app.state.sandbox
    parts = [part for part in path.split("/") if part]
    version = parts.pop(0) if parts and VERSION_RE.match(parts[0]) else DEFAULT_VERSION
    headers = {"facebook-api-version": version, "Cache-Control": "no-store"}
    ctx = Ctx(state, request, {}, request.method, version)
    try:
        ctx.params = await read_params(request)
        body = await dispatch(ctx, parts, headers)
    except GraphError as error:
        if ctx.node_type.startswith("ig_") and error.transient is None:
            error.transient = False  # Instagram errors always say whether to retry
        return error.response(headers)
    except ValueError:
        return GraphError(100, "(#100) Invalid parameter").response(headers)
    return Response(body, status_code=200, headers=headers)


async def dispatch(ctx: Ctx, parts: list[str], headers: dict[str, str]) -> Any:
    if parts == ["oauth", "access_token"]:
        return await oauth.access_token(ctx)
    if not parts:
        raise unsupported(ctx.method, "")
    ctx.caller = resolve_token(ctx.state, _token(ctx))
    _meter(ctx, headers)
    fb.release_due(ctx.state)
    if parts == ["debug_token"]:
        return await oauth.debug_token(ctx)
    _locate(ctx, parts)
    return await _handler(ctx)(ctx)


def _token(ctx: Ctx) -> str | None:
    return token_from(ctx.request, ctx.params)


def _locate(ctx: Ctx, parts: list[str]) -> None:
    """Resolve the node ("me" is the token's user, or its Page for a Page token)."""
    caller = ctx.caller
    assert caller is not None
    node_id = parts[0]
    if node_id == "me":
        if caller.kind == "app":
            raise GraphError(
                2500,
                "An active access token must be used to query information about the current user.",
            )
        node_id = (caller.page_id if caller.kind == "page" else caller.user_id) or ""
    ctx.node_id, ctx.edge, ctx.rest = node_id, (parts[1] if len(parts) > 1 else None), parts[2:]
    if node_id == caller.app_id:
        ctx.node_type = "app"
        return
    node = ctx.state.get(node_id)
    if node is None or "_type" not in node or node["_type"] == "fb_handle" or node.get("deleted"):
        raise unsupported(ctx.method, node_id)
    ctx.node, ctx.node_type = node, node["_type"]


def _handler(ctx: Ctx) -> Handler:
    key = (ctx.node_type, ctx.edge or "")
    if ctx.method == "GET":
        found = GET_EDGE.get(key) if ctx.edge else GET_NODE.get(ctx.node_type)
    elif ctx.method == "POST":
        found = POST_EDGE.get(key) if ctx.edge else POST_NODE.get(ctx.node_type)
    else:
        found = DELETE_EDGE.get(key) if ctx.edge else DELETE_NODE.get(ctx.node_type)
    if found is not None and (not ctx.rest or key == ("user", "permissions")):
        return found
    if ctx.method == "GET" and ctx.edge:
        raise nonexisting_field(ctx.edge, NODE_LABELS.get(ctx.node_type, "Node"))
    raise unsupported(ctx.method, ctx.node_id)


def _meter(ctx: Ctx, headers: dict[str, str]) -> None:
    """Count the call against the app (Platform limit) or the Page (Business Use Case
    limit) and add the usage headers Graph sends; refuse past the limit."""
    state, caller = ctx.state, ctx.caller
    assert caller is not None
    config = state.config
    app_key, app_limit = f"app:{caller.app_id}", config.facebook_app_call_limit
    if caller.kind == "page" and caller.page_id:
        allowed, percent, regain = count_call(
            state, f"page:{caller.page_id}", config.facebook_page_call_limit, PAGE_WINDOW
        )
        buc = buc_json(caller.page_id, percent, math.ceil(regain / 60))
        headers.update({"X-Page-Usage": usage_json(percent), "X-Business-Use-Case-Usage": buc})
        headers["X-App-Usage"] = usage_json(peek_usage(state, app_key, app_limit, APP_WINDOW))
        if not allowed:
            raise rate_limit_error(32, regain, caller.page_id)
        return
    allowed, percent, regain = count_call(state, app_key, app_limit, APP_WINDOW)
    headers["X-App-Usage"] = usage_json(percent)
    if not allowed:
        raise rate_limit_error(4, regain, caller.app_id)


def routes() -> list:
    return [graph, *oauth.routes(), *ig.routes(), *fb.routes()]
