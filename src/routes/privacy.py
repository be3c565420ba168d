"""Settings actions for the person's rights: correction, feedback, export, deletion; and
the operator view (instance owner only), which deletes through the same path."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from litestar import Controller, Request, get, post
from litestar.connection import ASGIConnection
from litestar.enums import RequestEncodingType
from litestar.exceptions import HTTPException, NotFoundException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.params import Body, FromPath
from litestar.plugins.flash import flash
from litestar.response import Redirect, Stream, Template

from src import audit, exports, privacy
from src.db.tables import Account, PostTarget, User
from src.routes import health
from src.web import current_user, render, signed_in

FormData = Annotated[dict[str, Any], Body(media_type=RequestEncodingType.URL_ENCODED)]
FEEDBACK_MAX = 5000


class PrivacyController(Controller):
    path = "/settings"
    guards = [signed_in]

    @post("/profile")
    async def correct(self, request: Request, data: FormData) -> Redirect:
        user = current_user(request)
        name = str(data.get("name", "")).strip()[:200]
        zone = str(data.get("timezone", "")).strip()
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            flash(request, f"{zone or 'That'} is not a known time zone.", category="error")
            return Redirect("/settings")
        await User.update(
            {
                User.name: name or user.name,
                User.timezone: zone,
                User.notify_email: data.get("notify_email") in ("1", "on", "true"),
            }
        ).where(User.id == user.id)
        await audit.record("profile_updated", user.id, request)
        flash(request, "Your profile is saved.", category="success")
        return Redirect("/settings")

    @post("/feedback")
    async def feedback(self, request: Request, data: FormData) -> Redirect:
        message = str(data.get("message", "")).strip()[:FEEDBACK_MAX]
        if message:
            await privacy.add_feedback(current_user(request).id, message)
            flash(request, "Thank you, your message is stored.", category="success")
        return Redirect("/settings")

    @get("/export", cache=False)
    async def export(self, request: Request) -> Stream | Redirect:
        user = current_user(request)
        settings = request.app.state.settings
        await audit.record("data_exported", user.id, request)
        if (await exports.media_totals(user.id))[1] > settings.export_inline_max_bytes:
            await exports.start(request.app.state.queue, settings, user.id)
            flash(request, "Your export is being built; the link appears below.", "success")
            return Redirect("/settings#data-title")
        stamp = datetime.now(UTC).strftime("%Y%m%d")
        return Stream(
            privacy.export_zip(user.id, request.app.state.settings),
            media_type="application/zip",
            headers={
                "content-disposition": f'attachment; filename="okktopus-export-{stamp}.zip"',
                "cache-control": "no-store",
            },
        )

    @get("/export/status", cache=False)
    async def export_status(self, request: Request) -> Template:
        settings = request.app.state.settings
        export = await exports.latest(current_user(request).id)
        if export and export.status == "done" and export.expires_at < datetime.now(UTC):
            export = None  # expired, awaiting the purge
        link = exports.signed_link(settings, export) if export and export.status == "done" else ""
        return render(request, "partials/export_status.html", export=export, link=link)

    @get("/exports/{name:str}", cache=False)
    async def export_download(
        self, request: Request, name: str, expires: str = "", signature: str = ""
    ) -> Stream:
        settings = request.app.state.settings
        token = name.removesuffix(".zip")
        verdict = exports.check_link(settings, token, expires, signature)
        if verdict == "bad":
            raise PermissionDeniedException("This download link is not valid.")
        if verdict == "expired":
            raise HTTPException(
                status_code=410,
                detail="This download link has expired. Start a new export from Settings.",
            )
        export = await exports.find(current_user(request).id, token)
        if export is None or export.status != "done":
            raise NotFoundException("No such export.")
        stamp = export.created_at.strftime("%Y%m%d")
        return Stream(
            exports.download(export, settings),
            media_type="application/zip",
            headers={
                "content-disposition": f'attachment; filename="okktopus-export-{stamp}.zip"',
                "content-length": str(export.size),
                "cache-control": "no-store",
            },
        )

    @post("/delete")
    async def delete(self, request: Request, data: FormData) -> Redirect:
        user = current_user(request)
        typed = str(data.get("confirm_email", "")).strip().lower()
        if not typed or typed != user.email.strip().lower():
            flash(request, "Type your email address exactly to delete your account.", "error")
            return Redirect("/settings#delete")
        request.clear_session()
        await privacy.delete_user(user.id, request.app.state.settings)
        return Redirect("/account-deleted")


@get("/account-deleted")
async def account_deleted(request: Request) -> Template:
    return render(request, "pages/account_deleted.html")


def owner_only(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    user = current_user(connection)
    if user is None or not user.is_owner:
        raise NotFoundException("Not found")


class OperatorController(Controller):
    path = "/operator"
    guards = [signed_in, owner_only]

    @get("/")
    async def index(self, request: Request) -> Template:
        people = await User.select(
            User.id,
            User.email,
            User.name,
            User.created_at,
            User.is_owner,
            User.deletion_requested_at,
        ).order_by(User.id)
        counts = await Account.raw(
            'SELECT "user", count(*) AS n FROM accounts WHERE status = \'active\' GROUP BY "user"'
        )
        by_user = {row["user"]: row["n"] for row in counts}
        for person in people:
            person["accounts"] = by_user.get(person["id"], 0)
        database = await health._database()
        queue, worker = await asyncio.gather(health._queue(request), health._worker())
        failed = await PostTarget.count().where(PostTarget.status == "failed")
        return render(
            request,
            "pages/operator.html",
            active="operator",
            people=people,
            health={"database": database, "queue": queue, "worker": worker},
            failed=failed,
        )

    @post("/users/{user_id:int}/delete")
    async def delete_user(
        self, request: Request, user_id: FromPath[int], data: FormData
    ) -> Redirect:
        me = current_user(request)
        person = await User.objects().get(User.id == user_id)
        if person is None:
            raise NotFoundException("No such user.")
        if person.id == me.id:
            flash(request, "Delete your own account from Settings.", category="error")
            return Redirect("/operator")
        if str(data.get("confirm_email", "")).strip().lower() != person.email.strip().lower():
            flash(request, "Type the person's email address to delete their account.", "error")
            return Redirect("/operator")
        done = await privacy.delete_user(user_id, request.app.state.settings)
        flash(
            request,
            "The account is deleted."
            if done
            else "The account is deleted; a platform revocation will be retried by the purge job.",
            category="success",
        )
        return Redirect("/operator")
