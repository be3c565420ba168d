"""Control and inspection of the sandbox: what each platform received and published,
reset, fault injection, clock, switches. JSON under /admin, a small page at /admin/."""

from __future__ import annotations

import dataclasses
import secrets
from typing import Any

from litestar import Request, delete, get, patch, post
from litestar.exceptions import NotFoundException, ValidationException
from litestar.params import FromPath, JSONBody

from src.sandbox.consent import render_page
from src.sandbox.state import FaultRule, SandboxState


def _state(request: Request) -> SandboxState:
    return request.app.state.sandbox


def _filter(items: list[dict[str, Any]], request: Request) -> list[dict[str, Any]]:
    wanted = {k: v for k, v in request.query_params.items() if k not in ("limit",)}
    limit = int(request.query_params.get("limit", 0) or 0)
    if limit:  # newest first, stopping early: cheap however long the history grows
        latest = []
        for item in reversed(items):
            if all(str(item.get(k)) == v for k, v in wanted.items()):
                latest.append(item)
                if len(latest) == limit:
                    break
        return latest[::-1]
    return [i for i in items if all(str(i.get(k)) == v for k, v in wanted.items())]


@get("/admin/records", sync_to_thread=False)
def records(request: Request) -> list[dict[str, Any]]:
    """Every request received, filterable by any field (?platform=x&path=/api/2/tweets)."""
    return _filter(_state(request).records, request)


@get("/admin/published", sync_to_thread=False)
def published(request: Request) -> list[dict[str, Any]]:
    """Everything a platform made public, filterable (?platform=x&account_id=…)."""
    return _filter(_state(request).published, request)


@get("/admin/grants", sync_to_thread=False)
def grants(request: Request) -> list[dict[str, Any]]:
    items = [dataclasses.asdict(g) for g in _state(request).grants.values()]
    return _filter(items, request)


@get("/admin/identities", sync_to_thread=False)
def identities(request: Request) -> list[dict[str, Any]]:
    state = _state(request)
    items = [dataclasses.asdict(i) for per in state.identities.values() for i in per.values()]
    return _filter(items, request)


@get("/admin/objects/{object_id:str}", sync_to_thread=False)
def get_object(request: Request, object_id: FromPath[str]) -> dict[str, Any]:
    obj = _state(request).get(object_id)
    if obj is None:
        raise NotFoundException(f"no object {object_id}")
    return obj


@post("/admin/reset", sync_to_thread=False, status_code=200)
def reset(request: Request) -> dict[str, bool]:
    _state(request).reset()
    return {"reset": True}


@post("/admin/faults", sync_to_thread=False, status_code=201)
def add_fault(request: Request, data: JSONBody[dict[str, Any]]) -> dict[str, Any]:
    known = {f.name for f in dataclasses.fields(FaultRule)} - {"id", "hits"}
    unknown = set(data) - known
    if unknown:
        raise ValidationException(f"unknown fault fields: {sorted(unknown)}")
    rule = FaultRule(id=secrets.token_hex(4), **data)
    _state(request).faults.append(rule)
    return dataclasses.asdict(rule)


@get("/admin/faults", sync_to_thread=False)
def list_faults(request: Request) -> list[dict[str, Any]]:
    return [dataclasses.asdict(rule) for rule in _state(request).faults]


@delete("/admin/faults", sync_to_thread=False)
def clear_faults(request: Request) -> None:
    _state(request).faults.clear()


@delete("/admin/faults/{rule_id:str}", sync_to_thread=False)
def remove_fault(request: Request, rule_id: FromPath[str]) -> None:
    state = _state(request)
    state.faults[:] = [rule for rule in state.faults if rule.id != rule_id]


@post("/admin/clock", sync_to_thread=False, status_code=200)
def clock(request: Request, data: JSONBody[dict[str, float]]) -> dict[str, float]:
    """Move the sandbox's clock forward ({"advance": seconds}) to expire tokens,
    finish processing or age containers without waiting."""
    state = _state(request)
    state.advance(float(data.get("advance", 0)))
    return {"now": state.now(), "offset": state.clock_offset}


@patch("/admin/config", sync_to_thread=False)
def update_config(request: Request, data: JSONBody[dict[str, Any]]) -> dict[str, Any]:
    """Change sandbox settings at run time, e.g. {"tiktok_audited": true, "x_access_ttl": 60}."""
    config = _state(request).config
    for key, value in data.items():
        if not hasattr(config, key):
            raise ValidationException(f"unknown setting {key}")
        setattr(config, key, value)
    return dataclasses.asdict(config)


@post("/admin/tokens/{action:str}", sync_to_thread=False, status_code=200)
def tokens(
    request: Request, action: FromPath[str], data: JSONBody[dict[str, Any]]
) -> dict[str, int]:
    """Expire or revoke tokens: {"platform": "x", "user_id": "…"?, "kind": "access"?}."""
    if action not in ("expire", "revoke"):
        raise NotFoundException(f"no action {action}")
    state = _state(request)
    count = 0
    for grant in state.grants.values():
        if grant.platform != data.get("platform"):
            continue
        if data.get("user_id") and grant.user_id != data["user_id"]:
            continue
        if data.get("kind") and grant.kind != data["kind"]:
            continue
        if action == "expire":
            grant.expires_at = state.now() - 1
        else:
            grant.revoked = True
        count += 1
    return {action + "d": count}


@get("/admin/", sync_to_thread=False)
def page(request: Request) -> Any:
    state = _state(request)
    return render_page(
        "admin.html",
        published=list(reversed(state.published[-200:])),
        records=list(reversed(state.records[-100:])),
        faults=state.faults,
        identities=state.identities,
    )


def routes() -> list:
    return [
        records,
        published,
        grants,
        identities,
        get_object,
        reset,
        add_fault,
        list_faults,
        clear_faults,
        remove_fault,
        clock,
        update_config,
        tokens,
        page,
    ]
