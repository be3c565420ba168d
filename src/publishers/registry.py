"""Which publisher serves a platform, and where it reaches it: the real hosts with the
operator's app credentials, or the mounted sandbox with its well-known test apps."""

from __future__ import annotations

import importlib

from src.config import Settings
from src.publishers.base import Endpoints, Publisher

PLATFORMS = ("facebook", "instagram", "tiktok", "x")
TITLES = {"facebook": "Facebook Page", "instagram": "Instagram", "tiktok": "TikTok", "x": "X"}


def endpoints(platform: str, settings: Settings) -> Endpoints:
    if settings.sandbox_enabled:
        return _sandbox_endpoints(platform, settings)
    if platform in ("facebook", "instagram"):
        return Endpoints(
            settings.facebook_app_id,
            settings.facebook_app_secret,
            settings.facebook_dialog_url,
            settings.facebook_graph_url,
            version=settings.facebook_graph_version,
        )
    if platform == "tiktok":
        return Endpoints(
            settings.tiktok_client_key,
            settings.tiktok_client_secret,
            settings.tiktok_auth_url,
            settings.tiktok_api_url,
        )
    if platform == "x":
        return Endpoints(
            settings.x_client_id, settings.x_client_secret, settings.x_auth_url, settings.x_api_url
        )
    raise KeyError(platform)


def _sandbox_endpoints(platform: str, settings: Settings) -> Endpoints:
    from src.sandbox.config import SandboxConfig

    sandbox, base = SandboxConfig(), settings.sandbox_url
    if platform in ("facebook", "instagram"):
        return Endpoints(
            sandbox.facebook_app_id,
            sandbox.facebook_app_secret,
            f"{base}/facebook/www",
            f"{base}/facebook/graph",
            version=settings.facebook_graph_version,
        )
    if platform == "tiktok":
        return Endpoints(
            sandbox.tiktok_client_key,
            sandbox.tiktok_client_secret,
            f"{base}/tiktok/www",
            f"{base}/tiktok/open",
        )
    if platform == "x":
        return Endpoints(
            sandbox.x_client_id, sandbox.x_client_secret, f"{base}/x/www", f"{base}/x/api"
        )
    raise KeyError(platform)


def get_publisher(platform: str, settings: Settings) -> Publisher:
    if platform not in PLATFORMS:
        raise KeyError(platform)
    module = importlib.import_module(f"src.publishers.{platform}")
    return module.make(endpoints(platform, settings), timeout=settings.http_timeout_s)
