"""`okktopus content validate`: the checks a sync makes that need no database and no
network (YAML, the format, time zones, account names and aliases, media paths and the
platform rules), on folders or single files, the way CI or a pre-commit hook runs them."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from src.content import media as content_media
from src.content.loader import SETTINGS_FILE, Problem
from src.content.sources import LocalSnapshot, SourceError, is_post_file
from src.content.sync import Plan, build_plan, static_problems


@dataclass
class Checked:
    plan: Plan
    root: Path
    problems: list[Problem]


def repository_root(path: Path) -> Path:
    """The git work tree holding `path` (media may come from anywhere inside it), or the
    folder itself when it is not in one."""
    start = path if path.is_dir() else path.parent
    for folder in (start, *start.parents):
        if (folder / ".git").exists():
            return folder
    return start


def _base_for_file(path: Path, root: Path) -> Path:
    for folder in (path.parent, *path.parent.parents):
        if (folder / SETTINGS_FILE).is_file():
            return folder
        if folder == root:
            break
    return path.parent


def _root_and_base(folder: Path) -> tuple[Path, str]:
    folder = folder.resolve()
    root = repository_root(folder)
    return root, folder.relative_to(root).as_posix()


async def check_folder(
    folder: Path, *, past_is_error: bool = False, only: set[str] | None = None
) -> Checked:
    root, base = _root_and_base(folder)
    snapshot = await asyncio.to_thread(LocalSnapshot, root, "" if base == "." else base)
    plan = await build_plan(
        snapshot, rows=None, book=None, now=datetime.now(UTC), past_is_error=past_is_error
    )
    facts = {}
    for file in plan.files:
        for item in file.items:
            for entry in item.media:
                if entry.path not in facts:
                    facts[entry.path] = await asyncio.to_thread(
                        content_media.facts, root / entry.path
                    )
    by_file = {file.path: file for file in plan.files}
    for problem in static_problems(plan, facts):
        by_file[problem.file].problems.append(problem)
    for file in plan.files:
        for item in file.items:
            for index, entry in enumerate(item.media):
                fact = facts.get(entry.path)
                if isinstance(fact, str) and item.item is not None:
                    many = len(item.item.media) > 1
                    place = (
                        (*item.item.place, "media", index) if many else (*item.item.place, "media")
                    )
                    line = file.parsed.line(place) if file.parsed else None
                    file.problems.append(Problem(file.path, line, fact, "error", item.item_id))
        if not file.ok:
            file.items = []  # a plan shows what would really happen: nothing, for this file
    problems = [_shown(p, root) for p in plan.all_problems()]
    if only is not None:
        shown = {_shown(Problem(name, None, ""), root).file for name in only}
        problems = [p for p in problems if p.file in shown or p.file.endswith(SETTINGS_FILE)]
    return Checked(plan, root, problems)


async def validate(paths: list[Path]) -> list[Problem]:
    """Every problem, its file shown relative to the working directory (print them as
    `file:line: message`); an empty list when everything is fine."""
    lines: list[Problem] = []
    folders: dict[Path, set[str] | None] = {}
    for path in paths:
        if not path.exists():
            lines.append(Problem(str(path), None, "no such file or folder"))
            continue
        path = path.resolve()
        if path.is_dir():
            folders[path] = None
            continue
        root = repository_root(path)
        base = _base_for_file(path, root)
        named = path.relative_to(root).as_posix()
        if not is_post_file(path.relative_to(base).as_posix()) and path.name != SETTINGS_FILE:
            continue  # not a post file (pre-commit may pass any YAML)
        if folders.get(base, set()) is not None:
            folders.setdefault(base, set()).add(named)
    for folder, only in folders.items():
        try:
            checked = await check_folder(folder, only=only)
        except SourceError as exc:
            lines.append(Problem(str(folder), None, str(exc)))
            continue
        for problem in sorted(checked.problems, key=lambda p: (p.file, p.line or 0)):
            lines.append(problem)
    return lines


def _shown(problem: Problem, root: Path) -> Problem:
    full = root / problem.file if problem.file else root
    try:
        shown = os.path.relpath(full)
    except ValueError:
        shown = str(full)
    return Problem(shown, problem.line, problem.message, problem.severity, problem.item)
