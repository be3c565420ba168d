"""The composer: write once, choose accounts, override per platform, schedule, publish
now or save a draft. Live checks come from the same rules the scheduling domain
enforces, so what the page accepts, the platforms accept."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from litestar import Controller, Request, get, post
from litestar.datastructures import FormMultiDict
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.plugins.flash import flash
from litestar.response import Redirect, Template

from src import accounts, posts, rules
from src.db.tables import Account
from src.publishers.registry import TITLES
from src.routes.auth import TIMEZONES
from src.web import current_user, render, signed_in

ACTIONS = ("schedule", "now", "draft")
TIKTOK_TOGGLES = ("disable_comment", "disable_duet", "disable_stitch")


@dataclass
class ComposerForm:
    """The composer's fields, parsed from the form (the same shape for new and edit)."""

    text: str = ""
    account_ids: list[int] = field(default_factory=list)
    media_ids: list[int] = field(default_factory=list)
    overrides: dict[str, str] = field(default_factory=dict)  # platform -> text
    options: dict[str, dict[str, Any]] = field(default_factory=dict)  # platform -> options
    publish_at_local: str = ""  # "2026-12-01T09:30" in `timezone`
    timezone: str = "UTC"
    action: str = "schedule"

    def publish_at(self) -> datetime | None:
        if not self.publish_at_local:
            return None
        naive = datetime.fromisoformat(self.publish_at_local)
        return naive.replace(tzinfo=ZoneInfo(self.timezone)).astimezone(UTC)


def _ints(values: list[str]) -> list[int]:
    return [int(v) for v in values if v.strip().isdigit()]


def parse_form(data: FormMultiDict, default_tz: str) -> ComposerForm:
    form = ComposerForm(
        text=data.get("text", "") or "",
        account_ids=_ints(data.getall("account", [])),
        media_ids=_ints(data.getall("media", [])),
        publish_at_local=(data.get("publish_at") or "").strip(),
        timezone=data.get("timezone") or default_tz,
        action=data.get("action") or "schedule",
    )
    if form.action not in ACTIONS:
        form.action = "schedule"
    for key, value in data.multi_items():
        if key.startswith("override__") and value.strip():
            form.overrides[key.removeprefix("override__")] = value
        elif key.startswith("opt__"):
            _, platform, name = key.split("__", 2)
            form.options.setdefault(platform, {})[name] = _option(name, value)
    return form


def _option(name: str, value: str) -> Any:
    if name in (
        *TIKTOK_TOGGLES,
        "brand_content_toggle",
        "brand_organic_toggle",
        "is_aigc",
        "share_to_feed",
    ):
        return value in ("1", "on", "true")
    return value


def options_for(form: ComposerForm, platform: str) -> dict[str, Any]:
    options = dict(form.options.get(platform, {}))
    if platform == "tiktok":
        for toggle in TIKTOK_TOGGLES:  # TikTok's rule: interactions off unless ticked
            allowed = options.pop("allow_" + toggle.removeprefix("disable_"), None)
            if allowed is not None or toggle not in options:
                options[toggle] = not allowed
    return options


def to_spec(form: ComposerForm, accounts_by_id: dict[int, Account]) -> posts.PostSpec:
    targets = []
    for account_id in form.account_ids:
        account = accounts_by_id.get(account_id)
        platform = account.platform if account else ""
        options = dict(form.options.get(platform, {}))
        if platform == "tiktok":
            for toggle in TIKTOK_TOGGLES:  # TikTok's rule: interactions off unless ticked
                allowed = options.pop("allow_" + toggle.removeprefix("disable_"), False)
                options[toggle] = not allowed
        targets.append(posts.TargetSpec(account_id, form.overrides.get(platform), options))
    return posts.PostSpec(
        text=form.text,
        targets=targets,
        publish_at=datetime.now(UTC) if form.action == "now" else form.publish_at(),
        timezone=form.timezone,
        media_ids=form.media_ids,
        draft=form.action == "draft",
    )


async def _choices(user_id: int, keep: list[int] | None = None) -> list[Account]:
    """Active accounts, plus those a post being edited already targets (held while
    disconnected: an edit must not drop them)."""
    rows = await accounts.list_accounts(user_id)
    return [a for a in rows if a.status == "active" or a.id in (keep or [])]


def _checks(form: ComposerForm, choices: list[Account], media: list) -> list[dict[str, Any]]:
    """Per chosen platform: its counter and its problems, for the live panel."""
    chosen = [a for a in choices if a.id in form.account_ids]
    facts = [posts.media_facts(m) for m in media]
    panels = []
    for platform in dict.fromkeys(a.platform for a in chosen):
        text = form.overrides.get(platform, form.text)
        meta = next(posts.account_meta(a) for a in chosen if a.platform == platform)
        problems = rules.check(platform, text, facts, options_for(form, platform), meta)
        panels.append(
            {
                "platform": platform,
                "title": TITLES[platform],
                "counter": rules.counter(platform, text, facts),
                "problems": problems,
                "text": text,
                "accounts": [a for a in chosen if a.platform == platform],
            }
        )
    return panels


class ComposeController(Controller):
    path = "/compose"
    guards = [signed_in]

    @get("/")
    async def new(self, request: Request, at: str | None = None) -> Template:
        user = current_user(request)
        form = ComposerForm(timezone=user.timezone, publish_at_local=at or "")
        return await _page(request, form)

    @post("/validate")
    async def validate(self, request: Request) -> Template:
        user = current_user(request)
        form = parse_form(await request.form(), user.timezone)
        choices = await _choices(user.id)
        media = await posts.owned_media(user.id, form.media_ids) if form.media_ids else []
        return render(request, "partials/compose_checks.html", panels=_checks(form, choices, media))

    @post("/")
    async def create(self, request: Request) -> Template | Redirect:
        user = current_user(request)
        form = parse_form(await request.form(), user.timezone)
        return await _save(request, form, post_id=None)


async def _save(request: Request, form: ComposerForm, post_id: int | None):
    user = current_user(request)
    choices = await _choices(user.id, form.account_ids if post_id else None)
    try:
        spec = to_spec(form, {a.id: a for a in choices})
        if post_id is None:
            saved = await posts.schedule(user.id, spec)
        else:
            saved = await posts.update(user.id, post_id, spec)
    except (ValueError, ZoneInfoNotFoundError):
        return await _page(request, form, post_id, [_problem("Enter a valid date, time and zone.")])
    except posts.PostRefused as refused:
        return await _page(request, form, post_id, refused.problems)
    words = {"draft": "Draft saved.", "now": "Publishing now.", "schedule": "Scheduled."}
    flash(request, words[form.action], category="success")
    return Redirect(f"/posts/{saved.id}")


def _problem(message: str) -> rules.Problem:
    return rules.Problem("", "post", message, "error")


async def _page(
    request: Request,
    form: ComposerForm,
    post_id: int | None = None,
    problems: list[rules.Problem] | None = None,
) -> Template:
    user = current_user(request)
    choices = await _choices(user.id, form.account_ids if post_id else None)
    media = await posts.owned_media(user.id, form.media_ids) if form.media_ids else []
    page = render(
        request,
        "pages/compose.html",
        active="compose",
        form=form,
        post_id=post_id,
        choices=choices,
        titles=TITLES,
        media=media,
        panels=_checks(form, choices, media),
        problems=problems or [],
        timezones=TIMEZONES,
        from_file=await _file_origin(user.id, post_id),
        tiktok_meta=next((posts.account_meta(a) for a in choices if a.platform == "tiktok"), {}),
    )
    if problems:
        page.status_code = 400
    return page


async def _file_origin(user_id: int, post_id: int | None) -> dict[str, Any] | None:
    """Where a post being edited came from, when a content source still owns it."""
    if post_id is None:
        return None
    post = await posts.owned_post(user_id, post_id)
    if post.content_source is None or post.content_hash == posts.DETACHED:
        return None
    return {"path": post.source_path, "commit": post.source_commit[:7]}


# -- editing an existing post (also the calendar's edit panel) ----------------------------
async def form_of(user_id: int, post_id: int) -> ComposerForm:
    post = await posts.owned_post(user_id, post_id)
    targets = await posts.targets_of(post_id)
    rows = await Account.objects().where(Account.id.is_in([t.account for t in targets] or [0]))
    platform_of = {a.id: a.platform for a in rows}
    form = ComposerForm(
        text=post.text,
        account_ids=[t.account for t in targets],
        media_ids=[m.id for m in await posts.media_of(post_id)],
        timezone=post.timezone,
        action="draft" if post.status == "draft" else "schedule",
    )
    if post.publish_at:
        local = post.publish_at.astimezone(ZoneInfo(post.timezone))
        form.publish_at_local = local.strftime("%Y-%m-%dT%H:%M")
    for target in targets:
        platform = platform_of.get(target.account, "")
        if target.text is not None:
            form.overrides[platform] = target.text
        options = _options(target.options)
        if options:
            form.options[platform] = options
    return form


def _options(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        value = json.loads(value or "{}")
    return value if isinstance(value, dict) else {}


class EditController(Controller):
    path = "/posts/{post_id:int}/edit"
    guards = [signed_in]

    @get("/")
    async def edit(self, request: Request, post_id: FromPath[int]) -> Template:
        user = current_user(request)
        try:
            form = await form_of(user.id, post_id)
        except posts.NotFound as exc:
            raise NotFoundException("No such post.") from exc
        return await _page(request, form, post_id)

    @post("/")
    async def save(self, request: Request, post_id: FromPath[int]) -> Template | Redirect:
        user = current_user(request)
        try:
            await posts.owned_post(user.id, post_id)
        except posts.NotFound as exc:
            raise NotFoundException("No such post.") from exc
        form = parse_form(await request.form(), user.timezone)
        return await _save(request, form, post_id)
