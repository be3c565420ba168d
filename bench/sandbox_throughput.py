"""How many simple requests a second the standalone sandbox answers.

Each server (the sandbox, and a bare Litestar "hello" app as the ceiling of this client and
machine) runs under uvicorn (uvloop, httptools) in its own process on a free port; an
httpx2 AsyncClient sends N requests at concurrency C per case. Prints the median of R runs.

    .venv/bin/python bench/sandbox_throughput.py [--requests 5000] [--concurrency 32] [--runs 3]
                                                 [--clients 1]

One httpx2 client costs several times more CPU per request than the server, so on a small
machine the client is the limit: compare with the bare-Litestar ceiling, and read the
"server max req/s" column (1 / server CPU per request) for the sandbox's own capacity.
`--clients P` spreads the load over P client processes where there are cores to spare.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx2

ROOT = Path(__file__).resolve().parent.parent
TARGET = 2000  # req/s the sandbox must sustain for simple requests
OPENAI_KEY = "sandbox-openai-key"
CHAT = {
    "model": "gpt-4o-mini",
    "messages": [
        {"role": "system", "content": "Keep each suggestion at most 120 characters."},
        {"role": "user", "content": "Suggest 3 variants: Our bakery opens in Lyon on Monday!"},
    ],
}


@dataclass
class Case:
    name: str
    server: str  # "hello" | "sandbox"
    method: str
    path: str
    json: dict | None = None
    headers: dict[str, str] = field(default_factory=dict)


CASES = [
    Case("bare Litestar hello (ceiling)", "hello", "GET", "/"),
    Case(
        "GET /google/.well-known/openid-configuration",
        "sandbox",
        "GET",
        "/google/.well-known/openid-configuration",
    ),
    Case(
        "POST /openai/v1/chat/completions",
        "sandbox",
        "POST",
        "/openai/v1/chat/completions",
        json=CHAT,
        headers={"Authorization": f"Bearer {OPENAI_KEY}"},
    ),
    Case("GET /admin/records?limit=1", "sandbox", "GET", "/admin/records?limit=1"),
]


# -- the servers (run in a child process: `--serve hello|sandbox --port N`) ---------------
def hello_app():
    from litestar import Litestar, get

    @get("/", sync_to_thread=False)
    def hello() -> str:
        return "hello"

    return Litestar([hello], openapi_config=None)


def sandbox_app(port: int):
    from src.sandbox import SandboxConfig, create_sandbox_app

    return create_sandbox_app(SandboxConfig(base_url=f"http://127.0.0.1:{port}"))


def serve(kind: str, port: int) -> None:
    import uvicorn

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


def start(kind: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, __file__, "--serve", kind, "--port", str(port)]
    process = subprocess.Popen(command, cwd=ROOT)
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


# -- the client ------------------------------------------------------------------------
@dataclass
class Result:
    rate: float  # requests per second, wall clock
    server_us: float  # server CPU microseconds per request
    client_us: float  # client CPU microseconds per request
    failures: int


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def send(client: httpx2.AsyncClient, case: Case, count: int, concurrency: int) -> int:
    """Send `count` requests with `concurrency` workers; return how many failed."""
    left, failures = count, 0

    async def worker() -> None:
        nonlocal left, failures
        while left > 0:
            left -= 1
            response = await client.request(
                case.method, case.path, json=case.json, headers=case.headers
            )
            failures += response.status_code != 200

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return failures


async def run(url: str, pid: int, case: Case, args: argparse.Namespace) -> Result:
    """One run from this process: one AsyncClient, `concurrency` workers."""
    c = args.concurrency
    limits = httpx2.Limits(max_connections=c, max_keepalive_connections=c)
    async with httpx2.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        await send(client, case, min(args.requests, 500), c)  # warm-up: connections, caches
        server, client_cpu, started = cpu_seconds(pid), time.process_time(), time.perf_counter()
        failures = await send(client, case, args.requests, c)
        elapsed = time.perf_counter() - started
        per = 1e6 / args.requests
        server_us = (cpu_seconds(pid) - server) * per
        client_us = (time.process_time() - client_cpu) * per
    return Result(args.requests / elapsed, server_us, client_us, failures)


def share(url: str, case: Case, count: int, concurrency: int, start_at: float) -> tuple:
    """One client process's part of a run (--clients > 1): warm up, wait for the common
    start (CLOCK_MONOTONIC is system-wide), send. Returns (started, finished, cpu, failures)."""

    async def go() -> tuple:
        limits = httpx2.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx2.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
            await send(client, case, min(count, 300), concurrency)
            await asyncio.sleep(max(0.0, start_at - time.monotonic()))
            cpu, started = time.process_time(), time.monotonic()
            failures = await send(client, case, count, concurrency)
            return started, time.monotonic(), time.process_time() - cpu, failures

    return asyncio.run(go())


def run_spread(url: str, pid: int, case: Case, args: argparse.Namespace, pool) -> Result:
    """One run from `args.clients` processes sharing the requests and the concurrency."""
    p, start_at = args.clients, time.monotonic() + 3
    jobs = [
        pool.submit(share, url, case, args.requests // p, args.concurrency // p, start_at)
        for _ in range(p)
    ]
    time.sleep(max(0.0, start_at - time.monotonic()))
    server = cpu_seconds(pid)
    shares = [job.result() for job in jobs]
    server_cpu = cpu_seconds(pid) - server
    sent = args.requests // p * p
    elapsed = max(s[1] for s in shares) - min(s[0] for s in shares)
    cpu = sum(s[2] for s in shares)
    return Result(
        sent / elapsed, server_cpu * 1e6 / sent, cpu * 1e6 / sent, sum(s[3] for s in shares)
    )


def measure(url: str, pid: int, case: Case, args: argparse.Namespace, pool) -> list[Result]:
    if pool is None:
        return [asyncio.run(run(url, pid, case, args)) for _ in range(args.runs)]
    return [run_spread(url, pid, case, args, pool) for _ in range(args.runs)]


def report(results: list[tuple[Case, list[Result]]], args: argparse.Namespace) -> None:
    ceiling = statistics.median(r.rate for r in results[0][1])
    print(
        f"\nSandbox throughput: httpx2 {httpx2.__version__}, N={args.requests}, "
        f"c={args.concurrency}, {args.clients} client process(es), median of {args.runs}, "
        f"{os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}\n"
    )
    header = (
        f"{'request':<46} {'req/s':>7} {'min-max':>11} {'of ceiling':>10} "
        f"{'server µs/req':>13} {'server max req/s':>16} {'client µs/req':>13} {'errors':>6}"
    )
    print(header)
    print("-" * len(header))
    for case, runs in results:
        rates = [r.rate for r in runs]
        median = statistics.median(rates)
        server_us = statistics.median(r.server_us for r in runs)
        client_us = statistics.median(r.client_us for r in runs)
        print(
            f"{case.name:<46} {median:>7,.0f} {f'{min(rates):,.0f}-{max(rates):,.0f}':>11} "
            f"{median / ceiling:>10.0%} {server_us:>13,.0f} {1e6 / max(server_us, 1):>16,.0f} "
            f"{client_us:>13,.0f} {sum(r.failures for r in runs):>6}"
        )
    sandbox = [statistics.median(r.rate for r in runs) for _case, runs in results[1:]]
    verdict = "meets" if min(sandbox) >= TARGET else "is BELOW"
    print(
        f"\nslowest sandbox request: {min(sandbox):,.0f} req/s, which {verdict} the "
        f"{TARGET:,} req/s target.\n'server max req/s' = one server core fully busy "
        "(1 / server CPU per request): the sandbox's own limit, whatever the client."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--clients",
        type=int,
        default=1,
        help="client processes sharing the requests and the concurrency (default 1)",
    )
    parser.add_argument("--serve", choices=["hello", "sandbox"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        sys.path.insert(0, str(ROOT))
        serve(args.serve, args.port)
        return
    results = []
    pool = ProcessPoolExecutor(args.clients) if args.clients > 1 else None
    for kind in ("hello", "sandbox"):
        process, url = start(kind)
        try:
            for case in (c for c in CASES if c.server == kind):
                results.append((case, measure(url, process.pid, case, args, pool)))
        finally:
            stop(process)
    if pool is not None:
        pool.shutdown()
    report(results, args)


if __name__ == "__main__":
    main()
