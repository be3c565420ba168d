"""The private iCalendar feed: scheduled and published posts at a secret per-person URL,
so people see their schedule in their own calendar app.

The token is shown once when it is made; only its sha256 is stored (users.feed_token_hash),
so a database leak does not leak working feed URLs. Making a new one replaces the old,
revoking clears it: either way the old URL answers 404 at once."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from icalendar import Calendar, Event

from src.db.tables import Post, User
from src.publishers.registry import TITLES

FEED_STATUSES = ("scheduled", "publishing", "published", "partial", "unconfirmed")
HISTORY = timedelta(days=90)  # how far back published posts stay in the feed
MAX_EVENTS = 5000
DURATION = timedelta(minutes=15)  # a post is a moment; calendar apps want a length
SUMMARY_CHARS = 60
TOKEN_BYTES = 32


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def issue(user_id: int) -> str:
    """A new feed token for the person (the previous one stops working)."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    await User.update({User.feed_token_hash: token_hash(token)}).where(User.id == user_id)
    return token


async def revoke(user_id: int) -> None:
    await User.update({User.feed_token_hash: None}).where(User.id == user_id)


async def owner_of(token: str) -> User | None:
    if not token or len(token) > 100:
        return None
    return await User.objects().get(User.feed_token_hash == token_hash(token))


FEED_SQL = """
SELECT p.id, p.text, p.status, p.publish_at, p.updated_at, p.created_at,
       ARRAY(SELECT DISTINCT a.platform FROM post_targets t JOIN accounts a ON a.id = t.account
             WHERE t.post = p.id AND t.status <> 'cancelled') AS platforms
FROM posts p
WHERE p."user" = {} AND p.status = ANY({}) AND p.publish_at >= {}
ORDER BY p.publish_at
LIMIT {}
"""


def summary(platforms: list[str], text: str) -> str:
    names = ", ".join(TITLES.get(p, p) for p in sorted(platforms)) or "Post"
    first_line = " ".join(text.split())
    if len(first_line) > SUMMARY_CHARS:
        first_line = first_line[: SUMMARY_CHARS - 1].rstrip() + "…"
    return f"{names}: {first_line}" if first_line else names


async def ics(user: User, base_url: str) -> bytes:
    since = datetime.now(UTC) - HISTORY
    rows = await Post.raw(FEED_SQL, user.id, list(FEED_STATUSES), since, MAX_EVENTS)
    host = urlsplit(base_url).hostname or "okktopus"
    calendar = Calendar.new(
        prodid="-//OKKTOPUS//Calendar feed//EN",
        name=f"OKKTOPUS · {user.name or user.email}",
        description="Scheduled and published posts",
        uid=f"feed-{user.id}@{host}",
        refresh_interval=timedelta(minutes=15),
    )
    calendar.add("x-published-ttl", "PT15M")  # the older name of REFRESH-INTERVAL
    for row in rows:
        start = row["publish_at"].astimezone(UTC)
        status = row["status"]
        event = Event.new(
            uid=f"post-{row['id']}@{host}",
            stamp=(row["updated_at"] or row["created_at"]).astimezone(UTC),
            start=start,
            end=start + DURATION,
            summary=summary(row["platforms"], row["text"]),
            description=f"{row['text']}\n\n{status.capitalize()} · {base_url}/posts/{row['id']}",
            url=f"{base_url}/posts/{row['id']}",
            status="CONFIRMED" if status != "scheduled" else "TENTATIVE",
            categories=[status],
            transparency="TRANSPARENT",
        )
        calendar.add_component(event)
    return calendar.to_ical()
