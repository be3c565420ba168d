"""Settings: the signed-in person's profile and recent account activity."""

from __future__ import annotations

from litestar import Request, get
from litestar.response import Template

from src.db.tables import AuditEvent
from src.routes.auth import TIMEZONES
from src.web import current_user, render, signed_in

ACTIVITY_SHOWN = 20
ACTION_LABELS = {
    "sign_up": "Signed up",
    "sign_in": "Signed in",
    "sign_out": "Signed out",
    "consent_given": "Confirmed age and privacy policy",
    "profile_updated": "Corrected profile",
    "data_exported": "Downloaded data export",
}


@get("/settings", guards=[signed_in])
async def settings_page(request: Request) -> Template:
    user = current_user(request)
    events = (
        await AuditEvent.select(
            AuditEvent.action, AuditEvent.ip, AuditEvent.user_agent, AuditEvent.created_at
        )
        .where((AuditEvent.user == user.id) & (AuditEvent.action != "ai_suggest"))
        .order_by(AuditEvent.created_at, ascending=False)
        .limit(ACTIVITY_SHOWN)
    )
    for event in events:
        event["label"] = ACTION_LABELS.get(event["action"], event["action"].replace("_", " "))
    return render(
        request,
        "pages/settings.html",
        active="settings",
        user=user,
        events=events,
        timezones=TIMEZONES,
    )
