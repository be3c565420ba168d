"""Banners that follow the truth: accounts needing reconnect, a silent worker. Loaded
and refreshed by htmx into #banners on every page."""

from __future__ import annotations

from litestar import Request, get
from litestar.response import Template

from src.db.tables import Account
from src.jobs import last_heartbeat_age
from src.routes.health import STALE_AFTER_S
from src.web import current_user, render, signed_in


@get("/banners", guards=[signed_in], cache=False)
async def banners(request: Request) -> Template:
    user = current_user(request)
    broken = await Account.select(
        Account.id, Account.display_name, Account.handle, Account.platform
    ).where((Account.user == user.id) & (Account.status == "needs_reconnect"))
    age = await last_heartbeat_age()
    worker_stale = age is None or age > STALE_AFTER_S
    return render(request, "partials/banners.html", broken=broken, worker_stale=worker_stale)
