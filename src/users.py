"""People: who may sign up, sign-in bookkeeping, first-run consent, sessions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from piccolo.engine import engine_finder

from src.config import Settings
from src.db.session_store import PostgresSessionStore
from src.db.tables import User
from src.signin import SignInRefused


def email_allowed(email: str, allowed: tuple[str, ...]) -> bool:
    email = email.strip().lower()
    for rule in (r.strip().lower() for r in allowed):
        if rule.startswith("@") and email.endswith(rule):
            return True
        if rule == email:
            return True
    return False


async def sign_in(claims: dict[str, Any], settings: Settings) -> tuple[User, bool]:
    """Find or create the user for verified OIDC claims. Returns (user, created).
    Sign-up is decided under a lock so two first visitors cannot both become owner."""
    engine = engine_finder()
    async with engine.transaction():
        await User.raw("SELECT pg_advisory_xact_lock(hashtext('okktopus:signup'))")
        user = await User.objects().get(User.google_sub == claims["sub"])
        profile = {
            User.email: claims.get("email", ""),
            User.name: claims.get("name") or claims.get("email", "").split("@")[0],
            User.avatar_url: claims.get("picture") or "",
        }
        if user is not None:
            await User.update(profile).where(User.id == user.id)
            return await User.objects().get(User.id == user.id), False
        first = await User.count() == 0
        email = claims.get("email", "")
        if not first and not email_allowed(email, settings.allowed_emails):
            raise SignInRefused(
                f"{email} is not allowed to sign up on this instance. "
                "Ask its operator to add your address to OKK_ALLOWED_EMAILS."
            )
        if first and settings.allowed_emails and not email_allowed(email, settings.allowed_emails):
            raise SignInRefused(f"{email} is not on this instance's list of allowed addresses.")
        user = User({User.google_sub: claims["sub"], User.is_owner: first, **profile})
        await user.save()
        return user, True


def needs_welcome(user: User) -> bool:
    return user.age_confirmed_at is None or user.policy_accepted_at is None


async def confirm_welcome(user: User, timezone: str) -> None:
    now = datetime.now(UTC)
    await User.update(
        {User.age_confirmed_at: now, User.policy_accepted_at: now, User.timezone: timezone}
    ).where(User.id == user.id)


async def end_sessions(user_id: int) -> int:
    return await PostgresSessionStore.end_user_sessions(user_id)
