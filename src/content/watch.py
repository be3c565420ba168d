"""Watching local content folders (development): a change under a local-folder source
enqueues a sync of that source, the very job "Sync now" enqueues. Syncs of one source
never overlap, whoever asked: sync_source holds the source's advisory lock.

It runs beside the worker (the in-process worker of `okktopus run`, or `okktopus
worker`), the side that owns background jobs, so `make run` watches exactly once."""

from __future__ import annotations

import asyncio
import fcntl
import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import IO

from watchfiles import awatch

from src.config import Settings
from src.content import service

log = logging.getLogger(__name__)
logging.getLogger("watchfiles").setLevel(logging.WARNING)  # not a line per change: ours say more

QUIET_MS = 400  # a burst of changes (a git checkout) ends after this long without one
MAX_BATCH_MS = 3000  # a longer burst still syncs at least this often
RESCAN_MS = 2000  # how often the list of local sources and their folders is re-read
# Editors' temporary and backup files (dot-files, like .foo.swp, are ignored anyway).
TEMP_FILE = re.compile(r"~$|\.sw.$|\.tmp$|\.kate-swp$|___jb_\w+___$|^#.*#$|^4913$")

Enqueue = Callable[[int, str], Awaitable[object]]


def enabled(settings: Settings) -> bool:
    """As configured; unset, on in development (debug or the sandbox)."""
    if settings.content_watch is not None:
        return settings.content_watch
    return settings.debug or settings.sandbox_enabled


def ignored(path: Path, root: Path) -> bool:
    """Dot-folders and dot-files (.git, editor swap and lock files) and temporary files."""
    parts = path.relative_to(root).parts
    return any(part.startswith(".") for part in parts) or bool(
        parts and TEMP_FILE.search(parts[-1])
    )


def sources_of(path: str, folders: dict[int, Path]) -> set[int]:
    """The sources a changed path belongs to (a folder inside another's: both)."""
    changed = Path(path)
    return {
        source_id
        for source_id, root in folders.items()
        if changed.is_relative_to(root) and not ignored(changed, root)
    }


class FolderWatcher:
    """Watches every enabled local-folder source until cancelled."""

    def __init__(self, enqueue: Enqueue, data_dir: Path) -> None:
        self.enqueue = enqueue
        self.missing: set[Path] = set()  # folders already reported missing
        self.lock_path = Path(data_dir) / "content-watch.lock"
        self.lock: IO[bytes] | None = None  # held while this process is the watcher
        self.waiting = False  # "another process watches" was logged

    async def run(self) -> None:
        try:
            while True:
                try:
                    await self.watch(await self.folders())
                except Exception:  # the database restarting, a folder vanishing as we start
                    log.warning("content folder watcher failed; retrying", exc_info=True)
                    await asyncio.sleep(RESCAN_MS / 1000)
        finally:  # cancelled: a standing-by process may take over at once
            if self.lock is not None:
                self.lock.close()

    def claimed(self) -> bool:
        """One watcher per data folder (a second worker on the machine would enqueue every
        sync twice): a lock file the operating system releases when its holder dies, so
        another process takes over within RESCAN_MS."""
        if self.lock is None:
            self.lock_path.parent.mkdir(parents=True, exist_ok=True)
            lock = self.lock_path.open("ab")
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.close()
                if not self.waiting:
                    log.info("content folders are watched by another process")
                self.waiting = True
                return False
            self.lock = lock
        return True

    async def folders(self) -> dict[int, Path]:
        """The sources' folders that exist (none unless this process is the watcher); a
        missing one is logged once."""
        found: dict[int, Path] = {}
        if not self.claimed():
            return found
        for source_id, root in (await service.local_folders()).items():
            if root.is_dir():
                found[source_id] = root.resolve()
                self.missing.discard(root)
            elif root not in self.missing:
                self.missing.add(root)
                log.warning("content source %s: folder %s not found, not watched", source_id, root)
        return found

    async def watch(self, folders: dict[int, Path]) -> None:
        """Enqueue a sync per changed source after each quiet period; return when the
        list of folders changes (re-read on every batch and every RESCAN_MS)."""
        log.info("watching content folders: %s", _listed(folders.items()))
        async for changes in awatch(
            *folders.values(),
            watch_filter=lambda _, path: bool(sources_of(path, folders)),
            step=QUIET_MS,
            debounce=MAX_BATCH_MS,
            rust_timeout=RESCAN_MS,
            yield_on_timeout=True,
        ):
            for source_id in set().union(*(sources_of(path, folders) for _, path in changes)):
                await self.enqueue(source_id, "watch")
            if await self.folders() != folders:
                return


def _listed(folders: Iterable[tuple[int, Path]]) -> str:
    return ", ".join(f"source {source_id} {root}" for source_id, root in folders) or "none"
