"""Sandbox fake: tiktok (to be written)."""

from __future__ import annotations

from src.sandbox.state import SandboxState

PLATFORM = "tiktok"


def seed(state: SandboxState) -> None:
    pass


def routes() -> list:
    return []
