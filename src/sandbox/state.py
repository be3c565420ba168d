"""The sandbox's memory: test identities, tokens, platform objects, what was received
and published, and the fault rules. One instance per sandbox app."""

from __future__ import annotations

import itertools
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from src.sandbox.config import SandboxConfig


@dataclass
class Identity:
    """A test person (or page) at one platform."""

    platform: str
    id: str
    name: str
    username: str
    email: str = ""
    avatar_url: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Grant:
    """An authorization code, access token or refresh token issued by a fake."""

    value: str
    platform: str
    kind: str  # "code" | "access" | "refresh"
    user_id: str
    client_id: str
    scopes: list[str]
    expires_at: float | None
    revoked: bool = False
    used: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class FaultRule:
    """Make matching requests misbehave. `kind`:
    error (platform's server error) | rate_limit (429 + reset headers) | timeout (hang) |
    latency (delay, then answer normally) | expired_token | revoked_token | response
    (answer with `status`, `body`, `headers` as given)."""

    id: str
    platform: str = "*"
    path: str = "*"  # fnmatch pattern on the path inside the platform prefix
    method: str = "*"
    kind: str = "error"
    rate: float = 1.0
    remaining: int | None = None  # None: forever
    status: int | None = None
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    retry_after: int = 1
    latency_ms: int = 0
    hits: int = 0


class SandboxState:
    def __init__(
        self, config: SandboxConfig, seeders: list[Callable[[SandboxState], None]]
    ) -> None:
        self.config = config
        self.seeders = seeders
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self.reset()

    # -- lifecycle -------------------------------------------------------------------
    def reset(self) -> None:
        self.clock_offset = 0.0
        self.identities: dict[str, dict[str, Identity]] = {}
        self.grants: dict[str, Grant] = {}
        self.objects: dict[str, dict[str, Any]] = {}  # platform object id -> attributes
        self.records: list[dict[str, Any]] = []
        self.published: list[dict[str, Any]] = []
        self.faults: list[FaultRule] = []
        self.counters: dict[str, list[float]] = {}  # rate-limit windows
        self.flags: dict[str, Any] = {}  # per-platform switches (e.g. tiktok audited)
        for seed in self.seeders:  # each platform adds its test identities
            seed(self)

    # -- time ------------------------------------------------------------------------
    def now(self) -> float:
        return time.time() + self.clock_offset

    def advance(self, seconds: float) -> None:
        self.clock_offset += seconds

    # -- ids -------------------------------------------------------------------------
    def next_id(self, width: int = 15) -> str:
        """A numeric id like the platforms use (unique within this sandbox)."""
        return str(10 ** (width - 1) + next(self._ids) * 7919 + secrets.randbelow(7919))

    # -- identities ------------------------------------------------------------------
    def add_identity(self, identity: Identity) -> Identity:
        self.identities.setdefault(identity.platform, {})[identity.id] = identity
        return identity

    def identity(self, platform: str, user_id: str) -> Identity | None:
        return self.identities.get(platform, {}).get(user_id)

    def identities_of(self, platform: str) -> list[Identity]:
        return list(self.identities.get(platform, {}).values())

    # -- grants ----------------------------------------------------------------------
    def issue(
        self,
        platform: str,
        kind: str,
        user_id: str,
        client_id: str,
        scopes: list[str],
        ttl: float | None,
        prefix: str = "",
        **extra: Any,
    ) -> Grant:
        value = prefix + secrets.token_urlsafe(32)
        expires_at = None if ttl is None else self.now() + ttl
        grant = Grant(value, platform, kind, user_id, client_id, list(scopes), expires_at)
        grant.extra.update(extra)
        self.grants[value] = grant
        return grant

    def lookup(self, value: str | None, platform: str, kind: str) -> tuple[Grant | None, str]:
        """Find a live grant. Returns (grant, "") or (None, reason) with reason one of
        "missing", "invalid", "expired", "revoked"."""
        if not value:
            return None, "missing"
        grant = self.grants.get(value)
        if grant is None or grant.platform != platform or grant.kind != kind:
            return None, "invalid"
        if grant.revoked:
            return None, "revoked"
        if grant.expires_at is not None and grant.expires_at <= self.now():
            return None, "expired"
        return grant, ""

    def revoke_user_grants(self, platform: str, user_id: str, client_id: str | None = None) -> int:
        count = 0
        for grant in self.grants.values():
            mine = grant.platform == platform and grant.user_id == user_id
            if mine and not grant.revoked and client_id in (None, grant.client_id):
                grant.revoked = True
                count += 1
        return count

    # -- objects and outcomes --------------------------------------------------------
    def put(self, object_id: str, **attributes: Any) -> dict[str, Any]:
        obj = self.objects.setdefault(object_id, {"id": object_id})
        obj.update(attributes)
        return obj

    def get(self, object_id: str) -> dict[str, Any] | None:
        return self.objects.get(object_id)

    def publish(self, platform: str, account_id: str, kind: str, object_id: str, **details: Any):
        entry = {
            "platform": platform,
            "account_id": account_id,
            "kind": kind,
            "id": object_id,
            "published_at": self.now(),
            **details,
        }
        with self._lock:
            self.published.append(entry)
        return entry

    def record(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self.records.append(entry)
            if len(self.records) > 50_000:  # bounded memory under benchmarks
                del self.records[:10_000]

    # -- rate limits -----------------------------------------------------------------
    def hit(self, key: str, limit: int, window: float) -> tuple[bool, int, float]:
        """Count a call in a sliding window. Returns (allowed, remaining, reset_epoch)."""
        now = self.now()
        calls = [t for t in self.counters.get(key, []) if t > now - window]
        allowed = len(calls) < limit
        if allowed:
            calls.append(now)
        self.counters[key] = calls
        reset = (calls[0] + window) if calls else now + window
        return allowed, max(0, limit - len(calls)), reset
