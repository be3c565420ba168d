"""Scale-out burst: the publish burst of bench/publish_burst.py drained by 1, 2 and 4 worker
processes, with SAQ's queue on PostgreSQL and on Redis, side by side in one run, against
the sandbox's own rate for POST /2/tweets on the same machine (the ceiling), and the
per-target costs the capacity model in docs/scaling.md is built from.

    .venv/bin/python bench/scale_burst.py [--targets 3000] [--accounts 200]
                                          [--workers 1,2,4] [--queues postgres,redis]
                                          [--latency-ms 0]

Per setup: a fresh database (a clone of one migrated template), the same 200 X accounts,
N `python -m src worker` processes started and ready, then `--targets` targets due at one
moment. Publishing is claimed in PostgreSQL by every worker's loops (`FOR UPDATE SKIP
LOCKED`) whichever queue runs: the queue carries SAQ's jobs and cron (sweeper, token
refresh, purges), so what differs is the queue's own connections and polling. Redis is a
private `redis-server` on a free port (the machine's 6379 belongs to the tests).

Before the setups, a warm-up setup (PostgreSQL queue, one worker) runs under
bench/_counted_worker.py, which counts the SQL statements the engine sends (round trips).

Ceilings, measured before and after the setups (the better is used): POST /2/tweets with
distinct texts from one aiohttp client on uvloop (~0.1 ms of client CPU a request, so the
sandbox is the limit) at the in-flight count of one and of four workers, and the bare
httpx2 loop of publish_burst.py (the engine's own HTTP client, the existing baseline).

--latency-ms N makes the sandbox answer each POST /2/tweets N ms late, as a real platform
would: a worker then waits more than it computes, and its in-flight limit sets its rate.

CPU is counted per process (workers summed; PostgreSQL with its backends); `rest` is every
other process on the machine (other people's work): a setup during which it passed 0.15
cores is flagged noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import _harness as h
import psutil
import psycopg
import redis
import sandbox_throughput as st
import uvloop
from publish_burst import LEAD_S, MB, baseline, due_items, published_by_sandbox

REDIS_SERVER = "/usr/bin/redis-server"
COUNTED_WORKER = [sys.executable, str(h.ROOT / "bench" / "_counted_worker.py")]
SQL_COUNT = h.BENCH_DIR / "sql-count"
IN_FLIGHT = 32  # POSTs one worker has in flight (see publish_burst.engine_concurrency)
POSTS = ("posts", "post_targets")
START = time.monotonic()


# -- Redis ----------------------------------------------------------------------------------
@contextmanager
def redis_server() -> Iterator[tuple[str, subprocess.Popen]]:
    """A private redis-server on a free port, nothing persisted. Yields (URL, process)."""
    binary = REDIS_SERVER if os.path.exists(REDIS_SERVER) else shutil.which("redis-server")
    if binary is None:
        raise SystemExit("the Redis setups need redis-server (apt-get install redis-server)")
    port = h.free_port()
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    with h.log_file("redis") as log:
        process = subprocess.Popen([*command, "--appendonly", "no"], stdout=log, stderr=log)
    client = redis.Redis(host="127.0.0.1", port=port)
    try:
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(redis.ConnectionError):
                if client.ping():
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start (var/bench/logs/redis.log)")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0", process
    finally:
        client.close()
        h.stop(process)


# -- the ceiling ----------------------------------------------------------------------------
@dataclass
class Ceiling:
    name: str
    rate: float  # requests per second
    sandbox_ms: float  # sandbox CPU per request
    others: float  # cores used meanwhile by the rest of the machine


def tweets_case(tokens: list[h.XToken], tag: str) -> st.Case:
    """POST /2/tweets with a text never sent before (X refuses duplicates per user)."""
    serial = itertools.count()
    headers = [
        {"Authorization": f"Bearer {t.access}", "Content-Type": "application/json"} for t in tokens
    ]

    def body(_: int) -> bytes:
        return json.dumps({"text": f"Ceiling {tag} #{next(serial)}: aiohttp."}).encode()

    return st.Case("POST /x/api/2/tweets", "POST", "/x/api/2/tweets", headers, body)


def ceilings(
    sandbox: h.Sandbox, tokens: list[h.XToken], count: int, tag: str, wait: float
) -> list[Ceiling]:
    """The sandbox's own rate for POST /2/tweets (aiohttp at one and at four workers'
    in-flight count), and the bare httpx2 loop at one worker's."""
    found = []
    for c in (IN_FLIGHT, 4 * IN_FLIGHT):
        args = argparse.Namespace(requests=count, concurrency=c, runs=1, wait=wait)
        case = tweets_case(tokens, f"{tag}-{c}-{secrets.token_hex(3)}")
        runs = uvloop.run(st.measure(sandbox.url, sandbox.process.pid, case, args)).runs
        failed = sum(n for r in runs for s, n in r.statuses.items() if s != 201)
        if failed:
            print(f"WARNING: the aiohttp ceiling at c={c} had {failed} answers other than 201")
        r = runs[0]
        found.append(Ceiling(f"aiohttp c={c}", r.rate, r.server_us / 1000, r.others))
    bare = baseline(sandbox, tokens, count, IN_FLIGHT, tag, wait)
    sandbox_ms = 1000 * bare.meter.used["sandbox"] / bare.count
    found.append(Ceiling(f"httpx2 c={IN_FLIGHT}", bare.rate, sandbox_ms, bare.meter.cores("rest")))
    return found


def best(found: list[list[Ceiling]]) -> list[Ceiling]:
    """Per kind, the faster of the runs before and after the setups."""
    return [max(pair, key=lambda c: c.rate) for pair in zip(*found, strict=True)]


# -- one setup ------------------------------------------------------------------------------
@dataclass
class Setup:
    queue: str  # "postgres" or "redis"
    workers: int
    counted: bool = False  # under bench/_counted_worker.py (the warm-up)

    @property
    def name(self) -> str:
        return f"{'pg' if self.queue == 'postgres' else 'redis'} x{self.workers}" + (
            " sql" if self.counted else ""
        )


@dataclass
class Result:
    setup: Setup
    targets: int
    published: str  # database / sandbox / distinct texts
    seconds: float  # first due -> last published
    meter: h.CpuMeter
    before: h.DbStats  # before the targets were written
    scheduled: h.DbStats  # once they were written
    after: h.DbStats  # drained, workers stopped
    peak_rss: int  # the largest worker's
    connections: int  # most backends connected to the database at once
    platform_in: int  # bytes the sandbox read (the requests to the platform)
    platform_out: int  # bytes it wrote (its answers)
    statements: int | None = None  # asyncpg statements (the counted warm-up only)
    idle: float = 0.0  # transactions a second while the workers waited for work

    @property
    def rate(self) -> float:
        return self.targets / self.seconds

    def per_target(self, value: float) -> float:
        return value / self.targets

    def cpu_ms(self, name: str) -> float | None:
        used = self.meter.used.get(name)
        return None if used is None else 1000 * used / self.targets

    def drained(self, counter: str) -> int:
        """How much a counter of the database grew while the targets were published."""
        return getattr(self.after, counter) - getattr(self.scheduled, counter)

    def grown(self, a: h.DbStats, b: h.DbStats, tables: tuple[str, ...] | None = None) -> float:
        names = tables or b.sizes.keys()
        return self.per_target(sum(b.sizes.get(n, 0) - a.sizes.get(n, 0) for n in names))


def io_chars(pid: int) -> tuple[int, int]:
    """Bytes a process read and wrote through read()/write() (sockets included)."""
    counters = psutil.Process(pid).io_counters()
    return counters.read_chars, counters.write_chars


def sql_count(processes: list[subprocess.Popen]) -> int:
    """Ask counted workers for their statement counts (SIGUSR1) and sum them."""
    total = 0
    for process in processes:
        SQL_COUNT.unlink(missing_ok=True)
        process.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while not SQL_COUNT.exists():
            if time.monotonic() > deadline:
                raise RuntimeError("a counted worker did not write its SQL count")
            time.sleep(0.01)
        total += int(SQL_COUNT.read_text())
    return total


class Sampler:
    """The most connections seen while polling (called by wait_final at each poll)."""

    def __init__(self) -> None:
        self.connections = 0

    def __call__(self, conn: psycopg.Connection) -> None:
        query = "SELECT count(*) - 1 FROM pg_stat_activity WHERE datname = current_database()"
        self.connections = max(self.connections, conn.execute(query).fetchone()[0])


def settle_idle(dsn: str, wait: float) -> tuple[h.DbStats, float]:
    """Wait (at most `wait` s) for a quiet machine while the workers have nothing to do.
    Returns the database's statistics then, and the transactions a second meanwhile."""
    quiet, began = h.db_stats(dsn), time.monotonic()
    h.settle(wait, window=1.0)
    before = h.db_stats(dsn)
    return before, (before.transactions - quiet.transactions) / (time.monotonic() - began)


def run_setup(
    setup: Setup,
    new_database: Callable[[], str],
    sandbox: h.Sandbox,
    tokens: list[h.XToken],
    queue: tuple[str, subprocess.Popen] | None,
    args: argparse.Namespace,
) -> Result:
    dsn = new_database()
    accounts = h.seed_accounts(dsn, tokens, h.settings_for(dsn, sandbox.url))
    env = {"OKK_QUEUE_URL": queue[0]} if setup.queue == "redis" and queue else {}
    env |= {"OKK_BENCH_SQL_COUNT": str(SQL_COUNT), "OKK_WORKER_SHUTDOWN_GRACE_S": "0"}
    command = COUNTED_WORKER if setup.counted else h.WORKER
    print(
        f"  {setup.name}: {setup.workers} worker(s), at {time.monotonic() - START:.0f} s ...",
        flush=True,
    )
    logs = setup.name.replace(" ", "-")
    with (
        h.workers(dsn, sandbox.url, setup.workers, env, command, logs) as processes,
        ExitStack() as on,
    ):
        rss = [on.enter_context(h.PeakRss(p.pid)) for p in processes]
        named = {"workers": [p.pid for p in processes], "sandbox": sandbox.process.pid}
        named |= {"postgres": h.postgres_pid(), "bench": os.getpid()}
        if setup.queue == "redis" and queue:
            named["redis"] = queue[1].pid
        before, idle = settle_idle(dsn, args.wait)
        items = due_items(accounts, args.targets, time.time() + LEAD_S)
        h.insert_targets(dsn, items)
        scheduled = h.db_stats(dsn)
        statements = sql_count(processes) if setup.counted else None
        sleep_until(items[0].publish_at)
        platform = io_chars(sandbox.process.pid)
        sampler = Sampler()
        with h.CpuMeter(**named) as meter:
            state = h.wait_final(dsn, args.targets, 240, *processes, every=sampler)
        now = io_chars(sandbox.process.pid)
        platform = (now[0] - platform[0], now[1] - platform[1])
        if statements is not None:
            statements = sql_count(processes) - statements
    after = h.wait_disconnected(dsn)
    h.report_failures(dsn, state, args.targets)
    shown, distinct = published_by_sandbox(sandbox, items)
    return Result(
        setup,
        args.targets,
        f"{state.published}/{shown}/{distinct}",
        state.last_published - state.first_due,
        meter,
        before,
        scheduled,
        after,
        max(r.peak for r in rss),
        sampler.connections,
        *platform,
        statements,
        idle,
    )


def sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.time()))


# -- the run --------------------------------------------------------------------------------
def setups(args: argparse.Namespace) -> list[Setup]:
    counts = [int(n) for n in args.workers.split(",")]
    queues = args.queues.split(",")
    return [Setup("postgres", 1, counted=True)] + [Setup(q, n) for q in queues for n in counts]


def run(args: argparse.Namespace) -> tuple[list[Ceiling], list[Result]]:
    with ExitStack() as stack:
        new_database = stack.enter_context(h.databases())
        sandbox = stack.enter_context(h.sandbox())
        queue = stack.enter_context(redis_server()) if "redis" in args.queues else None
        tokens = asyncio.run(h.mint_x_tokens(sandbox.url, args.accounts))
        if args.latency_ms:  # a platform that takes its time, as real ones do
            fault = {"platform": "x", "path": "/api/2/tweets", "method": "POST"}
            fault |= {"kind": "latency", "latency_ms": args.latency_ms}
            sandbox.admin("POST", "/faults", json=fault)
        print(f"ceilings (before), at {time.monotonic() - START:.0f} s ...", flush=True)
        found = [ceilings(sandbox, tokens, args.targets, "before", args.wait)]
        results = []
        for setup in setups(args):
            if queue and setup.queue == "redis":
                redis.Redis.from_url(queue[0]).flushall()  # no state from the last setup
            results.append(run_setup(setup, new_database, sandbox, tokens, queue, args))
        print(f"ceilings (after), at {time.monotonic() - START:.0f} s ...", flush=True)
        found.append(ceilings(sandbox, tokens, args.targets, "after", args.wait))
    print(f"\n(the run took {time.monotonic() - START:.0f} s)")
    return best(found), results


# -- the report -----------------------------------------------------------------------------
def fmt(value: float | None, pattern: str = "{:,.2f}") -> str:
    return "-" if value is None else pattern.format(value)


def rows(results: list[Result], ceiling: float, bare: float) -> list[tuple[str, list[str]]]:
    def each(get: Callable[[Result], float | None], pattern: str = "{:,.2f}") -> list[str]:
        return [fmt(get(r), pattern) for r in results]

    def cores(name: str) -> list[str]:
        return [fmt(r.meter.cores(name) if name in r.meter.used else None) for r in results]

    per = Result.per_target
    whole = "{:,.0f}"
    n = results[0].targets
    return [
        ("published (db / sandbox / distinct)", [r.published for r in results]),
        ("drain s (first due -> last published)", each(lambda r: r.seconds)),
        ("targets/s", each(lambda r: r.rate, whole)),
        ("  of the sandbox ceiling (aiohttp)", each(lambda r: r.rate / ceiling, "{:.0%}")),
        ("  of the bare httpx2 loop", each(lambda r: r.rate / bare, "{:.0%}")),
        ("cores: workers", cores("workers")),
        ("cores: postgres", cores("postgres")),
        ("cores: sandbox", cores("sandbox")),
        ("cores: redis", cores("redis")),
        ("cores: bench (polling)", cores("bench")),
        ("cores: rest (others; noisy > 0.15)", cores("rest")),
        ("cores: the whole machine", each(lambda r: sum(r.meter.used.values()) / r.meter.wall)),
        ("worker CPU ms / target", each(lambda r: r.cpu_ms("workers"))),
        ("postgres CPU ms / target", each(lambda r: r.cpu_ms("postgres"))),
        ("sandbox CPU ms / target", each(lambda r: r.cpu_ms("sandbox"))),
        ("db transactions / target", each(lambda r: per(r, r.drained("transactions")))),
        ("SQL statements / target (asyncpg)", each(lambda r: r.statements and r.statements / n)),
        ("WAL bytes / target (drain)", each(lambda r: per(r, r.drained("wal")), whole)),
        ("db bytes / target, scheduled", each(lambda r: r.grown(r.before, r.scheduled), whole)),
        ("  posts + post_targets", each(lambda r: r.grown(r.before, r.scheduled, POSTS), whole)),
        ("db bytes / target, published", each(lambda r: r.grown(r.before, r.after), whole)),
        ("bytes to the platform / target", each(lambda r: per(r, r.platform_in), whole)),
        ("bytes from the platform / target", each(lambda r: per(r, r.platform_out), whole)),
        ("worker peak RSS MB (largest)", each(lambda r: r.peak_rss / MB, whole)),
        ("db connections, peak (all workers)", each(lambda r: r.connections, whole)),
        ("idle db transactions/s per worker", each(lambda r: r.idle / r.setup.workers, "{:,.1f}")),
    ]  # fmt: skip


def report(args: argparse.Namespace, found: list[Ceiling], results: list[Result]) -> None:
    print(
        f"\nScale-out burst: {args.targets:,} X targets due at once over {args.accounts} "
        f"accounts, per setup; {os.cpu_count()} CPUs; sandbox, PostgreSQL (embedded), "
        "Redis and workers all on this machine"
    )
    if args.latency_ms:
        print(f"the sandbox delayed each POST /2/tweets by {args.latency_ms} ms")
    print("\nceiling: the sandbox's own POST /2/tweets rate (better of before/after)")
    for c in found:
        print(
            f"  {c.name:<14} {c.rate:>7,.0f} req/s   sandbox CPU {c.sandbox_ms:.2f} ms/request"
            f"   others {c.others:.2f} cores"
        )
    ceiling = max(c.rate for c in found if c.name.startswith("aiohttp"))
    bare = next(c.rate for c in found if c.name.startswith("httpx2"))
    table = rows(results, ceiling, bare)
    width = max(len(name) for name, _ in table)
    print(f"\n{'setup':<{width}}" + "".join(f"{r.setup.name:>15}" for r in results))
    for name, values in table:
        print(f"{name:<{width}}" + "".join(f"{v:>15}" for v in values))
    notes(results)


def notes(results: list[Result]) -> None:
    print(
        "\n'sql' = the warm-up setup, its workers under bench/_counted_worker.py (asyncpg "
        "statements counted;\nSAQ's PostgreSQL queue talks psycopg and is not in that count, "
        "the transactions row has it)."
    )
    noisy = [r.setup.name for r in results if r.meter.cores("rest") > h.QUIET]
    if noisy:
        print(f"WARNING: other processes used the CPU during {', '.join(noisy)}: unreliable")
    for r in results:
        if r.after.connections:
            print(f"WARNING: {r.setup.name}: backends still connected when reading statistics")
    named = [n for n in ("workers", "postgres", "sandbox", "redis") if n in results[-1].meter.used]
    for r in results:
        total = sum(r.cpu_ms(n) or 0 for n in named)
        print(
            f"{r.setup.name:>9}: {total:.2f} ms of CPU per target in all ({'+'.join(named)}); "
            f"{os.cpu_count()} cores at that cost: {1000 * (os.cpu_count() or 1) / total:,.0f} "
            "targets/s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--targets", type=int, default=3000, help="per setup (3000)")
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--workers", default="1,2,4", help="worker counts (1,2,4)")
    parser.add_argument("--queues", default="postgres,redis", help="postgres,redis")
    parser.add_argument("--wait", type=float, default=5, help="seconds to wait for quiet (5)")
    parser.add_argument(
        "--latency-ms", type=int, default=0, help="the sandbox delays each POST /2/tweets"
    )
    args = parser.parse_args()
    found, results = run(args)
    report(args, found, results)


if __name__ == "__main__":
    main()
