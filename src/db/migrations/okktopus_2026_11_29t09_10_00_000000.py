"""Constraints Piccolo cannot declare: composite unique keys, partial indexes for the
worker's hot queries, and CHECKs on the state machines."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from src.db.tables import User

ID = "2026-11-29T09:10:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "constraints and indexes"

TARGET_STATUSES = (
    "draft", "scheduled", "publishing", "retrying", "published", "failed",
    "cancelled", "unconfirmed", "held",
)
POST_STATUSES = (
    "draft", "scheduled", "publishing", "published", "partial", "failed",
    "cancelled", "unconfirmed",
)


def _in(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


FORWARDS = [
    'ALTER TABLE accounts ADD CONSTRAINT accounts_user_platform_external_key '
    'UNIQUE ("user", platform, external_id)',
    "ALTER TABLE accounts ADD CONSTRAINT accounts_status_check "
    "CHECK (status IN ('active', 'needs_reconnect', 'disconnected'))",
    'ALTER TABLE media ADD CONSTRAINT media_user_sha256_key UNIQUE ("user", sha256)',
    'ALTER TABLE content_sources ADD CONSTRAINT content_sources_user_name_key UNIQUE ("user", name)',
    # Posts of a user in a date range (calendar, history).
    'CREATE INDEX posts_user_publish_at_idx ON posts ("user", publish_at)',
    # Identity of a file-defined post is (source, id), never its path.
    "CREATE UNIQUE INDEX posts_source_item_key ON posts (content_source, source_item_id) "
    "WHERE content_source IS NOT NULL",
    f"ALTER TABLE posts ADD CONSTRAINT posts_status_check CHECK (status IN ({_in(POST_STATUSES)}))",
    "ALTER TABLE post_targets ADD CONSTRAINT post_targets_post_account_key UNIQUE (post, account)",
    f"ALTER TABLE post_targets ADD CONSTRAINT post_targets_status_check "
    f"CHECK (status IN ({_in(TARGET_STATUSES)}))",
    # Due targets: the claim query scans only what is waiting, in due order.
    "CREATE INDEX post_targets_due_idx ON post_targets (due_at) "
    "WHERE status IN ('scheduled', 'retrying')",
    # Claims of dead workers, for the sweeper.
    "CREATE INDEX post_targets_publishing_idx ON post_targets (claimed_at) "
    "WHERE status = 'publishing'",
    "ALTER TABLE post_media ADD CONSTRAINT post_media_post_position_key UNIQUE (post, position)",
    "CREATE INDEX audit_events_user_created_idx ON audit_events (\"user\", created_at DESC)",
]

BACKWARDS = [
    "DROP INDEX IF EXISTS audit_events_user_created_idx",
    "ALTER TABLE post_media DROP CONSTRAINT IF EXISTS post_media_post_position_key",
    "DROP INDEX IF EXISTS post_targets_publishing_idx",
    "DROP INDEX IF EXISTS post_targets_due_idx",
    "ALTER TABLE post_targets DROP CONSTRAINT IF EXISTS post_targets_status_check",
    "ALTER TABLE post_targets DROP CONSTRAINT IF EXISTS post_targets_post_account_key",
    "ALTER TABLE posts DROP CONSTRAINT IF EXISTS posts_status_check",
    "DROP INDEX IF EXISTS posts_source_item_key",
    "DROP INDEX IF EXISTS posts_user_publish_at_idx",
    "ALTER TABLE content_sources DROP CONSTRAINT IF EXISTS content_sources_user_name_key",
    "ALTER TABLE media DROP CONSTRAINT IF EXISTS media_user_sha256_key",
    "ALTER TABLE accounts DROP CONSTRAINT IF EXISTS accounts_status_check",
    "ALTER TABLE accounts DROP CONSTRAINT IF EXISTS accounts_user_platform_external_key",
]


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="okktopus", description=DESCRIPTION)

    async def run():
        for statement in FORWARDS:
            await User.raw(statement)

    async def run_backwards():
        for statement in BACKWARDS:
            await User.raw(statement)

    manager.add_raw(run)
    manager.add_raw_backwards(run_backwards)
    return manager
