"""Sandbox fake: openai_api (to be written)."""

from __future__ import annotations

from src.sandbox.state import SandboxState

PLATFORM = "openai"


def seed(state: SandboxState) -> None:
    pass


def routes() -> list:
    return []
