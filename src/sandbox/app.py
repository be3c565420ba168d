"""Assemble the sandbox: every fake platform, the admin API, recording and faults."""

from __future__ import annotations

from types import ModuleType

from litestar import Litestar, Request
from litestar.middleware import DefineMiddleware

from src.sandbox import admin, google, meta, openai_api, tiktok, x
from src.sandbox.config import SandboxConfig
from src.sandbox.faults import SandboxMiddleware
from src.sandbox.state import SandboxState

# Each platform module exposes: PLATFORM (its URL prefix), seed(state), routes().
PLATFORMS: list[ModuleType] = [google, meta, tiktok, x, openai_api]


def sandbox_state(request: Request) -> SandboxState:
    return request.app.state.sandbox


def create_sandbox_app(config: SandboxConfig | None = None) -> Litestar:
    config = config or SandboxConfig()
    state = SandboxState(config, seeders=[module.seed for module in PLATFORMS])
    handlers = [handler for module in [*PLATFORMS, admin] for handler in module.routes()]
    app = Litestar(
        route_handlers=handlers,
        middleware=[DefineMiddleware(SandboxMiddleware, state=state)],
        openapi_config=None,
        request_max_body_size=config.max_pull_bytes,
    )
    app.state.sandbox = state
    return app
