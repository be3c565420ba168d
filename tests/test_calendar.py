"""The calendar over real HTTP: views in the person's time zone, htmx partials and full
pages, filters, moving posts through the scheduling domain, the edit panel, live
updates, the iCalendar feed, and a number of SQL statements that does not grow with the
number of posts."""

from __future__ import annotations

import os
import re
import secrets
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from icalendar import Calendar

from src import posts
from src.db.tables import Account, Post, PostTarget, User
from tests.browser import Browser
from tests.instrumented import InstrumentedServer, statements

pytestmark = pytest.mark.usefixtures("db")

BERLIN = ZoneInfo("Europe/Berlin")
HTMX = {"hx-request": "true", "hx-target": "calendar"}


# -- helpers ------------------------------------------------------------------------------
async def person(server, *platforms: str) -> tuple[Browser, User, dict[str, Account]]:
    """A signed-in person (Europe/Berlin) with accounts on the given platforms."""
    browser = Browser(server.url)
    email = browser.signed_in_user()
    for platform in platforms:
        if platform == "facebook":
            back = browser.grant(browser.start_connect("facebook"))
            picker = browser.follow(browser.http.get(back.headers["location"]))
            ids = re.findall(r'name="account" value="(\d+)"', picker.text)
            browser.http.post(
                "/connections/pick",
                data={"account": ids[:1], "_csrf_token": browser.csrf_token()},
            )
        else:
            browser.connect(platform)
    user = await User.objects().get(User.email == email)
    rows = await Account.objects().where(Account.user == user.id)
    return browser, user, {a.platform: a for a in rows}


async def schedule(
    user: User,
    accounts: list[Account],
    at: datetime,
    text: str | None = None,
    draft: bool = False,
) -> Post:
    spec = posts.PostSpec(
        text=text or f"Post {secrets.token_hex(3)}",
        targets=[posts.TargetSpec(a.id) for a in accounts],
        publish_at=at,
        timezone="Europe/Berlin",
        draft=draft,
    )
    return await posts.schedule(user.id, spec)


def local(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), BERLIN)


def future_day(days: int = 10) -> date:
    return (datetime.now(BERLIN) + timedelta(days=days)).date()


def cell(html: str, cell_id: str) -> str:
    """The inner HTML of one day or slot of the grid (up to the next cell)."""
    start = html.index(f'id="{cell_id}"')
    following = html.find('role="gridcell"', start + 1)
    return html[start : following if following != -1 else len(html)]


def chips(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'id="chip-(\d+)"', html)]


# -- views ----------------------------------------------------------------------------------
async def test_views_place_posts_on_the_local_day(server):
    browser, user, accounts = await person(server, "x")
    day = future_day(12)
    late_night = await schedule(user, [accounts["x"]], local(day, 0, 30), "Just after midnight")
    # 00:30 in Berlin is the day before in UTC: the calendar must show the local day.
    assert late_night.publish_at.astimezone(UTC).date() == day - timedelta(days=1)
    month = browser.get(f"/calendar?view=month&date={day}").text
    assert late_night.id in chips(cell(month, f"day-{day}"))
    assert late_night.id not in chips(cell(month, f"day-{day - timedelta(days=1)}"))
    assert "00:30" in cell(month, f"day-{day}") and "Just after midnight" in month
    week = browser.get(f"/calendar?view=week&date={day}").text
    assert late_night.id in chips(cell(week, f"slot-{day}-0"))
    agenda = browser.get(f"/calendar?view=agenda&date={day - timedelta(days=2)}").text
    section = agenda[agenda.index(f'id="ag-{day}"') :]
    assert f'id="chip-{late_night.id}"' in section
    assert "Times in Europe/Berlin" in month
    # Today is marked, platform icon and status colour are on the chip.
    today = browser.get("/calendar").text
    assert 'aria-current="date"' in today
    assert re.search(rf'class="chip s-scheduled[^"]*" id="chip-{late_night.id}"', month)
    assert 'class="i i-x"' in cell(month, f"day-{day}")


async def test_crowded_day_is_capped_with_a_link_to_the_rest(server):
    browser, user, accounts = await person(server, "x")
    day = future_day(15)
    for minute in range(7):
        await schedule(user, [accounts["x"]], local(day, 10, minute))
    month = browser.get(f"/calendar?date={day}").text
    day_cell = cell(month, f"day-{day}")
    assert len(chips(day_cell)) == 3
    assert "+4 more" in day_cell and f"view=week&amp;date={day}" in day_cell


async def test_navigation_swaps_the_partial_and_keeps_full_pages_shareable(server):
    browser, _, _ = await person(server, "x")
    full = browser.get("/calendar?view=week&date=2030-01-09")
    assert full.status_code == 200
    assert full.text.lstrip().lower().startswith("<!doctype html>")
    assert 'id="calendar"' in full.text and 'id="post-panel"' in full.text
    assert "7\u201313 January 2030" in full.text
    partial = browser.get("/calendar?view=week&date=2030-01-09", headers=HTMX)
    assert partial.text.lstrip().startswith('<section id="calendar"')
    assert "<html" not in partial.text and "7\u201313 January 2030" in partial.text
    # Previous / next / today swap only #calendar and push the URL.
    assert re.search(
        r'href="/calendar\?view=week&amp;date=2029-12-31" hx-get="[^"]+" hx-target="#calendar" '
        r'hx-swap="outerHTML" hx-push-url="true"',
        partial.text,
    )
    assert 'href="/calendar?view=week&amp;date=2030-01-14"' in partial.text
    # A history restore (htmx cache miss) needs the whole page.
    restore = browser.get(
        "/calendar?view=week", headers={**HTMX, "hx-history-restore-request": "true"}
    )
    assert "<!doctype html>" in restore.text.lower()
    month = browser.get("/calendar?date=2030-02-14", headers=HTMX).text
    assert "February 2030" in month and 'href="/calendar?view=month&amp;date=2030-01-01"' in month
    assert month.count('role="gridcell"') == 42  # six whole weeks, always


async def test_filters_combine_with_navigation(server):
    browser, user, accounts = await person(server, "x", "facebook")
    day = future_day(9)
    on_x = await schedule(user, [accounts["x"]], local(day, 9), "Only on X")
    on_fb = await schedule(
        user, [accounts["facebook"]], local(day + timedelta(days=1), 11), "Only on Facebook"
    )
    both = await schedule(
        user, [accounts["x"], accounts["facebook"]], local(day + timedelta(days=2), 13), "Both"
    )
    draft = await schedule(
        user, [accounts["x"]], local(day + timedelta(days=3), 15), "A draft", draft=True
    )
    base = f"/calendar?date={day}"
    assert set(chips(browser.get(base).text)) >= {on_x.id, on_fb.id, both.id, draft.id}
    only_x = browser.get(base + "&platform=x", headers=HTMX).text
    assert set(chips(only_x)) == {on_x.id, both.id, draft.id}
    fb_account = browser.get(f"{base}&account={accounts['facebook'].id}", headers=HTMX).text
    assert set(chips(fb_account)) == {on_fb.id, both.id}
    drafts = browser.get(base + "&platform=x&status=draft", headers=HTMX).text
    assert chips(drafts) == [draft.id]
    # Navigation keeps the filters; "clear filters" drops them.
    assert re.search(
        r'href="/calendar\?view=month&amp;date=[0-9-]+&amp;platform=x&amp;status=draft"', drafts
    )
    assert "Clear filters" in drafts
    assert 'value="draft" selected' in drafts
    # Agenda with the same filters.
    agenda = browser.get(f"/calendar?view=agenda&date={day}&platform=facebook", headers=HTMX).text
    assert set(chips(agenda)) == {on_fb.id, both.id}


# -- moving ------------------------------------------------------------------------------------
async def test_move_reschedules_through_the_domain(server):
    browser, user, accounts = await person(server, "x")
    day = future_day(5)
    post = await schedule(user, [accounts["x"]], local(day, 14, 45))
    target_day = day + timedelta(days=3)
    moved = browser.post(
        "/calendar/move",
        {"post": post.id, "date": target_day.isoformat(), "view": "month", "date_": ""},
        headers=HTMX,
    )
    assert moved.status_code == 200, moved.text[:500]
    after = await Post.objects().get(Post.id == post.id)
    assert after.publish_at == local(target_day, 14, 45)  # same local time, another day
    (target,) = await PostTarget.objects().where(PostTarget.post == post.id)
    assert target.due_at == after.publish_at
    assert post.id in chips(cell(moved.text, f"day-{target_day}"))
    assert "Moved to" in moved.text  # a toast, out of band
    # A week slot keeps the minutes and takes the hour.
    slot = browser.post(
        "/calendar/move",
        {"post": post.id, "date": target_day.isoformat(), "hour": "9", "view": "week"},
        headers=HTMX,
    )
    assert slot.status_code == 200
    assert (await Post.objects().get(Post.id == post.id)).publish_at == local(target_day, 9, 45)


async def test_a_refused_move_changes_nothing_and_says_why(server):
    browser, user, accounts = await person(server, "x")
    post = await schedule(user, [accounts["x"]], local(future_day(4), 10))
    yesterday = (datetime.now(BERLIN) - timedelta(days=1)).date()
    refused = browser.post(
        "/calendar/move", {"post": post.id, "date": yesterday.isoformat()}, headers=HTMX
    )
    assert refused.status_code == 422
    assert "in the past" in refused.text and "Not moved" in refused.text
    assert refused.text.lstrip().startswith('<section id="calendar"')  # the truth: it snaps back
    assert (await Post.objects().get(Post.id == post.id)).publish_at == post.publish_at
    # A post whose publishing has started cannot be moved either.
    started = await schedule(user, [accounts["x"]], local(future_day(6), 10))
    await PostTarget.update({PostTarget.status: "published"}).where(PostTarget.post == started.id)
    again = browser.post(
        "/calendar/move", {"post": started.id, "date": future_day(8).isoformat()}, headers=HTMX
    )
    assert again.status_code == 422 and "already started" in again.text
    assert (await Post.objects().get(Post.id == started.id)).publish_at == started.publish_at
    # Nonsense is refused too.
    nonsense = browser.post("/calendar/move", {"post": post.id, "date": "soon"}, headers=HTMX)
    assert nonsense.status_code == 422


async def test_another_persons_post_is_not_found(server):
    _, alice, accounts = await person(server, "x")
    mallory = Browser(server.url)
    mallory.signed_in_user()
    post = await schedule(alice, [accounts["x"]], local(future_day(3), 10))
    moved = mallory.post(
        "/calendar/move", {"post": post.id, "date": future_day(5).isoformat()}, headers=HTMX
    )
    assert moved.status_code == 404
    assert mallory.get(f"/calendar/posts/{post.id}", headers=HTMX).status_code == 404
    assert mallory.post(f"/calendar/posts/{post.id}/cancel").status_code == 404
    assert mallory.post(f"/calendar/posts/{post.id}/duplicate").status_code == 404
    assert (await Post.objects().get(Post.id == post.id)).publish_at == post.publish_at
    assert post.id not in chips(mallory.get(f"/calendar?date={future_day(3)}").text)


# -- the panel -------------------------------------------------------------------------------
async def test_panel_edits_duplicates_and_cancels(server):
    browser, user, accounts = await person(server, "x")
    post = await schedule(user, [accounts["x"]], local(future_day(7), 16), "Panel words")
    panel = browser.get(f"/calendar/posts/{post.id}", headers={"hx-request": "true"}).text
    assert "<html" not in panel and 'id="composer"' in panel and "Panel words" in panel
    assert f'data-save-url="/calendar/posts/{post.id}"' in panel
    # Saving from the panel goes through the composer's own save.
    form = {
        "text": "Better panel words",
        "account": str(accounts["x"].id),
        "publish_at": local(future_day(7), 17).strftime("%Y-%m-%dT%H:%M"),
        "timezone": "Europe/Berlin",
        "action": "schedule",
    }
    saved = browser.post(f"/calendar/posts/{post.id}", form, headers={"hx-request": "true"})
    assert saved.status_code == 200 and saved.headers["hx-trigger"] == "calendar-changed"
    after = await Post.objects().get(Post.id == post.id)
    assert after.text == "Better panel words" and after.publish_at == local(future_day(7), 17)
    refused = browser.post(
        f"/calendar/posts/{post.id}", {**form, "text": "x" * 300}, headers={"hx-request": "true"}
    )
    assert refused.status_code == 400 and "280" in refused.text and "panel-sheet" in refused.text
    # Duplicate: a draft with the same content.
    copy = browser.post(f"/calendar/posts/{post.id}/duplicate", headers={"hx-request": "true"})
    assert copy.status_code == 200
    newest = (
        await Post.objects().where(Post.user == user.id).order_by(Post.id, ascending=False).first()
    )
    assert newest.id != post.id and newest.status == "draft"
    assert newest.text == "Better panel words" and newest.publish_at == after.publish_at
    (copied_target,) = await PostTarget.objects().where(PostTarget.post == newest.id)
    assert copied_target.account == accounts["x"].id and copied_target.status == "draft"
    # Cancel.
    cancelled = browser.post(f"/calendar/posts/{post.id}/cancel", headers={"hx-request": "true"})
    assert cancelled.status_code == 200 and "Cancelled" in cancelled.text
    assert (await Post.objects().get(Post.id == post.id)).status == "cancelled"
    assert 'id="composer"' not in cancelled.text  # read-only now


# -- live updates -----------------------------------------------------------------------------
async def test_live_poll_answers_204_until_something_changes(server):
    browser, user, accounts = await person(server, "x")
    day = future_day(6)
    post = await schedule(user, [accounts["x"]], local(day, 12))
    page = browser.get(f"/calendar?date={day}").text
    poll = re.search(r'hx-get="(/calendar/live\?[^"]+)"', page).group(1).replace("&amp;", "&")
    assert browser.get(poll, headers=HTMX).status_code == 204
    # The worker's kind of change: a target's status (the chip turns published).
    await PostTarget.update({PostTarget.status: "published"}).where(PostTarget.post == post.id)
    await posts.refresh_post_status(post.id)
    changed = browser.get(poll, headers=HTMX)
    assert changed.status_code == 200
    assert re.search(rf'class="chip s-published[^"]*" id="chip-{post.id}"', changed.text)
    new_poll = re.search(r'hx-get="(/calendar/live\?[^"]+)"', changed.text).group(1)
    assert browser.get(new_poll.replace("&amp;", "&"), headers=HTMX).status_code == 204


# -- the feed --------------------------------------------------------------------------------
async def test_feed_is_valid_icalendar_at_a_secret_revocable_url(server):
    browser, user, accounts = await person(server, "x")
    when = local(future_day(20), 8, 15)
    post = await schedule(user, [accounts["x"]], when, "Feed me to your calendar app please")
    draft = await schedule(user, [accounts["x"]], when, "Not in the feed", draft=True)
    section = browser.post("/calendar/feed", headers={"hx-request": "true"}).text
    url = re.search(r'value="(http[^"]+\.ics)"', section).group(1)
    token = url.rsplit("/", 1)[1].removesuffix(".ics")
    stored = await User.objects().get(User.id == user.id)
    assert stored.feed_token_hash and token not in stored.feed_token_hash  # only a hash
    feed = browser.http.get(url.removeprefix(server.url))
    assert feed.status_code == 200
    assert feed.headers["content-type"].startswith("text/calendar")
    calendar = Calendar.from_ical(feed.content)
    events = {str(e["uid"]): e for e in calendar.walk("VEVENT")}
    event = next(e for uid, e in events.items() if uid.startswith(f"post-{post.id}@"))
    assert not any(uid.startswith(f"post-{draft.id}@") for uid in events)
    assert str(event["summary"]).startswith("X: Feed me to your calendar")
    start = event.decoded("dtstart")
    assert start == when and start.utcoffset() == timedelta(0)  # in UTC
    assert event["dtstart"].to_ical().endswith(b"Z")
    assert str(event["url"]).endswith(f"/posts/{post.id}")
    # The page says a feed is active, without showing the URL again.
    page = browser.get("/calendar").text
    assert "A feed link is active" in page and token not in page
    # A new link replaces the old; turning it off leaves nothing.
    again = browser.post("/calendar/feed", headers={"hx-request": "true"}).text
    new_url = re.search(r'value="(http[^"]+\.ics)"', again).group(1)
    assert browser.http.get(url.removeprefix(server.url)).status_code == 404
    assert browser.http.get(new_url.removeprefix(server.url)).status_code == 200
    browser.post("/calendar/feed/revoke", headers={"hx-request": "true"})
    assert browser.http.get(new_url.removeprefix(server.url)).status_code == 404
    assert browser.http.get("/calendar/feed/not-a-token.ics").status_code == 404
    assert (await User.objects().get(User.id == user.id)).feed_token_hash is None


# -- SQL statements per render ------------------------------------------------------------------
@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """The app with its SQL statements counted (tests/instrumented.py), no worker, on the
    same database as `server` (only this process's statements are counted)."""
    app = InstrumentedServer(
        database_url=os.environ["OKK_DATABASE_URL"],
        data_dir=Path(os.environ["OKK_DATA_DIR"]),
        log_dir=tmp_path_factory.mktemp("measured"),
        env={"OKK_ALLOWED_EMAILS": os.environ["OKK_ALLOWED_EMAILS"]},
    )
    app.start()
    yield app
    app.stop()


def _statements(browser: Browser, first: date) -> dict[str, int]:
    views = {
        "month page": (f"/calendar?date={first}", {}),
        "month partial": (f"/calendar?date={first}", HTMX),
        "week partial": (f"/calendar?view=week&date={first + timedelta(days=9)}", HTMX),
        "agenda partial": (f"/calendar?view=agenda&date={first}", HTMX),
    }
    counts = {}
    for name, (path, headers) in views.items():
        # The fewest of three: a session store's occasional housekeeping is not the view's.
        counts[name] = min(statements(browser.get(path, headers=headers)) for _ in range(3))
    return counts


async def test_statements_per_render_do_not_grow_with_posts(measured):
    browser, user, _ = await person(measured, "x")
    browser.connect("x", identity=1)
    both = await Account.objects().where(Account.user == user.id)
    today = datetime.now(BERLIN).date()
    quiet = (today.replace(day=1) + timedelta(days=70)).replace(day=1)
    busy = (quiet + timedelta(days=40)).replace(day=1)
    for i in range(10):
        await schedule(user, both[: 1 + i % 2], local(quiet + timedelta(days=i * 2), 9 + i % 8))
    for i in range(200):
        day = busy + timedelta(days=i % 27)
        await schedule(user, both[: 1 + i % 2], local(day, 6 + i % 15, (i * 7) % 60))
    few, many = _statements(browser, quiet), _statements(browser, busy)
    print(f"SQL statements per render, 10 posts: {few}; 200 posts: {many}")
    assert few == many
    assert max(many.values()) <= 8, many
    busy_page = browser.get(f"/calendar?date={busy}").text
    assert len(chips(busy_page)) >= 27 * 3 - 6  # capped cells, still full
