"""`okktopus content …`: validate (no database), plan, sync and export.

`validate` and an offline `plan` import nothing that needs a database, so they run in a
fresh clone, in CI and in pre-commit hooks; problems print as `file:line: message` and
the exit status is 1 when there is an error."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import click


def _print_problems(problems: list[Any]) -> int:
    errors = 0
    for problem in problems:
        stream = sys.stderr if problem.severity == "error" else sys.stdout
        click.echo(str(problem), file=stream)
        errors += problem.severity == "error"
    return errors


def _default_paths(paths: tuple[Path, ...]) -> list[Path]:
    if paths:
        return list(paths)
    from src.content.service import default_folder

    folder = Path("content")
    return [folder if folder.is_dir() else default_folder()]


def _database_reachable() -> bool:
    """A database to plan against: a configured URL that answers, or an embedded one
    already made (an offline plan never creates a database)."""
    from src.config import get_settings

    settings = get_settings()
    if not settings.database_url and not (settings.data_dir / "pg").is_dir():
        return False

    async def probe() -> bool:
        import asyncpg

        from src.db.engine import database_dsn

        try:
            connection = await asyncpg.connect(database_dsn(), timeout=5)
        except Exception:
            return False
        await connection.close()
        return True

    return asyncio.run(probe())


def _with_database(work: Callable[[], Awaitable[Any]]) -> Any:
    from src.db.engine import database_dsn

    database_dsn()  # starts the embedded PostgreSQL when none is configured

    async def main() -> Any:
        from piccolo.engine import engine_finder

        engine = engine_finder()
        await engine.start_connection_pool(min_size=1, max_size=4)
        try:
            return await work()
        finally:
            await engine.close_connection_pool()

    return asyncio.run(main())


async def _user(email: str | None):
    from src.db.tables import User

    if email:
        user = await User.objects().get(User.email == email)
        if user is None:
            raise click.ClickException(f"no user with the address {email}")
        return user
    owner = await User.objects().where(User.is_owner.eq(True)).first()
    if owner is not None:
        return owner
    users = await User.objects().limit(2)
    if len(users) == 1:
        return users[0]
    raise click.ClickException("say whose posts with --user EMAIL")


async def _sources(email: str | None, name: str | None):
    from src.content import service

    user = await _user(email)
    await service.ensure_default(user)
    sources = await service.list_sources(user.id)
    if name:
        sources = [s for s in sources if s.name == name]
        if not sources:
            raise click.ClickException(f"no content source named {name!r}")
    return user, sources


@click.group("content")
def content() -> None:
    """Posts as YAML files: validate, plan, sync, export (see docs/content.md)."""


@content.command("validate")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
def validate_command(paths: tuple[Path, ...]) -> None:
    """Check post files or folders (default: ./content) without a database. Prints
    `file:line: message` for each problem; exits 1 when there is an error."""
    from src.content.validate import validate

    problems = asyncio.run(validate(_default_paths(paths)))
    errors = _print_problems(problems)
    if errors:
        click.echo(f"{errors} error{'s' * (errors != 1)}.", file=sys.stderr)
        sys.exit(1)
    click.echo("All post files are valid.")


@content.command("plan")
@click.option("--source", "source_name", default=None, help="Only this source (by name).")
@click.option("--user", "email", default=None, help="Whose sources (default: the owner).")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
def plan_command(source_name: str | None, email: str | None, paths: tuple[Path, ...]) -> None:
    """What a sync would create, update and cancel. With PATHs, or without a database,
    plans those folders (default: ./content) against an empty instance."""
    from src.content.sync import describe

    if paths or (not source_name and not _database_reachable()):
        from src.content.validate import check_folder

        if not paths:
            click.echo("No database reachable: planning ./content against an empty instance.")
        errors = 0
        for path in _default_paths(paths):
            checked = asyncio.run(check_folder(path, past_is_error=True))
            errors += _print_problems(checked.problems)
            for line in describe(checked.plan):
                click.echo(line)
        sys.exit(1 if errors else 0)

    async def work() -> int:
        from src.config import get_settings
        from src.content.sources import SourceError
        from src.content.sync import plan_source

        _, sources = await _sources(email, source_name)
        errors = 0
        for source in sources:
            click.echo(f"== {source.name}")
            try:
                plan = await plan_source(source.id, get_settings())
            except SourceError as exc:
                click.echo(f"{source.name}: {exc}", file=sys.stderr)
                errors += 1
                continue
            errors += _print_problems(plan.all_problems())
            for line in describe(plan):
                click.echo(line)
        return errors

    sys.exit(1 if _with_database(work) else 0)


@content.command("sync")
@click.option("--source", "source_name", default=None, help="Only this source (by name).")
@click.option("--user", "email", default=None, help="Whose sources (default: the owner).")
def sync_command(source_name: str | None, email: str | None) -> None:
    """Sync sources now (all of the user's, or one)."""

    async def work() -> int:
        from src.config import get_settings
        from src.content.sync import sync_source

        _, sources = await _sources(email, source_name)
        failed = 0
        for source in sources:
            result = await sync_source(source.id, get_settings(), trigger="cli")
            failed += _print_problems(result.problems) > 0 or result.status == "failed"
            counts = ", ".join(f"{v} {k}" for k, v in result.counts.items())
            click.echo(f"{source.name}: {result.status} at {result.commit[:12]} ({counts})")
        return failed

    sys.exit(1 if _with_database(work) else 0)


@content.command("export")
@click.argument("folder", type=click.Path(path_type=Path, file_okay=False))
@click.option("--user", "email", default=None, help="Whose posts (default: the owner).")
def export_command(folder: Path, email: str | None) -> None:
    """Write the user's drafts and scheduled posts as post files in FOLDER (media copied
    beside them), ready to commit to a content source."""

    async def work() -> int:
        from src.config import get_settings
        from src.content.export import export

        user = await _user(email)
        return await export(user.id, folder, get_settings())

    count = _with_database(work)
    click.echo(f"Wrote {count} post{'s' * (count != 1)} to {folder}.")
