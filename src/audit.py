"""The audit log: sign-ins and sensitive actions, so people can spot misuse."""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection

from src.db.tables import AuditEvent


def client_of(connection: ASGIConnection) -> tuple[str, str]:
    ip = connection.client.host if connection.client else ""
    return ip, connection.headers.get("user-agent", "")[:500]


async def record(
    action: str,
    user_id: int | None,
    connection: ASGIConnection | None = None,
    **detail: Any,
) -> None:
    ip, agent = client_of(connection) if connection is not None else ("", "")
    await AuditEvent(
        {
            AuditEvent.user: user_id,
            AuditEvent.action: action,
            AuditEvent.ip: ip,
            AuditEvent.user_agent: agent,
            AuditEvent.detail: detail,
        }
    ).save()
