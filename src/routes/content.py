"""The Content page (sources, Sync now, history with per-file errors, adding a git
repository), the JSON Schema of post files, and the forge webhooks. Thin: the work is
in src/content/."""

from __future__ import annotations

import json
import secrets
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.enums import RequestEncodingType
from litestar.exceptions import NotFoundException
from litestar.params import Body, FromPath
from litestar.plugins.flash import flash
from litestar.response import Redirect, Template

from src import jobs
from src.config import ROOT
from src.content import hooks, service
from src.db.tables import ContentSource
from src.web import current_user, render, signed_in

FormData = Annotated[dict[str, Any], Body(media_type=RequestEncodingType.URL_ENCODED)]
SCHEMA_PATH = ROOT / "src" / "content" / "schema.json"
HOOK_MAX_BYTES = 25 * 1024 * 1024  # GitHub's largest push payload


async def _cards(user_id: int) -> list[dict[str, Any]]:
    sources = await service.list_sources(user_id)
    last = await service.last_runs([s.id for s in sources])
    return [
        {"source": s, "run": _loaded(last.get(s.id)), "label": service.label(s)} for s in sources
    ]


def _loaded(run: dict[str, Any] | None) -> dict[str, Any] | None:
    if run is not None and isinstance(run.get("errors"), str):
        run = {**run, "errors": json.loads(run["errors"] or "[]")}
    return run


def _card(request: Request, source: ContentSource, run: Any, waiting_for: int | None = None):
    run = _loaded(run)
    pending = waiting_for is not None and (run is None or run["id"] <= waiting_for)
    if run is not None and run["status"] == "running":
        pending = True
    return render(
        request,
        "partials/content_source.html",
        card={"source": source, "run": run, "label": service.label(source)},
        pending=pending,
        waiting_for=waiting_for,
    )


class ContentController(Controller):
    path = "/content"
    guards = [signed_in]

    @get("/")
    async def index(self, request: Request) -> Template:
        user = current_user(request)
        await service.ensure_default(user)
        return render(
            request,
            "pages/content.html",
            active="content",
            cards=await _cards(user.id),
            schema_url=f"{request.app.state.settings.public_url}/content/schema.json",
            form={},
        )

    @post("/sources")
    async def add(self, request: Request, data: FormData) -> Template | Redirect:
        user = current_user(request)
        settings = request.app.state.settings
        try:
            source = await service.add_git(
                user,
                settings,
                name=data.get("name", ""),
                url=data.get("url", ""),
                branch=data.get("branch", "") or "main",
                subpath=data.get("subpath", ""),
                token=data.get("token", ""),
            )
        except service.SourceRefused as exc:
            page = render(
                request,
                "pages/content.html",
                active="content",
                cards=await _cards(user.id),
                schema_url=f"{settings.public_url}/content/schema.json",
                form={k: v for k, v in data.items() if k != "token"},
                form_error=str(exc),
            )
            page.status_code = 400
            return page
        await jobs.enqueue_sync(request.app.state.queue, source.id, "added")
        flash(request, f"Added {source.name}: its first sync is on its way.", category="success")
        return Redirect(f"/content/sources/{source.id}")

    @get("/sources/{source_id:int}")
    async def detail(self, request: Request, source_id: FromPath[int]) -> Template:
        user = current_user(request)
        source = await _owned(user.id, source_id)
        settings = request.app.state.settings
        runs = [_loaded(r) for r in await service.runs_of(source_id)]
        return render(
            request,
            "pages/content_source.html",
            active="content",
            source=source,
            label=service.label(source),
            runs=runs,
            webhook_url=service.webhook_url(source, settings),
            webhook_secret=service.webhook_secret(source, settings),
            file_url=lambda commit, path: service.file_url(source, commit, path),
        )

    @get("/sources/{source_id:int}/card")
    async def card(self, request: Request, source_id: FromPath[int]) -> Template:
        user = current_user(request)
        source = await _owned(user.id, source_id)
        waiting = request.query_params.get("after")
        last = (await service.last_runs([source_id])).get(source_id)
        after = int(waiting) if waiting and waiting.lstrip("-").isdigit() else None
        return _card(request, source, last, after)

    @post("/sources/{source_id:int}/sync")
    async def sync_now(self, request: Request, source_id: FromPath[int]) -> Template | Redirect:
        user = current_user(request)
        source = await _owned(user.id, source_id)
        last = (await service.last_runs([source_id])).get(source_id)
        if not source.enabled:
            flash(request, f"{source.name} is paused: resume it to sync.", category="warning")
        else:
            await jobs.enqueue_sync(request.app.state.queue, source_id, "manual")
        if request.headers.get("hx-request") == "true":
            return _card(request, source, last, last["id"] if last else 0)
        return Redirect("/content")

    @post("/sources/{source_id:int}/enabled")
    async def enabled(self, request: Request, source_id: FromPath[int], data: FormData) -> Redirect:
        user = current_user(request)
        await _owned(user.id, source_id)
        on = data.get("enabled") in ("1", "on", "true")
        source = await service.set_enabled(user.id, source_id, on)
        word = "resumed" if on else "paused: nothing syncs until you resume it"
        flash(request, f"{source.name} {word}.", category="success" if on else "info")
        return Redirect(f"/content/sources/{source_id}")


async def _owned(user_id: int, source_id: int) -> ContentSource:
    try:
        return await service.owned(user_id, source_id)
    except service.NotFound as exc:
        raise NotFoundException("No such content source.") from exc


@get("/content/schema.json", name="content-schema")
async def content_schema() -> Response:
    """The JSON Schema of post files, for editors (`# yaml-language-server: $schema=…`)."""
    return Response(
        SCHEMA_PATH.read_bytes(),
        media_type="application/schema+json",
        headers={"cache-control": "public, max-age=3600"},
    )


@post("/hooks/content/{source_id:int}", status_code=202, request_max_body_size=HOOK_MAX_BYTES)
async def content_hook(request: Request, source_id: FromPath[int]) -> Response:
    """A push from GitHub, GitLab, Gitea or Forgejo: verified with the source's secret,
    then a sync is queued (the worker fetches; the hook never trusts the payload)."""
    body = await request.body()
    source = await ContentSource.objects().get(ContentSource.id == source_id)
    secret = service.webhook_secret(source, request.app.state.settings) if source else None
    forge = hooks.sender(request.headers, body, secret)
    if source is None or forge is None:
        return Response({"detail": "Unknown source or bad signature."}, status_code=401)
    if hooks.event(request.headers) == "ping":
        return Response({"ok": True, "forge": forge}, status_code=200)
    branch = hooks.pushed_branch(body)
    if branch is not None and branch != source.branch:
        return Response({"queued": False, "reason": f"push to {branch}"}, status_code=202)
    if not source.enabled:
        return Response({"queued": False, "reason": "source paused"}, status_code=202)
    after = hooks.after_commit(body) or secrets.token_hex(6)
    await jobs.enqueue_sync(
        request.app.state.queue, source.id, "webhook", key=f"content-sync:{source.id}:{after}"
    )
    return Response({"queued": True, "forge": forge}, status_code=202)
