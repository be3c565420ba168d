"""The app as a real process, instrumented for measurement (tests and benchmarks only;
nothing of this is in the product):

    python -m tests.instrumented --port 8123 [--bare]

runs what `okktopus run --no-worker` runs, but counts every SQL statement sent through
asyncpg (a patch of asyncpg's Connection in this process) and times every request. Each
response carries `x-sql-statements` (statements run while handling it) and
`server-timing: app;dur=<ms>` (from the request's arrival to its response headers, which
Litestar sends once the body is rendered). Requests must be sequential for the count to
be exact, and no worker runs in the process.

`--bare` also serves GET /__bare__: a bare Litestar handler rendering a small Jinja
template with the same template engine, the baseline of bench/calendar_month.py."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from litestar import Litestar, get
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Template
from litestar.template.config import TemplateConfig

from tests.appserver import ROOT, AppServer

STATEMENTS = 0


def count_statements() -> None:
    """Count statements at asyncpg's entry points (each is one round of SQL)."""
    from asyncpg.connection import Connection

    echo = bool(os.environ.get("OKK_ECHO_SQL"))

    def counted(original, only_without_args: bool = False):
        async def wrapper(self, query, *args, **kwargs):
            global STATEMENTS
            # asyncpg's pool resets a connection it takes back: housekeeping, not a query.
            housekeeping = isinstance(query, str) and "RESET ALL" in query
            if (not only_without_args or not args) and not housekeeping:
                STATEMENTS += 1
                if echo:
                    print("SQL:", " ".join(str(query).split())[:160], file=sys.stderr)
            return await original(self, query, *args, **kwargs)

        return wrapper

    Connection._execute = counted(Connection._execute)  # fetch, fetchrow, fetchval, execute(args)
    Connection._executemany = counted(Connection._executemany)
    Connection.execute = counted(Connection.execute, only_without_args=True)  # simple protocol


class Measure:
    """ASGI wrapper adding the statement count and the server time to every response."""

    def __init__(self, app, bare=None) -> None:
        self.app = app
        self.bare = bare

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        target = self.bare if self.bare and scope["path"] == "/__bare__" else self.app
        began, before = time.perf_counter(), STATEMENTS

        async def measured_send(message):
            if message["type"] == "http.response.start":
                took = (time.perf_counter() - began) * 1000
                headers = list(message.get("headers", []))
                headers.append((b"x-sql-statements", str(STATEMENTS - before).encode()))
                headers.append((b"server-timing", f"app;dur={took:.3f}".encode()))
                message = {**message, "headers": headers}
            await send(message)

        await target(scope, receive, measured_send)


def bare_app():
    """A bare Litestar handler returning a small template (the benchmark's baseline)."""
    directory = ROOT / "var" / "bench" / "bare_templates"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "small.html").write_text(
        "<!doctype html><title>{{ title }}</title><ul>{% for i in items %}<li>{{ i }}</li>"
        "{% endfor %}</ul>\n"
    )

    @get("/__bare__", cache=False)
    async def small() -> Template:
        return Template("small.html", context={"title": "bare", "items": list(range(10))})

    return Litestar(
        [small],
        template_config=TemplateConfig(directory=directory, engine=JinjaTemplateEngine),
        openapi_config=None,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bare", action="store_true")
    options = parser.parse_args()
    count_statements()

    import uvicorn

    from src.__main__ import _migrate
    from src.app import create_app
    from src.config import get_settings
    from src.db.engine import database_dsn

    settings = dataclasses.replace(get_settings(), host="127.0.0.1", port=options.port)
    database_dsn()
    asyncio.run(_migrate())
    app = Measure(create_app(settings, worker=False), bare_app() if options.bare else None)
    uvicorn.run(app, host="127.0.0.1", port=options.port, log_level="warning", lifespan="on")


class InstrumentedServer(AppServer):
    """An AppServer running `python -m tests.instrumented` (no worker)."""

    def __init__(self, *args, bare: bool = False, **kwargs) -> None:
        super().__init__(*args, worker=False, **kwargs)
        self.bare = bare

    def start(self, timeout: float = 60) -> None:
        args = [sys.executable, "-m", "tests.instrumented", "--port", str(self.port)]
        if self.bare:
            args.append("--bare")
        self.log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            args, cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.logs()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code in (200, 503):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.process.send_signal(signal.SIGINT)
        raise RuntimeError(f"server did not answer within {timeout}s:\n{self.logs()}")


def statements(response: httpx.Response) -> int:
    return int(response.headers["x-sql-statements"])


def server_ms(response: httpx.Response) -> float:
    return float(response.headers["server-timing"].split("dur=")[1])


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
