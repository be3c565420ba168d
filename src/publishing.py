"""The publishing engine: claim due targets in batches, publish them concurrently under
per-platform and per-account limits, record outcomes, and recover dead claims.

Exactly once: a target is claimed by one conditional UPDATE (only a claim that wins may
call the platform); progress is checkpointed under that claim before every next step;
a claim whose worker died is released by the sweeper, and the publisher checks the
platform before repeating a step that may already have happened."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import secrets
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from src import accounts, posts
from src.config import Settings
from src.db.tables import Account, Post, PostTarget
from src.publishers.base import (
    DiscoveredAccount,
    PlatformError,
    PublishRequest,
    StepResult,
    Unconfirmed,
)
from src.publishers.registry import get_publisher

log = logging.getLogger(__name__)

BATCH = 100
MAX_ATTEMPTS = 8  # transient failures; rate limits defer without counting
# Share of settings.publish_concurrency per platform: TikTok allows fewer calls at once.
PLATFORM_SHARE = {"x": 1.0, "facebook": 1.0, "instagram": 1.0, "tiktok": 0.5}
ACCOUNT_CONCURRENCY = 2
BACKOFF_BASE_S = 2.0
BACKOFF_CAP_S = 15 * 60

CLAIM = """
UPDATE post_targets AS t
SET status = 'publishing', claimed_by = {}, claimed_at = now(), updated_at = now(),
    attempts = t.attempts + CASE WHEN t.status = 'processing' THEN 0 ELSE 1 END
WHERE t.id IN (
    SELECT id FROM post_targets
    WHERE status IN ('scheduled', 'retrying', 'processing') AND due_at <= now()
    ORDER BY due_at
    FOR UPDATE SKIP LOCKED
    LIMIT {}
)
RETURNING t.id, t.post, t.account, t.text, t.options, t.progress, t.attempts, t.due_at
"""

SWEEP = """
UPDATE post_targets
SET status = 'retrying', claimed_by = NULL, due_at = now(), updated_at = now(),
    last_error = 'The worker publishing this stopped; resuming where it left off.'
WHERE status = 'publishing' AND claimed_at < now() - make_interval(secs => {})
RETURNING id
"""


class LostClaim(Exception):
    """Our claim on the target was taken over (the sweeper thought we died): stop."""


@dataclass
class Claimed:
    id: int
    post: int
    account: int
    text: str | None
    options: dict[str, Any]
    progress: dict[str, Any]
    attempts: int
    due_at: datetime | None


def _json(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        value = json.loads(value or "{}")
    return value if isinstance(value, dict) else {}


async def claim(worker: str, limit: int = BATCH) -> list[Claimed]:
    rows = await PostTarget.raw(CLAIM, worker, limit)
    return [
        Claimed(
            id=r["id"],
            post=r["post"],
            account=r["account"],
            text=r["text"],
            options=_json(r["options"]),
            progress=_json(r["progress"]),
            attempts=r["attempts"],
            due_at=r["due_at"],
        )
        for r in rows
    ]


async def sweep(lease_s: float) -> int:
    """Release claims whose worker stopped checkpointing; their progress says where to
    resume and whether the platform must be asked first."""
    rows = await PostTarget.raw(SWEEP, float(lease_s))
    return len(rows)


# -- one batch ---------------------------------------------------------------------------
def platform_concurrency(settings: Settings, platform: str) -> int:
    """Requests in flight to one platform from one worker process."""
    return max(1, int(settings.publish_concurrency * PLATFORM_SHARE.get(platform, 0.25)))


class Limits:
    """Per-platform and per-account concurrency, shared by every batch of a worker."""

    def __init__(self, settings: Settings) -> None:
        self.platforms = {
            p: asyncio.Semaphore(platform_concurrency(settings, p)) for p in PLATFORM_SHARE
        }
        self.accounts: dict[int, asyncio.Semaphore] = defaultdict(
            lambda: asyncio.Semaphore(ACCOUNT_CONCURRENCY)
        )


_limits: Limits | None = None


def limits(settings: Settings) -> Limits:
    global _limits
    if _limits is None:
        _limits = Limits(settings)
    return _limits


async def publish_batch(
    settings: Settings, worker: str, limit: int = BATCH, pace: Pace | None = None
) -> int:
    """Claim up to `limit` due targets and publish them. Returns how many were claimed."""
    claim_id = f"{worker}/{secrets.token_hex(4)}"  # fences this batch's writes
    claimed = await claim(claim_id, limit)
    if not claimed:
        return 0
    if pace is not None and len(claimed) == limit:
        await pace.wake()  # a full batch: more may be due, for the loops that wait
    context = await _load_context(claimed)
    await asyncio.gather(*(_run(settings, claim_id, item, context) for item in claimed))
    await posts.refresh_statuses(list({item.post for item in claimed}))
    return len(claimed)


@dataclass
class Context:
    posts: dict[int, Post]
    accounts: dict[int, Account]
    media: dict[int, list[Any]]


async def _load_context(claimed: list[Claimed]) -> Context:
    """Posts, accounts and media of a whole batch in a few queries (not per target)."""
    post_ids = list({c.post for c in claimed})
    account_ids = list({c.account for c in claimed})
    post_rows = await Post.objects().where(Post.id.is_in(post_ids))
    account_rows = await Account.objects().where(Account.id.is_in(account_ids))
    files = await posts.media_of_posts(post_ids)
    return Context({p.id: p for p in post_rows}, {a.id: a for a in account_rows}, files)


async def _run(settings: Settings, worker: str, item: Claimed, context: Context) -> None:
    account = context.accounts[item.account]
    lim = limits(settings)
    async with (
        lim.platforms.setdefault(
            account.platform, asyncio.Semaphore(platform_concurrency(settings, account.platform))
        ),
        lim.accounts[account.id],
    ):
        try:
            outcome = await _attempt(settings, worker, item, context)
        except LostClaim:
            log.warning("lost the claim on target %s", item.id)
            return
        except Exception as exc:  # a bug must not kill the batch: retry later, visibly
            log.exception("target %s failed unexpectedly", item.id)
            outcome = _retry_outcome(item, PlatformError("transient", f"Internal error: {exc}"))
        await _record(worker, item, outcome)


async def _attempt(settings: Settings, worker: str, item: Claimed, context: Context) -> dict:
    account = context.accounts[item.account]
    if account.status == "disconnected":
        return {
            "status": "held",
            "error_code": accounts.HELD,
            "last_error": "Account disconnected: reconnect it to publish.",
        }
    if account.status != "active":
        return _failed(
            "needs_reconnect",
            f"Reconnect {account.display_name or account.handle}: "
            "its access to the platform has ended.",
        )
    request = _request(settings, item, context.posts[item.post], account, context.media[item.post])
    publisher = get_publisher(account.platform, settings)
    progress = dict(item.progress)

    async def checkpoint(state: dict[str, Any]) -> None:
        rows = await PostTarget.raw(
            "UPDATE post_targets SET progress = {}, claimed_at = now() "
            "WHERE id = {} AND claimed_by = {} RETURNING id",
            json.dumps(state),
            item.id,
            worker,
        )
        if not rows:
            raise LostClaim(item.id)

    for refreshed in (False, True):  # an expired token refreshes once, then retries
        try:
            result = await _steps(publisher, request, progress, checkpoint)
            return _result_outcome(result)
        except Unconfirmed as exc:
            return {"status": "unconfirmed", "error_code": "unconfirmed", "last_error": str(exc)}
        except PlatformError as exc:
            if exc.kind == "auth" and not refreshed and publisher.refreshable:
                try:
                    account = await accounts.refresh(account.id, settings, force=True)
                except accounts.ReconnectNeeded as dead:
                    return _failed("needs_reconnect", f"Reconnect this account: {dead}")
                request.tokens = accounts.tokens_of(account, settings)
                continue
            if exc.kind == "auth":
                return _failed("needs_reconnect", f"Reconnect this account: {exc.message}")
            if exc.kind == "permanent":
                return _failed(exc.code or "refused", exc.message)
            return _retry_outcome(item, exc)
    raise AssertionError("unreachable")


async def _steps(publisher, request: PublishRequest, progress: dict, checkpoint) -> StepResult:
    if progress.get("attempting"):
        found = await publisher.recover(request, progress)
        if found is not None:
            return found
        progress.pop("attempting", None)
    return await publisher.publish(request, progress, checkpoint)


def _request(
    settings: Settings, item: Claimed, post: Post, account: Account, files
) -> PublishRequest:
    found = DiscoveredAccount(
        platform=account.platform,
        external_id=account.external_id,
        handle=account.handle,
        display_name=account.display_name,
        avatar_url=account.avatar_url,
        tokens=accounts.tokens_of(account, settings),
        facebook_page_id=account.facebook_page_id,
        instagram_business_id=account.instagram_business_id,
        meta=posts.account_meta(account),
    )
    return PublishRequest(
        target_id=item.id,
        text=post.text if item.text is None else item.text,
        media=_media_items(files, settings),
        options=item.options,
        account=found,
        tokens=found.tokens,
    )


def _media_items(files: list[Any], settings: Settings) -> list[Any]:
    if not files:
        return []
    from src import media  # the media domain; imported when a post has files

    return [media.publish_item(m, settings) for m in files]


# -- outcomes ----------------------------------------------------------------------------
def _result_outcome(result: StepResult) -> dict[str, Any]:
    if result.done:
        return {
            "status": "published",
            "platform_post_id": result.platform_post_id,
            "published_url": result.url,
            "published_at": datetime.now(UTC),
            "progress": result.progress,
            "last_error": "",
            "error_code": "",
        }
    return {
        "status": "processing",
        "due_at": datetime.now(UTC) + timedelta(seconds=max(result.wait_s, 0.2)),
        "progress": result.progress,
    }


def _failed(code: str, message: str) -> dict[str, Any]:
    return {"status": "failed", "error_code": code[:100], "last_error": message}


def backoff(attempts: int) -> float:
    """Exponential backoff with full jitter, capped."""
    return random.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** max(attempts - 1, 0)))


def _retry_outcome(item: Claimed, exc: PlatformError) -> dict[str, Any]:
    if exc.kind == "rate_limited":
        wait = exc.retry_after if exc.retry_after is not None else 60.0
        # Deferring is not failing: a rate limit gives the attempt back.
        return {
            "status": "retrying",
            "due_at": datetime.now(UTC) + timedelta(seconds=wait + random.uniform(0, 1)),
            "last_error": f"Waiting for the platform's rate limit: {exc.message}",
            "error_code": exc.code or "rate_limited",
            "attempts_back": True,
        }
    if item.attempts >= MAX_ATTEMPTS:
        return _failed(
            exc.code or "gave_up", f"Gave up after {item.attempts} attempts: {exc.message}"
        )
    wait = max(backoff(item.attempts), exc.retry_after or 0)
    return {
        "status": "retrying",
        "due_at": datetime.now(UTC) + timedelta(seconds=wait),
        "last_error": exc.message,
        "error_code": exc.code or "transient",
    }


async def _record(worker: str, item: Claimed, outcome: dict[str, Any]) -> None:
    """Store the outcome, only while our claim still holds."""
    if outcome.get("last_error"):  # platform messages only: never a token or a body
        log.info(
            "target %s (attempt %s) %s: %s",
            item.id,
            item.attempts,
            outcome["status"],
            outcome["last_error"],
        )
    columns = ["status = {}", "claimed_by = NULL", "updated_at = now()"]
    values: list[Any] = [outcome["status"]]
    for key in (
        "due_at",
        "platform_post_id",
        "published_url",
        "published_at",
        "last_error",
        "error_code",
    ):
        if key in outcome:
            columns.append(f"{key} = {{}}")
            values.append(outcome[key])
    if "progress" in outcome:
        columns.append("progress = {}")
        values.append(json.dumps(outcome["progress"]))
    if outcome.get("attempts_back"):
        columns.append("attempts = GREATEST(attempts - 1, 0)")
    if outcome["status"] in posts.FINAL:
        columns.append("due_at = NULL")
    # Column names come from the fixed list above; values are bound parameters.
    sql = f"UPDATE post_targets SET {', '.join(columns)} WHERE id = {{}} AND claimed_by = {{}}"  # noqa: S608
    await PostTarget.raw(sql, *values, item.id, worker)


# -- the loop every worker runs ----------------------------------------------------------
async def idle_wait(max_wait: float) -> float:
    """How long to sleep when nothing is due: until the next due target, at most
    `max_wait` (so a post scheduled meanwhile is still picked up promptly)."""
    rows = await PostTarget.raw(
        "SELECT extract(epoch FROM min(due_at) - now()) AS wait FROM post_targets "
        "WHERE status IN ('scheduled', 'retrying', 'processing')"
    )
    wait = rows[0]["wait"] if rows else None
    if wait is None:
        return max_wait
    return min(max(float(wait), 0.01), max_wait)


class Pace:
    """Shared by one worker's claim loops. When nothing is due only the lead loop asks
    PostgreSQL when to look again (the others would ask the same question); a claim that
    fills a whole batch wakes the others at once, since more may be due. They also look
    by themselves every FOLLOWER_POLL_S, in case a wake-up came while they were busy."""

    FOLLOWER_POLL_S = 5.0

    def __init__(self) -> None:
        self._more = asyncio.Condition()

    async def wake(self) -> None:
        async with self._more:
            self._more.notify_all()

    async def wait(self) -> None:
        async with self._more:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._more.wait(), self.FOLLOWER_POLL_S)


async def dispatch_loop(
    settings: Settings, worker: str, pace: Pace | None = None, lead: bool = True
) -> None:
    """Publish due targets as long as the worker runs. Several loops per worker share
    the claims through SKIP LOCKED, as do loops of other workers."""
    while True:
        try:
            claimed = await publish_batch(settings, worker, settings.publish_batch, pace)
        except Exception:
            log.exception("publishing batch failed; trying again shortly")
            await asyncio.sleep(1)
            continue
        if claimed:
            continue
        if lead or pace is None:
            await asyncio.sleep(await idle_wait(settings.publish_poll_s))
        else:
            await pace.wait()
