"""The scheduling domain: schedule, update, reschedule, cancel, publish_now, retry.

The composer, the calendar, the YAML sync and the jobs all call these functions; none
of them writes posts or targets on its own. Times are stored in UTC together with the
IANA zone they were written in."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from piccolo.engine import engine_finder

from src import rules
from src.db.tables import Account, Media, Post, PostMedia, PostTarget
from src.publishers.base import MediaItem

# Target states. `processing`: waiting on the platform; `held`: account disconnected.
PENDING = ("scheduled", "retrying", "processing", "held")
STARTED = ("publishing", "processing", "published", "unconfirmed")
FINAL = ("published", "failed", "cancelled", "unconfirmed")
# A post's status, derived from its targets' (what lists and the calendar filter on).
POST_STATUSES = (
    "draft",
    "scheduled",
    "publishing",
    "published",
    "partial",
    "failed",
    "unconfirmed",
    "cancelled",
)


@dataclass
class TargetSpec:
    account_id: int
    text: str | None = None  # None: inherit the post's text
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class PostSpec:
    text: str
    targets: list[TargetSpec]
    publish_at: datetime | None = None  # timezone-aware; None with draft=False means now
    timezone: str = "UTC"
    media_ids: list[int] = field(default_factory=list)
    draft: bool = False
    # Where a file-defined post came from (content sync); empty for the composer.
    source: dict[str, Any] = field(default_factory=dict)


class PostRefused(Exception):
    """The post cannot be saved as asked; `problems` say why, per platform."""

    def __init__(self, problems: list[rules.Problem]) -> None:
        super().__init__("; ".join(p.message for p in problems))
        self.problems = problems


class NotFound(Exception):
    pass


# -- reading ------------------------------------------------------------------------------
async def owned_post(user_id: int, post_id: int) -> Post:
    post = await Post.objects().get((Post.id == post_id) & (Post.user == user_id))
    if post is None:
        raise NotFound(post_id)
    return post


async def targets_of(post_id: int) -> list[PostTarget]:
    return await PostTarget.objects().where(PostTarget.post == post_id).order_by(PostTarget.id)


async def media_of(post_id: int) -> list[Media]:
    links = (
        await PostMedia.select(PostMedia.media)
        .where(PostMedia.post == post_id)
        .order_by(PostMedia.position)
    )
    ids = [link["media"] for link in links]
    if not ids:
        return []
    rows = {m.id: m for m in await Media.objects().where(Media.id.is_in(ids))}
    return [rows[i] for i in ids if i in rows]


async def media_of_posts(post_ids: list[int]) -> dict[int, list[Media]]:
    """The media of many posts in two queries (the publishing batch's)."""
    links = (
        await PostMedia.select(PostMedia.post, PostMedia.media)
        .where(PostMedia.post.is_in(post_ids or [0]))
        .order_by(PostMedia.position)
    )
    ids = list({link["media"] for link in links})
    rows = {m.id: m for m in await Media.objects().where(Media.id.is_in(ids or [0]))}
    result: dict[int, list[Media]] = {post_id: [] for post_id in post_ids}
    for link in links:
        if link["media"] in rows:
            result[link["post"]].append(rows[link["media"]])
    return result


async def refresh_statuses(post_ids: list[int]) -> None:
    """Recompute the status of many posts: one read, one write."""
    rows = await PostTarget.select(PostTarget.post, PostTarget.status).where(
        PostTarget.post.is_in(post_ids or [0])
    )
    statuses: dict[int, list[str]] = {post_id: [] for post_id in post_ids}
    for row in rows:
        statuses[row["post"]].append(row["status"])
    ids = list(statuses)
    values = [post_status(statuses[post_id]) for post_id in ids]
    await Post.raw(
        "UPDATE posts SET status = v.status, updated_at = now() "
        "FROM unnest({}::int[], {}::text[]) AS v(id, status) "
        "WHERE posts.id = v.id AND posts.status <> v.status",
        ids,
        values,
    )


def media_facts(media: Media) -> MediaItem:
    """What the rules need to know of a file (no path or URL)."""
    return MediaItem(
        path="",
        url="",
        content_type=media.content_type,
        bytes=media.bytes,
        sha256=media.sha256,
        width=media.width,
        height=media.height,
        duration_ms=media.duration_ms,
    )


def account_meta(account: Account) -> dict[str, Any]:
    meta = account.meta
    if isinstance(meta, str):
        meta = json.loads(meta or "{}")
    return meta if isinstance(meta, dict) else {}


async def source_posts(
    source_id: int, *, item_ids: list[str] | None = None, paths: list[str] | None = None
) -> list[dict[str, Any]]:
    """The posts a content source made (for its sync): id, item id, hash, path, status.
    With `item_ids` or `paths`: only those with one of the ids or at one of the paths."""
    where = Post.content_source == source_id
    if item_ids is not None or paths is not None:  # ('' is neither: is_in needs a value)
        where &= Post.source_item_id.is_in(item_ids or [""]) | Post.source_path.is_in(paths or [""])
    return await Post.select(
        Post.id, Post.source_item_id, Post.content_hash, Post.source_path, Post.status
    ).where(where)


# -- validation ---------------------------------------------------------------------------
async def _validate(user_id: int, spec: PostSpec, now: datetime) -> dict[int, Account]:
    """Everything a platform would refuse that we can know now. Returns the accounts."""
    ids = [t.account_id for t in spec.targets]
    found = await Account.objects().where((Account.user == user_id) & Account.id.is_in(ids or [0]))
    accounts = {a.id: a for a in found}
    media = await owned_media(user_id, spec.media_ids)
    errors = _refusals(spec, accounts, media, now)
    if errors:
        raise PostRefused(errors)
    return accounts


def _key(value: Any) -> str:
    return "{}" if value == {} else json.dumps(value, sort_keys=True, default=str)


def _metas(accounts: dict[int, Account]) -> dict[int, tuple[dict[str, Any], str]]:
    """Each account's meta and its key (what the rules read of the account)."""
    return {a.id: (meta, _key(meta)) for a in accounts.values() for meta in [account_meta(a)]}


def _refusals(
    spec: PostSpec,
    accounts: dict[int, Account],
    media: list[Media],
    now: datetime,
    metas: dict[int, tuple[dict[str, Any], str]] | None = None,
) -> list[rules.Problem]:
    """The errors that refuse `spec`, given the user's accounts (and their `_metas`, when
    many posts are checked) and the post's media."""
    problems: list[rules.Problem] = []
    checked: dict[tuple, list[rules.Problem]] = {}
    metas = metas if metas is not None else _metas(accounts)
    if not spec.targets:
        problems.append(rules.Problem("", "accounts", "Choose at least one account.", "error"))
    facts = [media_facts(m) for m in media]
    for target in spec.targets:
        account = accounts.get(target.account_id)
        if account is None:
            problems.append(rules.Problem("", "accounts", "Unknown account.", "error"))
            continue
        if account.status != "active" and not spec.draft:
            # Kept, and held until the account is reconnected (then it resumes).
            problems.append(
                rules.Problem(
                    account.platform,
                    "accounts",
                    f"{account.display_name or account.handle} needs reconnecting: its post "
                    "is held until then.",
                    "warning",
                )
            )
        text = spec.text if target.text is None else target.text
        meta, meta_key = metas[account.id]
        # Accounts of one platform with the same text and options are checked once.
        key = (account.platform, text, _key(target.options), meta_key)
        if key not in checked:
            checked[key] = rules.check(account.platform, text, facts, target.options, meta)
        problems += checked[key]
    if not spec.draft:
        problems += rules.check_schedule(spec.publish_at or now, now)
    return [p for p in problems if p.severity == "error"]


async def owned_media(user_id: int, media_ids: list[int]) -> list[Media]:
    if not media_ids:
        return []
    rows = await Media.objects().where((Media.user == user_id) & Media.id.is_in(media_ids))
    by_id = {m.id: m for m in rows}
    missing = [i for i in media_ids if i not in by_id]
    if missing:
        raise PostRefused([rules.Problem("", "media", "A media file is missing.", "error")])
    return [by_id[i] for i in media_ids]


# -- writing ------------------------------------------------------------------------------
def post_status(statuses: list[str]) -> str:
    """A post's status from its targets' (what the calendar colours)."""
    if not statuses:
        return "draft"
    states = set(statuses)
    if states <= {"draft"}:
        return "draft"
    if states <= {"cancelled"}:
        return "cancelled"
    if states & {"publishing", "processing"}:
        return "publishing"
    if states & {"scheduled", "retrying", "held"}:
        return "scheduled"
    if "unconfirmed" in states:
        return "unconfirmed"
    if states <= {"published", "cancelled"}:
        return "published"
    if "published" in states:
        return "partial"
    return "failed"


async def refresh_post_status(post_id: int) -> str:
    rows = await PostTarget.select(PostTarget.status).where(PostTarget.post == post_id)
    status = post_status([r["status"] for r in rows])
    await Post.update({Post.status: status}).where(Post.id == post_id)
    return status


async def schedule(user_id: int, spec: PostSpec, *, now: datetime | None = None) -> Post:
    """Create a post with one target per account: scheduled (or a draft)."""
    now = now or datetime.now(UTC)
    accounts = await _validate(user_id, spec, now)
    async with engine_finder().transaction():
        post = Post(_post_columns(user_id, spec, now))
        await post.save()
        await _write_children(post, spec, accounts, now)
        await refresh_post_status(post.id)
    return await Post.objects().get(Post.id == post.id)


class BatchRefused(Exception):
    """schedule_many wrote nothing: `refused` maps the index of each refused spec to why."""

    def __init__(self, refused: dict[int, PostRefused]) -> None:
        super().__init__(f"{len(refused)} of the posts were refused")
        self.refused = refused


POST_COPY = (
    "id",
    "user",
    "text",
    "publish_at",
    "timezone",
    "status",
    "source",
    "content_source",
    "source_path",
    "source_item_id",
    "source_commit",
    "content_hash",
)
TARGET_COPY = ("post", "account", "text", "options", "status", "due_at")


async def schedule_many(
    user_id: int, specs: list[PostSpec], *, now: datetime | None = None
) -> list[int]:
    """schedule() for many posts at once (the content sync of a large source): each is
    checked exactly as schedule() checks one; if any is refused nothing is written and
    BatchRefused says which; otherwise all are written in one transaction, a few
    multi-row statements in all. Returns the new posts' ids, in order."""
    now = now or datetime.now(UTC)
    if not specs:
        return []
    account_ids = list({t.account_id for spec in specs for t in spec.targets})
    found = await Account.objects().where(
        (Account.user == user_id) & Account.id.is_in(account_ids or [0])
    )
    accounts = {a.id: a for a in found}
    media_ids = list({m for spec in specs for m in spec.media_ids})
    owned = await Media.objects().where((Media.user == user_id) & Media.id.is_in(media_ids or [0]))
    media = {m.id: m for m in owned}
    refused: dict[int, PostRefused] = {}
    metas = _metas(accounts)
    for index, spec in enumerate(specs):
        if any(m not in media for m in spec.media_ids):
            missing = rules.Problem("", "media", "A media file is missing.", "error")
            refused[index] = PostRefused([missing])
        elif errors := _refusals(spec, accounts, [media[m] for m in spec.media_ids], now, metas):
            refused[index] = PostRefused(errors)
    if refused:
        raise BatchRefused(refused)
    post_rows: list[tuple] = []
    target_rows: list[tuple] = []
    media_rows: list[tuple] = []
    async with engine_finder().transaction() as transaction:
        rows = await Post.raw(
            "SELECT nextval(pg_get_serial_sequence('posts', 'id')) AS id "
            "FROM generate_series(1, {})",
            len(specs),
        )
        ids = [row["id"] for row in rows]
        for post_id, spec in zip(ids, specs, strict=True):
            fields = _post_fields(user_id, spec, now)
            statuses = [_target_status(spec, accounts[t.account_id]) for t in spec.targets]
            publish_at = fields["publish_at"]
            post_rows.append(
                (
                    post_id,
                    user_id,
                    fields["text"],
                    publish_at,
                    fields["timezone"],
                    post_status(statuses),
                    fields.get("source", "composer"),
                    fields.get("content_source"),
                    fields.get("source_path", ""),
                    fields.get("source_item_id"),
                    fields.get("source_commit", ""),
                    fields.get("content_hash", ""),
                )
            )
            due = None if spec.draft else (publish_at or now)
            for target, status in zip(spec.targets, statuses, strict=True):
                options = "{}" if target.options == {} else json.dumps(target.options)
                target_rows.append((post_id, target.account_id, target.text, options, status, due))
            media_rows += [(post_id, m, position) for position, m in enumerate(spec.media_ids)]
        # Binary COPY: one stream per table, whatever the count (the other columns take
        # their defaults, as in schedule()).
        connection = transaction.connection
        await connection.copy_records_to_table("posts", records=post_rows, columns=POST_COPY)
        await connection.copy_records_to_table(
            "post_targets", records=target_rows, columns=TARGET_COPY
        )
        if media_rows:
            await connection.copy_records_to_table(
                "post_media", records=media_rows, columns=("post", "media", "position")
            )
    return ids


async def discard_new(user_id: int, post_ids: list[int]) -> None:
    """Take back posts schedule_many wrote in the transaction still open (the content
    sync writes ahead of its plan): nobody has seen them, so nothing else is owed."""
    await Post.delete().where((Post.user == user_id) & Post.id.is_in(post_ids))


def _target_status(spec: PostSpec, account: Account) -> str:
    if spec.draft:
        return "draft"
    return "scheduled" if account.status == "active" else "held"


async def update(user_id: int, post_id: int, spec: PostSpec, *, now: datetime | None = None):
    """Replace text, accounts, media and time of a post nothing of which has started."""
    now = now or datetime.now(UTC)
    await _unstarted(user_id, post_id)
    accounts = await _validate(user_id, spec, now)
    async with engine_finder().transaction():
        await _lock_post(post_id)
        await _unstarted(user_id, post_id)
        await Post.update(_post_columns(user_id, spec, now)).where(Post.id == post_id)
        await PostTarget.delete().where(PostTarget.post == post_id)
        await PostMedia.delete().where(PostMedia.post == post_id)
        post = await Post.objects().get(Post.id == post_id)
        await _write_children(post, spec, accounts, now)
        await refresh_post_status(post_id)
    return await Post.objects().get(Post.id == post_id)


async def reschedule(user_id: int, post_id: int, publish_at: datetime, timezone: str | None = None):
    """Move a post in time (calendar drag). Only targets still waiting move."""
    now = datetime.now(UTC)
    problems = [p for p in rules.check_schedule(publish_at, now) if p.severity == "error"]
    if problems:
        raise PostRefused(problems)
    async with engine_finder().transaction():
        await _lock_post(post_id)
        post = await _unstarted(user_id, post_id)
        columns: dict[Any, Any] = {Post.publish_at: publish_at}
        if timezone:
            columns[Post.timezone] = timezone
        await Post.update(columns).where(Post.id == post.id)
        await PostTarget.update({PostTarget.due_at: publish_at}).where(
            (PostTarget.post == post_id)
            & PostTarget.status.is_in(["scheduled", "retrying", "held"])
        )
    return await Post.objects().get(Post.id == post_id)


async def cancel(user_id: int, post_id: int) -> Post:
    """Cancel every target that has not started; published history stays."""
    async with engine_finder().transaction():
        await _lock_post(post_id)
        await owned_post(user_id, post_id)
        await PostTarget.update(
            {PostTarget.status: "cancelled", PostTarget.due_at: None, PostTarget.claimed_by: None}
        ).where(
            (PostTarget.post == post_id)
            & PostTarget.status.is_in(["draft", "scheduled", "retrying", "held", "failed"])
        )
        await refresh_post_status(post_id)
    return await Post.objects().get(Post.id == post_id)


async def publish_now(user_id: int, post_id: int) -> Post:
    now = datetime.now(UTC)
    async with engine_finder().transaction():
        await _lock_post(post_id)
        post = await owned_post(user_id, post_id)
        await Post.update({Post.publish_at: now}).where(Post.id == post.id)
        await PostTarget.update({PostTarget.status: "scheduled", PostTarget.due_at: now}).where(
            (PostTarget.post == post_id)
            & PostTarget.status.is_in(["draft", "scheduled", "retrying"])
        )
        await refresh_post_status(post_id)
    return await Post.objects().get(Post.id == post_id)


async def retry(user_id: int, post_id: int, target_ids: list[int] | None = None) -> int:
    """Send failed targets again (after a reconnect, say). Unconfirmed ones are left
    alone: the person must check the platform first."""
    now = datetime.now(UTC)
    async with engine_finder().transaction():
        await _lock_post(post_id)
        await owned_post(user_id, post_id)
        where = (PostTarget.post == post_id) & (PostTarget.status == "failed")
        if target_ids is not None:
            where &= PostTarget.id.is_in(target_ids or [0])
        rows = (
            await PostTarget.update(
                {
                    PostTarget.status: "scheduled",
                    PostTarget.due_at: now,
                    PostTarget.attempts: 0,
                    PostTarget.last_error: "",
                    PostTarget.error_code: "",
                }
            )
            .where(where)
            .returning(PostTarget.id)
        )
        await refresh_post_status(post_id)
    return len(rows)


async def relink_source(user_id: int, post_id: int, source: dict[str, Any]) -> None:
    """Record where a file-defined post now comes from (its file moved, or it left the
    source) without touching what it publishes: only path, commit and content hash."""
    columns = {
        column: source[key]
        for key, column in (
            ("path", Post.source_path),
            ("commit", Post.source_commit),
            ("content_hash", Post.content_hash),
        )
        if key in source
    }
    async with engine_finder().transaction():
        await _lock_post(post_id)
        await owned_post(user_id, post_id)
        if columns:
            await Post.update(columns).where(Post.id == post_id)


DETACHED = "detached"  # the content hash of a file post the person took over in the app


async def detach(user_id: int, post_id: int) -> Post:
    """Take a file-defined post over in the app: its source keeps the identity (so the
    file never creates it again) but no sync changes or cancels it any more."""
    post = await owned_post(user_id, post_id)
    if post.content_source is None:
        return post
    await relink_source(user_id, post_id, {"content_hash": DETACHED})
    return await owned_post(user_id, post_id)


# -- helpers ------------------------------------------------------------------------------
def _post_columns(user_id: int, spec: PostSpec, now: datetime) -> dict[Any, Any]:
    return {
        Post._meta.get_column_by_name(k): v for k, v in _post_fields(user_id, spec, now).items()
    }


def _post_fields(user_id: int, spec: PostSpec, now: datetime) -> dict[str, Any]:
    """The post's own columns, by name (plain keys: schedule_many builds thousands)."""
    publish_at = None if spec.draft and spec.publish_at is None else (spec.publish_at or now)
    fields: dict[str, Any] = {
        "user": user_id,
        "text": spec.text,
        "publish_at": publish_at.astimezone(UTC) if publish_at else None,
        "timezone": spec.timezone,
        "status": "draft" if spec.draft else "scheduled",
    }
    source = spec.source
    if source:
        fields.update(
            {
                "source": "content",
                "content_source": source.get("content_source"),
                "source_path": source.get("path", ""),
                "source_item_id": source.get("item_id"),
                "source_commit": source.get("commit", ""),
                "content_hash": source.get("content_hash", ""),
            }
        )
    return fields


async def _write_children(
    post: Post, spec: PostSpec, accounts: dict[int, Account], now: datetime
) -> None:
    due = None if spec.draft else (post.publish_at or now)
    for target in spec.targets:
        account = accounts[target.account_id]
        status = _target_status(spec, account)
        await PostTarget(
            {
                PostTarget.post: post.id,
                PostTarget.account: account.id,
                PostTarget.text: target.text,
                PostTarget.options: target.options,
                PostTarget.status: status,
                PostTarget.due_at: due,
            }
        ).save()
    for position, media_id in enumerate(spec.media_ids):
        await PostMedia(
            {PostMedia.post: post.id, PostMedia.media: media_id, PostMedia.position: position}
        ).save()


async def _lock_post(post_id: int) -> None:
    await Post.raw("SELECT id FROM posts WHERE id = {} FOR UPDATE", post_id)


async def _unstarted(user_id: int, post_id: int) -> Post:
    post = await owned_post(user_id, post_id)
    started = await PostTarget.count().where(
        (PostTarget.post == post_id) & PostTarget.status.is_in(list(STARTED))
    )
    if started:
        raise PostRefused(
            [
                rules.Problem(
                    "",
                    "post",
                    "Publishing has already started for this post; it can no longer be edited "
                    "or moved. Cancel what is left, or duplicate it.",
                    "error",
                )
            ]
        )
    return post
