"""/healthz: database, queue and worker status as JSON; 503 when the database is down."""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import Request, Response, get

from src.db.tables import User
from src.jobs import HEARTBEAT_EVERY_S, last_heartbeat_age

CHECK_TIMEOUT_S = 3.0
STALE_AFTER_S = HEARTBEAT_EVERY_S * 6


async def _database() -> dict[str, Any]:
    try:
        await asyncio.wait_for(User.raw("SELECT 1"), CHECK_TIMEOUT_S)
        return {"ok": True}
    except Exception as exc:
        return {"ok": False, "error": type(exc).__name__}


async def _queue(request: Request) -> dict[str, Any]:
    queue = request.app.state.queue
    try:
        info = await asyncio.wait_for(queue.info(), CHECK_TIMEOUT_S)
        return {"ok": True, "queued": info.get("queued", 0), "active": info.get("active", 0)}
    except Exception as exc:
        return {"ok": False, "error": type(exc).__name__}


async def _worker() -> dict[str, Any]:
    try:
        age = await asyncio.wait_for(last_heartbeat_age(), CHECK_TIMEOUT_S)
    except Exception as exc:
        return {"ok": False, "error": type(exc).__name__}
    if age is None:
        return {"ok": False, "heartbeat_age_s": None, "detail": "no worker has reported yet"}
    return {"ok": age <= STALE_AFTER_S, "heartbeat_age_s": round(age, 1)}


@get("/healthz", cache=False)
async def healthz(request: Request) -> Response[dict[str, Any]]:
    database = await _database()
    queue, worker = await asyncio.gather(_queue(request), _worker())
    if not database["ok"]:
        status = "down"
    elif queue["ok"] and worker["ok"]:
        status = "ok"
    else:
        status = "degraded"
    body = {"status": status, "database": database, "queue": queue, "worker": worker}
    return Response(body, status_code=503 if status == "down" else 200)
