"""Sandbox fake: meta (to be written)."""

from __future__ import annotations

from src.sandbox.state import SandboxState

PLATFORM = "facebook"


def seed(state: SandboxState) -> None:
    pass


def routes() -> list:
    return []
