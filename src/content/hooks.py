"""Webhooks from forges: who sent a push, checked with the source's secret.

GitHub signs the body with HMAC-SHA256 in `X-Hub-Signature-256: sha256=<hex>`; Gitea
and Forgejo sign it the same way without the prefix (`X-Gitea-Signature`,
`X-Forgejo-Signature`); GitLab sends the secret itself in `X-Gitlab-Token`. Every
comparison is constant-time, and a request that carries none of them is refused."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any


def _hex_hmac(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def sender(headers: Mapping[str, str], body: bytes, secret: str | None) -> str | None:
    """The forge whose signature (or token) checks out with `secret`, else None."""
    if not secret:
        return None
    github = headers.get("x-hub-signature-256")
    if github is not None:
        expected = "sha256=" + _hex_hmac(secret, body)
        return "github" if hmac.compare_digest(github.strip().lower(), expected) else None
    for header, name in (("x-gitea-signature", "gitea"), ("x-forgejo-signature", "forgejo")):
        signature = headers.get(header)
        if signature is not None:
            ok = hmac.compare_digest(signature.strip().lower(), _hex_hmac(secret, body))
            return name if ok else None
    token = headers.get("x-gitlab-token")
    if token is not None:
        return "gitlab" if hmac.compare_digest(token.encode(), secret.encode()) else None
    return None


def event(headers: Mapping[str, str]) -> str:
    for header in ("x-github-event", "x-gitea-event", "x-forgejo-event", "x-gitlab-event"):
        if value := headers.get(header):
            return value.lower()
    return ""


def pushed_branch(body: bytes) -> str | None:
    """The branch a push event names (`ref: refs/heads/<branch>`), if it names one."""
    try:
        payload: Any = json.loads(body or b"{}")
    except ValueError:
        return None
    ref = payload.get("ref") if isinstance(payload, dict) else None
    if isinstance(ref, str) and ref.startswith("refs/heads/"):
        return ref.removeprefix("refs/heads/")
    return None


def after_commit(body: bytes) -> str | None:
    try:
        payload: Any = json.loads(body or b"{}")
    except ValueError:
        return None
    after = payload.get("after") if isinstance(payload, dict) else None
    return after if isinstance(after, str) and len(after) <= 64 else None
