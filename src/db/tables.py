"""The data model. Composite unique keys and partial indexes that Piccolo cannot declare
live in the hand-written migration `constraints` (see migrations/)."""

from __future__ import annotations

from datetime import UTC, datetime

from piccolo.columns import (
    JSONB,
    BigInt,
    Boolean,
    ForeignKey,
    Integer,
    Serial,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.columns.base import OnDelete
from piccolo.table import Table


def _now() -> datetime:
    return datetime.now(UTC)


class Stamped(Table):
    """Created/updated timestamps on every table."""

    created_at = Timestamptz()
    updated_at = Timestamptz(auto_update=_now)


class User(Stamped, tablename="users"):
    id = Serial(primary_key=True)
    google_sub = Varchar(length=255, unique=True)
    email = Varchar(length=320, index=True)
    name = Varchar(length=200, default="")
    avatar_url = Text(default="")
    timezone = Varchar(length=64, default="UTC")
    is_owner = Boolean(default=False)
    notify_email = Boolean(default=True)
    age_confirmed_at = Timestamptz(null=True, default=None)
    policy_accepted_at = Timestamptz(null=True, default=None)
    deletion_requested_at = Timestamptz(null=True, default=None)
    # sha256 of the secret calendar feed token (the token is shown once); NULL: no feed.
    feed_token_hash = Varchar(length=64, null=True, default=None, unique=True, secret=True)


class Session(Stamped, tablename="sessions"):
    """Server-side sessions: shared across processes and revocable per user."""

    id = Varchar(length=128, primary_key=True)
    user = ForeignKey(User, null=True, on_delete=OnDelete.cascade, index=True)
    data = Text()
    expires_at = Timestamptz(index=True)


class Account(Stamped, tablename="accounts"):
    """A connected social account. Accounts are removed only with their user; a
    disconnect keeps the row (published history points at it) without tokens."""

    id = Serial(primary_key=True)
    user = ForeignKey(User, on_delete=OnDelete.cascade, index=True)
    platform = Varchar(length=20)  # facebook | instagram | tiktok | x
    external_id = Varchar(length=100)
    handle = Varchar(length=200, default="")
    display_name = Varchar(length=200, default="")
    avatar_url = Text(default="")
    access_token = Text(null=True, default=None, secret=True)  # encrypted
    refresh_token = Text(null=True, default=None, secret=True)  # encrypted
    access_expires_at = Timestamptz(null=True, default=None)
    refresh_expires_at = Timestamptz(null=True, default=None)
    scopes = Text(default="")  # space-separated, as granted
    status = Varchar(length=20, default="active")  # active | needs_reconnect | disconnected
    status_detail = Text(default="")
    last_refreshed_at = Timestamptz(null=True, default=None)
    facebook_page_id = Varchar(length=100, null=True, default=None)
    instagram_business_id = Varchar(length=100, null=True, default=None)
    meta = JSONB(default={})


class Media(Stamped, tablename="media"):
    id = Serial(primary_key=True)
    user = ForeignKey(User, on_delete=OnDelete.cascade, index=True)
    storage_key = Varchar(length=300)
    thumbnail_key = Varchar(length=300, null=True, default=None)
    original_name = Varchar(length=255, default="")
    content_type = Varchar(length=100)
    bytes = Integer(default=0)
    sha256 = Varchar(length=64)
    width = Integer(null=True, default=None)
    height = Integer(null=True, default=None)
    duration_ms = Integer(null=True, default=None)
    probe = JSONB(default={})


class ContentSource(Stamped, tablename="content_sources"):
    id = Serial(primary_key=True)
    user = ForeignKey(User, on_delete=OnDelete.cascade, index=True)
    name = Varchar(length=100)
    kind = Varchar(length=10, default="local")  # local | git
    url = Text(default="")
    branch = Varchar(length=200, default="main")
    subpath = Varchar(length=300, default="")
    access_token = Text(null=True, default=None, secret=True)  # encrypted
    webhook_secret = Text(null=True, default=None, secret=True)  # encrypted
    poll_interval_s = Integer(default=300)
    enabled = Boolean(default=True)
    last_commit = Varchar(length=64, default="")
    last_synced_at = Timestamptz(null=True, default=None)


class Post(Stamped, tablename="posts"):
    id = Serial(primary_key=True)
    user = ForeignKey(User, on_delete=OnDelete.cascade)
    text = Text(default="")
    publish_at = Timestamptz(null=True, default=None)  # UTC
    timezone = Varchar(length=64, default="UTC")  # the zone it was written in
    status = Varchar(length=20, default="draft")
    source = Varchar(length=10, default="composer")  # composer | content
    content_source = ForeignKey(ContentSource, null=True, on_delete=OnDelete.set_null)
    source_path = Text(default="")
    source_item_id = Varchar(length=200, null=True, default=None)
    source_commit = Varchar(length=64, default="")
    content_hash = Varchar(length=64, default="")


class PostTarget(Stamped, tablename="post_targets"):
    """One post on one account: the unit the worker claims and publishes."""

    id = Serial(primary_key=True)
    post = ForeignKey(Post, on_delete=OnDelete.cascade, index=True)
    account = ForeignKey(Account, on_delete=OnDelete.cascade, index=True)
    text = Text(null=True, default=None)  # None: inherit the post's text
    options = JSONB(default={})
    status = Varchar(length=20, default="draft")
    due_at = Timestamptz(null=True, default=None)  # next time the worker should act
    attempts = Integer(default=0)
    claimed_by = Varchar(length=100, null=True, default=None)
    claimed_at = Timestamptz(null=True, default=None)
    progress = JSONB(default={})  # platform ids of intermediate objects
    last_error = Text(default="")
    error_code = Varchar(length=100, default="")
    platform_post_id = Varchar(length=200, null=True, default=None)
    published_url = Text(null=True, default=None)
    published_at = Timestamptz(null=True, default=None)


class PostMedia(Stamped, tablename="post_media"):
    id = Serial(primary_key=True)
    post = ForeignKey(Post, on_delete=OnDelete.cascade, index=True)
    media = ForeignKey(Media, on_delete=OnDelete.restrict, index=True)
    position = Integer(default=0)


class SyncRun(Stamped, tablename="sync_runs"):
    id = Serial(primary_key=True)
    source = ForeignKey(ContentSource, on_delete=OnDelete.cascade, index=True)
    commit = Varchar(length=64, default="")
    status = Varchar(length=20, default="running")  # running | ok | partial | failed
    trigger = Varchar(length=20, default="manual")
    created = Integer(default=0)
    updated = Integer(default=0)
    cancelled = Integer(default=0)
    unchanged = Integer(default=0)
    errors = JSONB(default=[])
    finished_at = Timestamptz(null=True, default=None)


class AuditEvent(Stamped, tablename="audit_events"):
    id = Serial(primary_key=True)
    user = ForeignKey(User, null=True, on_delete=OnDelete.cascade, index=True)
    action = Varchar(length=60)
    ip = Varchar(length=64, default="")
    user_agent = Text(default="")
    detail = JSONB(default={})


class Feedback(Stamped, tablename="feedback"):
    id = Serial(primary_key=True)
    user = ForeignKey(User, on_delete=OnDelete.cascade, index=True)
    message = Text()


class DataExport(Stamped, tablename="data_exports"):
    """A large data export built by a job: its progress for the Settings page and, once
    done, the zip in the media store (u{user}/exports/{token}.zip), so any web process on
    any machine can serve it."""

    id = Serial(primary_key=True)
    token = Varchar(length=64, unique=True, secret=True)
    user = ForeignKey(User, on_delete=OnDelete.cascade, index=True)
    status = Varchar(length=16, default="queued")  # queued | running | done | failed
    files_done = Integer(default=0)
    files_total = Integer(default=0)
    bytes_done = BigInt(default=0)
    bytes_total = BigInt(default=0)
    size = BigInt(null=True, default=None)
    expires_at = Timestamptz(null=True, default=None)


class WorkerHeartbeat(Stamped, tablename="worker_heartbeats"):
    """One row per worker process; /healthz reads the newest."""

    id = Varchar(length=100, primary_key=True)
    beat_at = Timestamptz()
    info = JSONB(default={})


TABLES: list[type[Table]] = [
    User,
    Session,
    Account,
    Media,
    ContentSource,
    Post,
    PostTarget,
    PostMedia,
    SyncRun,
    AuditEvent,
    Feedback,
    DataExport,
    WorkerHeartbeat,
]
