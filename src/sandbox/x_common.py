"""Shared pieces of the X fake: problem bodies, bearer auth with scopes, fixed-window rate
limits with X's headers, and a small validator for the JSON bodies the real API checks
against its schemas (worded like X's validator)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, NoReturn

from litestar import Request, Response

from src.sandbox.state import Grant, SandboxState

PLATFORM = "x"
PROBLEMS = "https://api.twitter.com/2/problems/"
PROBLEM_JSON = "application/problem+json"
TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
INVALID_DETAIL = "One or more parameters to your request was invalid."


class XError(Exception):
    """Raised by handlers to answer with a ready response (problem + rate headers)."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


def on_x_error(_: Request, exc: XError) -> Response:
    return exc.response


def sandbox(request: Request) -> SandboxState:
    return request.app.state.sandbox


# -- problem bodies ----------------------------------------------------------------------
def generic(status: int, headers: dict[str, str] | None = None, detail: str = "") -> Response:
    """X's about:blank problem, e.g. 401 Unauthorized or 429 Too Many Requests."""
    title = TITLES.get(status, "Error")
    body = {"title": title, "type": "about:blank", "status": status, "detail": detail or title}
    return Response(body, status_code=status, media_type=PROBLEM_JSON, headers=headers or {})


def invalid_request(
    messages: list[str] | str,
    headers: dict[str, str] | None = None,
    parameters: dict[str, list[str]] | None = None,
) -> Response:
    if isinstance(messages, str):
        messages = [messages]
    body = {
        "errors": [{"parameters": parameters or {}, "message": m} for m in messages],
        "title": "Invalid Request",
        "detail": INVALID_DETAIL,
        "type": PROBLEMS + "invalid-request",
    }
    return Response(body, status_code=400, media_type=PROBLEM_JSON, headers=headers or {})


def not_found_item(resource_type: str, parameter: str, value: str) -> dict[str, str]:
    """An entry of a 200 response's `errors` array for an id that does not exist."""
    return {
        "value": value,
        "detail": f"Could not find {resource_type} with {parameter}: [{value}].",
        "title": "Not Found Error",
        "resource_type": resource_type,
        "parameter": parameter,
        "resource_id": value,
        "type": PROBLEMS + "resource-not-found",
    }


# -- rate limits -------------------------------------------------------------------------
@dataclass(frozen=True)
class Limit:
    limit: int | str  # a number, or the name of a SandboxConfig field
    window: int  # seconds
    per: str = "user"  # "user" | "app"
    header: str = "x-rate-limit"  # header prefix

    def value(self, state: SandboxState) -> int:
        return self.limit if isinstance(self.limit, int) else int(getattr(state.config, self.limit))


FIFTEEN_MIN, DAY = 900, 86_400


@dataclass(frozen=True)
class Endpoint:
    name: str
    method: str
    pattern: re.Pattern[str]  # on the path inside /x
    scopes: tuple[str, ...]
    limits: tuple[Limit, ...]


def _ep(name: str, method: str, path: str, scopes: str, *limits: Limit) -> Endpoint:
    regex = re.compile("^/api" + re.sub(r"\{[a-z_]+\}", "[^/]+", path) + "$")
    return Endpoint(name, method, regex, tuple(scopes.split()), limits)


READ = "tweet.read users.read"
# Scopes per the spec's OAuth2UserToken security requirement; limits per X's rate-limits page.
ENDPOINTS = {
    e.name: e
    for e in (
        _ep("users_me", "GET", "/2/users/me", READ, Limit(75, FIFTEEN_MIN)),
        _ep(
            "tweets_create",
            "POST",
            "/2/tweets",
            "tweet.write " + READ,
            Limit("x_tweets_per_15min", FIFTEEN_MIN),
            Limit("x_tweets_per_day_user", DAY, "user", "x-user-limit-24hour"),
            Limit("x_tweets_per_day_app", DAY, "app", "x-app-limit-24hour"),
        ),
        _ep("tweets_get", "GET", "/2/tweets/{id}", READ, Limit(900, FIFTEEN_MIN)),
        _ep(
            "tweets_delete",
            "DELETE",
            "/2/tweets/{id}",
            "tweet.write " + READ,
            Limit(50, FIFTEEN_MIN),
        ),
        _ep("users_tweets", "GET", "/2/users/{id}/tweets", READ, Limit(900, FIFTEEN_MIN)),
        _ep("media_upload", "POST", "/2/media/upload", "media.write", Limit(500, FIFTEEN_MIN)),
        _ep("media_status", "GET", "/2/media/upload", "media.write", Limit(1000, FIFTEEN_MIN)),
        _ep(
            "media_init",
            "POST",
            "/2/media/upload/initialize",
            "media.write",
            Limit(1875, FIFTEEN_MIN),
        ),
        _ep(
            "media_append",
            "POST",
            "/2/media/upload/{id}/append",
            "media.write",
            Limit(1875, FIFTEEN_MIN),
        ),
        _ep(
            "media_finalize",
            "POST",
            "/2/media/upload/{id}/finalize",
            "media.write",
            Limit(1875, FIFTEEN_MIN),
        ),
        _ep("media_metadata", "POST", "/2/media/metadata", "media.write", Limit(500, FIFTEEN_MIN)),
    )
}


def endpoint_for(method: str, path: str) -> Endpoint | None:
    """The API endpoint a request inside /x hits (path like '/api/2/tweets')."""
    for endpoint in ENDPOINTS.values():
        if endpoint.method == method and endpoint.pattern.match(path):
            return endpoint
    return None


def _bucket_key(endpoint: Endpoint, limit: Limit, grant: Grant | None) -> str:
    who = "app:" + (grant.client_id if grant else "-")
    if limit.per == "user":
        who += ":user:" + (grant.user_id if grant else "-")
    return f"x:{endpoint.name}:{limit.window}:{who}"


def _window(
    state: SandboxState, key: str, limit: int, window: int, count: bool
) -> tuple[bool, int, int]:
    """Fixed window started by its first call, as X's x-rate-limit-reset describes.
    Returns (allowed, remaining, reset epoch seconds)."""
    now = state.now()
    start, used = state.counters.get(key) or (now, 0)
    if now >= start + window:
        start, used = now, 0
    allowed = used < limit
    if allowed and count:
        used += 1
        state.counters[key] = [start, used]
    return allowed, max(0, limit - int(used)), int(start + window)


def rate_headers(
    state: SandboxState, endpoint: Endpoint | None, grant: Grant | None, count: bool
) -> tuple[dict[str, str], bool]:
    """Count (or only look at) every limit of the endpoint; a refused call counts nowhere.
    Returns (headers, allowed)."""
    limits = endpoint.limits if endpoint else ()
    keys = [_bucket_key(endpoint, limit, grant) for limit in limits]  # type: ignore[arg-type]
    allowed = all(
        _window(state, key, limit.value(state), limit.window, False)[0]
        for key, limit in zip(keys, limits, strict=True)
    )
    headers: dict[str, str] = {}
    for key, limit in zip(keys, limits, strict=True):
        value = limit.value(state)
        _, remaining, reset = _window(state, key, value, limit.window, count and allowed)
        headers[f"{limit.header}-limit"] = str(value)
        headers[f"{limit.header}-remaining"] = str(remaining)
        headers[f"{limit.header}-reset"] = str(reset)
    return headers, allowed


# -- authenticated calls -----------------------------------------------------------------
@dataclass
class Call:
    """One authenticated API call: the state, the token's grant and the headers every
    response of this call carries."""

    state: SandboxState
    grant: Grant
    headers: dict[str, str]

    @property
    def user_id(self) -> str:
        return self.grant.user_id

    def ok(self, body: Any, status: int = 200) -> Response:
        return Response(
            body, status_code=status, headers=self.headers, media_type="application/json"
        )

    def invalid(
        self, messages: list[str] | str, parameters: dict[str, list[str]] | None = None
    ) -> NoReturn:
        raise XError(invalid_request(messages, self.headers, parameters))

    def refuse(self, status: int, detail: str = "") -> NoReturn:
        raise XError(generic(status, self.headers, detail))


def bearer_token(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def begin(request: Request, name: str) -> Call:
    """Authenticate the bearer user token, check the endpoint's scopes, count its limits."""
    state = sandbox(request)
    endpoint = ENDPOINTS[name]
    grant, _ = state.lookup(bearer_token(request), PLATFORM, "access")
    if grant is None:
        raise XError(generic(401, rate_headers(state, endpoint, None, count=False)[0]))
    if not set(endpoint.scopes) <= set(grant.scopes):
        raise XError(generic(403, rate_headers(state, endpoint, grant, count=False)[0]))
    headers, allowed = rate_headers(state, endpoint, grant, count=True)
    if not allowed:
        raise XError(generic(429, headers))
    return Call(state, grant, headers)


# -- request body validation (the subset of JSON Schema X's bodies use) -----------------
ID = {"type": "string", "pattern": r"^[0-9]{1,19}$"}
NOT_DEFINED = "is not defined in the schema and the schema does not allow additional properties"
JSON_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool}


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "integer" if isinstance(value, int) or value.is_integer() else "number"
    if value is None:
        return "null"
    return {dict: "object", list: "array", str: "string"}.get(type(value), "unknown")


def _type_ok(value: Any, expected: str) -> bool:
    if expected in ("integer", "number"):
        actual = _type_name(value)
        return actual == "integer" or (expected == "number" and actual == "number")
    return isinstance(value, JSON_TYPES[expected]) and not (
        expected != "boolean" and isinstance(value, bool)
    )


def validate(value: Any, schema: dict[str, Any], path: str = "$") -> list[str]:
    """Messages for every violation, in the words of X's schema validator."""
    expected = schema.get("type")
    if expected and not _type_ok(value, expected):
        return [f"{path}: {_type_name(value)} found, {expected} expected"]
    errors: list[str] = []
    if "enum" in schema and value not in schema["enum"]:
        errors.append(
            f"{path}: does not have a value in the enumeration [{', '.join(schema['enum'])}]"
        )
    if isinstance(value, str):
        errors += _string_errors(value, schema, path)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{path}: must have a minimum value of {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{path}: must have a maximum value of {schema['maximum']}")
    elif isinstance(value, list):
        errors += _array_errors(value, schema, path)
    elif isinstance(value, dict):
        errors += _object_errors(value, schema, path)
    return errors


def _string_errors(value: str, schema: dict[str, Any], path: str) -> list[str]:
    errors = []
    if "pattern" in schema and not re.search(schema["pattern"], value):
        errors.append(f"{path}: does not match the regex pattern {schema['pattern']}")
    if "minLength" in schema and len(value) < schema["minLength"]:
        errors.append(f"{path}: must be at least {schema['minLength']} characters long")
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        errors.append(f"{path}: may only be {schema['maxLength']} characters long")
    return errors


def _array_errors(value: list, schema: dict[str, Any], path: str) -> list[str]:
    errors = []
    if "minItems" in schema and len(value) < schema["minItems"]:
        errors.append(f"{path}: there must be a minimum of {schema['minItems']} items in the array")
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        errors.append(f"{path}: there must be a maximum of {schema['maxItems']} items in the array")
    for index, item in enumerate(value):
        errors += validate(item, schema.get("items", {}), f"{path}[{index}]")
    return errors


def _object_errors(value: dict, schema: dict[str, Any], path: str) -> list[str]:
    errors = []
    properties = schema.get("properties", {})
    errors += [
        f"{path}.{k}: is missing but it is required"
        for k in schema.get("required", ())
        if k not in value
    ]
    for key, item in value.items():
        if key in properties:
            errors += validate(item, properties[key], f"{path}.{key}")
        elif schema.get("additionalProperties") is False:
            errors.append(f"{path}.{key}: {NOT_DEFINED}")
    return errors
