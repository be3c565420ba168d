"""The one outbound HTTP client (httpx's API, served by httpx2 for speed under
concurrency). Every call to a platform, Google or the AI service goes through here, so
the client, its limits and its timeouts change in one place."""

from __future__ import annotations

import httpx2 as httpx

HTTPError = httpx.HTTPError
TimeoutException = httpx.TimeoutException
Response = httpx.Response

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
_client: httpx.AsyncClient | None = None


def client() -> httpx.AsyncClient:
    """The process-wide client (created on first use, in the running event loop)."""
    global _client
    if _client is None or _client.is_closed:
        _client = httpx.AsyncClient(
            timeout=DEFAULT_TIMEOUT,
            # An idle connection is dropped a second before the common 5 s server
            # keep-alive (uvicorn's default): reusing one the server is closing fails
            # a POST whose fate is then unknown.
            limits=httpx.Limits(
                max_connections=200, max_keepalive_connections=50, keepalive_expiry=4.0
            ),
            headers={"User-Agent": "OKKTOPUS/0.1"},
        )
    return _client


async def close() -> None:
    global _client
    if _client is not None:
        await _client.aclose()
        _client = None
