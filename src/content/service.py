"""Content sources: the default local folder, git repositories people add, their
secrets (access token and webhook secret, encrypted at rest like platform tokens), and
the queries the Content page and the jobs need."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from src.accounts import cipher
from src.config import ROOT, Settings
from src.content.sources import check_branch, clean_git_url, clean_subpath
from src.db.tables import ContentSource, SyncRun, User

DEFAULT_NAME = "content"
DEFAULT_POLL_S = 300
LOCAL_POLL_S = 60
NAME_MAX = 100


def default_folder() -> Path:
    """The repository's content/ folder: the default source of a fresh instance."""
    return ROOT / "content"


class SourceRefused(ValueError):
    pass


class NotFound(Exception):
    pass


async def list_sources(user_id: int) -> list[ContentSource]:
    return (
        await ContentSource.objects()
        .where(ContentSource.user == user_id)
        .order_by(ContentSource.id)
    )


async def owned(user_id: int, source_id: int) -> ContentSource:
    source = await ContentSource.objects().get(
        (ContentSource.id == source_id) & (ContentSource.user == user_id)
    )
    if source is None:
        raise NotFound(source_id)
    return source


async def by_name(name: str, user_id: int | None = None) -> ContentSource:
    where = ContentSource.name == name
    if user_id is not None:
        where &= ContentSource.user == user_id
    rows = await ContentSource.objects().where(where)
    if len(rows) != 1:
        raise NotFound(name)
    return rows[0]


async def ensure_default(user: User) -> ContentSource | None:
    """The owner's instance starts with the repository's content/ folder as a source."""
    if not user.is_owner:
        return None
    if await ContentSource.exists().where(ContentSource.user == user.id):
        return None
    folder = default_folder()
    if not folder.is_dir():
        return None
    row = ContentSource(
        {
            ContentSource.user: user.id,
            ContentSource.name: DEFAULT_NAME,
            ContentSource.kind: "local",
            ContentSource.url: str(folder),
            ContentSource.branch: "",
            ContentSource.poll_interval_s: LOCAL_POLL_S,
        }
    )
    await ContentSource.insert(row).on_conflict(action="DO NOTHING")
    return await ContentSource.objects().get(
        (ContentSource.user == user.id) & (ContentSource.name == DEFAULT_NAME)
    )


def _clean_name(name: str) -> str:
    name = " ".join((name or "").split())
    if not name or len(name) > NAME_MAX:
        raise SourceRefused(f"Give the source a name (at most {NAME_MAX} characters).")
    return name


async def add_git(
    user: User,
    settings: Settings,
    *,
    name: str,
    url: str,
    branch: str = "main",
    subpath: str = "",
    token: str = "",
    poll_interval_s: int = DEFAULT_POLL_S,
) -> ContentSource:
    """A git repository as a source. A local path is for the instance's owner only (it
    reads this machine's disk)."""
    name = _clean_name(name)
    try:
        clean_url = clean_git_url(url)
        branch = check_branch(branch or "main")
        subpath = clean_subpath(subpath)
    except ValueError as exc:
        raise SourceRefused(str(exc)) from None
    if clean_url.startswith("file:") and not user.is_owner:
        raise SourceRefused("Only the instance's owner may add a repository on this machine.")
    if await ContentSource.exists().where(
        (ContentSource.user == user.id) & (ContentSource.name == name)
    ):
        raise SourceRefused(f"You already have a source named {name}.")
    c = cipher(settings)
    row = ContentSource(
        {
            ContentSource.user: user.id,
            ContentSource.name: name,
            ContentSource.kind: "git",
            ContentSource.url: clean_url,
            ContentSource.branch: branch,
            ContentSource.subpath: subpath,
            ContentSource.access_token: c.encrypt(token.strip() or None),
            ContentSource.webhook_secret: c.encrypt(secrets.token_urlsafe(32)),
            ContentSource.poll_interval_s: max(60, int(poll_interval_s)),
        }
    )
    await row.save()
    return row


async def add_local(user: User, name: str, folder: Path, subpath: str = "") -> ContentSource:
    """A folder on this machine (owner only; the CLI and tests use it)."""
    if not user.is_owner:
        raise SourceRefused("Only the instance's owner may add a folder on this machine.")
    folder = _existing_folder(folder)
    row = ContentSource(
        {
            ContentSource.user: user.id,
            ContentSource.name: _clean_name(name),
            ContentSource.kind: "local",
            ContentSource.url: str(folder),
            ContentSource.branch: "",
            ContentSource.subpath: clean_subpath(subpath),
            ContentSource.poll_interval_s: LOCAL_POLL_S,
        }
    )
    await row.save()
    return row


def _existing_folder(folder: Path) -> Path:
    if not folder.is_dir():
        raise SourceRefused(f"{folder} is not a folder.")
    return folder.resolve()


async def set_enabled(user_id: int, source_id: int, enabled: bool) -> ContentSource:
    await owned(user_id, source_id)
    await ContentSource.update({ContentSource.enabled: enabled}).where(
        ContentSource.id == source_id
    )
    return await owned(user_id, source_id)


def token_of(source: ContentSource, settings: Settings) -> str | None:
    return cipher(settings).decrypt(source.access_token)


def webhook_secret(source: ContentSource, settings: Settings) -> str | None:
    return cipher(settings).decrypt(source.webhook_secret)


def webhook_url(source: ContentSource, settings: Settings) -> str:
    return f"{settings.public_url}/hooks/content/{source.id}"


def label(source: ContentSource) -> str:
    """What the page shows for where a source lives."""
    where = source.url if source.kind == "local" else f"{source.url} ({source.branch})"
    return f"{where} · {source.subpath}" if source.subpath else where


def file_url(source: ContentSource, commit: str, path: str) -> str | None:
    """A link to a file at a commit on the forge, for the common hosts' URL shapes."""
    if source.kind != "git" or not source.url.startswith("https://") or not commit:
        return None
    base = source.url.removesuffix("/").removesuffix(".git")
    if "gitlab" in base:
        return f"{base}/-/blob/{commit}/{path}"
    if "github" in base:
        return f"{base}/blob/{commit}/{path}"
    return f"{base}/src/commit/{commit}/{path}"  # Gitea, Forgejo


async def runs_of(source_id: int, limit: int = 20) -> list[dict[str, Any]]:
    return (
        await SyncRun.select()
        .where(SyncRun.source == source_id)
        .order_by(SyncRun.id, ascending=False)
        .limit(limit)
        .output(load_json=True)
    )


async def last_runs(source_ids: list[int]) -> dict[int, dict[str, Any]]:
    if not source_ids:
        return {}
    rows = await SyncRun.raw(
        "SELECT DISTINCT ON (source) * FROM sync_runs WHERE source = ANY({}) "
        "ORDER BY source, id DESC",
        source_ids,
    )
    return {row["source"]: row for row in rows}


async def due_for_poll(now: datetime | None = None) -> list[ContentSource]:
    now = now or datetime.now(UTC)
    rows = await ContentSource.objects().where(ContentSource.enabled.eq(True))
    return [
        s
        for s in rows
        if s.last_synced_at is None
        or s.last_synced_at + timedelta(seconds=s.poll_interval_s) <= now
    ]


async def local_folders() -> dict[int, Path]:
    """Every enabled local-folder source and the folder its posts are read from (what the
    watcher watches)."""
    rows = await ContentSource.select(
        ContentSource.id, ContentSource.url, ContentSource.subpath
    ).where((ContentSource.kind == "local") & ContentSource.enabled.eq(True))
    return {row["id"]: Path(row["url"], row["subpath"]) for row in rows}
