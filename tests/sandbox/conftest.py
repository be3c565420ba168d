"""The standalone sandbox on a real loopback port, reset before each test."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from src.sandbox import SandboxConfig, create_sandbox_app
from tests.servers import MediaHost, free_port, serve_asgi


class Sandbox:
    def __init__(self, url: str, app) -> None:
        self.url = url
        self.app = app
        self.admin = httpx.Client(base_url=url + "/admin", timeout=10)

    @property
    def state(self):
        return self.app.state.sandbox

    def reset(self) -> None:
        self.admin.post("/reset").raise_for_status()
        self.admin.delete("/faults").raise_for_status()

    def fault(self, **rule) -> dict:
        response = self.admin.post("/faults", json=rule)
        response.raise_for_status()
        return response.json()

    def published(self, **filters) -> list[dict]:
        return self.admin.get("/published", params=filters).json()

    def records(self, **filters) -> list[dict]:
        return self.admin.get("/records", params=filters).json()

    def advance(self, seconds: float) -> None:
        self.admin.post("/clock", json={"advance": seconds}).raise_for_status()

    def configure(self, **settings) -> None:
        self.admin.patch("/config", json=settings).raise_for_status()


@pytest.fixture(scope="session")
def _sandbox_server() -> Iterator[Sandbox]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    app = create_sandbox_app(SandboxConfig(base_url=url, processing_delay=0.2))
    with serve_asgi(app, port=port):
        yield Sandbox(url, app)


@pytest.fixture
def sandbox(_sandbox_server: Sandbox) -> Iterator[Sandbox]:
    defaults = SandboxConfig(base_url=_sandbox_server.url, processing_delay=0.2)
    _sandbox_server.state.config.__dict__.update(defaults.__dict__)
    _sandbox_server.reset()
    yield _sandbox_server


@pytest.fixture(scope="session")
def media_host() -> Iterator[MediaHost]:
    host = MediaHost()
    yield host
    host.close()
