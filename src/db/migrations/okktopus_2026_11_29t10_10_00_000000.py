"""Calendar: the secret feed URL of a user, stored as the sha256 of its token (the token
itself is shown once and never stored; NULL means no feed), and the indexes that make the
live calendar's version stamp (newest change of a person's posts and targets) a handful
of index lookups whatever the number of posts."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import Varchar
from piccolo.columns.indexes import IndexMethod

from src.db.tables import User

ID = "2026-11-29T10:10:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "calendar feed token hash, indexes for the live version stamp"

FORWARDS = [
    'CREATE INDEX posts_user_updated_idx ON posts ("user", updated_at)',
    "CREATE INDEX post_targets_account_updated_idx ON post_targets (account, updated_at)",
]
BACKWARDS = [
    "DROP INDEX IF EXISTS post_targets_account_updated_idx",
    "DROP INDEX IF EXISTS posts_user_updated_idx",
]


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="okktopus", description=DESCRIPTION)
    manager.add_column(
        table_class_name="User",
        tablename="users",
        column_name="feed_token_hash",
        db_column_name="feed_token_hash",
        column_class_name="Varchar",
        column_class=Varchar,
        params={
            "length": 64,
            "default": None,
            "null": True,
            "primary_key": False,
            "unique": True,
            "index": False,
            "index_method": IndexMethod.btree,
            "choices": None,
            "db_column_name": None,
            "secret": True,
        },
        schema=None,
    )

    async def run():
        for statement in FORWARDS:
            await User.raw(statement)

    async def run_backwards():
        for statement in BACKWARDS:
            await User.raw(statement)

    manager.add_raw(run)
    manager.add_raw_backwards(run_backwards)
    return manager
