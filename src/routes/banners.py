"""Banners that follow the truth: accounts needing reconnect, a silent worker. Loaded
and refreshed by htmx into #banners on every page."""

from __future__ import annotations

from litestar import Request, Response, get
from litestar.response import Template

from src import accounts, users
from src.db.tables import Account
from src.jobs import last_heartbeat_age
from src.routes.health import STALE_AFTER_S
from src.web import current_user, render


@get("/banners", cache=False)
async def banners(request: Request) -> Template | Response:
    user = current_user(request)
    if user is None or users.needs_welcome(user):
        return Response("", media_type="text/html")  # nothing to warn about yet
    mine = await Account.objects().where(
        (Account.user == user.id) & Account.status.is_in(["active", "needs_reconnect"])
    )
    broken = [a for a in mine if a.status == "needs_reconnect"]
    expiring = [a for a in mine if accounts.status_of(a) == "expires_soon"]
    age = await last_heartbeat_age()
    worker_stale = age is None or age > STALE_AFTER_S
    return render(
        request,
        "partials/banners.html",
        broken=broken,
        expiring=expiring,
        worker_stale=worker_stale,
    )
