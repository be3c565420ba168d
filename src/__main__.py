"""The `okktopus` command: Litestar's CLI plus our own commands (run, worker, migrate,
sandbox). Settings come from litestar.toml and OKK_* variables; a `.env` file in the
working directory is loaded first (Litestar's own loader looks elsewhere)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from src.config import Settings

log = logging.getLogger("okktopus")


def _load_dotenv(path: Path = Path(".env")) -> None:
    if not path.is_file():
        return
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            os.environ.setdefault(key.strip(), value.strip().strip("'\""))


MIGRATION_LOCK = 0x6F6B6B6D  # advisory lock key ("okkm"): one migrating process at a time


async def _migrate() -> None:
    """Apply pending migrations. Every process migrates at start, so several starting
    together on a fresh database would race to create the same tables: a session-level
    advisory lock makes them take turns (the later ones find nothing left to do)."""
    import asyncpg
    from piccolo.apps.migrations.commands.forwards import run_forwards

    from src.db.engine import database_dsn

    lock = await asyncpg.connect(database_dsn())
    try:
        await lock.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
        result = await run_forwards(app_name="okktopus", migration_id="all", fake=False)
    finally:
        await lock.close()  # ends the session, which releases the lock
    if not result.success:
        raise click.ClickException(f"migrations failed: {result.message}")


def _startup_settings() -> Settings:
    """The settings, refusing those that cannot work before anything starts."""
    from src.config import get_settings
    from src.media import StoreSettingsError, get_store

    settings = get_settings()
    try:
        get_store(settings)
    except StoreSettingsError as error:
        raise click.ClickException(str(error)) from None
    return settings


@click.command("migrate")
def migrate() -> None:
    """Apply database migrations (starts the embedded database when none is configured)."""
    from src.db.engine import database_dsn

    database_dsn()
    asyncio.run(_migrate())
    click.echo("Database is up to date.")


@click.command("run")
@click.option("--host", default=None, help="Interface to bind (default from litestar.toml).")
@click.option("--port", default=None, type=int, help="Port (default from litestar.toml).")
@click.option("--no-worker", is_flag=True, help="Do not run a worker in this process.")
def run(host: str | None, port: int | None, no_worker: bool) -> None:
    """Run the web app (and, unless --no-worker, a worker in the same process)."""
    import uvicorn

    from src.app import create_app
    from src.db.engine import database_dsn

    settings = _startup_settings()
    host, port = host or settings.host, port or settings.port
    settings = dataclasses.replace(settings, host=host, port=port)  # public URL follows
    database_dsn()  # starts the embedded PostgreSQL when no database is configured
    asyncio.run(_migrate())
    app = create_app(settings, worker=not no_worker)
    mode = "sandbox platforms" if settings.sandbox_enabled else "real platforms"
    click.echo(f"OKKTOPUS on http://{host}:{port} ({mode}; worker: {not no_worker})")
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="info",
        proxy_headers=True,
        # Access logs would keep every visitor's IP and URLs that carry secrets (feed
        # tokens, signed media links): off unless the operator asks for them.
        access_log=settings.access_log,
        timeout_graceful_shutdown=5,  # a hung request must not hold a deploy hostage
    )


@click.command("worker")
def worker() -> None:
    """Run a worker process: publishing, token refresh, content sync, purges."""
    from src.db.engine import database_dsn
    from src.jobs import make_queue, make_worker

    settings = _startup_settings()
    database_dsn()
    asyncio.run(_migrate())

    async def main() -> None:
        from src.db.engine import close_pool, start_pool

        await start_pool(min_size=1, max_size=settings.db_pool_size)
        worker = make_worker(settings, make_queue(settings))
        try:
            await worker.queue.connect()
            await worker.start()
        finally:
            await close_pool()

    import uvloop  # the worker is all I/O: uvloop's faster event loop pays off

    click.echo("OKKTOPUS worker started.")
    uvloop.run(main())


@click.command("rotate-keys")
def rotate_keys() -> None:
    """Re-encrypt every stored token with the newest key of OKK_TOKEN_KEYS."""
    from src.accounts import reencrypt_all
    from src.config import get_settings
    from src.db.engine import database_dsn

    settings = get_settings()
    database_dsn()

    async def main() -> int:
        from src.db.engine import close_pool, start_pool

        await start_pool(min_size=1, max_size=2)
        try:
            return await reencrypt_all(settings)
        finally:
            await close_pool()

    click.echo(f"Re-encrypted {asyncio.run(main())} secrets with the newest key.")


@click.command("sandbox")
@click.option("--host", default="127.0.0.1")
@click.option("--port", default=8100, type=int)
def sandbox(host: str, port: int) -> None:
    """Run the sandbox platforms on their own port (for tests and benchmarks)."""
    import uvicorn

    from src.sandbox import SandboxConfig, create_sandbox_app

    app = create_sandbox_app(SandboxConfig(base_url=f"http://{host}:{port}"))
    uvicorn.run(app, host=host, port=port, log_level="warning")


def main() -> None:
    _load_dotenv()
    if sys.argv[1:2] == ["content"]:  # no app, no database: validate runs in a fresh clone
        from src.content.cli import content

        sys.exit(content.main(sys.argv[2:], prog_name="okktopus content"))
    os.environ.setdefault("LITESTAR_APP", "src.app:create_app")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # HTTP clients log full URLs at INFO; a URL may carry a code or a token.
    for name in ("httpx", "httpx2", "httpcore", "httpcore2"):
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("saq").setLevel(logging.WARNING)  # not a line per cron tick
    from litestar.cli.main import litestar_group

    from src.content.cli import content

    for command in (run, worker, migrate, rotate_keys, sandbox, content):
        litestar_group.add_command(command)
    litestar_group.name = "okktopus"
    sys.exit(litestar_group())


if __name__ == "__main__":
    main()
