"""Large data exports, built by a job: the same zip as the streamed export
(privacy.export_zip). Progress and expiry live in the data_exports table and the zip in
the media store under the person's folder (u{id}/exports/<token>.zip), so the web
process that shows the progress and serves the download may run on another machine than
the worker that built it. The download link is a signed URL that expires
(export_link_ttl_s); the purge job deletes expired exports, and a person's deletion
deletes theirs with the rest of their folder."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

from src import privacy
from src.config import Settings
from src.db.tables import DataExport, Media
from src.media import get_store, temp_dir
from src.security import sign, signed_query

EXPORT_TIMEOUT_S = 6 * 3600
TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
ACTIVE = ("queued", "running")
PROGRESS_EVERY_S = 0.5  # progress rows written at most this often


def store_key(user_id: int, token: str) -> str:
    return f"u{user_id}/exports/{token}.zip"


def download_path(token: str) -> str:
    return f"/settings/exports/{token}.zip"


async def find(user_id: int, token: str) -> DataExport | None:
    """The person's export with this token (None for anyone else's, or a bad token)."""
    if not TOKEN.match(token):
        return None
    return await DataExport.objects().get(
        (DataExport.token == token) & (DataExport.user == user_id)
    )


async def latest(user_id: int) -> DataExport | None:
    return (
        await DataExport.objects()
        .where(DataExport.user == user_id)
        .order_by(DataExport.created_at, ascending=False)
        .order_by(DataExport.id, ascending=False)
        .first()
    )


async def media_totals(user_id: int) -> tuple[int, int]:
    """(number of media files, their bytes) of the person."""
    rows = await Media.select(Media.bytes).where(Media.user == user_id)
    return len(rows), sum(r["bytes"] or 0 for r in rows)


def _stale(export: DataExport, now: datetime) -> bool:
    """A job that has not finished long after it began died: it blocks nothing."""
    return export.created_at + timedelta(seconds=EXPORT_TIMEOUT_S) < now


async def start(queue: Any, settings: Settings, user_id: int) -> str:
    """Enqueue the export job, unless one of the person's is already on its way."""
    current = await latest(user_id)
    if current is not None and current.status in ACTIVE and not _stale(current, _now()):
        return current.token
    token = secrets.token_urlsafe(24)
    files, total = await media_totals(user_id)
    export = DataExport(
        {
            DataExport.token: token,
            DataExport.user: user_id,
            DataExport.files_total: files,
            DataExport.bytes_total: total,
        }
    )
    await export.save()
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
        await export.remove()
        raise
    return token


async def build(user_id: int, token: str, settings: Settings) -> dict[str, Any]:
    """The job: write the zip (the one builder, privacy.export_zip) to a temporary file,
    recording progress, then hand it to the media store."""
    export = await find(user_id, token)
    if export is None:
        return {"status": "gone"}
    await _update(export, status="running")
    folder = temp_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    part = folder / f"export-{token}.part"
    last = 0.0

    async def progress(files_done: int, bytes_done: int) -> None:
        nonlocal last
        if time.monotonic() - last >= PROGRESS_EVERY_S or files_done == export.files_total:
            last = time.monotonic()
            await _update(export, files_done=files_done, bytes_done=bytes_done)

    try:
        with part.open("wb") as out:
            async for chunk in privacy.export_zip(user_id, settings, progress=progress):
                out.write(chunk)
        size = part.stat().st_size
        await get_store(settings).save_file(store_key(user_id, token), part)
    except Exception:
        await _update(export, status="failed")
        raise
    finally:
        part.unlink(missing_ok=True)
    expires = _now() + timedelta(seconds=settings.export_link_ttl_s)
    done = (
        await DataExport.update(
            {DataExport.status: "done", DataExport.size: size, DataExport.expires_at: expires}
        )
        .where(DataExport.id == export.id)
        .returning(DataExport.id)
    )
    if not done:  # the person was deleted meanwhile
        await get_store(settings).delete(store_key(user_id, token))
        return {"status": "gone"}
    return {"status": "done", "size": size}


async def _update(export: DataExport, **values: Any) -> None:
    for name, value in values.items():
        setattr(export, name, value)
    await DataExport.update({getattr(DataExport, n): v for n, v in values.items()}).where(
        DataExport.id == export.id
    )


def download(export: DataExport, settings: Settings) -> AsyncIterator[bytes]:
    return get_store(settings).open(store_key(export.user, export.token))


def signed_link(settings: Settings, export: DataExport) -> str:
    """The download URL, valid until the export expires."""
    expires = export.expires_at.timestamp()
    query = signed_query(settings.secret_key, download_path(export.token), 0, now=expires)
    return f"{download_path(export.token)}?{query}"


def check_link(settings: Settings, token: str, expires: str, signature: str) -> str:
    """'ok', 'bad' (forged or tampered) or 'expired' (a genuine link, too old)."""
    expected = sign(settings.secret_key, f"{download_path(token)}:{expires}")
    if not signature or not secrets.compare_digest(expected, signature):
        return "bad"
    try:
        return "expired" if int(expires) < time.time() else "ok"
    except ValueError:
        return "bad"


async def remove(
    settings: Settings, *, user_id: int | None = None, now: datetime | None = None
) -> int:
    """Delete the exports of one person (user_id), or every expired one (and those of
    jobs that died). Returns the number of exports removed."""
    now = now or _now()
    if user_id is not None:
        where = DataExport.user == user_id
    else:
        dead = now - timedelta(seconds=EXPORT_TIMEOUT_S + settings.export_link_ttl_s)
        where = (DataExport.expires_at < now) | (DataExport.created_at < dead)
    gone = await DataExport.delete().where(where).returning(DataExport.user, DataExport.token)
    store = get_store(settings)
    for row in gone:  # (a missing object is not an error)
        await store.delete(store_key(row["user"], row["token"]))
    return len(gone)


def _now() -> datetime:
    return datetime.now(UTC)
