"""Check the X fake against X's official OpenAPI spec, as an httpx response hook.

Every API request and response passing through `spec_client()` is validated against
`shared/specs/x-api-v2-openapi.json` (v2.167) with openapi-core. Problem bodies are also
checked against the richer legacy Problem schemas of the v2.159 spec, which know the
`about:blank` generic problem and the `https://api.twitter.com/2/problems/...` type URIs
that the live API (and so the fake) still returns; the new spec's copies only know
`https://api.x.com/...`, so those are matched on the problem name (the last path segment),
as X tells clients to. OAuth token/revoke are not in the spec: their documented shapes are
checked here. A request the spec refuses must be refused by the fake (4xx), and every API
response must carry X's rate-limit headers.
"""

from __future__ import annotations

import base64
import json
import warnings
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import default
from functools import cache
from pathlib import Path
from typing import Any

import httpx
from jsonschema import Draft7Validator
from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_core.exceptions import OpenAPIError
from openapi_schema_validator import OAS30Validator
from werkzeug.datastructures import Headers, ImmutableMultiDict

SPECS = Path(__file__).parents[3] / "shared" / "specs"
SPEC_PATH = SPECS / "x-api-v2-openapi.json"
LEGACY_PATH = SPECS / "x-api-v2-openapi-v2.159.json"
LEGACY_PROBLEMS = "https://api.twitter.com/2/problems/"
NEW_PROBLEMS = "https://api.x.com/2/problems/"
RATE_HEADERS = ("x-rate-limit-limit", "x-rate-limit-remaining", "x-rate-limit-reset")

TOKEN = {
    "type": "object",
    "additionalProperties": False,
    "required": ["token_type", "expires_in", "access_token", "scope"],
    "properties": {
        "token_type": {"const": "bearer"},
        "expires_in": {"type": "integer", "minimum": 1},
        "access_token": {"type": "string", "minLength": 1},
        "scope": {"type": "string"},
        "refresh_token": {"type": "string", "minLength": 1},
    },
}
OAUTH_ERROR = {
    "type": "object",
    "required": ["error", "error_description"],
    "properties": {"error": {"type": "string"}, "error_description": {"type": "string"}},
}
REVOKED = {
    "type": "object",
    "required": ["revoked"],
    "properties": {"revoked": {"type": "boolean"}},
}


class SpecViolation(AssertionError):
    pass


@cache
def openapi() -> OpenAPI:
    # The pinned spec has a duplicated enum value, so its own meta-validation is skipped.
    config = Config(
        spec_validator_cls=None,
        extra_media_type_deserializers={"application/problem+json": json.loads},
    )
    return OpenAPI.from_file_path(str(SPEC_PATH), config=config)


@cache
def legacy_components() -> dict[str, Any]:
    return json.loads(LEGACY_PATH.read_text())["components"]


@dataclass
class SpecRequest:
    """openapi-core's Request protocol over an httpx request."""

    method: str
    path: str
    body: bytes | None
    content_type: str
    parameters: RequestParameters = field(default_factory=RequestParameters)
    host_url: str = "https://api.x.com"


@dataclass
class SpecResponse:
    status_code: int
    data: bytes
    content_type: str
    headers: Headers


def api_path(url: httpx.URL) -> str | None:
    """'/x/api/2/tweets' (standalone) or '/sandbox/x/api/2/tweets' (mounted) -> '/2/tweets'."""
    marker = "/x/api/"
    path = url.path
    return "/" + path.split(marker, 1)[1] if marker in path else None


def _multipart_as_json(body: bytes, content_type: str) -> bytes:
    """openapi-core leaves multipart fields as text, so an integer field never validates.
    The spec gives the multipart and JSON forms of each upload the same schema, so check the
    JSON equivalent: file parts as base64 (format byte), numeric text fields as integers."""
    message = BytesParser(policy=default).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    fields: dict[str, Any] = {}
    for part in message.iter_parts():
        name, payload = part.get_param("name", header="content-disposition"), part.get_content()
        if part.get_filename() is not None:
            raw = payload if isinstance(payload, bytes) else payload.encode()
            fields[name] = base64.b64encode(raw).decode()
        else:
            text = payload.decode() if isinstance(payload, bytes) else payload
            fields[name] = int(text) if text.lstrip("-").isdigit() else text
    return json.dumps(fields).encode()


def _request(request: httpx.Request, path: str) -> SpecRequest:
    request.read()
    body, content_type = request.content or None, request.headers.get("content-type", "")
    if body and content_type.startswith("multipart/form-data"):
        body, content_type = _multipart_as_json(body, content_type), "application/json"
    params = RequestParameters(
        query=ImmutableMultiDict(list(request.url.params.multi_items())),
        header=Headers(list(request.headers.items())),
        cookie=ImmutableMultiDict(),
    )
    return SpecRequest(
        method=request.method.lower(),
        path=path,
        body=body,
        content_type=content_type,
        parameters=params,
    )


def _rewrite_types(value: Any) -> Any:
    """Legacy problem type URIs -> the new spec's, to validate against the new schemas."""
    if isinstance(value, dict):
        return {k: _rewrite_types(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rewrite_types(v) for v in value]
    if isinstance(value, str) and value.startswith(LEGACY_PROBLEMS):
        return NEW_PROBLEMS + value.removeprefix(LEGACY_PROBLEMS)
    return value


def legacy_problem_errors(problem: dict[str, Any]) -> list[str]:
    """Validate a problem against the v2.159 schema its `type` maps to."""
    components = legacy_components()
    mapping = components["schemas"]["Problem"]["discriminator"]["mapping"]
    ref = mapping.get(problem.get("type", ""))
    if ref is None:
        return [f"problem type {problem.get('type')!r} is not a known X problem type"]
    schema = {"$ref": ref, "components": components}
    return [error.message for error in OAS30Validator(schema).iter_errors(problem)]


def _problems_in(body: Any, problem_body: bool) -> list[dict[str, Any]]:
    if problem_body:
        return [body]
    return [e for e in body.get("errors", []) if isinstance(e, dict) and "type" in e]


def _check_json_api(response: httpx.Response, path: str) -> list[str]:
    """Request (recorded) and response (strict) against the spec; problems against both."""
    errors: list[str] = []
    spec_request = _request(response.request, path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # openapi-core cannot check oauth2 security schemes
        try:
            openapi().validate_request(spec_request)
            request_errors: list[str] = []
        except OpenAPIError as exc:
            request_errors = [_describe(exc)]
    response.extensions["spec_request_errors"] = request_errors
    if request_errors and response.status_code < 400:
        errors.append(f"the fake accepted a request the spec refuses: {request_errors}")
    content_type = response.headers.get("content-type", "").split(";")[0]
    is_problem = content_type == "application/problem+json"
    if not is_problem and content_type != "application/json":
        return [*errors, f"unexpected content-type {content_type!r}"]
    body = response.json()
    for problem in _problems_in(body, is_problem):
        errors += [f"legacy Problem: {e}" for e in legacy_problem_errors(problem)]
    if is_problem and body.get("type") == "about:blank":
        return errors  # the new spec has no generic problem; the legacy check covered it
    rewritten = json.dumps(_rewrite_types(body)).encode()
    spec_response = SpecResponse(
        response.status_code, rewritten, content_type, Headers(list(response.headers.items()))
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            openapi().validate_response(spec_request, spec_response)
        except OpenAPIError as exc:
            errors.append(f"response: {_describe(exc)}")
    missing = [h for h in RATE_HEADERS if h not in response.headers]
    if missing:
        errors.append(f"missing rate-limit headers {missing}")
    return errors


def _describe(exc: Exception) -> str:
    cause = exc.__cause__
    details = getattr(cause, "schema_errors", None)
    if details:
        return f"{type(exc).__name__}: " + "; ".join(str(getattr(d, "message", d)) for d in details)
    return f"{type(exc).__name__}: {cause or exc}"


def _check_oauth(response: httpx.Response, path: str) -> list[str]:
    body = response.json()
    if response.status_code >= 400:
        schema = OAUTH_ERROR
    else:
        schema = TOKEN if path.endswith("/token") else REVOKED
    return [e.message for e in Draft7Validator(schema).iter_errors(body)]


def check(response: httpx.Response) -> None:
    """httpx response hook: raise SpecViolation when the fake strays from the spec."""
    path = api_path(response.request.url)
    if path is None:
        return  # x.com pages (authorize, permalinks) are HTML, not API
    response.read()
    if path.startswith("/2/oauth2/"):
        errors = _check_oauth(response, path)
    else:
        errors = _check_json_api(response, path)
    if errors:
        raise SpecViolation(f"{response.request.method} {path} -> {response.status_code}: {errors}")


def request_errors(response: httpx.Response) -> list[str]:
    """What the spec found wrong with the request (empty when it was valid)."""
    return response.extensions.get("spec_request_errors", [])


def spec_client(base_url: str, **kwargs: Any) -> httpx.Client:
    """A plain httpx client whose every API exchange is checked against the spec."""
    hooks = kwargs.pop("event_hooks", {})
    hooks.setdefault("response", []).append(check)
    return httpx.Client(base_url=base_url, event_hooks=hooks, timeout=10, **kwargs)
