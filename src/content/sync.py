"""Sync = reconcile: make the posts of a content source match its files, through the
scheduling domain (posts.schedule / update / cancel), never by writing posts directly.

For each post a file defines (identity: source + id, never the path):
  new → scheduled (an error if its publish_at has already passed, unless `now`);
  changed, nothing published yet → updated and rescheduled;
  changed after publishing started → a warning, nothing re-sent;
  moved to another file, same content → its path is recorded, nothing else changes;
  gone from the source → its unpublished targets cancelled (history kept).
Every file is all or nothing, in its own transaction: a file with any error changes
nothing, and its posts keep their previous state (they are not "removed" either). A
broken settings file or an unreadable source changes nothing at all.

A second run changes nothing: a post whose content hash and path match its file is left
alone, and an unchanged commit that synced cleanly is not even read again. Files whose
blob, settings and media are unchanged since the last sync are not parsed again either
(a small cache per source in OKK_DATA_DIR/content). Two syncs of one source never run
at once: a PostgreSQL advisory lock, held on a connection of its own, serialises them."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import logging
import os
import posixpath
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
from piccolo.engine import engine_finder

from src import posts, rules
from src.config import Settings
from src.content import media as content_media
from src.content.loader import (
    MAX_FILE_BYTES,
    FolderSettings,
    Item,
    ParsedFile,
    Problem,
    parse_file,
    parse_settings,
    place_of_field,
    target_options,
    target_text,
)
from src.content.sources import (
    Entry,
    GitRepo,
    GitSnapshot,
    LocalSnapshot,
    Snapshot,
    SourceError,
    git_dir,
)
from src.db.tables import Account, ContentSource, SyncRun
from src.posts import DETACHED

log = logging.getLogger(__name__)

REMOVED = "removed"  # the content hash of a post whose item left the source
STARTED = {"publishing", "published", "partial", "unconfirmed"}  # post statuses
LOCK_CLASS = 0x4F4B43  # first key of pg_advisory_lock(int, int); the source id is second
LOCK_WAIT = "15min"
CACHE_VERSION = 1
PAST_GRACE_S = 60


# -- the plan -----------------------------------------------------------------------------
@dataclass
class ItemPlan:
    action: str  # create | update | move | unchanged | drift | cancel
    item_id: str
    path: str
    post_id: int | None = None
    item: Item | None = None
    hash: str = ""
    media: list[Entry] = field(default_factory=list)
    account_ids: list[int] = field(default_factory=list)


@dataclass
class FilePlan:
    path: str
    entry: Entry
    parsed: ParsedFile | None = None
    items: list[ItemPlan] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    cacheable: bool = True

    @property
    def ok(self) -> bool:
        return not any(p.severity == "error" for p in self.problems)

    def problem(self, message: str, place: tuple = (), item: str | None = None, warn=False):
        line = self.parsed.line(place) if self.parsed else None
        self.problems.append(
            Problem(self.path, line, message, "warning" if warn else "error", item)
        )


@dataclass
class Plan:
    commit: str
    files: list[FilePlan] = field(default_factory=list)
    cancels: list[ItemPlan] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)  # the source's own
    fatal: bool = False  # nothing may be applied (settings broken, source unreadable)
    settings_blob: str = ""
    untouched: int = 0  # posts of files a changes-only plan did not need to read

    def all_problems(self) -> list[Problem]:
        found = list(self.problems)
        for file in self.files:
            found += file.problems
        return found

    def actions(self) -> list[ItemPlan]:
        done = [i for f in self.files if f.ok for i in f.items]
        return [*done, *([] if self.fatal else self.cancels)]

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(("create", "update", "move", "unchanged", "drift", "cancel"), 0)
        for item in self.actions():
            counts[item.action] += 1
        counts["errors"] = sum(1 for p in self.all_problems() if p.severity == "error")
        counts["warnings"] = sum(1 for p in self.all_problems() if p.severity == "warning")
        return counts


def _lexical(from_file: str, written: str) -> str:
    return posixpath.normpath(posixpath.join(posixpath.dirname(from_file), written.strip()))


def item_hash(item: Item, media: list[Entry]) -> str:
    payload = item.canonical() | {"media": [[e.path, e.blob] for e in media]}
    return hashlib.sha256(canonical_json(payload)).hexdigest()


def canonical_json(value: Any) -> bytes:
    """Compact UTF-8 JSON with sorted keys: byte for byte what json.dumps(sort_keys=True,
    ensure_ascii=False, separators=(",", ":")) makes of plain data (the stored content
    hashes depend on it), in a tenth of the time, by msgspec (Litestar's serializer)."""
    return msgspec.json.encode(value, order="sorted")


# -- accounts -----------------------------------------------------------------------------
class AccountBook:
    """A user's accounts by platform and handle (also display name and external id)."""

    def __init__(self, rows: list[Account]) -> None:
        self.by_key: dict[tuple[str, str], Account] = {}
        for account in rows:
            for name in (account.display_name, account.external_id, account.handle):
                if name:
                    self.by_key[(account.platform, name.lstrip("@").lower())] = account

    def find(self, platform: str, handle: str) -> Account | None:
        return self.by_key.get((platform, handle.lower()))

    def known(self, platform: str) -> list[str]:
        names = {a.handle for (p, _), a in self.by_key.items() if p == platform and a.handle}
        return sorted(names)

    @classmethod
    async def of(cls, user_id: int) -> AccountBook:
        return cls(await Account.objects().where(Account.user == user_id))


# -- building the plan --------------------------------------------------------------------
def _cache_key(source: ContentSource | None, snapshot: Snapshot) -> str:
    parts = [type(snapshot).__name__, snapshot.base]
    if source is not None:
        parts += [source.kind, source.url, source.branch]
    return "|".join(parts)


def _reusable(
    cached: dict[str, Any] | None, entry: Entry, snapshot: Snapshot, rows: dict[str, dict]
) -> list[ItemPlan] | None:
    """The file's items from the cache, when nothing they depend on has changed."""
    if not cached or cached.get("blob") != entry.blob:
        return None
    entries = snapshot.entries()
    plans = []
    for item_id, digest, media in cached["items"]:
        for path, blob in media:
            if (found := entries.get(path)) is None or found.blob != blob:
                return None
        row = rows.get(item_id)
        if row is None or row["content_hash"] != digest or row["source_path"] != entry.path:
            return None
        plans.append(ItemPlan("unchanged", item_id, entry.path, row["id"], hash=digest))
    return plans


async def _settings(plan: Plan, snapshot: Snapshot) -> FolderSettings:
    settings = FolderSettings()
    settings_entry = snapshot.settings_entry()
    if settings_entry is not None:
        plan.settings_blob = settings_entry.blob
        data = (await snapshot.read_many([settings_entry.path]))[settings_entry.path]
        settings, problems = parse_settings(settings_entry.path, data)
        plan.problems += problems
        if any(p.severity == "error" for p in problems):
            plan.fatal = True
            plan.problems.append(
                Problem(settings_entry.path, None, "the settings file is broken: nothing synced")
            )
    return settings


async def _readable(file: FilePlan, snapshot: Snapshot) -> Entry | None:
    """The entry to read for a post file (a symlink followed inside the repository)."""
    target = await snapshot.follow(file.entry)
    if isinstance(target, str):
        file.problem(target)
        return None
    if target.size > MAX_FILE_BYTES:
        file.problem(
            f"the file is {target.size:,} bytes; post files may be at most {MAX_FILE_BYTES:,} bytes"
        )
        return None
    file.cacheable = not file.entry.link
    return target


async def _parse_files(
    to_read: list[tuple[FilePlan, Entry]], snapshot: Snapshot, settings: FolderSettings
) -> set[str]:
    """Parse the files; returns the ids that broken files seem to define."""
    contents = await snapshot.read_many([t.path for _, t in to_read])
    protected: set[str] = set()
    for file, target in to_read:
        protected.update(_parse(file, contents[target.path], settings))
    return protected


def _parse(file: FilePlan, data: bytes, settings: FolderSettings) -> list[str]:
    """Parse one file; returns the ids it seems to define if it is broken."""
    file.parsed = parse_file(file.path, data, settings)
    file.problems += file.parsed.problems
    return file.parsed.ids_hint


async def _plan_items(
    plan: Plan,
    files: list[FilePlan],
    snapshot: Snapshot,
    by_id: dict[str, dict],
    book: AccountBook | None,
    now: datetime | None,
) -> None:
    for file in files:
        for item in file.parsed.items if file.parsed else []:
            await _plan_item(plan, file, item, snapshot, by_id, book, now)


def _finish(plan: Plan, by_id: dict[str, dict], protected: set[str], scope: set[str] | None):
    """Broken files apply nothing and protect their posts; what left the files in
    `scope` (None: the whole source) is cancelled."""
    _refuse_duplicates(plan, protected)
    for file in plan.files:
        if not file.ok:
            protected.update(i.item_id for i in file.items)
            protected.update(r_id for r_id, r in by_id.items() if r["source_path"] == file.path)
            file.items = []
    wanted = {i.item_id for f in plan.files for i in f.items} | protected
    for item_id, row in by_id.items():
        if scope is not None and row["source_path"] not in scope:
            continue
        if item_id not in wanted and row["content_hash"] not in (REMOVED, DETACHED):
            plan.cancels.append(ItemPlan("cancel", item_id, row["source_path"], row["id"]))


async def build_plan(
    snapshot: Snapshot,
    *,
    rows: list[dict[str, Any]] | None,
    book: AccountBook | None,
    now: datetime,
    cache: dict[str, Any] | None = None,
    source: ContentSource | None = None,
    past_is_error: bool = True,
    planned: Callable[[Plan, FilePlan], Awaitable[None]] | None = None,
) -> Plan:
    """What a sync would do. `rows`: the source's posts (None: no database, everything
    is new); `book`: the user's accounts (None: not checked); `planned` is told about
    each file read, once its posts are planned (before ids across files are compared)."""
    plan = Plan(snapshot.commit)
    by_id = {r["source_item_id"]: r for r in rows or []}
    settings = await _settings(plan, snapshot)
    cache = cache or {}
    cache_ok = (
        cache.get("version") == CACHE_VERSION
        and cache.get("key") == _cache_key(source, snapshot)
        and cache.get("settings") == plan.settings_blob
    )
    cached_files = cache.get("files", {}) if cache_ok else {}
    to_read: list[tuple[FilePlan, Entry]] = []
    for entry in snapshot.post_files():
        file = FilePlan(entry.path, entry)
        plan.files.append(file)
        reused = _reusable(cached_files.get(entry.path), entry, snapshot, by_id)
        if reused is not None:
            file.items = reused
        elif (target := await _readable(file, snapshot)) is not None:
            to_read.append((file, target))
    when = now if past_is_error else None
    contents = await snapshot.read_many([t.path for _, t in to_read])
    protected: set[str] = set()
    for file, target in to_read:
        protected.update(_parse(file, contents[target.path], settings))
        await _plan_items(plan, [file], snapshot, by_id, book, when)
        if planned is not None:
            await planned(plan, file)
    _finish(plan, by_id, protected, None)
    return plan


async def build_changes_plan(
    snapshot: GitSnapshot,
    changed: list[str],
    deleted: list[str],
    *,
    source_id: int,
    book: AccountBook,
    now: datetime,
) -> Plan:
    """The plan for a commit that only added, changed or deleted post files, after a
    clean sync of its parent: only those files are read, and only the posts they
    define or held are looked up; every other post is known to match its unchanged
    file."""
    plan = Plan(snapshot.commit)
    settings = await _settings(plan, snapshot)
    touched = set(changed) | set(deleted)
    to_read: list[tuple[FilePlan, Entry]] = []
    for path in sorted(changed):
        file = FilePlan(path, snapshot.entries()[path], cacheable=False)
        plan.files.append(file)
        if (target := await _readable(file, snapshot)) is not None:
            to_read.append((file, target))
    protected = await _parse_files(to_read, snapshot, settings)
    ids = {i.id for f, _ in to_read if f.parsed for i in f.parsed.items} | protected
    rows, plan.untouched = await asyncio.gather(  # (two connections, one wait)
        posts.source_posts(source_id, item_ids=sorted(ids), paths=sorted(touched)),
        posts_count(source_id, besides=touched),
    )
    by_id = {r["source_item_id"]: r for r in rows}
    await _plan_items(plan, [f for f, _ in to_read], snapshot, by_id, book, now)
    for file in plan.files:  # an id still defined by a file this commit did not touch
        for item in file.items:
            row = by_id.get(item.item_id)
            if (
                row
                and row["source_path"] not in touched
                and row["content_hash"] not in (REMOVED, DETACHED)
            ):
                place = (*item.item.place, "id") if item.item else ()
                file.problem(
                    f"id '{item.item_id}' is also used in {row['source_path']}: "
                    "ids must be unique in a source",
                    place,
                    item.item_id,
                )
    _finish(plan, by_id, protected, touched)
    return plan


async def _plan_item(
    plan: Plan,
    file: FilePlan,
    item: Item,
    snapshot: Snapshot,
    rows: dict[str, dict],
    book: AccountBook | None,
    now: datetime | None,
) -> None:
    media: list[Entry] = []
    for index, written in enumerate(item.media):
        found = await snapshot.resolve(file.path, written)
        place = (*item.place, "media", index) if len(item.media) > 1 else (*item.place, "media")
        if isinstance(found, str):
            file.problem(found, place, item.id)
            continue
        if found.path != _lexical(file.path, written):
            file.cacheable = False  # reached through a symlink
        media.append(found)
    digest = item_hash(item, media)
    row = rows.get(item.id)
    plan_item = ItemPlan("unchanged", item.id, file.path, row["id"] if row else None, item, digest)
    plan_item.media = media
    if row is None:
        plan_item.action = "create"
        if now and not item.draft and not item.now and item.publish_at is not None:
            late = (now - item.publish_at).total_seconds()
            if late > PAST_GRACE_S:
                local = item.publish_at.astimezone(ZoneInfo(item.timezone))
                file.problem(
                    f"publish_at {local:%Y-%m-%d %H:%M} ({item.timezone}) is already past: the "
                    "post is not scheduled, so an old file never publishes by surprise. "
                    "Choose a later time, or write publish_at: now",
                    (*item.place, "publish_at"),
                    item.id,
                )
    elif row["content_hash"] == DETACHED:
        plan_item.action = "drift"  # taken over in the app: the file no longer changes it
        file.problem(
            f"post '{item.id}' was detached from its file in the app: this file no longer "
            "changes it (give a new post a new id)",
            (*item.place, "id"),
            item.id,
            warn=True,
        )
    elif row["content_hash"] == digest:
        plan_item.action = "move" if row["source_path"] != file.path else "unchanged"
    elif row["status"] in STARTED:
        plan_item.action = "drift"
        file.problem(
            f"post '{item.id}' changed after publishing started: nothing was re-sent "
            "(edit what is left in the app, or give a new post a new id)",
            (*item.place, "id"),
            item.id,
            warn=True,
        )
    else:
        plan_item.action = "update"
    if book is not None and plan_item.action in ("create", "update"):
        plan_item.account_ids = _resolve_accounts(file, item, book)
    file.items.append(plan_item)


def _resolve_accounts(file: FilePlan, item: Item, book: AccountBook) -> list[int]:
    ids = []
    for (platform, handle), place in zip(item.accounts, item.account_places, strict=True):
        account = book.find(platform, handle)
        if account is None:
            known = ", ".join(f"{platform}:@{h}" for h in book.known(platform)) or "none"
            file.problem(
                f"unknown account {platform}:{handle}: connect it on the Connections page "
                f"(connected {platform} accounts: {known})",
                place,
                item.id,
            )
        elif account.id not in ids:
            ids.append(account.id)
    return ids


def _refuse_duplicates(plan: Plan, protected: set[str]) -> None:
    """An id defined in two files: both are refused (and their posts left alone)."""
    where: dict[str, list[FilePlan]] = {}
    for file in plan.files:
        for item in file.items:
            where.setdefault(item.item_id, []).append(file)
    for item_id, files in where.items():
        if len(files) < 2:
            continue
        protected.add(item_id)
        for file in files:
            others = ", ".join(f.path for f in files if f is not file)
            place = next((i.item.place for i in file.items if i.item_id == item_id and i.item), ())
            file.problem(
                f"id '{item_id}' is also used in {others}: ids must be unique in a source",
                (*place, "id"),
                item_id,
            )
            file.cacheable = False


# -- applying it --------------------------------------------------------------------------
def _spec(
    plan_item: ItemPlan,
    book_platforms: dict[int, str],
    media_ids: list[int],
    source_id: int,
    commit: str,
    now: datetime,
) -> posts.PostSpec:
    item = plan_item.item
    assert item is not None
    targets = []
    for account_id in plan_item.account_ids:
        platform = book_platforms[account_id]
        targets.append(
            posts.TargetSpec(
                account_id, target_text(item, platform), target_options(item, platform)
            )
        )
    return posts.PostSpec(
        text=item.text,
        targets=targets,
        publish_at=now if item.now else item.publish_at,
        timezone=item.timezone,
        media_ids=media_ids,
        draft=item.draft,
        source={
            "content_source": source_id,
            "path": plan_item.path,
            "item_id": item.id,
            "commit": commit,
            "content_hash": plan_item.hash,
        },
    )


@dataclass
class Outcome:
    created: int = 0
    updated: int = 0
    cancelled: int = 0
    unchanged: int = 0
    problems: list[Problem] = field(default_factory=list)
    applied_files: set[str] = field(default_factory=set)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]


def _refusal(file: FilePlan, plan_item: ItemPlan, exc: posts.PostRefused) -> None:
    item = plan_item.item
    for problem in exc.problems:
        if problem.severity != "error":
            continue
        platform = problem.platform
        place = place_of_field(item, platform, problem.field) if item else ()
        prefix = f"{rules_title(platform)}: " if platform else ""
        file.problem(prefix + problem.message, place, plan_item.item_id)


def rules_title(platform: str) -> str:
    return {"facebook": "Facebook", "instagram": "Instagram", "tiktok": "TikTok", "x": "X"}.get(
        platform, platform
    )


BATCH_POSTS = 500  # new posts written per schedule_many call
WRITERS = 2  # batches in flight: one checks its posts while the other waits on PostgreSQL


async def apply(
    plan: Plan,
    snapshot: Snapshot,
    *,
    user_id: int,
    source_id: int,
    book: AccountBook,
    settings: Settings,
    now: datetime,
    early: _EarlyWriter | None = None,
) -> Outcome:
    """Carry out a plan. Files that only add posts are written in batches (one
    schedule_many per batch: all of it or nothing, so a file is still all or nothing);
    every other file in a transaction of its own. Files `early` wrote while the plan
    was built are done already."""
    if early is not None:
        applier, written = early.applier, early.done
    else:
        outcome = Outcome()
        applier = _Applier(plan.commit, snapshot, user_id, source_id, book, settings, now, outcome)
        written = set()
    outcome = applier.outcome
    if plan.fatal:
        outcome.problems = plan.all_problems()
        return outcome
    batch: list[tuple[FilePlan, list[ItemPlan], list[posts.PostSpec]]] = []
    pending = 0
    writing: set[asyncio.Task] = set()  # batches are written while the next are built

    async def flush(limit: int) -> None:
        """Start writing the batch; wait until at most `limit` batches are in flight."""
        nonlocal batch, pending
        if batch:
            writing.add(asyncio.create_task(applier.flush(batch)))
        batch, pending = [], 0
        while len(writing) > limit:
            done, _ = await asyncio.wait(writing, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                writing.discard(task)
                task.result()  # (its exception, if any)

    try:
        for file in plan.files:
            work = [i for i in file.items if i.action in ("create", "update", "move")]
            if not file.ok or not work or file.path in written:
                continue
            if all(i.action == "create" for i in work):
                specs = await applier.specs(file, work)
                if specs is not None:
                    batch.append((file, work, specs))
                    pending += len(specs)
                if pending >= BATCH_POSTS:
                    await flush(WRITERS - 1)
            else:
                await applier.file(file, work)
        await flush(0)
    finally:
        for task in writing:
            task.cancel()
        for task in writing:
            with contextlib.suppress(BaseException):
                await task
    outcome.unchanged += plan.untouched
    for file in plan.files:
        if file.ok:
            outcome.applied_files.add(file.path)
            outcome.unchanged += sum(1 for i in file.items if i.action in ("unchanged", "drift"))
        outcome.problems += file.problems
    for plan_item in plan.cancels:
        async with engine_finder().transaction():
            await posts.cancel(user_id, plan_item.post_id)
            await posts.relink_source(user_id, plan_item.post_id, {"content_hash": REMOVED})
        outcome.cancelled += 1
    outcome.problems = [*plan.problems, *outcome.problems]
    return outcome


Batch = list[tuple[FilePlan, list[ItemPlan], list[posts.PostSpec]]]


@dataclass
class _Applier:
    commit: str
    snapshot: Snapshot
    user_id: int
    source_id: int
    book: AccountBook
    settings: Settings
    now: datetime
    outcome: Outcome
    stored: dict[str, int] = field(default_factory=dict)  # blob -> media id, this run

    @cached_property
    def platforms(self) -> dict[int, str]:
        return {a.id: a.platform for a in self.book.by_key.values()}

    async def specs(self, file: FilePlan, work: list[ItemPlan]) -> list[posts.PostSpec] | None:
        """The domain's specs for the file's new and changed posts (media stored first),
        or None when a media file cannot be used (the file then changes nothing)."""
        platforms = self.platforms
        specs = []
        for plan_item in work:
            if plan_item.action == "move":
                continue
            media_ids = []
            for index, entry in enumerate(plan_item.media):
                if entry.blob not in self.stored:
                    try:
                        self.stored[entry.blob] = await content_media.store(
                            self.user_id, self.snapshot, entry, self.settings
                        )
                    except content_media.MediaProblem as exc:
                        item = plan_item.item
                        many = len(item.media) > 1
                        place = (*item.place, "media", index) if many else (*item.place, "media")
                        file.problem(str(exc), place, plan_item.item_id)
                        return None
                media_ids.append(self.stored[entry.blob])
            specs.append(
                _spec(plan_item, platforms, media_ids, self.source_id, self.commit, self.now)
            )
        return specs

    async def flush(self, batch: Batch, fallback: bool = True) -> list[tuple[FilePlan, list[int]]]:
        """Write a batch of new posts; returns each written file with its posts' ids.
        A batch that fails for another reason than a refusal is applied file by file,
        unless `fallback` is off (then the error is raised)."""
        while batch:
            specs = [spec for _, _, file_specs in batch for spec in file_specs]
            try:
                ids = await posts.schedule_many(self.user_id, specs, now=self.now)
            except posts.BatchRefused as exc:
                owners = [(f, w[i]) for f, w, fs in batch for i in range(len(fs))]
                for index, refusal in exc.refused.items():
                    file, plan_item = owners[index]
                    _refusal(file, plan_item, refusal)
                batch = [b for b in batch if b[0].ok]  # the rest again, without them
                continue
            except Exception:  # e.g. a unique violation from a concurrent writer
                if not fallback:
                    raise
                log.warning("batch of new posts failed; applying file by file", exc_info=True)
                for file, work, _ in batch:
                    await self.file(file, work)
                return []
            self.outcome.created += len(specs)
            written, start = [], 0
            for file, _, file_specs in batch:
                written.append((file, ids[start : start + len(file_specs)]))
                start += len(file_specs)
            return written
        return []

    async def file(self, file: FilePlan, work: list[ItemPlan]) -> None:
        """One file in one transaction, through schedule / update / relink_source."""
        specs = await self.specs(file, work)
        if specs is None:
            return
        by_id = {spec.source["item_id"]: spec for spec in specs}
        current: ItemPlan | None = None
        try:
            async with engine_finder().transaction():
                for current in work:
                    if current.action == "create":
                        await posts.schedule(self.user_id, by_id[current.item_id], now=self.now)
                    elif current.action == "update":
                        await posts.update(
                            self.user_id, current.post_id, by_id[current.item_id], now=self.now
                        )
                    else:
                        source = {"path": file.path, "commit": self.commit}
                        await posts.relink_source(self.user_id, current.post_id, source)
        except posts.PostRefused as exc:
            if current is not None and current.action == "update" and _started(exc):
                current.action = "drift"  # it started between plan and apply: the rest again
                file.problem(
                    f"post '{current.item_id}' changed after publishing started: "
                    "nothing was re-sent",
                    (*current.item.place, "id"),
                    current.item_id,
                    warn=True,
                )
                rest = [i for i in work if i.action in ("create", "update", "move")]
                if rest:
                    await self.file(file, rest)
                return
            _refusal(file, current, exc)
            return
        for done in work:
            if done.action == "create":
                self.outcome.created += 1
            else:
                self.outcome.updated += 1


class _WriteFailed(Exception):
    """An early write failed: its transaction is rolled back, the plan applied anew."""


class _EarlyWriter:
    """Writes the new posts of files that only add posts while later files are still
    being parsed, so PostgreSQL works while Python parses. All of it goes into one
    transaction (the caller's), committed only once the whole plan is known: a file
    that turns out to share an id with a later one is taken back first, so nothing a
    finished plan refuses is ever visible, to the publisher or anyone."""

    YIELD_EVERY = 5  # files parsed between two turns of the event loop for the writer

    def __init__(self, applier: _Applier) -> None:
        self.applier = applier
        self.seen: set[str] = set()  # the ids of every file planned so far
        self.batch: Batch = []
        self.pending = 0
        self.writing: asyncio.Task | None = None
        self.written: list[tuple[FilePlan, list[int]]] = []
        self.failed: BaseException | None = None
        self.done: set[str] = set()  # what finish() kept
        self.count = 0

    async def planned(self, plan: Plan, file: FilePlan) -> None:
        work = [i for i in file.items if i.action in ("create", "update", "move")]
        ids = [i.item_id for i in file.items]
        known = not self.seen.isdisjoint(ids)  # both files are refused once all is read
        self.seen.update(ids)
        # (media are stored by apply(): storing one queries the connection writing now)
        only_new = bool(work) and all(i.action == "create" and not i.media for i in work)
        if only_new and file.ok and not known and not plan.fatal and self.failed is None:
            specs = await self.applier.specs(file, work)
            if specs is not None:
                self.batch.append((file, work, specs))
                self.pending += len(specs)
            if self.pending >= BATCH_POSTS:
                await self._flush()
        self.count += 1
        if self.count % self.YIELD_EVERY == 0:
            await asyncio.sleep(0)  # the writer sends its next statement

    async def _flush(self) -> None:
        """Queue the batch behind the one being written (one connection: one at a time)."""
        batch, self.batch, self.pending = self.batch, [], 0
        if batch:
            self.writing = asyncio.create_task(self._write(self.writing, batch))

    async def _write(self, before: asyncio.Task | None, batch: Batch) -> None:
        if before is not None:
            await before
        if self.failed is None:
            try:
                self.written += await self.applier.flush(batch, fallback=False)
            except Exception as exc:
                self.failed = exc

    async def finish(self) -> None:
        """After the plan: write what is left, take back the files the plan refused
        after all (ids shared with a later file). Raises _WriteFailed."""
        self.batch = [b for b in self.batch if b[0].ok]  # (refused meanwhile: not written)
        await self._flush()
        if self.writing is not None:
            await self.writing
        if self.failed is not None:
            raise _WriteFailed() from self.failed
        back = [i for file, ids in self.written if not file.ok for i in ids]
        if back:
            await posts.discard_new(self.applier.user_id, back)
            self.applier.outcome.created -= len(back)
        self.done = {file.path for file, _ in self.written if file.ok}

    async def cancel(self) -> None:
        if self.writing is not None and not self.writing.done():
            self.writing.cancel()
            with contextlib.suppress(BaseException):
                await self.writing


async def _plan_writing_early(
    source: ContentSource,
    snapshot: Snapshot,
    book: AccountBook,
    settings: Settings,
    now: datetime,
    cache: dict[str, Any],
) -> tuple[Plan, _EarlyWriter | None]:
    """build_plan, with the new posts of finished files written meanwhile (see
    _EarlyWriter). If a write fails, nothing of them stays: apply() does it all."""
    rows = await posts.source_posts(source.id)
    outcome = Outcome()
    applier = _Applier(
        snapshot.commit, snapshot, source.user, source.id, book, settings, now, outcome
    )
    writer = _EarlyWriter(applier)
    plan: Plan | None = None
    try:
        async with engine_finder().transaction():
            try:
                plan = await build_plan(
                    snapshot,
                    rows=rows,
                    book=book,
                    now=now,
                    cache=cache,
                    source=source,
                    planned=writer.planned,
                )
                await writer.finish()
            finally:
                await writer.cancel()  # (before the transaction ends, on any error)
    except _WriteFailed:
        log.warning("writing new posts early failed; applying the plan anew", exc_info=True)
        assert plan is not None  # (built before finish() could fail)
        return plan, None  # rolled back: apply() writes it all (refusals found stand)
    return plan, writer


def _started(exc: posts.PostRefused) -> bool:
    return any(p.field == "post" for p in exc.problems)


# -- the cache ----------------------------------------------------------------------------
def cache_path(settings: Settings, source_id: int) -> Path:
    return settings.data_dir / "content" / f"source-{source_id}.json"


def load_cache(path: Path) -> dict[str, Any]:
    try:
        return msgspec.json.decode(path.read_bytes())
    except (OSError, ValueError):
        return {}


def save_cache(path: Path, plan: Plan, outcome: Outcome, key: str) -> None:
    files = {}
    for file in plan.files:
        if file.path not in outcome.applied_files or not file.cacheable:
            continue
        files[file.path] = {
            "blob": file.entry.blob,
            "items": [
                [i.item_id, i.hash, [[m.path, m.blob] for m in i.media]]
                for i in file.items
                if i.action != "drift"
            ],
        }
        if any(i.action == "drift" for i in file.items):
            del files[file.path]  # re-check it next time, so the warning stays visible
    data = {"version": CACHE_VERSION, "key": key, "settings": plan.settings_blob, "files": files}
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_suffix(f".{os.getpid()}.tmp")
    temp.write_bytes(msgspec.json.encode(data))
    os.replace(temp, path)


# -- one source, one at a time -------------------------------------------------------------
@contextlib.asynccontextmanager
async def source_lock(source_id: int) -> AsyncIterator[None]:
    """Hold the source's advisory lock for the whole sync; waits for a sync already
    running. The lock is transaction-scoped, taken in a transaction of its own on a
    connection of its own (which writes nothing): it ends with that transaction, so
    a sync that fails, is cancelled or dies never keeps it (a pooled connection is
    rolled back when released, a closed one ends its transaction)."""
    engine = engine_finder()
    pool = engine.pool
    connection = await (pool.acquire() if pool is not None else engine.get_new_connection())
    try:
        transaction = connection.transaction()
        await transaction.start()
        try:
            await connection.execute(f"SET LOCAL lock_timeout = '{LOCK_WAIT}'")
            await connection.execute("SELECT pg_advisory_xact_lock($1, $2)", LOCK_CLASS, source_id)
            yield
        finally:
            await transaction.rollback()
    finally:
        if pool is not None:
            await pool.release(connection)
        else:
            await connection.close()


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cycle collector paused while a plan is built and applied. A plan keeps a
    dozen objects per post file alive until it is applied, and each quarter the heap
    grows by starts a full collection: four of them, ~0.1 s each, were a sixth of a
    10,000-file sync. Reference counting still frees everything the sync drops (it makes
    no cycles worth waiting for); the collector resumes when the sync ends."""
    paused = gc.isenabled()  # (a sync running alongside leaves it to the first one)
    gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


@dataclass
class SyncResult:
    run_id: int | None
    status: str  # ok | partial | failed | unchanged | disabled
    commit: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class Opened:
    """A source's current commit, known cheaply (a git source asks the remote and moves
    no objects), and the ways to read that commit."""

    commit: str
    snapshot: Callable[[], Awaitable[Snapshot]]  # the whole tree (fetching if needed)
    repo: GitRepo | None = None
    subpath: str = ""

    async def changes_since(self, old: str) -> tuple[GitSnapshot, list[str], list[str]] | None:
        if self.repo is None or not old:
            return None
        await self.snapshot_fetched()
        return await self.repo.changes(old, self.commit, self.subpath)

    async def snapshot_fetched(self) -> None:
        if self.repo is not None and self.commit != await self.repo.local_head():
            self.commit = await self.repo.fetch()


async def open_source(source: ContentSource, settings: Settings) -> Opened:
    from src.content import service

    if source.kind == "local":
        snapshot = await asyncio.to_thread(LocalSnapshot, Path(source.url), source.subpath)

        async def ready() -> Snapshot:
            return snapshot

        return Opened(snapshot.commit, ready)
    repo = GitRepo(
        git_dir(settings.data_dir, source.id),
        source.url,
        source.branch,
        service.token_of(source, settings),
    )
    head = await repo.remote_head()
    if head is None:
        raise SourceError(f"the branch {source.branch} does not exist")
    opened = Opened(head, lambda: None, repo, source.subpath)  # type: ignore[arg-type]

    async def fetched() -> Snapshot:
        await opened.snapshot_fetched()
        return await repo.snapshot(opened.commit, source.subpath)

    opened.snapshot = fetched
    return opened


async def open_snapshot(source: ContentSource, settings: Settings) -> Snapshot:
    return await (await open_source(source, settings)).snapshot()


async def _clean_run(source: ContentSource, snapshot_commit: str) -> bool:
    """Whether the last finished run synced this very commit without errors."""
    rows = (
        await SyncRun.select(SyncRun.status, SyncRun.commit)
        .where((SyncRun.source == source.id) & (SyncRun.status != "running"))
        .order_by(SyncRun.id, ascending=False)
        .limit(1)
    )
    return bool(rows) and rows[0]["status"] == "ok" and rows[0]["commit"] == snapshot_commit


async def sync_source(
    source_id: int, settings: Settings, *, trigger: str = "manual", now: datetime | None = None
) -> SyncResult:
    """Fetch, plan and apply one source; record a SyncRun (except for a poll that finds
    nothing new)."""
    async with source_lock(source_id):
        source = await ContentSource.objects().get(ContentSource.id == source_id)
        if source is None:
            raise LookupError(source_id)
        if not source.enabled and trigger != "cli":
            return SyncResult(None, "disabled", source.last_commit)
        await SyncRun.update(
            {
                SyncRun.status: "failed",
                SyncRun.finished_at: datetime.now(UTC),
                SyncRun.errors: [
                    {
                        "file": "",
                        "line": None,
                        "message": "interrupted",
                        "severity": "error",
                        "item": None,
                    }
                ],
            }
        ).where((SyncRun.source == source_id) & (SyncRun.status == "running"))
        started = time.perf_counter()
        changes = None
        try:
            opened = await open_source(source, settings)
            commit = opened.commit
            if commit == source.last_commit and await _clean_run(source, commit):
                await ContentSource.update({ContentSource.last_synced_at: datetime.now(UTC)}).where(
                    ContentSource.id == source_id
                )
                if trigger == "poll":
                    return SyncResult(None, "unchanged", commit)
                run = await _start_run(source, trigger, commit)
                kept = await posts_count(source_id)
                await _finish_run(run, "ok", Outcome(unchanged=kept))
                return SyncResult(run, "unchanged", commit, {"unchanged": kept})
            if source.last_commit and await _clean_run(source, source.last_commit):
                changes = await opened.changes_since(source.last_commit)
            snapshot = changes[0] if changes else await opened.snapshot()
        except (SourceError, ValueError, OSError) as exc:
            return await _record_failure(source, trigger, str(exc))
        timings = {"fetch": time.perf_counter() - started}
        run_id = await _start_run(source, trigger, snapshot.commit)
        now = now or datetime.now(UTC)
        try:
            with collector_paused():  # (the plan is gone when the collector resumes)
                outcome, fatal = await _plan_and_apply(
                    source, snapshot, changes, settings, now, timings
                )
        except Exception as exc:
            log.exception("content sync of source %s failed", source_id)
            outcome = Outcome(problems=[Problem("", None, f"sync failed: {exc}")])
            await _finish_run(run_id, "failed", outcome)
            raise
        status = "failed" if fatal else ("partial" if outcome.errors else "ok")
        await _finish_run(run_id, status, outcome)
        await ContentSource.update(
            {
                ContentSource.last_commit: snapshot.commit,
                ContentSource.last_synced_at: datetime.now(UTC),
            }
        ).where(ContentSource.id == source_id)
        counts = {
            "created": outcome.created,
            "updated": outcome.updated,
            "cancelled": outcome.cancelled,
            "unchanged": outcome.unchanged,
        }
        timings["total"] = time.perf_counter() - started
        log.info(
            "synced content source %s at %s: %s (%s) in %.2f s",
            source_id,
            snapshot.commit[:12],
            status,
            counts,
            timings["total"],
        )
        return SyncResult(run_id, status, snapshot.commit, counts, outcome.problems, timings)


async def _plan_and_apply(
    source: ContentSource,
    snapshot: Snapshot,
    changes: tuple[GitSnapshot, list[str], list[str]] | None,
    settings: Settings,
    now: datetime,
    timings: dict[str, float],
) -> tuple[Outcome, bool]:
    """Plan (only the changed files, when `changes` says which) and apply; returns the
    outcome and whether the plan was fatal. `timings` gets the plan and apply phases."""
    started = time.perf_counter()
    book = await AccountBook.of(source.user)
    path = cache_path(settings, source.id)
    early = None
    if changes:
        partial, changed, deleted = changes
        plan = await build_changes_plan(
            partial, changed, deleted, source_id=source.id, book=book, now=now
        )
    else:
        cache = load_cache(path)
        plan, early = await _plan_writing_early(source, snapshot, book, settings, now, cache)
    timings["plan"] = time.perf_counter() - started
    outcome = await apply(
        plan,
        snapshot,
        user_id=source.user,
        source_id=source.id,
        book=book,
        settings=settings,
        now=now,
        early=early,
    )
    timings["apply"] = time.perf_counter() - started - timings["plan"]
    if not changes:  # (a changes-only plan leaves the cache as it is: still safe)
        save_cache(path, plan, outcome, _cache_key(source, snapshot))
    return outcome, plan.fatal


async def posts_count(source_id: int, besides: set[str] | None = None) -> int:
    """How many posts the source defines now (those removed from it excluded); with
    `besides`, only those of other files, and none detached."""
    from src.db.tables import Post

    where = (Post.content_source == source_id) & (Post.content_hash != REMOVED)
    if besides is not None:
        where &= Post.content_hash != DETACHED
        if besides:
            where &= Post.source_path.not_in(sorted(besides))
    return await Post.count().where(where)


async def _start_run(source: ContentSource, trigger: str, commit: str) -> int:
    rows = await SyncRun.insert(
        SyncRun(
            {
                SyncRun.source: source.id,
                SyncRun.commit: commit,
                SyncRun.status: "running",
                SyncRun.trigger: trigger[:20],
                SyncRun.created_at: datetime.now(UTC),
            }
        )
    ).returning(SyncRun.id)
    return rows[0]["id"]


async def _finish_run(run_id: int, status: str, outcome: Outcome) -> None:
    await SyncRun.update(
        {
            SyncRun.status: status,
            SyncRun.created: outcome.created,
            SyncRun.updated: outcome.updated,
            SyncRun.cancelled: outcome.cancelled,
            SyncRun.unchanged: outcome.unchanged,
            SyncRun.errors: [p.as_dict() for p in outcome.problems],
            SyncRun.finished_at: datetime.now(UTC),
        }
    ).where(SyncRun.id == run_id)


async def _record_failure(source: ContentSource, trigger: str, message: str) -> SyncResult:
    run_id = await _start_run(source, trigger, "")
    problem = Problem("", None, message)
    await _finish_run(run_id, "failed", Outcome(problems=[problem]))
    await ContentSource.update({ContentSource.last_synced_at: datetime.now(UTC)}).where(
        ContentSource.id == source.id
    )
    return SyncResult(run_id, "failed", "", {}, [problem])


# -- a plan to show (CLI, Content page) ----------------------------------------------------
async def plan_source(source_id: int, settings: Settings, now: datetime | None = None) -> Plan:
    source = await ContentSource.objects().get(ContentSource.id == source_id)
    if source is None:
        raise LookupError(source_id)
    snapshot = await open_snapshot(source, settings)
    return await build_plan(
        snapshot,
        rows=await posts.source_posts(source_id),
        book=await AccountBook.of(source.user),
        now=now or datetime.now(UTC),
        source=source,
    )


def describe(plan: Plan) -> list[str]:
    """The plan as lines: + create, ~ update, > move, - cancel, ! drift."""
    lines = []
    marks = {"create": "+", "update": "~", "move": ">", "drift": "!", "cancel": "-"}
    for item in plan.actions():
        if item.action == "unchanged":
            continue
        what = item.action if item.action != "drift" else "changed after publishing (kept)"
        detail = ""
        if item.item is not None and item.action in ("create", "update"):
            when = (
                "draft"
                if item.item.draft
                else ("now" if item.item.now else _local(item.item.publish_at, item.item.timezone))
            )
            accounts = ", ".join(f"{p}:{h}" for p, h in item.item.accounts)
            detail = f"  [{when}; {accounts}]"
        lines.append(f"{marks[item.action]} {what} {item.item_id} ({item.path}){detail}")
    counts = plan.counts()
    lines.append(
        f"Plan: {counts['create']} to create, {counts['update'] + counts['move']} to update, "
        f"{counts['cancel']} to cancel, {counts['unchanged']} unchanged, "
        f"{counts['errors']} errors, {counts['warnings']} warnings."
    )
    return lines


def _local(moment: datetime | None, zone: str) -> str:
    if moment is None:
        return "no time"
    return f"{moment.astimezone(ZoneInfo(zone)):%Y-%m-%d %H:%M} {zone}"


def static_problems(plan: Plan, facts: dict[str, Any] | None = None) -> list[Problem]:
    """The platform rules on every post of a plan, without accounts (validate)."""
    found: list[Problem] = []
    for file in plan.files:
        for plan_item in file.items:
            item = plan_item.item
            if item is None:
                continue
            media = [
                facts[m.path]
                for m in plan_item.media
                if facts and not isinstance(facts.get(m.path), str | None)
            ]
            for platform in item.platforms():
                text = (
                    item.overrides.get(platform).text
                    if platform in item.overrides and item.overrides[platform].text is not None
                    else item.text
                )
                for problem in rules.check(
                    platform, text, media, target_options(item, platform), {}
                ):
                    place = place_of_field(item, platform, problem.field)
                    line = file.parsed.line(place) if file.parsed else None
                    found.append(
                        Problem(
                            file.path,
                            line,
                            f"{rules_title(platform)}: {problem.message}",
                            problem.severity,
                            item.id,
                        )
                    )
    return found


# -- the poll ------------------------------------------------------------------------------
async def poll(settings: Settings) -> int:
    """Sync every enabled source whose poll interval has passed (the cron job); returns
    how many were looked at. One failing source never stops the others."""
    from src.content import service

    due = await service.due_for_poll()
    for source in due:
        try:
            await sync_source(source.id, settings, trigger="poll")
        except Exception:
            log.exception("polling content source %s failed", source.id)
    return len(due)
