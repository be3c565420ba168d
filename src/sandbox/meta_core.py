"""Shared machinery of the Meta fakes (Facebook Login, Pages and Instagram Graph API):
the Graph error envelope, access tokens, request parameters, `fields=` selection,
cursor paging, usage headers and media pulled over HTTP."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import secrets
import weakref
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlencode

import httpx
from litestar import Request, Response

from src.sandbox.state import Grant, SandboxState

PLATFORM = "facebook"
GRAPH_PREFIX = "/facebook/graph"
WWW_PREFIX = "/facebook/www"
DEFAULT_VERSION = "v24.0"
VERSION_RE = re.compile(r"^v\d+\.\d+$")
PST = timezone(timedelta(hours=-8))  # Meta words token dates in Pacific time
GRAPH_DOCS = "https://developers.facebook.com/docs/graph-api"


# -- errors ----------------------------------------------------------------------------
class GraphError(Exception):
    """An error in Meta's envelope: {"error": {message, type, code, error_subcode, ...}}."""

    def __init__(
        self,
        code: int,
        message: str,
        *,
        subcode: int | None = None,
        status: int = 400,
        type_: str = "OAuthException",
        title: str | None = None,
        user_msg: str | None = None,
        transient: bool | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.subcode = subcode
        self.status = status
        self.type = type_
        self.title = title
        self.user_msg = user_msg
        self.transient = transient
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"message": self.message, "type": self.type, "code": self.code}
        if self.subcode is not None:
            error["error_subcode"] = self.subcode
        if self.transient is not None:
            error["is_transient"] = self.transient
        if self.title is not None:
            error["error_user_title"] = self.title
        if self.user_msg is not None:
            error["error_user_msg"] = self.user_msg
        error["fbtrace_id"] = trace_id()
        return {"error": error}

    def response(self, extra_headers: dict[str, str] | None = None) -> Response:
        body = self.body()
        headers = {"x-fb-trace-id": body["error"]["fbtrace_id"], **(extra_headers or {})}
        if self.code in (102, 104, 190, 2500):  # Graph adds the RFC 6750 challenge
            headers["WWW-Authenticate"] = (
                f'OAuth "Facebook Platform" "invalid_token" "{self.message}"'
            )
        headers.update(self.headers)
        return Response(body, status_code=self.status, headers=headers)


def trace_id() -> str:
    return base64.b64encode(secrets.token_bytes(8)).decode()[:11]


def unsupported(method: str, object_id: str) -> GraphError:
    """What Graph says for a missing node, a node the token may not see, or a wrong verb."""
    return GraphError(
        100,
        f"Unsupported {method.lower()} request. Object with ID '{object_id}' does not exist, "
        "cannot be loaded due to missing permissions, or does not support this operation. "
        f"Please read the Graph API documentation at {GRAPH_DOCS}",
        subcode=33,
        type_="GraphMethodException",
    )


def nonexisting_field(name: str, node_label: str) -> GraphError:
    return GraphError(
        100, f"(#100) Tried accessing nonexisting field ({name}) on node type ({node_label})"
    )


def missing_param(name: str) -> GraphError:
    return GraphError(100, f"(#100) The parameter {name} is required")


def ig_error(code: int, subcode: int | None, message: str, **kw: Any) -> GraphError:
    """Instagram errors always carry is_transient."""
    kw.setdefault("transient", False)
    return GraphError(code, message, subcode=subcode, **kw)


# -- time ------------------------------------------------------------------------------
def iso(ts: float) -> str:
    """Graph's timestamp format: 2026-11-20T10:15:30+0000."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


def pacific(ts: float) -> str:
    return datetime.fromtimestamp(ts, PST).strftime("%A, %d-%b-%y %H:%M:%S PST")


def parse_time(value: Any) -> float | None:
    """UNIX seconds or ISO-8601, as scheduled_publish_time accepts."""
    text = str(value).strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


# -- tokens ----------------------------------------------------------------------------
@dataclass
class Caller:
    """Who is calling: a user token, a Page token or the app token (app_id|app_secret)."""

    kind: str  # "user" | "page" | "app"
    app_id: str
    grant: Grant | None = None
    user_id: str | None = None
    page_id: str | None = None
    value: str = ""


def token_from(request: Request, params: dict[str, Any]) -> str | None:
    value = params.get("access_token")
    if value:
        return str(value)
    header = request.headers.get("authorization", "")
    scheme, _, credential = header.partition(" ")
    if scheme.lower() in ("bearer", "oauth") and credential.strip():
        return credential.strip()
    return None


def resolve_token(state: SandboxState, value: str | None) -> Caller:
    config = state.config
    if not value:
        raise GraphError(104, "An access token is required to request this resource.")
    if value == f"{config.facebook_app_id}|{config.facebook_app_secret}":
        return Caller("app", config.facebook_app_id, value=value)
    grant, reason = state.lookup(value, PLATFORM, "access")
    if grant is None:
        raise token_error(state, state.grants.get(value), reason)
    kind = grant.extra.get("type", "user")
    return Caller(kind, grant.client_id, grant, grant.user_id, grant.extra.get("page_id"), value)


def token_error(state: SandboxState, grant: Grant | None, reason: str) -> GraphError:
    now = state.now()
    if reason == "expired" and grant is not None and grant.expires_at is not None:
        return expired_error(grant.expires_at, now)
    if reason == "revoked" and grant is not None:
        if grant.extra.get("revoked_reason") == "deauthorized":
            return GraphError(
                190,
                "Error validating access token: The user has not authorized application "
                f"{grant.client_id}.",
                subcode=458,
            )
        return revoked_error()
    return GraphError(190, "Invalid OAuth access token - Cannot parse access token", subcode=467)


def expired_error(expired_at: float, now: float) -> GraphError:
    return GraphError(
        190,
        f"Error validating access token: Session has expired on {pacific(expired_at)}. "
        f"The current time is {pacific(now)}.",
        subcode=463,
    )


def revoked_error() -> GraphError:
    return GraphError(
        190,
        "Error validating access token: The session has been invalidated because the user "
        "changed their password or Facebook has changed the session for security reasons.",
        subcode=460,
    )


# -- permissions (per user and app, live: revoking one affects every token) -----------
def permission_store(state: SandboxState, user_id: str, app_id: str) -> dict[str, str]:
    stores = state.flags.setdefault("facebook_permissions", {})
    return stores.setdefault(f"{user_id}:{app_id}", {})


def granted_scopes(state: SandboxState, caller: Caller) -> set[str]:
    if caller.user_id is None:
        return set()
    store = permission_store(state, caller.user_id, caller.app_id)
    return {name for name, status in store.items() if status == "granted"}


def has_scopes(state: SandboxState, caller: Caller, *scopes: str) -> bool:
    return set(scopes) <= granted_scopes(state, caller)


# -- parameters ------------------------------------------------------------------------
async def read_params(request: Request) -> dict[str, Any]:
    """Query string merged with a form or JSON body: Graph accepts parameters in either."""
    params: dict[str, Any] = dict(request.query_params.items())
    if request.method != "POST":
        return params
    content_type = request.headers.get("content-type", "")
    if "form" in content_type:
        form = await request.form()
        for key, value in form.multi_items():
            params[key] = value
    elif "json" in content_type:
        body = await request.body()
        data = json.loads(body) if body.strip() else {}
        if not isinstance(data, dict):
            raise GraphError(100, "(#100) The request body must be a JSON object")
        params.update(data)
    return params


def as_bool(params: dict[str, Any], name: str, default: bool) -> bool:
    value = params.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    raise GraphError(100, f"(#100) Param {name} must be a boolean")


def as_text(params: dict[str, Any], name: str) -> str:
    value = params.get(name)
    return "" if value is None else str(value)


def as_list(value: Any) -> list[str]:
    """A list parameter: JSON array or comma-separated."""
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return [str(item) for item in value]
    text = str(value).strip()
    if text.startswith("["):
        try:
            return [str(item) for item in json.loads(text)]
        except ValueError as exc:
            raise GraphError(100, "(#100) Invalid JSON for a list parameter") from exc
    return [part.strip() for part in text.split(",") if part.strip()]


# -- fields= ---------------------------------------------------------------------------
def parse_fields(spec: str | None) -> dict[str, str | None] | None:
    """'id,name,instagram_business_account{id,username},picture.type(large)' ->
    {'id': None, 'name': None, 'instagram_business_account': 'id,username', 'picture': None}."""
    if not spec:
        return None
    fields: dict[str, str | None] = {}
    depth, start = 0, 0
    for index, char in enumerate(spec + ","):
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
        elif char == "," and depth == 0:
            _add_field(fields, spec[start:index].strip())
            start = index + 1
    return fields


def _add_field(fields: dict[str, str | None], item: str) -> None:
    if not item:
        return
    sub = None
    if "{" in item and item.endswith("}"):
        item, sub = item[: item.index("{")], item[item.index("{") + 1 : -1]
    fields[item.split(".", 1)[0].strip()] = sub


# A node's view: name -> value, or a callable(subfields) for nested or costly values.
View = dict[str, Any]


def select(
    view: View,
    fields: dict[str, str | None] | None,
    default: list[str],
    allowed: frozenset[str],
    label: str,
) -> dict[str, Any]:
    wanted = fields if fields is not None else dict.fromkeys(default)
    out: dict[str, Any] = {}
    for name, sub in wanted.items():
        if name not in view and name not in allowed:
            raise nonexisting_field(name, label)
        value = view.get(name)
        if callable(value):
            value = value(sub)
        if value is not None:
            out[name] = value
    out.setdefault("id", view["id"])  # Graph always answers with the id
    return out


# -- paging ----------------------------------------------------------------------------
def cursor(object_id: str) -> str:
    return base64.urlsafe_b64encode(object_id.encode()).decode().rstrip("=")


def uncursor(value: str) -> str:
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
    except (ValueError, UnicodeDecodeError) as exc:
        raise GraphError(100, "(#100) The after or before cursor is invalid") from exc


def paginate(
    items: list[dict[str, Any]],
    params: dict[str, Any],
    render: Callable[[dict[str, Any]], dict[str, Any]],
    link: str,
) -> dict[str, Any]:
    """{"data": [...], "paging": {"cursors": {"before", "after"}, "next"?, "previous"?}}."""
    try:
        limit = max(1, min(100, int(params.get("limit") or 25)))
    except ValueError as exc:
        raise GraphError(100, "(#100) Param limit must be a number") from exc
    ids = [item["id"] for item in items]
    start = 0
    if params.get("after"):
        anchor = uncursor(str(params["after"]))
        start = ids.index(anchor) + 1 if anchor in ids else len(ids)
    elif params.get("before"):
        anchor = uncursor(str(params["before"]))
        start = max(0, (ids.index(anchor) if anchor in ids else 0) - limit)
    page = items[start : start + limit]
    result: dict[str, Any] = {"data": [render(item) for item in page]}
    if not page:
        return result
    paging: dict[str, Any] = {
        "cursors": {"before": cursor(page[0]["id"]), "after": cursor(page[-1]["id"])}
    }
    base = {k: v for k, v in params.items() if k not in ("after", "before") and isinstance(v, str)}
    if start + limit < len(items):
        paging["next"] = (
            f"{link}?{urlencode({**base, 'limit': limit, 'after': paging['cursors']['after']})}"
        )
    if start > 0:
        paging["previous"] = (
            f"{link}?{urlencode({**base, 'limit': limit, 'before': paging['cursors']['before']})}"
        )
    result["paging"] = paging
    return result


# -- usage (rolling windows, bucketed so a busy sandbox stays fast) --------------------
def count_call(state: SandboxState, key: str, limit: int, window: float) -> tuple[bool, int, float]:
    """Count one call. Returns (allowed, percent used, seconds until access returns)."""
    buckets: list[list[float]] = state.flags.setdefault("facebook_usage", {}).setdefault(key, [])
    now = state.now()
    while buckets and buckets[0][0] <= now - window:
        buckets.pop(0)
    total = sum(bucket[1] for bucket in buckets)
    if total >= limit:
        return False, 100, max(1.0, buckets[0][0] + window - now)
    start = now - now % (window / 60)
    if buckets and buckets[-1][0] == start:
        buckets[-1][1] += 1
    else:
        buckets.append([start, 1])
    return True, min(100, int((total + 1) * 100 / max(limit, 1))), 0.0


def peek_usage(state: SandboxState, key: str, limit: int, window: float) -> int:
    buckets = state.flags.get("facebook_usage", {}).get(key, [])
    now = state.now()
    total = sum(b[1] for b in buckets if b[0] > now - window)
    return min(100, int(total * 100 / max(limit, 1)))


def usage_json(percent: int) -> str:
    return json.dumps({"call_count": percent, "total_cputime": percent, "total_time": percent})


def buc_json(object_id: str, percent: int, regain_minutes: int, kind: str = "pages") -> str:
    entry = {
        "type": kind,
        "call_count": percent,
        "total_cputime": percent,
        "total_time": percent,
        "estimated_time_to_regain_access": regain_minutes,
    }
    return json.dumps({object_id: [entry]})


# -- media pulled over HTTP ------------------------------------------------------------
@dataclass
class Pulled:
    ok: bool = False
    error: str = ""  # "status" | "unreachable" | "timeout" | "too_large" | "invalid"
    status: int | None = None
    size: int = 0
    head: bytes = b""
    body: bytes = b""
    content_type: str = ""


async def pull(url: str, limit: int, *, keep: bool, wait: float = 30.0) -> Pulled:
    """Fetch `url` for real, streaming, and stop past `limit` bytes."""
    if not url.startswith(("http://", "https://")):
        return Pulled(error="invalid")
    try:
        async with _client().stream("GET", url, timeout=wait) as response:
            if response.status_code != 200:
                return Pulled(error="status", status=response.status_code)
            return await _read_stream(response, limit, keep)
    except httpx.TimeoutException:
        return Pulled(error="timeout")
    except httpx.HTTPError:
        return Pulled(error="unreachable")


_CLIENTS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
    weakref.WeakKeyDictionary()
)


def _client() -> httpx.AsyncClient:
    """One pooled client per event loop: building a client (and its TLS context) per
    pull would cost more than a small download."""
    loop = asyncio.get_running_loop()
    client = _CLIENTS.get(loop)
    if client is None:
        client = _CLIENTS[loop] = httpx.AsyncClient(follow_redirects=True)
    return client


async def _read_stream(response: httpx.Response, limit: int, keep: bool) -> Pulled:
    chunks: list[bytes] = []
    head, size = b"", 0
    async for chunk in response.aiter_bytes():
        if len(head) < 64:
            head += chunk[: 64 - len(head)]
        size += len(chunk)
        if size > limit:
            return Pulled(error="too_large", status=200, size=size, head=head)
        if keep:
            chunks.append(chunk)
    content_type = response.headers.get("content-type", "")
    return Pulled(True, "", 200, size, head, b"".join(chunks), content_type)


def media_kind(head: bytes) -> str | None:
    """Identify a file by its magic bytes."""
    if head[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if head[:4] == b"\x89PNG":
        return "png"
    if head[:4] == b"GIF8":
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:2] == b"BM":
        return "bmp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"heic", b"heix", b"mif1", b"msf1"):
            return "heic"
        return "mov" if brand == b"qt  " else "mp4"
    if head[:4] == b"\x1aE\xdf\xa3":
        return "webm"
    return None


IMAGE_KINDS = {"jpeg", "png", "gif", "webp", "bmp", "tiff", "heic"}
VIDEO_KINDS = {"mp4", "mov"}

# Start-of-frame markers carry the image size (not DHT C4, JPG C8, DAC CC).
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) read from the JPEG's SOF marker, or None."""
    index = 2
    while index + 4 <= len(data):
        if data[index] != 0xFF:
            return None
        marker = data[index + 1]
        if marker == 0xFF:  # fill byte
            index += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # standalone markers
            index += 2
            continue
        length = int.from_bytes(data[index + 2 : index + 4], "big")
        if marker in _SOF and index + 9 <= len(data):
            height = int.from_bytes(data[index + 5 : index + 7], "big")
            width = int.from_bytes(data[index + 7 : index + 9], "big")
            return width, height
        index += 2 + length
    return None


# -- background work -------------------------------------------------------------------
_TASKS: set[asyncio.Task] = set()


def spawn(coro: Coroutine[Any, Any, Any]) -> None:
    """Run platform-side work (fetching, processing) after the response, as Meta does."""
    task = asyncio.get_running_loop().create_task(coro)
    _TASKS.add(task)
    task.add_done_callback(_TASKS.discard)


async def wait_until(state: SandboxState, ready_at: float) -> None:
    """Sleep until the sandbox clock (which tests may move forward) reaches ready_at.
    Polling, because the clock can jump: no event marks that moment."""
    while (remaining := ready_at - state.now()) > 0:  # noqa: ASYNC110
        await asyncio.sleep(min(remaining, 0.25))


def alive(state: SandboxState, obj: dict[str, Any]) -> bool:
    """False once the sandbox was reset under a background task."""
    return state.get(obj["id"]) is obj


# -- ids and objects -------------------------------------------------------------------
def new_id(state: SandboxState, width: int = 16) -> str:
    return state.next_id(width)


def shortcode() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(8)).decode().rstrip("=")[:11]


@dataclass
class Ctx:
    """One Graph request, as the handlers see it."""

    state: SandboxState
    request: Request
    params: dict[str, Any]
    method: str
    version: str
    caller: Caller | None = None
    node_id: str = ""
    node: dict[str, Any] | None = None
    node_type: str = ""
    edge: str | None = None
    rest: list[str] = field(default_factory=list)

    @property
    def base(self) -> str:
        return self.state.config.base_url.rstrip("/")

    @property
    def fields(self) -> dict[str, str | None] | None:
        return parse_fields(self.params.get("fields"))

    def link(self, *parts: str) -> str:
        return "/".join([self.base + GRAPH_PREFIX, self.version, *parts])
