"""SAQ wiring: the queue, the job functions and cron jobs (thin wrappers around the
domain), the worker heartbeat, and running a worker in-process or on its own."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import secrets
import socket
from datetime import UTC, datetime
from typing import Any

from saq import CronJob, Queue, Worker

from src import accounts, media, privacy, publishing
from src.config import Settings
from src.db.engine import database_dsn, normalize_dsn
from src.db.session_store import PostgresSessionStore
from src.db.tables import WorkerHeartbeat

log = logging.getLogger(__name__)

HEARTBEAT_EVERY_S = 5.0
SYNC_TIMEOUT_S = 1800
WORKER_STOP_TIMEOUT_S = 10.0


def queue_url(settings: Settings) -> str:
    return normalize_dsn(settings.queue_url) if settings.queue_url else database_dsn()


def make_queue(settings: Settings) -> Queue:
    url = queue_url(settings)
    if url.startswith("redis"):
        return Queue.from_url(url, name="okktopus")
    return Queue.from_url(url, name="okktopus", min_size=1, max_size=4)


# -- jobs -------------------------------------------------------------------------------
async def ping(ctx: dict[str, Any], *, value: str = "pong") -> str:
    """A no-op job used by health checks and tests to prove the worker runs jobs."""
    return value


async def purge_expired_sessions(ctx: dict[str, Any]) -> None:
    await PostgresSessionStore.purge_expired()


async def sweep_claims(ctx: dict[str, Any]) -> int:
    """Release claims of workers that died mid-publish (they resume, checking first)."""
    return await publishing.sweep(ctx["settings"].claim_lease_s)


async def refresh_tokens(ctx: dict[str, Any]) -> dict[str, int]:
    """Refresh access tokens before they expire (each at a quarter of its lifetime)."""
    return await accounts.refresh_due(ctx["settings"])


async def purge_orphan_media(ctx: dict[str, Any]) -> int:
    """Delete uploads attached to no post after the grace period."""
    return await media.purge_orphans(ctx["settings"])


async def sync_content(ctx: dict[str, Any], *, source_id: int, trigger: str = "manual") -> dict:
    """Sync one content source (Sync now, webhooks)."""
    from src.content.sync import sync_source

    result = await sync_source(source_id, ctx["settings"], trigger=trigger)
    return {"status": result.status, "commit": result.commit, **result.counts}


async def enqueue_sync(queue: Queue, source_id: int, trigger: str, key: str = "") -> None:
    """Queue a sync of one source (Sync now, webhooks, the folder watcher)."""
    await queue.enqueue(
        "sync_content",
        source_id=source_id,
        trigger=trigger,
        key=key or f"content-sync:{source_id}:{secrets.token_hex(6)}",
        timeout=SYNC_TIMEOUT_S,
        retries=3,  # idempotent; SAQ's Redis sweep can abort a job being picked up
    )


async def poll_content(ctx: dict[str, Any]) -> int:
    """Sync the content sources whose poll interval has passed."""
    from src.content.sync import poll

    return await poll(ctx["settings"])


async def purge_deletions(ctx: dict[str, Any]) -> dict[str, int]:
    """Finish account deletions (retry revocations; nothing left after 30 days)."""
    return await privacy.purge(ctx["settings"])


async def count_cron_tick(ctx: dict[str, Any]) -> None:
    """Test-only (registered solely when OKK_TEST_CRON_COUNTER names a file): appends the
    tick this run was scheduled for, so a test can count runs per tick across workers."""
    line = f"{ctx['job'].scheduled} {os.getpid()}\n"
    await asyncio.to_thread(_append, os.environ["OKK_TEST_CRON_COUNTER"], line)


def _append(path: str, line: str) -> None:
    with open(path, "a") as counter:
        counter.write(line)


async def export_data(ctx: dict[str, Any], *, user_id: int, token: str) -> dict:
    """Build a large data export into the media store, with its progress."""
    from src import exports

    return await exports.build(user_id, token, ctx["settings"])


FUNCTIONS = [
    ping,
    purge_expired_sessions,
    refresh_tokens,
    sweep_claims,
    purge_orphan_media,
    sync_content,
    poll_content,
    purge_deletions,
    export_data,
]


def cron_jobs(settings: Settings) -> list[CronJob]:
    jobs = [
        CronJob(purge_expired_sessions, cron="17 * * * *"),
        CronJob(refresh_tokens, cron=settings.refresh_cron, timeout=300),
        CronJob(sweep_claims, cron="* * * * * */5", timeout=60),
        CronJob(purge_orphan_media, cron="41 * * * *", timeout=600),
        CronJob(poll_content, cron="* * * * *", timeout=1800),
        CronJob(purge_deletions, cron="23 * * * *", timeout=600),
    ]
    if os.environ.get("OKK_TEST_CRON_COUNTER"):  # tests only: a cron job every second
        jobs.append(CronJob(count_cron_tick, cron="* * * * * *"))
    return jobs


# -- heartbeat --------------------------------------------------------------------------
def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


async def beat(worker: str, info: dict[str, Any] | None = None) -> None:
    await WorkerHeartbeat.raw(
        "INSERT INTO worker_heartbeats (id, beat_at, info, created_at, updated_at) "
        "VALUES ({}, now(), {}, now(), now()) ON CONFLICT (id) DO UPDATE SET "
        "beat_at = now(), info = EXCLUDED.info, updated_at = now()",
        worker,
        _json(info or {}),
    )


def _json(value: dict[str, Any]) -> str:
    import json

    return json.dumps(value)


async def _heartbeat_loop(worker: str) -> None:
    while True:
        try:
            await beat(worker, {"pid": os.getpid()})
        except Exception:  # the database may be restarting; the next beat will tell
            log.warning("worker heartbeat failed", exc_info=True)
        await asyncio.sleep(HEARTBEAT_EVERY_S)


async def last_heartbeat_age() -> float | None:
    rows = await WorkerHeartbeat.raw("SELECT max(beat_at) AS last FROM worker_heartbeats")
    last = rows[0]["last"] if rows else None
    return None if last is None else (datetime.now(UTC) - last).total_seconds()


# -- running a worker -------------------------------------------------------------------
def make_worker(settings: Settings, queue: Queue) -> Worker:
    async def startup(ctx: dict[str, Any]) -> None:
        ctx["settings"] = settings
        me = worker_id()
        pace = publishing.Pace()
        ctx["background"] = [asyncio.create_task(_heartbeat_loop(me))] + [
            asyncio.create_task(publishing.dispatch_loop(settings, me, pace, lead=index == 0))
            for index in range(settings.publish_loops)
        ]
        ctx["background"] += _watchers(settings, queue)

    async def shutdown(ctx: dict[str, Any]) -> None:
        for task in ctx.get("background", []):
            task.cancel()
        for task in ctx.get("background", []):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    return Worker(
        queue,
        functions=FUNCTIONS,
        cron_jobs=cron_jobs(settings),
        concurrency=settings.worker_concurrency,
        startup=[startup],
        shutdown=[shutdown],
        shutdown_grace_period_s=settings.worker_shutdown_grace_s,
    )


def _watchers(settings: Settings, queue: Queue) -> list[asyncio.Task]:
    """The local content folder watcher, in development (see src/content/watch.py)."""
    from src.content import watch

    if not watch.enabled(settings):
        return []
    watcher = watch.FolderWatcher(functools.partial(enqueue_sync, queue), settings.data_dir)
    return [asyncio.create_task(watcher.run())]


class BackgroundWorker:
    """A SAQ worker running as a task in this process (okktopus run without --no-worker)."""

    def __init__(self, worker: Worker) -> None:
        # The web server owns the process's signals; SAQ must not take them over, or
        # Ctrl-C would stop only the worker and leave the web server running.
        worker.SIGNALS = []
        self.worker = worker
        self.task: asyncio.Task | None = None

    async def start(self) -> None:
        await self.worker.queue.connect()
        self.task = asyncio.create_task(self.worker.start())

    async def stop(self) -> None:
        # SAQ's stop() was seen to hang (tobymao/saq#197): bound it.
        try:
            await asyncio.wait_for(self.worker.stop(), WORKER_STOP_TIMEOUT_S)
        except (TimeoutError, Exception):
            log.warning("worker did not stop cleanly", exc_info=True)
        if self.task is not None and not self.task.done():
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
