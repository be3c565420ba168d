"""A byte range of a local file, read in pieces off the event loop: the local media
store serves from it and publishers upload from it, never holding a whole file."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

CHUNK = 256 * 1024


async def file_chunks(
    path: str | Path, start: int = 0, end: int | None = None, size: int = CHUNK
) -> AsyncIterator[bytes]:
    """Bytes start..end (inclusive; None: to the end of the file)."""
    handle = await asyncio.to_thread(open, path, "rb")
    try:
        await asyncio.to_thread(handle.seek, start)
        left = None if end is None else end - start + 1
        while left is None or left > 0:
            chunk = await asyncio.to_thread(handle.read, size if left is None else min(size, left))
            if not chunk:
                break
            if left is not None:
                left -= len(chunk)
            yield chunk
    finally:
        await asyncio.to_thread(handle.close)
