"""Sign-in with Google (or the sandbox provider), first-run consent, sign-out."""

from __future__ import annotations

import zoneinfo
from typing import Annotated

from litestar import Controller, Request, get, post
from litestar.enums import RequestEncodingType
from litestar.params import Body
from litestar.plugins.flash import flash
from litestar.response import Redirect, Template

from src import audit, http, users
from src.db.session_store import rotate_session_id
from src.signin import SignInRefused
from src.web import SESSION_USER, current_user, render

PENDING = "oidc_pending"
TIMEZONES = sorted(zoneinfo.available_timezones() - {"localtime", "Factory"})
FormData = Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)]


class AuthController(Controller):
    path = "/auth"

    @get("/login")
    async def login(self, request: Request) -> Redirect:
        try:
            url, pending = await request.app.state.oidc.start()
        except http.HTTPError:
            flash(request, "The sign-in service cannot be reached. Try again shortly.", "error")
            return Redirect("/")
        request.session[PENDING] = pending
        return Redirect(url)

    @get("/callback")
    async def callback(self, request: Request) -> Redirect:
        pending = request.session.pop(PENDING, None)
        settings = request.app.state.settings
        try:
            claims = await request.app.state.oidc.finish(dict(request.query_params), pending)
            user, created = await users.sign_in(claims, settings)
        except SignInRefused as refusal:
            request.session.pop(SESSION_USER, None)
            await audit.record("sign_in_refused", None, request, reason=str(refusal)[:200])
            flash(request, str(refusal), category="error")
            return Redirect("/")
        rotate_session_id(request)  # a session id planted before sign-in dies here
        old_id = request.cookies.get(request.app.state.session_config.key)
        if old_id:
            await request.app.stores.get("sessions").delete(old_id)
        request.set_session({SESSION_USER: user.id})
        await audit.record("sign_up" if created else "sign_in", user.id, request)
        if users.needs_welcome(user):
            return Redirect("/auth/welcome")
        flash(request, f"Welcome back, {user.name}.", category="success")
        return Redirect("/calendar")

    @get("/welcome")
    async def welcome(self, request: Request) -> Template | Redirect:
        user = current_user(request)
        if user is None:
            return Redirect("/")
        return _welcome_page(request, user.timezone)

    @post("/welcome")
    async def confirm(self, request: Request, data: FormData) -> Template | Redirect:
        user = current_user(request)
        if user is None:
            return Redirect("/")
        timezone = data.get("timezone", "UTC")
        if not (data.get("age_confirmed") and data.get("policy_accepted")):
            error = "Please confirm that you are 16 or older and that you accept the policy."
            return _welcome_page(request, timezone, error=error, status=400)
        if timezone not in TIMEZONES and timezone != "UTC":
            return _welcome_page(request, "UTC", error=f"Unknown time zone {timezone}.", status=400)
        await users.confirm_welcome(user, timezone)
        await audit.record("consent_given", user.id, request, age=True, policy=True)
        flash(request, "You're all set. Connect an account to start posting.", category="success")
        return Redirect("/calendar")

    @post("/logout")
    async def logout(self, request: Request) -> Redirect:
        user = current_user(request)
        if user is not None:
            await audit.record("sign_out", user.id, request)
        request.clear_session()
        return Redirect("/")


def _welcome_page(request: Request, timezone: str, error: str = "", status: int = 200) -> Template:
    page = render(
        request,
        "pages/welcome.html",
        timezones=TIMEZONES,
        detected_timezone=timezone,
        error=error,
    )
    page.status_code = status
    return page
