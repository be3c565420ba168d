"""A target waiting on the platform (video processing, container status) is
`processing`: released by its worker, due again when the platform said to look."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from src.db.tables import User

ID = "2026-11-29T10:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "processing state for targets"

STATUSES = (
    "'draft', 'scheduled', 'publishing', 'processing', 'retrying', 'published', 'failed', "
    "'cancelled', 'unconfirmed', 'held'"
)
OLD = (
    "'draft', 'scheduled', 'publishing', 'retrying', 'published', 'failed', "
    "'cancelled', 'unconfirmed', 'held'"
)

FORWARDS = [
    "ALTER TABLE post_targets DROP CONSTRAINT post_targets_status_check",
    f"ALTER TABLE post_targets ADD CONSTRAINT post_targets_status_check CHECK (status IN ({STATUSES}))",
    "DROP INDEX post_targets_due_idx",
    "CREATE INDEX post_targets_due_idx ON post_targets (due_at) "
    "WHERE status IN ('scheduled', 'retrying', 'processing')",
]
BACKWARDS = [
    "DROP INDEX post_targets_due_idx",
    "CREATE INDEX post_targets_due_idx ON post_targets (due_at) "
    "WHERE status IN ('scheduled', 'retrying')",
    "ALTER TABLE post_targets DROP CONSTRAINT post_targets_status_check",
    f"ALTER TABLE post_targets ADD CONSTRAINT post_targets_status_check CHECK (status IN ({OLD}))",
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
