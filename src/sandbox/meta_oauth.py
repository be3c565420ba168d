"""Facebook Login, manually built flow: the OAuth dialog on www.facebook.com, the code
and token exchanges on graph.facebook.com, /me/permissions and /debug_token."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode, urlsplit

from litestar import Request, Response, get, post

from src.sandbox.consent import consent_page, render_page
from src.sandbox.meta_core import (
    PLATFORM,
    Caller,
    Ctx,
    GraphError,
    missing_param,
    nonexisting_field,
    permission_store,
    resolve_token,
    token_error,
    unsupported,
)
from src.sandbox.state import Grant, SandboxState

CODE_TTL = 600  # Facebook codes live about ten minutes
KNOWN_SCOPES = frozenset(
    """
    public_profile email pages_show_list pages_read_engagement pages_manage_posts
    pages_manage_engagement pages_read_user_engagement pages_manage_metadata pages_messaging
    publish_video instagram_basic instagram_content_publish instagram_manage_comments
    instagram_manage_insights instagram_manage_messages business_management read_insights
    ads_management ads_read user_posts user_photos user_videos
    """.split()  # noqa: SIM905 (a compact word list)
)


# -- the dialog (www.facebook.com/{version}/dialog/oauth) ------------------------------
def split_scopes(value: str) -> list[str]:
    names = [part for part in re.split(r"[,\s]+", value or "") if part]
    return list(dict.fromkeys(names))


def _error_page(title: str, message: str) -> Response:
    response = render_page("meta_error.html", title=title, message=message)
    response.status_code = 400
    return response


def _check_dialog(state: SandboxState, params: dict[str, Any]) -> Response | None:
    """The developer-facing error pages the dialog shows instead of redirecting."""
    if params.get("client_id") != state.config.facebook_app_id:
        return _error_page(
            "Invalid App ID", "The provided app ID does not look like a valid app ID."
        )
    redirect = urlsplit(params.get("redirect_uri") or "")
    if redirect.scheme not in ("http", "https") or not redirect.netloc:
        return _error_page(
            "URL Blocked",
            "This redirect failed because the redirect URI is not whitelisted in the app's "
            "Client OAuth Settings. Make sure Client and Web OAuth Login are on and add all "
            "your app domains as Valid OAuth Redirect URIs.",
        )
    if (params.get("response_type") or "code") != "code":
        return _error_page(
            "Unsupported response_type", "This sandbox implements the code flow only."
        )
    invalid = [s for s in split_scopes(params.get("scope", "")) if s not in KNOWN_SCOPES]
    if invalid:
        return _error_page(
            "Invalid Scopes: " + ", ".join(invalid),
            "This message is only shown to developers. Users of your app will ignore these "
            "permissions if present. Please read the documentation for valid permissions at: "
            "https://developers.facebook.com/docs/facebook-login/permissions",
        )
    return None


def _redirect(redirect_uri: str, query: dict[str, str]) -> Response:
    joiner = "&" if "?" in redirect_uri else "?"
    # Facebook appends the famous "#_=_" fragment to the redirect.
    location = f"{redirect_uri}{joiner}{urlencode(query)}#_=_"
    return Response(b"", status_code=302, headers={"Location": location})


def _dialog_url(state: SandboxState, version: str | None) -> str:
    """Absolute, from base_url: request.url would repeat the mount prefix (root_path)."""
    middle = f"/{version}" if version else ""
    return f"{state.config.base_url.rstrip('/')}/facebook/www{middle}/dialog/oauth"


@get(
    ["/facebook/www/dialog/oauth", "/facebook/www/{version:str}/dialog/oauth"], sync_to_thread=False
)
def dialog(request: Request) -> Response:
    state: SandboxState = request.app.state.sandbox
    params = dict(request.query_params.items())
    refused = _check_dialog(state, params)
    if refused is not None:
        return refused
    scopes = split_scopes(params.get("scope", "")) or ["public_profile"]
    users = [i for i in state.identities_of(PLATFORM) if i.extra.get("kind") == "user"]
    return consent_page(
        platform_title="Facebook",
        action=_dialog_url(state, request.path_params.get("version")),
        identities=users,
        scopes=scopes,
        hidden={
            "client_id": params["client_id"],
            "redirect_uri": params["redirect_uri"],
            "state": params.get("state", ""),
            "requested_scope": ",".join(scopes),
            "response_type": "code",
        },
    )


@post(["/facebook/www/dialog/oauth", "/facebook/www/{version:str}/dialog/oauth"], status_code=302)
async def dialog_decision(request: Request) -> Response:
    state: SandboxState = request.app.state.sandbox
    form = await request.form()
    params = {k: v for k, v in form.items() if isinstance(v, str)}
    params["scope"] = params.get("requested_scope", "")
    refused = _check_dialog(state, params)
    if refused is not None:
        return refused
    redirect_uri, state_value = params["redirect_uri"], params.get("state", "")
    if params.get("decision") != "allow":
        return _redirect(
            redirect_uri,
            {
                "error": "access_denied",
                "error_code": "200",
                "error_description": "Permissions error",
                "error_reason": "user_denied",
                "state": state_value,
            },
        )
    identity = state.identity(PLATFORM, params.get("identity", ""))
    if identity is None or identity.extra.get("kind") != "user":
        return _error_page("Log in", "Choose one of the test people to continue.")
    requested = split_scopes(params["scope"])
    ticked = set(form.getall("scope")) if "scope" in form else set()
    code = _grant_code(state, identity.id, params["client_id"], requested, ticked, redirect_uri)
    return _redirect(redirect_uri, {"code": code.value, "state": state_value})


def _grant_code(
    state: SandboxState,
    user_id: str,
    app_id: str,
    requested: list[str],
    ticked: set[str],
    redirect_uri: str,
) -> Grant:
    store = permission_store(state, user_id, app_id)
    store["public_profile"] = "granted"  # cannot be declined
    for scope in requested:
        if scope != "public_profile":
            store[scope] = "granted" if scope in ticked else "declined"
    granted = [name for name, status in store.items() if status == "granted"]
    return state.issue(
        PLATFORM, "code", user_id, app_id, granted, CODE_TTL, prefix="AQ", redirect_uri=redirect_uri
    )


# -- tokens (graph.facebook.com/{version}/oauth/access_token) --------------------------
def issue_user_token(state: SandboxState, user_id: str, app_id: str, long_lived: bool) -> Grant:
    config = state.config
    ttl = config.facebook_long_token_ttl if long_lived else config.facebook_short_token_ttl
    store = permission_store(state, user_id, app_id)
    scopes = [name for name, status in store.items() if status == "granted"]
    return state.issue(
        PLATFORM, "access", user_id, app_id, scopes, ttl, prefix="EAA", type="user", long=long_lived
    )


def _token_body(grant: Grant, state: SandboxState) -> dict[str, Any]:
    body: dict[str, Any] = {"access_token": grant.value, "token_type": "bearer"}
    if grant.expires_at is not None:
        body["expires_in"] = round(grant.expires_at - state.now())
    return body


def _check_client(state: SandboxState, params: dict[str, Any], need_secret: bool = True) -> None:
    config = state.config
    if not params.get("client_id"):
        raise GraphError(101, "Missing client_id parameter.")
    if params["client_id"] != config.facebook_app_id:
        raise GraphError(101, "Error validating application. Invalid application ID.")
    if not need_secret:
        return
    if not params.get("client_secret"):
        raise GraphError(101, "Missing client_secret parameter.")
    if params["client_secret"] != config.facebook_app_secret:
        raise GraphError(1, "Error validating client secret.")


async def access_token(ctx: Ctx) -> dict[str, Any]:
    state, params = ctx.state, ctx.params
    _check_client(state, params)
    grant_type = params.get("grant_type")
    if grant_type == "fb_exchange_token":
        return _exchange(state, params)
    if grant_type == "client_credentials":
        config = state.config
        token = f"{config.facebook_app_id}|{config.facebook_app_secret}"
        return {"access_token": token, "token_type": "bearer"}
    if grant_type not in (None, "", "authorization_code"):
        raise GraphError(100, f"(#100) Unsupported grant_type {grant_type}")
    return _redeem_code(state, params)


def _redeem_code(state: SandboxState, params: dict[str, Any]) -> dict[str, Any]:
    if not params.get("redirect_uri"):
        raise GraphError(191, "Missing redirect_uri parameter.")
    if not params.get("code"):
        raise missing_param("code")
    code = state.grants.get(str(params["code"]))
    if code is None or code.kind != "code" or code.platform != PLATFORM:
        raise GraphError(100, "Invalid verification code format.")
    if code.client_id != params["client_id"]:
        raise GraphError(100, "Invalid verification code format.")
    if code.used or code.revoked:
        raise GraphError(100, "This authorization code has been used.", subcode=36009)
    if code.expires_at is not None and code.expires_at <= state.now():
        raise GraphError(100, "This authorization code has expired.", subcode=36007)
    if code.extra.get("redirect_uri") != params["redirect_uri"]:
        raise GraphError(
            100,
            "Error validating verification code. Please make sure your redirect_uri is "
            "identical to the one you used in the OAuth dialog request",
            subcode=36008,
        )
    code.used = True
    return _token_body(issue_user_token(state, code.user_id, code.client_id, False), state)


def _exchange(state: SandboxState, params: dict[str, Any]) -> dict[str, Any]:
    """Short-lived user token -> long-lived one (an expired token cannot be exchanged)."""
    value = params.get("fb_exchange_token")
    if not value:
        raise missing_param("fb_exchange_token")
    grant, reason = state.lookup(str(value), PLATFORM, "access")
    if grant is None:
        raise token_error(state, state.grants.get(str(value)), reason)
    if grant.extra.get("type") != "user" or grant.client_id != params["client_id"]:
        raise GraphError(190, "Invalid OAuth access token - Cannot parse access token", subcode=467)
    return _token_body(issue_user_token(state, grant.user_id, grant.client_id, True), state)


# -- /me/permissions -------------------------------------------------------------------
def _permission_owner(ctx: Ctx) -> tuple[str, str]:
    caller = ctx.caller
    assert caller is not None
    if ctx.node_type != "user" or caller.kind == "page":
        raise nonexisting_field("permissions", "Page")
    if caller.kind == "user" and caller.user_id != ctx.node_id:
        raise unsupported(ctx.method, ctx.node_id)
    return ctx.node_id, caller.app_id


async def list_permissions(ctx: Ctx) -> dict[str, Any]:
    user_id, app_id = _permission_owner(ctx)
    store = permission_store(ctx.state, user_id, app_id)
    data = [{"permission": name, "status": status} for name, status in store.items()]
    if ctx.rest:
        data = [entry for entry in data if entry["permission"] == ctx.rest[0]]
    return {"data": data}


async def delete_permissions(ctx: Ctx) -> dict[str, Any]:
    """DELETE /me/permissions deauthorizes the app (every user and Page token dies);
    DELETE /me/permissions/{name} revokes one permission."""
    user_id, app_id = _permission_owner(ctx)
    store = permission_store(ctx.state, user_id, app_id)
    name = ctx.rest[0] if ctx.rest else None
    if name and name != "public_profile":
        if name in store:
            store[name] = "declined"
        return {"success": True}
    store.clear()
    for grant in ctx.state.grants.values():
        mine = grant.platform == PLATFORM and grant.user_id == user_id
        if mine and grant.client_id == app_id and not grant.revoked:
            grant.revoked = True
            grant.extra["revoked_reason"] = "deauthorized"
    return {"success": True}


# -- /debug_token ----------------------------------------------------------------------
async def debug_token(ctx: Ctx) -> dict[str, Any]:
    state = ctx.state
    value = ctx.params.get("input_token")
    if not value:
        raise missing_param("input_token")
    try:
        inspected = resolve_token(state, str(value))
    except GraphError as exc:
        return {
            "data": {
                "error": {"code": exc.code, "message": exc.message},
                "is_valid": False,
                "scopes": [],
            }
        }
    return {"data": _describe(state, inspected)}


def _describe(state: SandboxState, caller: Caller) -> dict[str, Any]:
    data: dict[str, Any] = {
        "app_id": caller.app_id,
        "type": caller.kind.upper(),
        "application": "OKKTOPUS Sandbox",
        "is_valid": True,
    }
    grant = caller.grant
    if grant is None:
        return data
    store = permission_store(state, grant.user_id, grant.client_id)
    scopes = [name for name, status in store.items() if status == "granted"]
    data.update(
        expires_at=int(grant.expires_at or 0),
        data_access_expires_at=int(state.now() + 90 * 86400),
        scopes=scopes,
        user_id=grant.user_id,
    )
    if caller.page_id:
        data["profile_id"] = caller.page_id
    return data


def routes() -> list:
    return [dialog, dialog_decision]
