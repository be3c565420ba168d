"""Media: upload (streamed), serve to the owner, serve through signed URLs to platforms
that pull media, remove. Thin: receiving, probing and storage are the media domain's."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

from litestar import Controller, Request, Response, delete, get, post, route
from litestar.connection import ASGIConnection
from litestar.enums import HttpMethod
from litestar.exceptions import (
    InternalServerException,
    NotFoundException,
    PermissionDeniedException,
    ServiceUnavailableException,
)
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware.csrf import CSRFMiddleware
from litestar.params import FromPath, FromQuery
from litestar.response import Stream, Template

from src import media
from src.db.tables import Media
from src.web import current_user, render, signed_in

OWNER_CACHE = "private, max-age=3600"
SIGNED_CACHE = "private, max-age=60"  # never kept past the link's short life by a proxy


def csrf_header(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    """The upload route skips the CSRF middleware, which, without the header, would read
    the whole multipart body into memory looking for a form field. Here the header is
    required and checked (by Litestar's own comparison) before a byte of body is read."""
    config = connection.app.csrf_config
    assert config is not None
    token = connection.headers.get(config.header_name)
    cookie = connection.cookies.get(config.cookie_name)
    checker = CSRFMiddleware(app=None, config=config)  # type: ignore[arg-type]
    if not token or not cookie or not checker._csrf_tokens_match(token, cookie):
        raise PermissionDeniedException("CSRF token verification failed")


async def _body(request: Request) -> AsyncIterator[bytes]:
    """The request body. A client that leaves mid-upload (a closed tab) is an interrupted
    upload, not a server error with a stack trace in the log."""
    try:
        async for chunk in request.stream():
            yield chunk
    except InternalServerException as exc:
        if "disconnected" not in str(exc.detail):
            raise
        raise media.Interrupted("The upload was interrupted.") from None


def _is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def as_json(item: Media) -> dict[str, Any]:
    return {
        "id": item.id,
        "content_type": item.content_type,
        "bytes": item.bytes,
        "width": item.width,
        "height": item.height,
        "duration_ms": item.duration_ms,
        "url": f"/media/{item.id}",
        "thumbnail_url": f"/media/{item.id}/thumbnail" if item.thumbnail_key else None,
        "name": item.original_name,
    }


def _refusal(request: Request, error: media.MediaError) -> Response | Template:
    if _is_htmx(request):
        response = render(request, "partials/media_item.html", error=error.message)
        response.status_code = error.status
        return response
    return Response(
        {"status_code": error.status, "detail": error.message}, status_code=error.status
    )


async def _owned(request: Request, media_id: int) -> Media:
    try:
        return await media.get_owned(current_user(request).id, media_id)
    except media.NotFound:
        raise NotFoundException("No such media.") from None


async def _exists(store: media.MediaStore, key: str) -> bool:
    """Whether the store has the file; a store that cannot answer is a 503, not a 500."""
    try:
        return await store.exists(key)
    except media.StoreUnavailable as error:
        raise ServiceUnavailableException(error.message) from None


async def _send(request: Request, item: Media, cache: str) -> Response:
    """The file with its real type and length; one byte range on request (video seeking,
    platforms fetching in parts)."""
    store = media.get_store(request.app.state.settings)
    if not await _exists(store, item.storage_key):
        raise NotFoundException("The file of this media is missing.")
    size = item.bytes
    etag = f'"{item.sha256}"'
    headers = {
        "accept-ranges": "bytes",
        "cache-control": cache,
        "etag": etag,
        "x-content-type-options": "nosniff",
        "content-disposition": f"inline; filename*=UTF-8''{quote(item.original_name)}",
    }
    if request.headers.get("if-none-match") == etag:
        return Response(b"", status_code=304, headers=headers)
    try:
        span = media.byte_range(request.headers.get("range"), size)
    except media.RangeNotSatisfiable:
        return Response(b"", status_code=416, headers={"content-range": f"bytes */{size}"})
    start, end = span or (0, size - 1)
    headers["content-length"] = str(end - start + 1)
    status = 200
    if span is not None:
        status, headers["content-range"] = 206, f"bytes {start}-{end}/{size}"
    if request.method == HttpMethod.HEAD:
        return Response(b"", status_code=status, headers=headers, media_type=item.content_type)
    body = store.open(item.storage_key, start, end)
    return Stream(body, status_code=status, headers=headers, media_type=item.content_type)


class MediaController(Controller):
    path = "/media"
    guards = [signed_in]

    @post(
        "/",
        guards=[csrf_header],
        opt={"exclude_from_csrf": True},
        request_max_body_size=None,  # the media domain enforces the limits per kind
        status_code=201,
    )
    async def upload(self, request: Request) -> Response | Template:
        user = current_user(request)
        try:
            item = await media.upload(
                user.id,
                _body(request),
                request.headers.get("content-type", ""),
                request.content_length,
                request.app.state.settings,
            )
        except media.MediaError as error:
            return _refusal(request, error)
        if _is_htmx(request):
            response = render(request, "partials/media_item.html", m=item)
            response.status_code = 201
            return response
        return Response(as_json(item), status_code=201)

    @route("/{media_id:int}", http_method=[HttpMethod.GET, HttpMethod.HEAD])
    async def file(self, request: Request, media_id: FromPath[int]) -> Response:
        return await _send(request, await _owned(request, media_id), OWNER_CACHE)

    @get("/{media_id:int}/thumbnail")
    async def thumbnail(self, request: Request, media_id: FromPath[int]) -> Response:
        item = await _owned(request, media_id)
        store = media.get_store(request.app.state.settings)
        if not item.thumbnail_key or not await _exists(store, item.thumbnail_key):
            raise NotFoundException("This media has no thumbnail.")
        data = b"".join([chunk async for chunk in store.open(item.thumbnail_key)])
        headers = {"cache-control": OWNER_CACHE, "x-content-type-options": "nosniff"}
        return Response(data, media_type="image/webp", headers=headers)

    @delete("/{media_id:int}", status_code=200)
    async def remove(self, request: Request, media_id: FromPath[int]) -> Response:
        try:
            await media.remove(current_user(request).id, media_id, request.app.state.settings)
        except media.NotFound:
            raise NotFoundException("No such media.") from None
        except media.MediaError as error:  # in use: an answer, not an error worth a log
            return Response(
                {"status_code": error.status, "detail": error.message}, status_code=error.status
            )
        # The widget has already taken the item out of the list; nothing to show.
        return Response("", media_type="text/html")


@route("/m/{media_id:int}", http_method=[HttpMethod.GET, HttpMethod.HEAD], name="media-signed")
async def signed_media(
    request: Request,
    media_id: FromPath[int],
    expires: FromQuery[str] = "",
    signature: FromQuery[str] = "",
) -> Response:
    """Public (no session) and short-lived: for platforms that pull media by URL."""
    if not media.check_signed(media_id, expires, signature, request.app.state.settings):
        raise PermissionDeniedException("This link has expired or is not valid.")
    try:
        item = await media.get(media_id)
    except media.NotFound:
        raise NotFoundException("No such media.") from None
    return await _send(request, item, SIGNED_CACHE)
