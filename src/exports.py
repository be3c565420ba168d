"""Large data exports, built by a job: the same zip as the streamed export
(privacy.export_zip), written to OKK_DATA_DIR/exports/<token>.zip with a small JSON
state file beside it (<token>.json: owner, status, progress, expiry) that the web
process reads to show progress. The download link is a signed URL that expires
(export_link_ttl_s); the purge job deletes expired files, and a person's deletion
deletes theirs."""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import time
from pathlib import Path
from typing import Any

from src import privacy
from src.config import Settings
from src.db.tables import Media
from src.security import sign, signed_query

EXPORT_TIMEOUT_S = 6 * 3600
TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
ACTIVE = ("queued", "running")


def folder(settings: Settings) -> Path:
    return settings.data_dir / "exports"


def zip_path(settings: Settings, token: str) -> Path:
    return folder(settings) / f"{token}.zip"


def _state_path(settings: Settings, token: str) -> Path:
    return folder(settings) / f"{token}.json"


def download_path(token: str) -> str:
    return f"/settings/exports/{token}.zip"


def read_state(settings: Settings, token: str) -> dict[str, Any] | None:
    if not TOKEN.match(token):
        return None
    try:
        return json.loads(_state_path(settings, token).read_text())
    except (OSError, ValueError):
        return None


def _write_state(settings: Settings, token: str, state: dict[str, Any]) -> None:
    """Atomic (write then rename), so a reader never sees half a file."""
    path = _state_path(settings, token)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_suffix(f".{secrets.token_hex(4)}.tmp")
    temp.write_text(json.dumps(state))
    os.replace(temp, path)


def _states(settings: Settings) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in folder(settings).glob("*.json") if folder(settings).is_dir() else []:
        state = read_state(settings, path.stem)
        if state is not None:
            found.append((path.stem, state))
    return found


def latest(settings: Settings, user_id: int) -> tuple[str, dict[str, Any]] | None:
    mine = [(t, s) for t, s in _states(settings) if s.get("user") == user_id]
    return max(mine, key=lambda item: item[1].get("created_at", 0), default=None)


async def media_totals(user_id: int) -> tuple[int, int]:
    """(number of media files, their bytes) of the person."""
    rows = await Media.select(Media.bytes).where(Media.user == user_id)
    return len(rows), sum(r["bytes"] or 0 for r in rows)


async def start(queue: Any, settings: Settings, user_id: int) -> str:
    """Enqueue the export job, unless one of the person's is already on its way."""
    current = latest(settings, user_id)
    if (
        current is not None
        and current[1].get("status") in ACTIVE
        and current[1].get("created_at", 0) + EXPORT_TIMEOUT_S > time.time()
    ):
        return current[0]  # (a job that died long ago does not block a new one)
    token = secrets.token_urlsafe(24)
    files, total = await media_totals(user_id)
    _write_state(
        settings,
        token,
        {
            "user": user_id,
            "status": "queued",
            "files_done": 0,
            "files_total": files,
            "bytes_done": 0,
            "bytes_total": total,
            "created_at": time.time(),
            "expires_at": None,
        },
    )
    try:
        await queue.enqueue(
            "export_data",
            user_id=user_id,
            token=token,
            key=f"export:{token}",
            timeout=EXPORT_TIMEOUT_S,
            retries=3,  # idempotent; SAQ's Redis sweep can abort a job being picked up
        )
    except Exception:
        _state_path(settings, token).unlink(missing_ok=True)
        raise
    return token


async def build(user_id: int, token: str, settings: Settings) -> dict[str, Any]:
    """The job: write the zip (the one builder, privacy.export_zip) and its progress."""
    state = read_state(settings, token)
    if state is None or state.get("user") != user_id:
        return {"status": "gone"}
    state["status"] = "running"
    _write_state(settings, token, state)
    target = zip_path(settings, token)
    part = target.with_suffix(".part")

    async def progress(files_done: int, bytes_done: int) -> None:
        state.update(files_done=files_done, bytes_done=bytes_done)
        _write_state(settings, token, state)

    try:
        with part.open("wb") as out:
            async for chunk in privacy.export_zip(user_id, settings, progress=progress):
                out.write(chunk)
        os.replace(part, target)
    except Exception:
        with contextlib.suppress(OSError):
            part.unlink()
        state["status"] = "failed"
        _write_state(settings, token, state)
        raise
    if read_state(settings, token) is None:  # the person was deleted meanwhile
        with contextlib.suppress(OSError):
            target.unlink()
        return {"status": "gone"}
    state.update(
        status="done",
        size=target.stat().st_size,
        expires_at=time.time() + settings.export_link_ttl_s,
    )
    _write_state(settings, token, state)
    return {"status": "done", "size": state["size"]}


def signed_link(settings: Settings, token: str, state: dict[str, Any]) -> str:
    """The download URL, valid until the export expires."""
    expires = float(state["expires_at"])
    query = signed_query(settings.secret_key, download_path(token), 0, now=expires)
    return f"{download_path(token)}?{query}"


def check_link(settings: Settings, token: str, expires: str, signature: str) -> str:
    """'ok', 'bad' (forged or tampered) or 'expired' (a genuine link, too old)."""
    expected = sign(settings.secret_key, f"{download_path(token)}:{expires}")
    if not signature or not secrets.compare_digest(expected, signature):
        return "bad"
    try:
        return "expired" if int(expires) < time.time() else "ok"
    except ValueError:
        return "bad"


def remove(settings: Settings, *, user_id: int | None = None, now: float | None = None) -> int:
    """Delete the exports of one person (user_id), or every expired one (and leftovers
    of jobs that died). Returns the number of exports removed."""
    now = now or time.time()
    removed = 0
    for token, state in _states(settings):
        expires = state.get("expires_at")
        stale = state.get("created_at", 0) + EXPORT_TIMEOUT_S + settings.export_link_ttl_s < now
        if user_id is not None:
            gone = state.get("user") == user_id
        else:
            gone = (expires is not None and expires < now) or stale
        if gone:
            for path in (zip_path(settings, token), zip_path(settings, token).with_suffix(".part")):
                with contextlib.suppress(OSError):
                    path.unlink()
            with contextlib.suppress(OSError):
                _state_path(settings, token).unlink()
            removed += 1
    if user_id is None and folder(settings).is_dir():
        for path in [*folder(settings).glob("*.zip"), *folder(settings).glob("*.part")]:
            orphan = not _state_path(settings, path.stem).exists()
            with contextlib.suppress(OSError):
                if orphan and path.stat().st_mtime + EXPORT_TIMEOUT_S < now:
                    path.unlink()
    return removed
