"""The calendar: month, week and agenda views in the person's time zone, the edit panel,
drag-to-reschedule, live updates and the private iCalendar feed. Thin: reading is
`src.calendar_view`, every change is the scheduling domain's (`src.posts`), the feed is
`src.calendar_feed`.

Live updates are small polled partials, not server-sent events. The open calendar asks
GET /calendar/live every 2 s with the version stamp it was rendered from (a count and
the newest `updated_at` of the range's posts and targets: one indexed query); the answer
is 204 while nothing changed and the fresh #calendar partial when something did. Why
polling: the worker that publishes is another process (often another machine), so SSE
would need a fan-out channel (LISTEN/NOTIFY or Redis) and a long-lived connection per
open tab held by every web process; a 2 s poll of a stamp works across any number of
web and worker processes, survives proxies and restarts without reconnect logic, and
costs one cheap query per open calendar every two seconds."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from litestar import Controller, Request, Response, Router, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.plugins.flash import flash
from litestar.response import Redirect, Template

from src import calendar_feed, posts
from src import calendar_view as view
from src.publishers.registry import TITLES
from src.routes import compose
from src.web import current_user, render, signed_in

PANEL_LAYOUT = "partials/calendar_panel.html"
CHANGED = {"HX-Trigger": "calendar-changed"}


def _now_local(user) -> datetime:
    return datetime.now(UTC).astimezone(view.zone_of(user.timezone))


def _is_partial(request: Request) -> bool:
    headers = request.headers
    return (
        headers.get("hx-request") == "true"
        and headers.get("hx-target") == "calendar"
        and headers.get("hx-history-restore-request") != "true"
    )


async def _calendar(
    request: Request, query: view.Query, *, partial: bool, status_code: int = 200, toast=False
) -> Template:
    """The calendar (the #calendar partial, or the whole page around it)."""
    user = current_user(request)
    now_local = _now_local(user)
    period = view.period_of(query, now_local.date(), view.zone_of(user.timezone))
    loaded = await view.load(user.id, query, period)
    context: dict[str, Any] = {
        "query": query,
        "period": period,
        "loaded": loaded,
        "now_local": now_local,
        "accounts": loaded.accounts,
        "version": loaded.version,
        "titles": TITLES,
        "statuses": view.STATUSES,
        "status_words": view.STATUS_WORDS,
        "zone": period.zone.key,
        "toast": toast,
    }
    if period.view == "month":
        context["weeks"] = view.month_cells(period, loaded, now_local)
    elif period.view == "week":
        context["rows"] = view.week_rows(period, loaded, now_local)
        context["scroll_hour"] = view.first_busy_hour(loaded)
    else:
        context["days"] = view.agenda_days(loaded)
    if partial:
        page = render(request, "partials/calendar.html", **context)
    else:
        page = render(
            request,
            "pages/calendar.html",
            active="calendar",
            has_feed=user.feed_token_hash is not None,
            **context,
        )
    page.status_code = status_code
    return page


def _local_moment(user, data: Any, current: datetime | None) -> datetime:
    """Where a chip was dropped, in the person's zone, as UTC: `date` (a month day keeps
    the post's local time of day), plus `hour` (a week slot keeps its minutes) or an
    exact `time` (HH:MM)."""
    zone = view.zone_of(user.timezone)
    day = date.fromisoformat(data.get("date") or "")
    kept = current.astimezone(zone).time() if current else time(view.DEFAULT_HOUR)
    if data.get("time"):
        clock = time.fromisoformat(data["time"])
    elif (data.get("hour") or "").isdigit():
        clock = kept.replace(hour=int(data["hour"]))
    else:
        clock = kept
    return datetime.combine(day, clock.replace(second=0, microsecond=0), zone).astimezone(UTC)


def _copy_time(original: datetime | None, zone_name: str) -> datetime:
    """A duplicate keeps the original's time, or the same time of day tomorrow (or the
    next day that is still ahead) when the original's moment has passed."""
    now = datetime.now(UTC)
    if original is not None and original > now:
        return original
    zone = view.zone_of(zone_name)
    local_now = now.astimezone(zone)
    clock = original.astimezone(zone).time() if original else time(view.DEFAULT_HOUR)
    moment = datetime.combine(local_now.date(), clock, zone)
    while moment <= local_now:
        moment += timedelta(days=1)
    return moment.astimezone(UTC)


def _panel_context(post, targets, accounts, media) -> dict[str, Any]:
    soon = datetime.now(UTC) + timedelta(seconds=5)
    started = any(t.status in posts.STARTED for t in targets)
    # Due now (publish now was pressed, or its time came): the worker is about to take it.
    imminent = any(
        t.status in ("scheduled", "retrying") and t.due_at is not None and t.due_at <= soon
        for t in targets
    )
    return {
        "post": post,
        "targets": [(t, accounts.get(t.account)) for t in targets],
        "media": media,
        "editable": post.status in view.MOVABLE and not started and not imminent,
        "status_word": view.STATUS_WORDS.get(post.status, post.status),
        "live": post.status in ("scheduled", "publishing") and (started or imminent),
    }


class CalendarController(Controller):
    path = "/"
    guards = [signed_in]

    @get("/", cache=False)
    async def index(self, request: Request) -> Template:
        query = view.Query.parse(request.query_params)
        return await _calendar(request, query, partial=_is_partial(request))

    @get("/live", cache=False)
    async def live(self, request: Request) -> Template | Response:
        """The poll of an open calendar: 204 while its version stands, else the partial."""
        user = current_user(request)
        query = view.Query.parse(request.query_params)
        period = view.period_of(query, _now_local(user).date(), view.zone_of(user.timezone))
        if request.query_params.get("v") == await view.version(user.id, period):
            return Response(None, status_code=204)
        return await _calendar(request, query, partial=True)

    @post("/move")
    async def move(self, request: Request) -> Template:
        """A chip dropped on another day or slot. Refused: 422 with the reason and the
        calendar as it truly is (the chip snaps back)."""
        user = current_user(request)
        data = await request.form()
        query = view.Query.parse(data)
        post_id = data.get("post") or ""
        try:
            post = await posts.owned_post(user.id, int(post_id))
        except (ValueError, posts.NotFound) as exc:
            raise NotFoundException("No such post.") from exc
        try:
            moment = _local_moment(user, data, post.publish_at)
        except ValueError:
            flash(request, "That is not a day of the calendar.", category="error")
            return await _calendar(request, query, partial=True, status_code=422, toast=True)
        try:
            moved = await posts.reschedule(user.id, post.id, moment)
        except posts.NotFound as exc:
            raise NotFoundException("No such post.") from exc
        except posts.PostRefused as refused:
            flash(request, f"Not moved: {refused}", category="error")
            return await _calendar(request, query, partial=True, status_code=422, toast=True)
        when = view.zone_of(user.timezone)
        flash(request, f"Moved to {moved.publish_at.astimezone(when):%a %-d %b, %H:%M}.", "success")
        return await _calendar(request, query, partial=True, toast=True)

    # -- the edit panel -------------------------------------------------------------------
    @get("/posts/{post_id:int}", cache=False)
    async def panel(self, request: Request, post_id: FromPath[int]) -> Template:
        return await _panel(request, post_id)

    @post("/posts/{post_id:int}")
    async def save(self, request: Request, post_id: FromPath[int]) -> Template:
        """The composer in the panel, saved: the same `_save` as the edit page."""
        user = current_user(request)
        await _owned(user.id, post_id)
        form = compose.parse_form(await request.form(), user.timezone)
        result = await compose._save(request, form, post_id)
        if isinstance(result, Redirect):
            return await _panel(request, post_id, headers=CHANGED)
        result.context.update(await _panel_extras(user.id, post_id))  # refused: show why
        return result

    @post("/posts/{post_id:int}/cancel")
    async def cancel(self, request: Request, post_id: FromPath[int]) -> Template:
        user = current_user(request)
        await _owned(user.id, post_id)
        await posts.cancel(user.id, post_id)
        flash(request, "Cancelled what had not been published.", category="success")
        return await _panel(request, post_id, headers=CHANGED)

    @post("/posts/{post_id:int}/publish-now")
    async def publish_now(self, request: Request, post_id: FromPath[int]) -> Template:
        user = current_user(request)
        await _owned(user.id, post_id)
        await posts.publish_now(user.id, post_id)
        flash(request, "Publishing now.", category="success")
        return await _panel(request, post_id, headers=CHANGED)

    @post("/posts/{post_id:int}/duplicate")
    async def duplicate(self, request: Request, post_id: FromPath[int]) -> Template:
        """A copy with the same text, accounts, per-platform texts, options, media and
        time, saved as a draft (nothing is scheduled until the person says so)."""
        user = current_user(request)
        original = await _owned(user.id, post_id)
        targets = await posts.targets_of(post_id)
        spec = posts.PostSpec(
            text=original.text,
            targets=[
                posts.TargetSpec(t.account, t.text, compose._options(t.options)) for t in targets
            ],
            publish_at=_copy_time(original.publish_at, original.timezone),
            timezone=original.timezone,
            media_ids=[m.id for m in await posts.media_of(post_id)],
            draft=True,
        )
        try:
            copy = await posts.schedule(user.id, spec)
        except posts.PostRefused as refused:
            flash(request, f"Not duplicated: {refused}", category="error")
            return await _panel(request, post_id)
        flash(request, "Duplicated as a draft: change what you like, then schedule it.", "success")
        return await _panel(request, copy.id, headers=CHANGED)

    # -- the private feed ---------------------------------------------------------------
    @post("/feed")
    async def issue_feed(self, request: Request) -> Template:
        user = current_user(request)
        token = await calendar_feed.issue(user.id)
        url = f"{request.app.state.settings.public_url}/calendar/feed/{token}.ics"
        return await _feed_section(request, has_feed=True, feed_url=url)

    @post("/feed/revoke")
    async def revoke_feed(self, request: Request) -> Template:
        await calendar_feed.revoke(current_user(request).id)
        return await _feed_section(request, has_feed=False, revoked=True)


async def _feed_section(request: Request, **context: Any) -> Template:
    """The feed section for htmx; the whole calendar page for a plain form post."""
    if request.headers.get("hx-request") == "true":
        return render(request, "partials/calendar_feed.html", **context)
    page = await _calendar(request, view.Query(), partial=False)
    page.context.update(context)
    return page


async def _owned(user_id: int, post_id: int):
    try:
        return await posts.owned_post(user_id, post_id)
    except posts.NotFound as exc:
        raise NotFoundException("No such post.") from exc


async def _panel_extras(user_id: int, post_id: int) -> dict[str, Any]:
    post = await _owned(user_id, post_id)
    targets = await posts.targets_of(post_id)
    media = await posts.media_of(post_id)
    accounts = await view.accounts_of(user_id)
    return {
        "layout": PANEL_LAYOUT,
        "panel": _panel_context(post, targets, accounts, media),
        "titles": TITLES,
    }


async def _panel(request: Request, post_id: int, headers: dict[str, str] | None = None):
    """The edit panel: the composer (as a partial) for a post nothing of which has
    started, else a read-only view with the platforms' links, live while publishing."""
    user = current_user(request)
    extras = await _panel_extras(user.id, post_id)
    if extras["panel"]["editable"]:
        form = await compose.form_of(user.id, post_id)
        page = await compose._page(request, form, post_id)
        page.context.update(extras)
    else:
        page = render(request, "partials/calendar_panel_view.html", **extras)
    if headers:
        page.headers.update(headers)
    return page


@get("/feed/{name:str}", cache=False, name="calendar-feed")
async def feed(request: Request, name: FromPath[str]) -> Response:
    """The iCalendar feed at a secret URL; anything but a live token is 404."""
    user = await calendar_feed.owner_of(name.removesuffix(".ics"))
    if user is None:
        raise NotFoundException("No such calendar.")
    body = await calendar_feed.ics(user, request.app.state.settings.public_url)
    return Response(
        body,
        media_type="text/calendar; charset=utf-8",
        headers={
            "Cache-Control": "private, max-age=300",
            "Content-Disposition": 'inline; filename="okktopus.ics"',
            "X-Robots-Tag": "noindex",
        },
    )


router = Router(path="/calendar", route_handlers=[CalendarController, feed])
