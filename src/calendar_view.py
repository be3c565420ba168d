"""What the calendar shows: a month, a week or an agenda of one person's posts, in that
person's time zone, with filters, and a cheap version stamp for live updates.

Read-only: moving, cancelling and duplicating go through the scheduling domain
(`src.posts`). A render costs a fixed number of queries whatever the number of posts:
one for the posts of the visible range (their targets' accounts and statuses aggregated
in the same statement, and crowded days capped in SQL with a window function), one for
the person's accounts, one for the version stamp."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from src.db.tables import Account, Post
from src.posts import POST_STATUSES, STARTED
from src.publishers.registry import TITLES

VIEWS = ("month", "week", "agenda")
STATUSES = POST_STATUSES
STATUS_WORDS = {
    "draft": "Draft",
    "scheduled": "Scheduled",
    "publishing": "Publishing",
    "published": "Published",
    "partial": "Partly published",
    "failed": "Failed",
    "unconfirmed": "Unconfirmed",
    "cancelled": "Cancelled",
}
MONTH_CAP = 3  # chips shown in a month cell; the rest behind "+N more"
WEEK_CAP = 3  # chips shown in an hour slot of the week view
AGENDA_LIMIT = 400  # rows of the agenda (four weeks); beyond that, the week view
DEFAULT_HOUR = 9  # an empty day clicked in the month view proposes this local time
MOVABLE = ("draft", "scheduled")


def zone_of(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


# -- what was asked -----------------------------------------------------------------------
@dataclass(frozen=True)
class Query:
    """The calendar's state, all of it in the URL: view, anchor date, filters."""

    view: str = "month"
    day: date | None = None  # None: today
    account: int | None = None
    platform: str = ""
    status: str = ""

    @classmethod
    def parse(cls, params: Any) -> Query:
        view = params.get("view") or "month"
        try:
            day = date.fromisoformat(params.get("date") or "")
        except ValueError:
            day = None
        account = params.get("account") or ""
        platform = params.get("platform") or ""
        status = params.get("status") or ""
        return cls(
            view=view if view in VIEWS else "month",
            day=day,
            account=int(account) if account.isdigit() else None,
            platform=platform if platform in TITLES else "",
            status=status if status in STATUSES else "",
        )

    def params(self, **changes: Any) -> dict[str, str]:
        values = {
            "view": self.view,
            "date": self.day.isoformat() if self.day else "",
            "account": str(self.account or ""),
            "platform": self.platform,
            "status": self.status,
        }
        values.update({k: "" if v is None else str(v) for k, v in changes.items()})
        return {k: v for k, v in values.items() if v}

    def url(self, **changes: Any) -> str:
        return "/calendar?" + urlencode(self.params(**changes))

    @property
    def filtered(self) -> bool:
        return bool(self.account or self.platform or self.status)


# -- the visible range --------------------------------------------------------------------
@dataclass
class Period:
    view: str
    anchor: date
    first: date  # first day shown
    last: date  # last day shown
    title: str
    prev: date
    next: date
    zone: ZoneInfo

    @property
    def start(self) -> datetime:
        return datetime.combine(self.first, time.min, self.zone).astimezone(UTC)

    @property
    def end(self) -> datetime:
        return datetime.combine(self.last + timedelta(days=1), time.min, self.zone).astimezone(UTC)

    @property
    def days(self) -> list[date]:
        return [self.first + timedelta(days=i) for i in range((self.last - self.first).days + 1)]


def _month_start(day: date, shift: int = 0) -> date:
    index = day.year * 12 + day.month - 1 + shift
    return date(index // 12, index % 12 + 1, 1)


AGENDA_DAYS = 28  # the agenda lists four weeks from its date (today by default)


DASH = "\u2013"  # an en dash, between the days of a range


def _span_title(first: date, last: date) -> str:
    if first.month == last.month and first.year == last.year:
        return f"{first.day}{DASH}{last.day} {last:%B %Y}"
    if first.year == last.year:
        return f"{first.day} {first:%b} {DASH} {last.day} {last:%b %Y}"
    return f"{first.day} {first:%b %Y} {DASH} {last.day} {last:%b %Y}"


def period_of(query: Query, today: date, zone: ZoneInfo) -> Period:
    anchor = query.day or today
    if query.view == "week":
        first = anchor - timedelta(days=anchor.weekday())
        last = first + timedelta(days=6)
        step = timedelta(days=7)
        return Period(
            "week", anchor, first, last, _span_title(first, last), first - step, first + step, zone
        )
    if query.view == "agenda":
        last = anchor + timedelta(days=AGENDA_DAYS - 1)
        step = timedelta(days=AGENDA_DAYS)
        return Period(
            "agenda",
            anchor,
            anchor,
            last,
            _span_title(anchor, last),
            anchor - step,
            anchor + step,
            zone,
        )
    month = _month_start(anchor)
    first = month - timedelta(days=month.weekday())  # six whole weeks, Monday first: the
    last = first + timedelta(days=41)  # grid never changes height between months
    return Period(
        "month",
        anchor,
        first,
        last,
        f"{month:%B %Y}",
        _month_start(anchor, -1),
        _month_start(anchor, 1),
        zone,
    )


# -- loading ------------------------------------------------------------------------------
@dataclass
class Chip:
    id: int
    text: str
    status: str
    at: datetime  # local
    day: date
    platforms: list[str]
    handles: list[str]
    held: bool
    movable: bool
    more_text: bool = False

    @property
    def time(self) -> str:
        return f"{self.at:%H:%M}"

    @property
    def status_word(self) -> str:
        return STATUS_WORDS.get(self.status, self.status)

    @property
    def label(self) -> str:
        """What a screen reader hears for the chip (colour is never the only signal)."""
        where = " and ".join(TITLES.get(p, p) for p in dict.fromkeys(self.platforms))
        held = ", held: account disconnected" if self.held else ""
        return f"{self.time}, {self.status_word}{held}, {where or 'no account'}: {self.text}"


@dataclass
class Loaded:
    chips: list[Chip]
    totals: dict[date, int] = field(default_factory=dict)  # posts per day (or per slot)
    slot_totals: dict[tuple[date, int], int] = field(default_factory=dict)
    truncated: bool = False
    accounts: dict[int, dict[str, Any]] = field(default_factory=dict)
    version: str = ""


LOCAL = "(p.publish_at AT TIME ZONE {})"
LOCAL_DAY = f"{LOCAL}::date"


def _posts_sql(query: Query, partition: str, cap: int | None, limit: int | None) -> str:
    where = ['p."user" = {}', "p.publish_at >= {}", "p.publish_at < {}"]
    if query.status:
        where.append("p.status = {}")
    if query.account or query.platform:
        inner = ["t.post = p.id"]
        if query.account:
            inner.append("t.account = {}")
        if query.platform:
            inner.append("a.platform = {}")
        exists = "EXISTS (SELECT 1 FROM post_targets t JOIN accounts a ON a.id = t.account WHERE "
        where.append(exists + " AND ".join(inner) + ")")
    capped = f"WHERE r.rn <= {int(cap)}" if cap else ""
    limited = f"LIMIT {int(limit)}" if limit else ""
    # Rank the range on narrow rows first; only the chips shown fetch text and targets.
    # Only fixed fragments are formatted in; every value is a bound parameter.
    return f"""
WITH ranked AS (
    SELECT p.id, p.publish_at, p.publish_at AT TIME ZONE {{}} AS local_at,
           count(*) OVER w AS total, row_number() OVER (w ORDER BY p.publish_at, p.id) AS rn
    FROM posts p
    WHERE {" AND ".join(where)}
    WINDOW w AS (PARTITION BY {partition})
)
SELECT r.id, left(p.text, 140) AS text, length(p.text) > 140 AS more_text, p.status,
       r.local_at, r.total,
       ARRAY(SELECT t.account FROM post_targets t WHERE t.post = r.id ORDER BY t.id)
           AS accounts,
       ARRAY(SELECT t.status FROM post_targets t WHERE t.post = r.id ORDER BY t.id)
           AS target_statuses
FROM ranked r JOIN posts p ON p.id = r.id
{capped}
ORDER BY r.publish_at, r.id
{limited}
"""  # noqa: S608


async def load(user_id: int, query: Query, period: Period) -> Loaded:
    """The posts of the visible range, with their accounts, and the version stamp: three
    statements, run concurrently (each on its own pooled connection)."""
    rows, accounts, stamp = await asyncio.gather(
        _rows(user_id, query, period), accounts_of(user_id), version(user_id, period)
    )
    loaded = _shape(rows, period, accounts)
    loaded.accounts, loaded.version = accounts, stamp
    return loaded


async def _rows(user_id: int, query: Query, period: Period) -> list[dict[str, Any]]:
    if period.view == "month":
        partition, cap, limit = LOCAL_DAY, MONTH_CAP, None
    elif period.view == "week":
        partition, cap, limit = f"{LOCAL_DAY}, extract(hour FROM {LOCAL})", WEEK_CAP, None
    else:
        partition, cap, limit = LOCAL_DAY, None, AGENDA_LIMIT + 1
    zone = period.zone.key
    args: list[Any] = [zone, user_id, period.start, period.end]
    if query.status:
        args.append(query.status)
    if query.account:
        args.append(query.account)
    if query.platform:
        args.append(query.platform)
    args += [zone] * partition.count("{}")  # the window's partition comes last
    return await Post.raw(_posts_sql(query, partition, cap, limit), *args)


def _shape(rows: list[dict[str, Any]], period: Period, accounts: dict[int, Any]) -> Loaded:
    loaded = Loaded(chips=[])
    if period.view == "agenda" and len(rows) > AGENDA_LIMIT:
        rows, loaded.truncated = rows[:AGENDA_LIMIT], True
    for row in rows:
        local: datetime = row["local_at"].replace(tzinfo=period.zone)
        day = local.date()
        if period.view == "week":
            loaded.slot_totals[(day, local.hour)] = row["total"]
        else:
            loaded.totals[day] = row["total"]
        mine = [accounts.get(a) for a in row["accounts"]]
        statuses = row["target_statuses"]
        loaded.chips.append(
            Chip(
                id=row["id"],
                text=row["text"],
                more_text=row["more_text"],
                status=row["status"],
                at=local,
                day=day,
                platforms=[a["platform"] for a in mine if a],
                handles=[a["display_name"] or a["handle"] for a in mine if a],
                held="held" in statuses,
                movable=row["status"] in MOVABLE and not set(statuses) & set(STARTED),
            )
        )
    return loaded


async def accounts_of(user_id: int) -> dict[int, dict[str, Any]]:
    rows = (
        await Account.select(
            Account.id, Account.platform, Account.handle, Account.display_name, Account.status
        )
        .where(Account.user == user_id)
        .order_by(Account.platform)
        .order_by(Account.display_name)
    )
    return {r["id"]: r for r in rows}


VERSION_SQL = """
SELECT (SELECT count(*) FROM posts
        WHERE "user" = {} AND publish_at >= {} AND publish_at < {}) AS posts,
       (SELECT max(updated_at) FROM posts WHERE "user" = {}) AS posts_at,
       (SELECT max(t.at) FROM accounts a CROSS JOIN LATERAL (
            SELECT max(updated_at) AS at FROM post_targets WHERE account = a.id) t
        WHERE a."user" = {}) AS targets_at
"""


async def version(user_id: int, period: Period) -> str:
    """A stamp that changes whenever a post or target of the person changes, or a post
    enters or leaves the range: the count of the range, and the newest `updated_at` of
    the person's posts and targets (index lookups on (user, updated_at) and
    (account, updated_at), so it costs the same with 20 posts or 20,000)."""
    (row,) = await Post.raw(VERSION_SQL, user_id, period.start, period.end, user_id, user_id)
    stamps = [s for s in (row["posts_at"], row["targets_at"]) if s is not None]
    latest = max(stamps).timestamp() if stamps else 0
    return f"{row['posts']}-{int(latest * 1_000_000)}"


# -- laying out -----------------------------------------------------------------------------
@dataclass
class Cell:
    day: date
    chips: list[Chip]
    total: int
    today: bool
    past: bool
    outside: bool  # a day of the previous or next month in the month grid
    compose_at: str  # "" when the moment is past

    @property
    def more(self) -> int:
        return max(0, self.total - len(self.chips))


def compose_at(day: date, hour: int | None, now_local: datetime) -> str:
    """The local time an empty day or slot proposes, or "" if it is past."""
    if hour is None:
        moment = datetime.combine(day, time(DEFAULT_HOUR), now_local.tzinfo)
        if day == now_local.date() and moment <= now_local:
            moment = now_local.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
            if moment.date() != day:
                return ""
    else:
        moment = datetime.combine(day, time(hour), now_local.tzinfo)
        if moment + timedelta(hours=1) <= now_local:
            return ""
        if moment <= now_local:
            moment = now_local.replace(second=0, microsecond=0) + timedelta(minutes=5)
    if moment.date() < now_local.date():
        return ""
    return moment.strftime("%Y-%m-%dT%H:%M")


def month_cells(period: Period, loaded: Loaded, now_local: datetime) -> list[list[Cell]]:
    by_day: dict[date, list[Chip]] = {}
    for chip in loaded.chips:
        by_day.setdefault(chip.day, []).append(chip)
    today = now_local.date()
    cells = [
        Cell(
            day=day,
            chips=by_day.get(day, []),
            total=loaded.totals.get(day, 0),
            today=day == today,
            past=day < today,
            outside=day.month != period.anchor.month,
            compose_at=compose_at(day, None, now_local),
        )
        for day in period.days
    ]
    return [cells[i : i + 7] for i in range(0, len(cells), 7)]


def week_rows(period: Period, loaded: Loaded, now_local: datetime) -> list[list[Cell]]:
    """24 rows (hours) of 7 slots (days)."""
    by_slot: dict[tuple[date, int], list[Chip]] = {}
    for chip in loaded.chips:
        by_slot.setdefault((chip.day, chip.at.hour), []).append(chip)
    today = now_local.date()
    rows = []
    for hour in range(24):
        row = []
        for day in period.days:
            compose = compose_at(day, hour, now_local)
            row.append(
                Cell(
                    day=day,
                    chips=by_slot.get((day, hour), []),
                    total=loaded.slot_totals.get((day, hour), 0),
                    today=day == today,
                    past=not compose,
                    outside=False,
                    compose_at=compose,
                )
            )
        rows.append(row)
    return rows


def agenda_days(loaded: Loaded) -> list[tuple[date, list[Chip]]]:
    days: dict[date, list[Chip]] = {}
    for chip in loaded.chips:
        days.setdefault(chip.day, []).append(chip)
    return list(days.items())


def first_busy_hour(loaded: Loaded, default: int = 8) -> int:
    """Where the week view opens its scrolled hours: the earliest post, or 08:00."""
    hours = [c.at.hour for c in loaded.chips]
    return max(0, min([*hours, default]) - 1) if hours else default
