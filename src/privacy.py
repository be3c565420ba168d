"""Your data, your rights: export (a zip streamed as it is built) and deletion (at once,
with a purge job that finishes what failed and guarantees nothing is left after 30 days).

Deletion: the user row is marked (deletion_requested_at) and scrubbed of personal data,
sessions end, scheduled posts are cancelled, every account is disconnected (revoked at
its platform), then every row and file of the user is removed. An account whose revoke
failed stays disconnected but keeps its encrypted tokens (status_detail "revoke_pending"),
and with it the scrubbed user row, until the purge job confirms the revocation or 30
days have passed."""

from __future__ import annotations

import contextlib
import json
import shutil
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from src import accounts, audit, posts, users
from src.config import Settings
from src.db.tables import (
    Account,
    AuditEvent,
    ContentSource,
    Feedback,
    Media,
    Post,
    PostMedia,
    PostTarget,
    SyncRun,
    User,
)
from src.media import get_store

DELETION_DEADLINE = timedelta(days=30)
REVOKE_PENDING = "revoke_pending"
EXPORT_FORMAT = 1
README = """OKKTOPUS data export
====================

This archive holds everything this OKKTOPUS instance stores about you.

export.json   One JSON document (UTF-8), format version {version}:
  profile          your name, email, time zone, preferences and consent times
  accounts         your connected social accounts (no access or refresh tokens)
  posts            your posts, each with its targets (one per account: status,
                   attempts, last error, platform post id, published URL and time)
                   and the ids of its media
  media            your uploads (name, type, size, sha256, dimensions) with the
                   path of the file inside this archive
  content_sources  your content sources (no access tokens or webhook secrets)
  sync_runs        the runs of your content sources
  audit_events     sign-ins and sensitive actions (time, IP address, device)
  feedback         the messages you sent
media/        the uploaded files themselves, named <media id>-<original name>

Times are ISO 8601 in UTC. Tokens and secrets are never exported.
"""


# -- export ---------------------------------------------------------------------------------
def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _columns(table: Any, *excluded: str) -> list[Any]:
    return [c for c in table._meta.columns if c._meta.name not in excluded and not c._meta.secret]


async def collect(user_id: int) -> dict[str, Any]:
    """The user's data as one JSON-ready document (no tokens, no secrets)."""
    profile = (
        await User.select(*_columns(User, "google_sub"))
        .where(User.id == user_id)
        .output(load_json=True)
        .first()
    )
    account_rows = (
        await Account.select(*_columns(Account))
        .where(Account.user == user_id)
        .output(load_json=True)
    )
    post_rows = (
        await Post.select(*_columns(Post))
        .where(Post.user == user_id)
        .order_by(Post.id)
        .output(load_json=True)
    )
    post_ids = [p["id"] for p in post_rows] or [0]
    targets = (
        await PostTarget.select(*_columns(PostTarget))
        .where(PostTarget.post.is_in(post_ids))
        .output(load_json=True)
    )
    links = await PostMedia.select().where(PostMedia.post.is_in(post_ids)).output(load_json=True)
    media_rows = (
        await Media.select(*_columns(Media)).where(Media.user == user_id).output(load_json=True)
    )
    sources = await ContentSource.select(*_columns(ContentSource)).where(
        ContentSource.user == user_id
    )
    source_ids = [s["id"] for s in sources] or [0]
    runs = (
        await SyncRun.select()
        .where(SyncRun.source.is_in(source_ids))
        .order_by(SyncRun.id)
        .output(load_json=True)
    )
    events = (
        await AuditEvent.select()
        .where(AuditEvent.user == user_id)
        .order_by(AuditEvent.id)
        .output(load_json=True)
    )
    feedback = (
        await Feedback.select()
        .where(Feedback.user == user_id)
        .order_by(Feedback.id)
        .output(load_json=True)
    )
    for post in post_rows:
        post["targets"] = [t for t in targets if t["post"] == post["id"]]
        post["media"] = [
            link["media"]
            for link in sorted(links, key=lambda r: r["position"])
            if link["post"] == post["id"]
        ]
    for item in media_rows:
        item["file"] = f"media/{_file_name(item)}"
    return _plain(
        {
            "format": EXPORT_FORMAT,
            "exported_at": datetime.now(UTC),
            "profile": profile,
            "accounts": account_rows,
            "posts": post_rows,
            "media": media_rows,
            "content_sources": sources,
            "sync_runs": runs,
            "audit_events": events,
            "feedback": feedback,
        }
    )


def _file_name(item: dict[str, Any]) -> str:
    name = (item.get("original_name") or "file").replace("/", "_").replace("\\", "_")
    return f"{item['id']}-{name}"


class _Sink:
    """A write-only, non-seekable file for zipfile: what is written is taken out in
    pieces, so the archive streams without being held in memory."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def write(self, data: bytes) -> int:
        self.buffer += data
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data = bytes(self.buffer)
        self.buffer.clear()
        return data


async def export_zip(
    user_id: int,
    settings: Settings,
    progress: Callable[[int, int], Awaitable[None]] | None = None,
) -> AsyncIterator[bytes]:
    """The export archive, yielded chunk by chunk as it is built (media files are
    copied a chunk at a time from the store); progress(files done, media bytes done)."""
    document = await collect(user_id)
    store = get_store(settings)
    stamp = datetime.now(UTC).timetuple()[:6]
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as archive:  # type: ignore[arg-type]
        archive.writestr("README.txt", README.format(version=EXPORT_FORMAT))
        archive.writestr("export.json", json.dumps(document, indent=2, ensure_ascii=False))
        yield sink.take()
        rows = await Media.select(Media.id, Media.storage_key, Media.original_name).where(
            Media.user == user_id
        )
        files_done = bytes_done = 0
        for row in rows:
            files_done += 1
            if not await store.exists(row["storage_key"]):
                continue
            info = zipfile.ZipInfo(f"media/{_file_name(row)}", date_time=stamp)
            info.compress_type = zipfile.ZIP_STORED
            with archive.open(info, "w", force_zip64=True) as member:
                async for chunk in store.open(row["storage_key"]):
                    member.write(chunk)
                    bytes_done += len(chunk)
                    if len(sink.buffer) >= 256 * 1024:
                        yield sink.take()
            yield sink.take()
            if progress is not None:
                await progress(files_done, bytes_done)
    yield sink.take()


# -- deletion -------------------------------------------------------------------------------
async def delete_user(user_id: int, settings: Settings) -> bool:
    """Delete the person's account at once. Returns True when everything is gone, False
    when something is left for the purge job (a revocation the platform did not confirm)."""
    await User.update(
        {
            User.deletion_requested_at: datetime.now(UTC),
            User.email: "",
            User.name: "",
            User.avatar_url: "",
            User.google_sub: f"deleted-{user_id}",
            User.feed_token_hash: None,
        }
    ).where((User.id == user_id) & User.deletion_requested_at.is_null())
    await users.end_sessions(user_id)
    done, pending = await finish_deletion(user_id, settings)
    await audit.record("account_deleted", None, revocations_pending=pending, complete=done)
    return done


async def finish_deletion(user_id: int, settings: Settings) -> tuple[bool, int]:
    """Idempotent: cancel, revoke, remove rows and files; the user row goes once every
    revocation is confirmed or the 30 days are over. Returns (done, pending revocations)."""
    user = await User.objects().get(User.id == user_id)
    if user is None:
        return True, 0
    await users.end_sessions(user_id)
    for post_id in await _ids(Post, Post.user == user_id):
        with contextlib.suppress(posts.NotFound):
            await posts.cancel(user_id, post_id)
    pending = 0
    for account in await Account.objects().where(
        (Account.user == user_id) & Account.access_token.is_not_null()
    ):
        if not await _revoke(user_id, account, settings):
            pending += 1
    await _remove_data(user_id, settings)
    overdue = (
        user.deletion_requested_at is not None
        and datetime.now(UTC) - user.deletion_requested_at >= DELETION_DEADLINE
    )
    if pending and not overdue:
        await Account.delete().where((Account.user == user_id) & Account.access_token.is_null())
        return False, pending
    await Account.delete().where(Account.user == user_id)
    await User.delete().where(User.id == user_id)
    return True, pending


async def _revoke(user_id: int, account: Account, settings: Settings) -> bool:
    """accounts.disconnect (revoke at the platform, delete tokens); if the platform did
    not confirm, the encrypted tokens go back on the row for the purge job to retry."""
    kept = {
        Account.access_token: account.access_token,
        Account.refresh_token: account.refresh_token,
        Account.access_expires_at: account.access_expires_at,
        Account.refresh_expires_at: account.refresh_expires_at,
    }
    try:
        result = await accounts.disconnect(user_id, account.id, settings)
        revoked = result.revoked
    except Exception:
        revoked = False
    if not revoked:
        await Account.update(
            {**kept, Account.status: "disconnected", Account.status_detail: REVOKE_PENDING}
        ).where(Account.id == account.id)
    return revoked


async def _ids(table: Any, where: Any) -> list[int]:
    return [row["id"] for row in await table.select(table.id).where(where)]


async def _remove_data(user_id: int, settings: Settings) -> None:
    """Every row of the user except accounts and the user row, and every file."""
    source_ids = await _ids(ContentSource, ContentSource.user == user_id)
    await Post.delete().where(Post.user == user_id)  # targets and media links cascade
    await PostMedia.raw(
        'DELETE FROM post_media WHERE media IN (SELECT id FROM media WHERE "user" = {})',
        user_id,
    )
    await Media.delete().where(Media.user == user_id)
    # Every file of the person lives under u{id}/ (media_key): one sweep of the folder
    # (or bucket prefix) removes them, and any a crash left behind without a row.
    await get_store(settings).delete_prefix(f"u{user_id}/")
    await ContentSource.delete().where(ContentSource.user == user_id)  # sync runs cascade
    for source_id in source_ids:
        from src.content.sources import git_dir

        shutil.rmtree(git_dir(settings.data_dir, source_id), ignore_errors=True)
        with contextlib.suppress(OSError):
            (settings.data_dir / "content" / f"source-{source_id}.json").unlink()
    await Feedback.delete().where(Feedback.user == user_id)
    await AuditEvent.delete().where(AuditEvent.user == user_id)
    from src import exports

    await exports.remove(settings, user_id=user_id)


async def purge(settings: Settings) -> dict[str, int]:
    """The purge job: finish every deletion that is not complete."""
    rows = await User.select(User.id).where(User.deletion_requested_at.is_not_null())
    done = 0
    for row in rows:
        finished, _ = await finish_deletion(row["id"], settings)
        done += finished
    from src import exports

    removed = await exports.remove(settings)  # expired data exports
    return {"pending": len(rows) - done, "finished": done, "exports_removed": removed}


async def add_feedback(user_id: int, message: str) -> None:
    await Feedback({Feedback.user: user_id, Feedback.message: message}).save()
