"""Step machinery shared by the Facebook and Instagram publish flows (facebook.py,
instagram.py): bracketing the irreversible call with progress["attempting"], recording
its answer, reading Graph timestamps, and listing an account's recent objects for
recover().

The rule both flows follow: right before a call that makes something public, progress
gets "attempting" = <step> and "attempt_started" = our clock, and is checkpointed. Once
the platform answered, the new id goes into progress and "attempting" is dropped
(checkpointed again). When the platform *refused* (an error envelope that is not
transient) the post certainly does not exist, so "attempting" is dropped before the
error is raised; when the answer is unknown (timeout, 5xx) it stays, and recover()
looks at the platform before anything is tried again."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from src.publishers.base import Checkpoint, PlatformError, Unconfirmed
from src.publishers.meta_common import Graph, GraphError

ATTEMPTING = "attempting"
STARTED = "attempt_started"
# recover() accepts objects created this long before the attempt started: our clock and
# Meta's may differ a little, and Graph times are whole seconds.
RECOVERY_MARGIN_S = 120.0
RECENT_LIMIT = "25"  # a Page or account rarely posts more than this within minutes
GRAPH_TIME = "%Y-%m-%dT%H:%M:%S%z"  # 2026-11-20T10:15:30+0000


async def irreversible(
    progress: dict[str, Any],
    checkpoint: Checkpoint,
    step: str,
    call: Callable[[], Awaitable[dict[str, Any]]],
) -> dict[str, Any]:
    """Mark `step` as attempted (durably), then make the call."""
    progress[ATTEMPTING] = step
    progress[STARTED] = time.time()
    await checkpoint(progress)
    try:
        return await call()
    except PlatformError as error:
        if error.kind != "transient":  # refused: it did not happen
            await settle(progress, checkpoint)
        raise


async def settle(progress: dict[str, Any], checkpoint: Checkpoint, **ids: Any) -> None:
    """Record what the irreversible call answered and clear the attempt mark."""
    progress.update(ids)
    progress.pop(ATTEMPTING, None)
    await checkpoint(progress)


async def no_checkpoint(progress: dict[str, Any]) -> None:
    """recover() has no checkpoint: the caller stores the progress it edited."""


def since(progress: dict[str, Any]) -> float:
    """The earliest creation time (UNIX seconds) an object of this attempt can have."""
    started = progress.get(STARTED)
    return float(started) - RECOVERY_MARGIN_S if isinstance(started, int | float) else 0.0


def graph_time(value: Any) -> float | None:
    try:
        return datetime.strptime(str(value), GRAPH_TIME).timestamp()
    except ValueError:
        return None


async def recent(
    graph: Graph, path: str, token: str, fields: str, after: float, time_field: str
) -> list[dict[str, Any]]:
    """The newest objects of an edge (feed, videos, media) created at `after` or later,
    newest first. One page is enough: recover() runs minutes after the attempt."""
    body = await graph.get(path, token, fields=f"{fields},{time_field}", limit=RECENT_LIMIT)
    found = []
    for item in body.get("data") or []:
        created = graph_time(item.get(time_field)) if isinstance(item, dict) else None
        if created is not None and created >= after:
            found.append(item)
    return found


def cannot_look(error: PlatformError, where: str) -> PlatformError | Unconfirmed:
    """A failed look during recovery. Temporary trouble: look again later (the error as
    is). A refusal (a permission gone, say) means we cannot know whether the post went
    out, which is not the same as its having failed."""
    if error.kind != "permanent":
        return error
    return Unconfirmed(
        f"We could not check {where} ({error.message}), so we cannot tell whether the post "
        "went out: check there before posting it again."
    )


def missing_edge(error: GraphError) -> bool:
    """Graph's answer for an edge this server does not serve (code 100)."""
    return error.graph_code == 100 and "nonexisting field" in error.raw_message.lower()


def refusal(message: str, code: str) -> PlatformError:
    """A permanent refusal we can tell before asking the platform."""
    return PlatformError("permanent", message, code=code)


def absolute(url: Any, host: str) -> str | None:
    """Graph gives some permalinks relative to www.facebook.com (videos)."""
    if not url:
        return None
    text = str(url)
    return f"{host.rstrip('/')}{text}" if text.startswith("/") else text
