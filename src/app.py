"""create_app(): plugins, middleware, routers, lifespan; nothing else."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from litestar import Litestar, asgi
from litestar.config.csrf import CSRFConfig
from litestar.exceptions import HTTPException, NotAuthorizedException
from litestar.logging.config import LoggingConfig
from litestar.plugins.flash import FlashConfig, FlashPlugin
from litestar.plugins.htmx import HTMXPlugin
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.static_files import create_static_files_router
from litestar.stores.registry import StoreRegistry
from litestar.template.config import TemplateConfig
from litestar.types import Receive, Scope, Send

from src import http, jobs
from src.config import ROOT, Settings, get_settings
from src.db.engine import close_pool, start_pool
from src.db.session_store import PostgresSessionStore, SessionConfig
from src.routes import ai as ai_routes
from src.routes import auth, banners, compose, connections, content, health, media, pages
from src.routes import calendar as calendar_routes
from src.routes import posts as posts_routes
from src.routes import privacy as privacy_routes
from src.routes import settings as settings_routes
from src.signin import OidcProvider, client_config
from src.web import (
    CurrentUserMiddleware,
    StaleCsrfCookieMiddleware,
    http_error,
    not_authorized,
    register_filters,
)

PUBLIC_PREFIXES = ["/static", "/sandbox", "/healthz"]


def _sandbox_mount(settings: Settings):
    from src.sandbox import SandboxConfig, create_sandbox_app

    sandbox = create_sandbox_app(SandboxConfig(base_url=settings.sandbox_url))

    @asgi("/sandbox", is_mount=True, copy_scope=True)
    async def mounted(scope: Scope, receive: Receive, send: Send) -> None:
        await sandbox(scope, receive, send)

    return mounted, sandbox


def create_app(settings: Settings | None = None, *, worker: bool = False) -> Litestar:
    """The web app. `worker=True` also runs a SAQ worker in this process."""
    settings = settings or get_settings()
    session_config = SessionConfig(
        key="okk_session",
        max_age=settings.session_max_age,
        httponly=True,
        samesite="lax",
        secure=settings.secure_cookies,
        exclude=PUBLIC_PREFIXES,
        renew_on_access=False,
    )
    csrf_config = CSRFConfig(
        secret=settings.secret_key,
        cookie_name="csrftoken",
        header_name="x-csrftoken",
        cookie_httponly=True,
        cookie_samesite="lax",
        cookie_secure=settings.secure_cookies,
        exclude=["/sandbox", "/hooks"],
    )
    template_config = TemplateConfig(
        directory=ROOT / "templates", engine=JinjaTemplateEngine, engine_callback=register_filters
    )
    handlers: list = [
        health.healthz,
        auth.AuthController,
        pages.landing,
        pages.privacy,
        *pages.PLACEHOLDERS,
        settings_routes.settings_page,
        privacy_routes.PrivacyController,
        privacy_routes.OperatorController,
        privacy_routes.account_deleted,
        connections.ConnectionsController,
        banners.banners,
        media.MediaController,
        media.signed_media,
        compose.ComposeController,
        compose.EditController,
        ai_routes.AIController,
        posts_routes.PostsController,
        content.ContentController,
        content.content_schema,
        content.content_hook,
        calendar_routes.router,
        create_static_files_router(path="/static", directories=[ROOT / "static"], name="static"),
    ]
    sandbox_app = None
    if settings.sandbox_enabled and not settings.sandbox_base_url:
        mount, sandbox_app = _sandbox_mount(settings)
        handlers.append(mount)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        await start_pool(min_size=1, max_size=settings.db_pool_size)
        queue = jobs.make_queue(settings)
        await queue.connect()
        app.state.queue = queue
        background = None
        if worker:
            background = jobs.BackgroundWorker(jobs.make_worker(settings, queue))
            await background.start()
        try:
            if sandbox_app is not None:
                async with sandbox_app.lifespan():
                    yield
            else:
                yield
        finally:
            if background is not None:
                await background.stop()
            await queue.disconnect()
            await http.close()
            await close_pool()

    app = Litestar(
        route_handlers=handlers,
        lifespan=[lifespan],
        middleware=[
            StaleCsrfCookieMiddleware(csrf_config.secret, csrf_config.cookie_name),
            session_config.middleware,
            CurrentUserMiddleware(),
        ],
        stores=StoreRegistry(stores={"sessions": PostgresSessionStore()}),
        csrf_config=csrf_config,
        template_config=template_config,
        plugins=[HTMXPlugin(), FlashPlugin(config=FlashConfig(template_config=template_config))],
        exception_handlers={
            NotAuthorizedException: not_authorized,
            HTTPException: http_error,
        },
        request_max_body_size=10 * 1024 * 1024,
        openapi_config=None,
        logging_config=LoggingConfig(
            log_exceptions="always",
            disable_stack_trace={401, 403, 404, 405, 413, 429},
            loggers={"httpx": {"level": "WARNING"}, "httpx2": {"level": "WARNING"}},
        ),
        debug=settings.debug,
    )
    app.state.settings = settings
    app.state.session_config = session_config
    app.state.oidc = OidcProvider(client_config(settings))
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    return app
