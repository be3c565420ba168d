"""Server-side sessions in PostgreSQL: shared by every web process, revocable per user,
and rotated at sign-in."""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime, timedelta

from litestar.connection import ASGIConnection
from litestar.middleware.session.server_side import (
    ServerSideSessionBackend,
    ServerSideSessionConfig,
)
from litestar.stores.base import Store

from src.db.tables import Session

ROTATE_FLAG = "okk_rotate_session"


def _seconds(value: int | timedelta | None) -> int | None:
    if isinstance(value, timedelta):
        return int(value.total_seconds())
    return value


def _user_id(value: str | bytes) -> int | None:
    try:
        data = json.loads(value)
    except ValueError:
        return None
    user_id = data.get("user_id") if isinstance(data, dict) else None
    return user_id if isinstance(user_id, int) else None


class PostgresSessionStore(Store):
    """Litestar Store on the `sessions` table. The user id is lifted out of the session
    data into its own column so that all sessions of a user can be ended at once."""

    async def set(self, key: str, value: str | bytes, expires_in: int | timedelta | None = None):
        text = value.decode() if isinstance(value, bytes) else value
        expires = datetime.now(UTC) + timedelta(seconds=_seconds(expires_in) or 14 * 86400)
        await Session.raw(
            'INSERT INTO sessions (id, "user", data, expires_at, created_at, updated_at) '
            "VALUES ({}, {}, {}, {}, now(), now()) ON CONFLICT (id) DO UPDATE SET "
            '"user" = EXCLUDED."user", data = EXCLUDED.data, expires_at = EXCLUDED.expires_at, '
            "updated_at = now()",
            key,
            _user_id(text),
            text,
            expires,
        )

    async def get(self, key: str, renew_for: int | timedelta | None = None) -> bytes | None:
        renew = _seconds(renew_for)
        if renew:
            rows = await Session.raw(
                "UPDATE sessions SET expires_at = now() + make_interval(secs => {}) "
                "WHERE id = {} AND expires_at > now() RETURNING data",
                float(renew),
                key,
            )
        else:
            rows = await Session.raw(
                "SELECT data FROM sessions WHERE id = {} AND expires_at > now()", key
            )
        return rows[0]["data"].encode() if rows else None

    async def delete(self, key: str) -> None:
        await Session.delete().where(Session.id == key)

    async def delete_all(self) -> None:
        await Session.delete(force=True)

    async def exists(self, key: str) -> bool:
        return await self.get(key) is not None

    async def expires_in(self, key: str) -> int | None:
        rows = await Session.raw(
            "SELECT extract(epoch FROM expires_at - now())::int AS left FROM sessions "
            "WHERE id = {}",
            key,
        )
        return rows[0]["left"] if rows else None

    @staticmethod
    async def end_user_sessions(user_id: int) -> int:
        rows = await Session.raw('DELETE FROM sessions WHERE "user" = {} RETURNING id', user_id)
        return len(rows)

    @staticmethod
    async def purge_expired() -> None:
        await Session.raw("DELETE FROM sessions WHERE expires_at <= now()")


class RotatingSessionBackend(ServerSideSessionBackend):
    """Issues a fresh session id when a handler asks for it (sign-in), so a session id
    planted before sign-in is worthless afterwards."""

    def get_session_id(self, connection: ASGIConnection) -> str:
        state = connection.scope.setdefault("state", {})
        if state.get(ROTATE_FLAG):
            new_id = state.get("okk_new_session_id") or secrets.token_hex(32)
            state["okk_new_session_id"] = new_id
            return new_id
        return super().get_session_id(connection)


class SessionConfig(ServerSideSessionConfig):
    _backend_class = RotatingSessionBackend  # type: ignore[assignment]


def rotate_session_id(connection: ASGIConnection) -> None:
    connection.scope.setdefault("state", {})[ROTATE_FLAG] = True
