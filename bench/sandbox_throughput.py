"""How many simple requests a second the standalone sandbox answers.

Each server (the sandbox, and a bare Litestar "hello" app as the ceiling of this client and
machine) runs under uvicorn (uvloop, httptools) in its own process on a free port. The load
comes from one aiohttp client on uvloop: ~100 µs of CPU a request, where httpx2 needs
~800 µs and would cap every figure near its own ~1,300 req/s. Prints the median of R runs.

    .venv/bin/python bench/sandbox_throughput.py [--requests 5000] [--concurrency 32]
                                                 [--runs 3] [--wait 10] [--pin]

Requests carry real tokens, minted through each fake's OAuth consent before measuring.
Rate limits must not turn this into a 429 benchmark: the Graph API app limit and token
lifetimes are raised through PATCH /admin/config; X's users/me (75 per 15 min) and TikTok's
user/info (600 per min per user) have no setting, so every few hundred requests the client
moves the sandbox clock past the window (POST /admin/clock: in the elapsed time, not in N).
Non-2xx answers are counted and printed.

The machine may be shared: a run during which other processes used more than 15% of a core
is redone (up to R times a case), and each run first waits up to --wait seconds for quiet.
Pinning the server and the client to separate CPUs (--pin) measured no gain here (Linux
already keeps them apart), and a pinned server cannot move away from a busy CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import html
import json
import os
import re
import secrets
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urljoin, urlsplit

import aiohttp
import httpx2
import uvloop
from yarl import URL

ROOT = Path(__file__).resolve().parent.parent
TARGET = 2000  # req/s the sandbox must sustain for simple requests
WARMUP = 1000  # requests before the measured runs of each case
REDIRECT = "https://bench.example/callback"
GRAPH = "/facebook/graph/v24.0"
# Settings for the run: no Graph API app limit, tokens that outlive the clock moves.
RUN_CONFIG = {
    "facebook_app_call_limit": 10**12,
    "facebook_short_token_ttl": 10**9,
    "x_access_ttl": 10**9,
    "tiktok_access_ttl": 10**9,
}
CHAT = {
    "model": "gpt-4o-mini",
    "messages": [
        {"role": "system", "content": "Keep each suggestion at most 120 characters."},
        {"role": "user", "content": "Suggest 3 variants: Our bakery opens in Lyon on Monday!"},
    ],
}


@dataclass
class Tick:
    """A per-token rate limit without a setting: `limit` calls per `window` seconds."""

    limit: int
    window: float


@dataclass
class Case:
    name: str
    method: str
    path: str
    headers: list[dict[str, str]] = field(default_factory=lambda: [{}])  # round-robin
    body: bytes | Callable[[int], bytes] | None = None  # a callable: a body per request
    tick: Tick | None = None  # each entry of `headers` is a separate rate-limit bucket


# -- the servers (run in a child process: `--serve hello|sandbox --port N [--cpu C]`) -----
def hello_app() -> Any:
    from litestar import Litestar, get

    @get("/", sync_to_thread=False)
    def hello() -> str:
        return "hello"

    return Litestar([hello], openapi_config=None)


def sandbox_app(port: int) -> Any:
    from src.sandbox import SandboxConfig, create_sandbox_app

    return create_sandbox_app(SandboxConfig(base_url=f"http://127.0.0.1:{port}"))


def serve(kind: str, port: int, cpu: int | None) -> None:
    import uvicorn

    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    app = hello_app() if kind == "hello" else sandbox_app(port)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(kind: str, cpu: int | None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, __file__, "--serve", kind, "--port", str(port)]
    pinned = ["--cpu", str(cpu)] if cpu is not None else []
    process = subprocess.Popen([*command, *pinned], cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{kind} server exited with {process.returncode}")
        try:
            httpx2.get(url + ("/" if kind == "hello" else "/admin/faults"), timeout=1)
            return process, url
        except httpx2.TransportError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"{kind} server did not start")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()


# -- tokens: each fake's OAuth consent, as a browser and a backend would go through it ----
def consent(http: httpx2.Client, path: str, params: dict[str, str]) -> list[str]:
    """Open the consent page, allow it once per test identity offered; return the codes."""
    page = http.get(path, params=params)
    page.raise_for_status()
    action = html.unescape(re.search(r'<form method="post" action="([^"]*)"', page.text)[1])
    hidden = re.findall(r'type="hidden" name="([^"]+)" value="([^"]*)"', page.text)
    form: dict[str, Any] = {html.unescape(k): html.unescape(v) for k, v in hidden}
    form["scope"] = re.findall(r'name="scope" value="([^"]+)"', page.text)
    people = re.findall(r'name="identity" value="([^"]+)"', page.text)
    codes = []
    for identity in (p for p in people if p != "custom"):
        answer = http.post(
            urljoin(path, action), data={**form, "identity": identity, "decision": "allow"}
        )
        codes.append(dict(parse_qsl(urlsplit(answer.headers["location"]).query))["code"])
    return codes


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def x_tokens(http: httpx2.Client, client_id: str, secret: str | None) -> list[str]:
    """X OAuth 2.0 with PKCE S256, for the confidential (Basic auth) or the public client."""
    verifier, challenge = pkce()
    params = {"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT}
    params |= {"scope": "tweet.read users.read", "state": "bench", "code_challenge": challenge}
    params["code_challenge_method"] = "S256"
    tokens = []
    for code in consent(http, "/x/www/i/oauth2/authorize", params):
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}
        form["code_verifier"] = verifier
        if secret is None:
            form["client_id"] = client_id
        auth = (client_id, secret) if secret is not None else None
        answer = http.post("/x/api/2/oauth2/token", data=form, auth=auth)
        tokens.append(answer.raise_for_status().json()["access_token"])
    return tokens


def facebook_tokens(http: httpx2.Client, app_id: str, secret: str) -> list[str]:
    """Facebook Login: dialog, then the code exchanged for a user access token."""
    params = {"client_id": app_id, "redirect_uri": REDIRECT, "state": "bench"}
    params |= {"scope": "public_profile", "response_type": "code"}
    tokens = []
    for code in consent(http, "/facebook/www/v24.0/dialog/oauth", params):
        query = {"client_id": app_id, "client_secret": secret, "redirect_uri": REDIRECT}
        answer = http.get(GRAPH + "/oauth/access_token", params={**query, "code": code})
        tokens.append(answer.raise_for_status().json()["access_token"])
    return tokens


def tiktok_tokens(http: httpx2.Client, key: str, secret: str) -> list[str]:
    """TikTok Login Kit v2: authorize with client_key, then the code for a user token."""
    params = {"client_key": key, "scope": "user.info.basic", "response_type": "code"}
    params |= {"redirect_uri": REDIRECT, "state": "bench"}
    tokens = []
    for code in consent(http, "/tiktok/www/v2/auth/authorize/", params):
        form = {"client_key": key, "client_secret": secret, "code": code}
        form |= {"grant_type": "authorization_code", "redirect_uri": REDIRECT}
        answer = http.post("/tiktok/open/v2/oauth/token/", data=form)
        tokens.append(answer.raise_for_status().json()["access_token"])
    return tokens


def bearer(tokens: list[str]) -> list[dict[str, str]]:
    return [{"Authorization": f"Bearer {token}"} for token in tokens]


def sandbox_cases(url: str) -> list[Case]:
    """Configure the sandbox for the run, mint tokens, and describe the requests."""
    with httpx2.Client(base_url=url, timeout=10) as http:
        config = http.patch("/admin/config", json=RUN_CONFIG).raise_for_status().json()
        x = x_tokens(http, config["x_client_id"], config["x_client_secret"])
        x += x_tokens(http, config["x_public_client_id"], None)
        facebook = facebook_tokens(http, config["facebook_app_id"], config["facebook_app_secret"])
        tiktok = tiktok_tokens(http, config["tiktok_client_key"], config["tiktok_client_secret"])
    chat = {"Authorization": f"Bearer {config['openai_api_key']}"}
    chat["Content-Type"] = "application/json"
    return [
        Case("GET /google/.well-known/openid-configuration", "GET",
             "/google/.well-known/openid-configuration"),
        Case("GET /x/api/2/users/me", "GET", "/x/api/2/users/me", bearer(x),
             tick=Tick(75, 15 * 60)),
        Case(f"GET {GRAPH}/me", "GET", f"{GRAPH}/me", bearer(facebook)),
        Case("GET /tiktok/open/v2/user/info/?fields=open_id", "GET",
             "/tiktok/open/v2/user/info/?fields=open_id", bearer(tiktok), tick=Tick(600, 61)),
        Case("POST /openai/v1/chat/completions", "POST",
             "/openai/v1/chat/completions", [chat], json.dumps(CHAT).encode()),
        Case("GET /admin/records?limit=1", "GET", "/admin/records?limit=1"),
    ]  # fmt: skip


HELLO = Case("bare Litestar hello (ceiling)", "GET", "/")


# -- the load: one aiohttp session on uvloop ----------------------------------------------
@dataclass
class Tally:
    statuses: Counter[int] = field(default_factory=Counter)
    ticks: int = 0


def tick_every(case: Case, concurrency: int) -> int:
    """Requests between two clock moves so that no bucket passes its limit: between two
    moves at most `every + 2 * concurrency` requests arrive, spread over the buckets."""
    assert case.tick is not None
    every = int(0.75 * case.tick.limit * len(case.headers)) - 2 * concurrency
    if every < 50:
        raise SystemExit(f"{case.name}: concurrency {concurrency} too high for its rate limit")
    return every


async def send(session: aiohttp.ClientSession, url: str, case: Case, count: int, c: int) -> Tally:
    """Send `count` requests from `c` workers, rotating the tokens; tally the statuses."""
    tally, target, indices = Tally(), URL(url + case.path, encoded=True), iter(range(count))
    every = tick_every(case, c) if case.tick else 0
    clock, advance = URL(url + "/admin/clock", encoded=True), {"advance": 0.0}
    if case.tick:
        advance["advance"] = case.tick.window

    async def worker() -> None:
        for i in indices:
            if every and i % every == 0:  # also before the first: earlier sends used the window
                async with session.post(clock, json=advance) as moved:
                    moved.raise_for_status()
                tally.ticks += 1
            headers = case.headers[i % len(case.headers)]
            body = case.body(i) if callable(case.body) else case.body
            async with session.request(case.method, target, data=body, headers=headers) as r:
                await r.read()
            tally.statuses[r.status] += 1

    await asyncio.gather(*(worker() for _ in range(c)))
    return tally


CLK_TCK = os.sysconf("SC_CLK_TCK")
QUIET = 0.15  # CPU (in cores) other processes may use during a run before it is redone


@dataclass
class Result:
    rate: float  # requests per second, wall clock
    server_us: float  # server CPU microseconds per request
    client_us: float  # client CPU microseconds per request
    server_busy: float  # server CPU time / wall time (1.0 = one core fully used)
    client_busy: float
    others: float  # CPU used meanwhile by everything else on the machine, in cores
    statuses: Counter[int]
    ticks: int


@dataclass
class Measured:
    case: Case
    runs: list[Result]
    redone: int  # runs thrown away because other processes used the CPU


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_seconds() -> float:
    """CPU time all CPUs spent neither idle nor waiting for I/O (/proc/stat)."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / CLK_TCK


async def settle(limit: float) -> None:
    """Wait (at most `limit` seconds) until other processes leave the CPUs alone."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        before, client = machine_seconds(), time.process_time()
        await asyncio.sleep(0.5)
        if (machine_seconds() - before - (time.process_time() - client)) / 0.5 < QUIET:
            return


async def one_run(
    session: aiohttp.ClientSession, url: str, pid: int, case: Case, args: argparse.Namespace
) -> Result:
    machine, server, client = machine_seconds(), cpu_seconds(pid), time.process_time()
    started = time.perf_counter()
    tally = await send(session, url, case, args.requests, args.concurrency)
    elapsed = time.perf_counter() - started
    server, client = cpu_seconds(pid) - server, time.process_time() - client
    others = machine_seconds() - machine - server - client
    per = 1e6 / args.requests
    return Result(
        args.requests / elapsed,
        server * per,
        client * per,
        server / elapsed,
        client / elapsed,
        others / elapsed,
        tally.statuses,
        tally.ticks,
    )


async def measure(url: str, pid: int, case: Case, args: argparse.Namespace) -> Measured:
    """Warm up (connections, caches), then `runs` runs over the same connections; a run
    during which other processes used the CPU is redone (up to `runs` times a case)."""
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        warm = await send(session, url, case, min(args.requests, WARMUP), args.concurrency)
        if not all(200 <= status < 300 for status in warm.statuses):
            print(f"  warning: {case.name} answered {dict(warm.statuses)} while warming up")
        measured = Measured(case, [], 0)
        while len(measured.runs) < args.runs:
            await settle(args.wait)
            result = await one_run(session, url, pid, case, args)
            if result.others > QUIET and measured.redone < args.runs:
                measured.redone += 1
                continue
            measured.runs.append(result)
        return measured


# -- the report ---------------------------------------------------------------------------
COLUMNS = (
    f"{'request':<46} {'req/s':>6} {'min-max':>12} {'of hello':>8} {'server µs':>9} "
    f"{'busy':>5} {'server max':>10} {'client µs':>9} {'busy':>5} {'others':>6} {'non-2xx':>7}"
)


def median(runs: list[Result], name: str) -> float:
    return statistics.median(getattr(r, name) for r in runs)


def row(m: Measured, ceiling: float) -> str:
    rates = [r.rate for r in m.runs]
    rate, server_us = statistics.median(rates), median(m.runs, "server_us")
    failed = sum(n for r in m.runs for s, n in r.statuses.items() if not 200 <= s < 300)
    return (
        f"{m.case.name:<46} {rate:>6,.0f} {f'{min(rates):,.0f}-{max(rates):,.0f}':>12} "
        f"{rate / ceiling:>8.0%} {server_us:>9,.0f} {median(m.runs, 'server_busy'):>5.0%} "
        f"{1e6 / max(server_us, 1):>10,.0f} {median(m.runs, 'client_us'):>9,.0f} "
        f"{median(m.runs, 'client_busy'):>5.0%} {median(m.runs, 'others'):>6.0%} {failed:>7}"
    )


def report(results: list[Measured], args: argparse.Namespace, pin: str) -> None:
    ceiling = median(results[0].runs, "rate")
    print(
        f"\nSandbox throughput: aiohttp {aiohttp.__version__} client on uvloop, "
        f"N={args.requests}, c={args.concurrency}, median of {args.runs} runs, "
        f"{os.cpu_count()} CPUs, {pin}\n"
    )
    print(COLUMNS)
    print("-" * len(COLUMNS))
    for measured in results:
        print(row(measured, ceiling))
    notes(results)
    slowest = min(results[1:], key=lambda m: median(m.runs, "rate"))
    rate = median(slowest.runs, "rate")
    verdict = "meets" if rate >= TARGET else "is BELOW"
    noisy = sum(r.others > QUIET for m in results for r in m.runs)
    caveat = f" UNRELIABLE: {noisy} run(s) shared the CPU; rerun when quiet." if noisy else ""
    print(
        f"\nslowest sandbox request: {slowest.case.name} at {rate:,.0f} req/s, which "
        f"{verdict} the {TARGET:,} req/s target.{caveat}"
    )


def client_bound(m: Measured) -> bool:
    return median(m.runs, "client_busy") > 0.9 > median(m.runs, "server_busy")


def notes(results: list[Measured]) -> None:
    print(
        "\nµs = CPU microseconds per request; busy = CPU time / wall time (100% = one core);"
        "\n'server max' = 1 / server µs, the rate of one fully busy server core; 'others' = "
        "CPU used\nmeanwhile by the rest of the machine (incl. loopback softirq), in cores; "
        "non-2xx over all runs."
    )
    for m in results:
        noisy = sum(r.others > QUIET for r in m.runs)
        ticks = sum(r.ticks for r in m.runs)
        for condition, text in (
            (m.redone, f"{m.redone} run(s) redone: other processes used the CPU"),
            (noisy, f"{noisy} run(s) kept although other processes used the CPU: unreliable"),
            (ticks, f"{ticks} clock moves over the runs (not counted in N)"),
            (client_bound(m), "the CLIENT was the limit: the req/s is a floor"),
        ):
            if condition:
                print(f"  {m.case.name}: {text}")


# -- main ---------------------------------------------------------------------------------
def pin_cpus(enabled: bool) -> tuple[int | None, str]:
    """Put this client on the second allowed CPU; return the server's CPU and a label."""
    cpus = sorted(os.sched_getaffinity(0))
    if not enabled or len(cpus) < 2:
        return None, "server and client not pinned to CPUs (--pin measured no gain)"
    os.sched_setaffinity(0, {cpus[1]})
    return cpus[0], f"server pinned to CPU {cpus[0]}, client to CPU {cpus[1]}"


def run_server(kind: str, cpu: int | None, args: argparse.Namespace) -> list[Measured]:
    process, url = start(kind, cpu)
    try:
        cases = [HELLO] if kind == "hello" else sandbox_cases(url)
        results = []
        for case in cases:
            print(f"  {case.name} ...", flush=True)
            results.append(uvloop.run(measure(url, process.pid, case, args)))
        return results
    finally:
        stop(process)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=5000, help="N per run (default 5000)")
    parser.add_argument("--concurrency", type=int, default=32, help="in flight (default 32)")
    parser.add_argument("--runs", type=int, default=3, help="runs per request (default 3)")
    parser.add_argument(
        "--wait", type=float, default=10, help="seconds a run waits for a quiet machine (10)"
    )
    parser.add_argument("--pin", action="store_true", help="server and client on separate CPUs")
    parser.add_argument("--serve", choices=["hello", "sandbox"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--cpu", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        sys.path.insert(0, str(ROOT))
        serve(args.serve, args.port, args.cpu)
        return
    server_cpu, pin = pin_cpus(args.pin)
    results = run_server("hello", server_cpu, args) + run_server("sandbox", server_cpu, args)
    report(results, args, pin)


if __name__ == "__main__":
    main()
