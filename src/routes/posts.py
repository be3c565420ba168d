"""Post history: every post with each target's outcome, filters, and the actions that
make failures recoverable (retry, cancel, publish now)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from litestar import Controller, Request, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.plugins.flash import flash
from litestar.response import Redirect, Template
from piccolo.columns.combination import WhereRaw

from src import posts
from src.content.service import file_url
from src.db.tables import Account, ContentSource, Post, PostTarget
from src.posts import POST_STATUSES
from src.publishers.registry import TITLES
from src.web import current_user, render, signed_in

PAGE_SIZE = 50
STATUSES = POST_STATUSES


def _day(value: str | None, zone: str, end: bool = False) -> datetime | None:
    if not value:
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        return None
    return datetime.combine(day, time.max if end else time.min, ZoneInfo(zone)).astimezone(UTC)


async def history(user, filters: dict[str, str]) -> list[dict[str, Any]]:
    """Posts of one user with their targets and accounts, in three queries."""
    where = Post.user == user.id
    if filters.get("status") in STATUSES:
        where &= Post.status == filters["status"]
    if filters.get("source") in ("composer", "content"):
        where &= Post.source == filters["source"]
    start = _day(filters.get("from"), user.timezone)
    end = _day(filters.get("to"), user.timezone, end=True)
    if start:
        where &= Post.publish_at >= start
    if end:
        where &= Post.publish_at <= end
    # Account and platform filters in SQL: filtering the page afterwards would hide
    # matching posts beyond the first PAGE_SIZE.
    if filters.get("account", "").isdigit():
        where &= WhereRaw(
            "EXISTS (SELECT 1 FROM post_targets t WHERE t.post = posts.id AND t.account = {})",
            int(filters["account"]),
        )
    if filters.get("platform") in TITLES:
        where &= WhereRaw(
            "EXISTS (SELECT 1 FROM post_targets t JOIN accounts a ON a.id = t.account "
            "WHERE t.post = posts.id AND a.platform = {})",
            filters["platform"],
        )
    rows = (
        await Post.objects()
        .where(where)
        .order_by(Post.publish_at, ascending=False)
        .limit(PAGE_SIZE)
    )
    ids = [p.id for p in rows] or [0]
    targets = await PostTarget.objects().where(PostTarget.post.is_in(ids)).order_by(PostTarget.id)
    account_rows = await Account.objects().where(Account.user == user.id)
    by_id = {a.id: a for a in account_rows}
    items = []
    for row in rows:
        mine = [t for t in targets if t.post == row.id]
        items.append({"post": row, "targets": [(t, by_id[t.account]) for t in mine]})
    sources = await sources_of(user.id)
    for item in items:
        item["origin"] = origin(item["post"], sources)
    return items


async def sources_of(user_id: int) -> dict[int, ContentSource]:
    rows = await ContentSource.objects().where(ContentSource.user == user_id)
    return {source.id: source for source in rows}


def origin(post: Post, sources: dict[int, ContentSource]) -> dict[str, Any] | None:
    """ "from repo@commit:path", with a link to the file where the forge is known."""
    source = sources.get(post.content_source) if post.content_source else None
    if source is None:
        return None
    path = "/".join(p for p in (source.subpath.strip("/"), post.source_path) if p)
    return {
        "label": f"{source.name}@{post.source_commit[:7]}:{post.source_path}",
        "url": file_url(source, post.source_commit, path),
    }


class PostsController(Controller):
    path = "/posts"
    guards = [signed_in]

    @get("/")
    async def index(self, request: Request) -> Template:
        user = current_user(request)
        filters = {k: v for k, v in request.query_params.items() if v}
        items = await history(user, filters)
        accounts = await Account.objects().where(Account.user == user.id)
        template = (
            "partials/post_list.html" if request.headers.get("hx-request") else ("pages/posts.html")
        )
        return render(
            request,
            template,
            active="posts",
            items=items,
            filters=filters,
            accounts=accounts,
            statuses=STATUSES,
            titles=TITLES,
        )

    @get("/{post_id:int}")
    async def detail(self, request: Request, post_id: FromPath[int]) -> Template:
        user = current_user(request)
        try:
            row = await posts.owned_post(user.id, post_id)
        except posts.NotFound as exc:
            raise NotFoundException("No such post.") from exc
        targets = await posts.targets_of(post_id)
        by_id = {a.id: a for a in await Account.objects().where(Account.user == user.id)}
        item = {
            "post": row,
            "targets": [(t, by_id[t.account]) for t in targets],
            "origin": origin(row, await sources_of(user.id)),
        }
        media = await posts.media_of(post_id)
        template = (
            "partials/post_card.html" if request.headers.get("hx-request") else ("pages/post.html")
        )
        return render(request, template, active="posts", item=item, media=media, titles=TITLES)

    @post("/{post_id:int}/cancel")
    async def cancel(self, request: Request, post_id: FromPath[int]) -> Redirect:
        return await _act(request, post_id, posts.cancel, "Cancelled what had not been published.")

    @post("/{post_id:int}/publish-now")
    async def publish_now(self, request: Request, post_id: FromPath[int]) -> Redirect:
        return await _act(request, post_id, posts.publish_now, "Publishing now.")

    @post("/{post_id:int}/detach")
    async def detach(self, request: Request, post_id: FromPath[int]) -> Redirect:
        """Take a post from a file over in the app: syncs leave it alone from now on."""
        message = "Detached: syncs no longer change this post."
        return await _act(request, post_id, posts.detach, message, to=f"/posts/{post_id}/edit")

    @post("/{post_id:int}/retry")
    async def retry(self, request: Request, post_id: FromPath[int]) -> Redirect:
        form = await request.form()
        ids = [int(v) for v in form.getall("target", []) if v.isdigit()] or None

        async def run(user_id: int, pid: int) -> Any:
            return await posts.retry(user_id, pid, ids)

        return await _act(request, post_id, run, "Sent again.")


async def _act(
    request: Request, post_id: int, action, message: str, to: str | None = None
) -> Redirect:
    user = current_user(request)
    try:
        await action(user.id, post_id)
        flash(request, message, category="success")
    except posts.NotFound as exc:
        raise NotFoundException("No such post.") from exc
    except posts.PostRefused as refused:
        flash(request, str(refused), category="error")
    return Redirect(to or f"/posts/{post_id}")
