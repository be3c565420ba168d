"""The accounts domain: connect, store tokens (encrypted), refresh, disconnect, status.

Every entry point (connections page, cron job, publishing) goes through these
functions. Refresh and disconnect of one account are serialised by a PostgreSQL
advisory lock, because a rotating refresh token used twice kills the connection."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from piccolo.engine import engine_finder

from src import audit
from src.config import Settings
from src.db.tables import Account, ContentSource, PostTarget
from src.publishers.base import DiscoveredAccount, PlatformError, TokenSet
from src.publishers.registry import get_publisher
from src.security import TokenCipher

log = logging.getLogger(__name__)

EXPIRES_SOON = timedelta(days=7)  # warn ahead of an expiry that needs the person
REFRESH_MIN_MARGIN = timedelta(seconds=10)
REFRESH_FRACTION = 0.25  # refresh when a quarter of the token's lifetime is left
HELD = "account_disconnected"
REFRESHABLE = ("tiktok", "x")  # Meta tokens cannot be refreshed, only reconnected


@cache
def _cipher(keys: tuple[str, ...]) -> TokenCipher:
    return TokenCipher(keys)


def cipher(settings: Settings) -> TokenCipher:
    return _cipher(settings.token_keys)


def tokens_of(account: Account, settings: Settings) -> TokenSet:
    c = cipher(settings)
    return TokenSet(
        access_token=c.decrypt(account.access_token) or "",
        refresh_token=c.decrypt(account.refresh_token),
        access_expires_at=account.access_expires_at,
        refresh_expires_at=account.refresh_expires_at,
        scopes=account.scopes.split(),
    )


def _token_columns(tokens: TokenSet, settings: Settings) -> dict[Any, Any]:
    """Columns to write for new tokens. A missing refresh token never erases the one we
    have (Postiz PR #1884: reconnect loops)."""
    c = cipher(settings)
    columns: dict[Any, Any] = {
        Account.access_token: c.encrypt(tokens.access_token),
        Account.access_expires_at: tokens.access_expires_at,
        Account.scopes: " ".join(tokens.scopes),
        Account.last_refreshed_at: datetime.now(UTC),
    }
    if tokens.refresh_token:
        columns[Account.refresh_token] = c.encrypt(tokens.refresh_token)
        columns[Account.refresh_expires_at] = tokens.refresh_expires_at
    return columns


async def _lock(account_id: int) -> None:
    await Account.raw("SELECT pg_advisory_xact_lock(hashtext('okk:account'), {})", account_id)


# -- connect -----------------------------------------------------------------------------
async def connect(user_id: int, found: DiscoveredAccount, settings: Settings) -> Account:
    """Create or update (never duplicate) the account; resume targets held while it
    was disconnected."""
    profile = {
        Account.handle: found.handle,
        Account.display_name: found.display_name,
        Account.avatar_url: found.avatar_url,
        Account.facebook_page_id: found.facebook_page_id,
        Account.instagram_business_id: found.instagram_business_id,
        Account.meta: found.meta,
        Account.status: "active",
        Account.status_detail: "",
        **_token_columns(found.tokens, settings),
    }
    async with engine_finder().transaction():
        existing = await Account.objects().get(
            (Account.user == user_id)
            & (Account.platform == found.platform)
            & (Account.external_id == found.external_id)
        )
        if existing is None:
            account = Account(
                {
                    Account.user: user_id,
                    Account.platform: found.platform,
                    Account.external_id: found.external_id,
                    **profile,
                }
            )
            await account.save()
        else:
            await _lock(existing.id)
            await Account.update(profile).where(Account.id == existing.id)
            account = await Account.objects().get(Account.id == existing.id)
        await PostTarget.update(
            {PostTarget.status: "scheduled", PostTarget.error_code: "", PostTarget.last_error: ""}
        ).where((PostTarget.account == account.id) & (PostTarget.status == "held"))
    return account


# -- refresh -----------------------------------------------------------------------------
def needs_refresh(account: Account, now: datetime | None = None) -> bool:
    """True when less than a quarter of the token's lifetime (as the platform stated
    it) is left."""
    if account.access_expires_at is None or account.status != "active":
        return False
    now = now or datetime.now(UTC)
    issued = account.last_refreshed_at or account.updated_at or now
    lifetime = max(account.access_expires_at - issued, timedelta(0))
    margin = max(lifetime * REFRESH_FRACTION, REFRESH_MIN_MARGIN)
    return account.access_expires_at - now <= margin


class ReconnectNeeded(Exception):
    """The account's tokens are dead; only the person can fix it by reconnecting."""


async def refresh(account_id: int, settings: Settings, *, force: bool = False) -> Account:
    """Refresh one account's tokens under its lock. A second caller waiting on the lock
    finds fresh tokens and does nothing (so a rotating refresh token is used once).
    A dead refresh token marks the account needs_reconnect and raises ReconnectNeeded."""
    dead: PlatformError | None = None
    async with engine_finder().transaction():
        await _lock(account_id)
        account = await Account.objects().get(Account.id == account_id)
        if account is None or account.status != "active":
            raise ReconnectNeeded("This account is not connected.")
        publisher = get_publisher(account.platform, settings)
        if not publisher.refreshable or not (force or needs_refresh(account)):
            return account
        try:
            tokens = await publisher.refresh(tokens_of(account, settings))
        except PlatformError as exc:
            if exc.kind != "auth":
                raise
            dead = exc
            await _mark_needs_reconnect(account, exc.message)
        else:
            await Account.update(_token_columns(tokens, settings)).where(Account.id == account_id)
    if dead is not None:
        raise ReconnectNeeded(dead.message) from dead
    return await Account.objects().get(Account.id == account_id)


async def _mark_needs_reconnect(account: Account, reason: str) -> None:
    await Account.update(
        {Account.status: "needs_reconnect", Account.status_detail: reason[:500]}
    ).where(Account.id == account.id)
    await audit.record("account_needs_reconnect", account.user, platform=account.platform)


async def refresh_due(settings: Settings, concurrency: int = 8) -> dict[str, int]:
    """The cron job's body: refresh every account whose token is getting old."""
    # The same rule as needs_refresh(), in SQL, so the cron tick reads only what is due
    # rather than every connected account.
    rows = await Account.raw(
        "SELECT id FROM accounts WHERE status = 'active' AND platform = ANY({}) "
        "AND access_expires_at IS NOT NULL AND access_expires_at - now() <= GREATEST("
        "(access_expires_at - COALESCE(last_refreshed_at, updated_at, now())) * {}, "
        "make_interval(secs => {}))",
        list(REFRESHABLE),
        REFRESH_FRACTION,
        REFRESH_MIN_MARGIN.total_seconds(),
    )
    due = await Account.objects().where(Account.id.is_in([r["id"] for r in rows] or [0]))
    gate = asyncio.Semaphore(concurrency)
    outcome = {"refreshed": 0, "reconnect": 0, "failed": 0}

    async def one(account: Account) -> None:
        async with gate:
            try:
                await refresh(account.id, settings)
                outcome["refreshed"] += 1
            except ReconnectNeeded:
                outcome["reconnect"] += 1
            except PlatformError:
                outcome["failed"] += 1  # transient: the next tick tries again
                log.warning("refresh of account %s failed", account.id)

    await asyncio.gather(*(one(a) for a in due))
    return outcome


# -- disconnect --------------------------------------------------------------------------
@dataclass
class Disconnected:
    account: Account
    revoked: bool
    message: str


async def disconnect(user_id: int, account_id: int, settings: Settings) -> Disconnected:
    """Revoke at the platform, delete our tokens, hold pending targets. A failed revoke
    still deletes our tokens and says so."""
    async with engine_finder().transaction():
        await _lock(account_id)
        account = await owned(user_id, account_id)
        title = account.display_name or account.handle
        revoked, message = True, f"{title} is disconnected and its access was revoked."
        if account.access_token and await _shares_grant(account):
            message = (
                f"{title} is disconnected and its tokens are deleted. Access stays granted at "
                "Meta while your other Facebook or Instagram accounts here use it."
            )
        elif account.access_token:
            try:
                publisher = get_publisher(account.platform, settings)
                await publisher.revoke(tokens_of(account, settings), _as_found(account, settings))
            except PlatformError as exc:
                revoked = False
                message = (
                    f"{title} is disconnected and its tokens are deleted here, but the platform "
                    f"did not confirm the revocation ({exc.message}). You can also remove "
                    "OKKTOPUS in the platform's app settings."
                )
        await Account.update(
            {
                Account.access_token: None,
                Account.refresh_token: None,
                Account.access_expires_at: None,
                Account.refresh_expires_at: None,
                Account.status: "disconnected",
                Account.status_detail: "" if revoked else "revocation not confirmed",
            }
        ).where(Account.id == account_id)
        await PostTarget.update(
            {
                PostTarget.status: "held",
                PostTarget.error_code: HELD,
                PostTarget.last_error: "Account disconnected: reconnect it to publish.",
            }
        ).where(
            (PostTarget.account == account_id) & PostTarget.status.is_in(["scheduled", "retrying"])
        )
    await audit.record("account_disconnected", user_id, platform=account.platform, revoked=revoked)
    return Disconnected(await owned(user_id, account_id), revoked, message)


async def _shares_grant(account: Account) -> bool:
    """Meta grants access per person, not per Page: revoking for one Page would cut off
    every other Page and Instagram account connected through the same login."""
    if account.platform not in ("facebook", "instagram"):
        return False
    user_id = _meta(account).get("user_id")
    if not user_id:
        return False
    others = await Account.objects().where(
        (Account.user == account.user)
        & Account.platform.is_in(["facebook", "instagram"])
        & (Account.status == "active")
        & (Account.id != account.id)
    )
    return any(_meta(other).get("user_id") == user_id for other in others)


def _meta(account: Account) -> dict[str, Any]:
    meta = account.meta
    if isinstance(meta, str):
        meta = json.loads(meta or "{}")
    return meta if isinstance(meta, dict) else {}


def _as_found(account: Account, settings: Settings) -> DiscoveredAccount:
    return DiscoveredAccount(
        platform=account.platform,
        external_id=account.external_id,
        handle=account.handle,
        display_name=account.display_name,
        avatar_url=account.avatar_url,
        tokens=tokens_of(account, settings),
        facebook_page_id=account.facebook_page_id,
        instagram_business_id=account.instagram_business_id,
        meta=_meta(account),
    )


# -- key rotation ------------------------------------------------------------------------
async def reencrypt_all(settings: Settings) -> int:
    """Re-encrypt every stored secret with the newest key (OKK_TOKEN_KEYS lists it first),
    so the old keys can then be removed."""
    c = cipher(settings)
    count = 0
    async with engine_finder().transaction():
        for table, columns in (
            (Account, (Account.access_token, Account.refresh_token)),
            (ContentSource, (ContentSource.access_token, ContentSource.webhook_secret)),
        ):
            rows = await table.select(table.id, *columns).lock_rows("UPDATE")
            for row in rows:
                values = {col: c.rotate(row[col._meta.name]) for col in columns}
                await table.update(values).where(table.id == row["id"])
                count += sum(1 for col in columns if row[col._meta.name])
    return count


# -- queries -----------------------------------------------------------------------------
class NotFound(Exception):
    pass


async def owned(user_id: int, account_id: int) -> Account:
    account = await Account.objects().get((Account.id == account_id) & (Account.user == user_id))
    if account is None:
        raise NotFound(account_id)
    return account


async def list_accounts(user_id: int) -> list[Account]:
    return (
        await Account.objects()
        .where(Account.user == user_id)
        .order_by(Account.platform)
        .order_by(Account.display_name)
    )


def status_of(account: Account, now: datetime | None = None) -> str:
    """active | expires_soon | needs_reconnect | disconnected — what the page shows."""
    if account.status != "active":
        return account.status
    now = now or datetime.now(UTC)
    expiry = account.refresh_expires_at if account.refresh_token else account.access_expires_at
    if expiry is not None and expiry - now < EXPIRES_SOON:
        return "expires_soon"
    return "active"
