"""Burst: 5,000 X targets over 200 accounts, all due at the same moment, drained by ONE
worker process against the standalone sandbox; and, in the same run, the same number
of POST /2/tweets sent by a bare httpx2 loop at the engine's effective concurrency.

    .venv/bin/python bench/publish_burst.py [--targets 5000] [--accounts 200] [--profile]

Prints drain time (first due -> last target published, from the database's
published_at), throughput, the bare loop's rate (measured before and after the burst),
the ratio to the better of the two (target >= 50%), and the
worker's peak RSS (target <= 200 MB, sampled every 50 ms with psutil). --profile samples
the worker with py-spy (pip install py-spy) during the burst and prints where time goes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _harness as h
import httpx2

from src.config import Settings
from src.publishing import ACCOUNT_CONCURRENCY, platform_concurrency

LEAD_S = 1.5  # targets are written this long before they fall due
WARMUP = 300  # bare requests before the measured loop (connections, sandbox caches)
MB = 1024 * 1024


def engine_concurrency(settings: Settings, accounts: int) -> tuple[int, str]:
    """How many POSTs the engine can have in flight in one worker process."""
    claimed = settings.publish_loops * settings.publish_batch
    platform = platform_concurrency(settings, "x")
    per_account = ACCOUNT_CONCURRENCY * accounts
    effective = min(claimed, platform, per_account)
    why = (
        f"min(publish_loops {settings.publish_loops} x publish_batch "
        f"{settings.publish_batch} = {claimed} claimed, publish_concurrency for x = "
        f"{platform}, ACCOUNT_CONCURRENCY {ACCOUNT_CONCURRENCY} x {accounts} accounts = "
        f"{per_account}) = {effective}"
    )
    return effective, why


# -- the baseline -----------------------------------------------------------------------------
async def bare_loop(
    url: str, tokens: list[h.XToken], texts: list[str], concurrency: int
) -> tuple[float, Counter[int]]:
    """POST /2/tweets for every text, `concurrency` at a time, tokens round-robin.
    Returns (requests per second, statuses)."""
    statuses: Counter[int] = Counter()
    work = iter(enumerate(texts))
    async with httpx2.AsyncClient(base_url=f"{url}/x/api", timeout=30) as client:

        async def one() -> None:
            for i, text in work:
                auth = {"Authorization": f"Bearer {tokens[i % len(tokens)].access}"}
                answer = await client.post("/2/tweets", json={"text": text}, headers=auth)
                statuses[answer.status_code] += 1

        started = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(concurrency)))
        return len(texts) / (time.perf_counter() - started), statuses


@dataclass
class Phase:
    name: str
    count: int  # requests or targets
    seconds: float  # the loop's time, or the drain time
    meter: h.CpuMeter
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.count / self.seconds


def baseline(
    sandbox: h.Sandbox, tokens: list[h.XToken], count: int, c: int, tag: str, wait: float = 20
) -> Phase:
    """The bare loop, after waiting up to `wait` s for a quiet machine."""
    texts = [f"Bare loop {tag} #{i}: the same work without the engine." for i in range(count)]
    h.settle(wait)
    pids = {"bench": os.getpid(), "sandbox": sandbox.process.pid, "postgres": h.postgres_pid()}
    with h.CpuMeter(**pids) as meter:
        rate, statuses = asyncio.run(bare_loop(sandbox.url, tokens, texts, c))
    if set(statuses) != {201}:
        print(f"WARNING: bare loop {tag} answered {dict(statuses)}")
    return Phase(f"bare loop ({tag})", count, count / rate, meter)


# -- profiling --------------------------------------------------------------------------------
def py_spy() -> str | None:
    return shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))


@contextmanager
def profiled(pid: int, enabled: bool) -> Iterator[Path | None]:
    """py-spy record (raw collapsed stacks, idle frames left out) while the body runs."""
    tool = py_spy() if enabled else None
    if enabled and tool is None:
        print("WARNING: --profile needs py-spy (pip install py-spy); not profiling")
    if tool is None:
        yield None
        return
    out = h.BENCH_DIR / "burst-profile.txt"
    command = [tool, "record", "--pid", str(pid), "--rate", "250", "--format", "raw"]
    with h.log_file("py-spy") as log:
        spy = subprocess.Popen([*command, "-o", str(out)], stdout=log, stderr=log)
        try:
            time.sleep(0.5)  # attached before the targets fall due
            yield out
        finally:
            spy.send_signal(signal.SIGINT)
            spy.wait(30)


CATEGORIES = (
    ("asyncpg", "database (piccolo + asyncpg)"),
    ("piccolo", "database (piccolo + asyncpg)"),
    ("httpx2", "HTTP client (httpx2 + httpcore2)"),
    ("httpcore2", "HTTP client (httpx2 + httpcore2)"),
    ("saq", "SAQ (queue, cron, heartbeat)"),
)


OURS = "(src/"  # py-spy names files relative to sys.path; the CLI's frames are left out


def frame_name(frame: str) -> str:
    name, _, where = frame.partition(" (")
    file, _, line = where.rstrip(")").partition(":")
    for marker in ("site-packages/", f"{h.ROOT}/", "python3.11/"):
        file = file.split(marker)[-1]
    return f"{name} ({file}:{line})"


def category(frames: list[str]) -> str:
    """What a sample was doing, named by the first library below our code."""
    for frame in frames:
        for package, label in CATEGORIES:
            if f"({package}/" in frame:
                return label
    if "QueueListener" in " ".join(frames):
        return "logging thread, waiting (not CPU)"
    if "EpollSelector.select" in frames[-1]:
        return "event loop, waiting in epoll (not CPU)"
    return "other (our code, asyncio)"


def summarize(path: Path, top: int = 15) -> None:
    """Shares of the worker's samples: by category, by our functions (inclusive), and
    by the innermost frame (self)."""
    ours: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames, n = stack.split(";"), int(count)
        total += n
        kinds[category(frames)] += n
        leaf[frame_name(frames[-1])] += n
        for name in {frame_name(f).split(":")[0] for f in frames if OURS in f}:
            if "__main__" not in name:
                ours[name + ")"] += n
    print(f"\npy-spy: {total} samples of the worker (250 Hz; idle threads left out)")
    for title, counter in (("category", kinds), ("ours, incl.", ours), ("self", leaf)):
        print(f"\n{title:>11}")
        for frame, count in counter.most_common(top):
            print(f"{count / total:>11.1%}  {frame}")


# -- the run ----------------------------------------------------------------------------------
def due_items(accounts: list[tuple[int, int]], count: int, at: float) -> list[h.Due]:
    run = secrets.token_hex(3)
    return [
        h.Due(f"Burst {run} #{i}: published by OKKTOPUS.", at, *accounts[i % len(accounts)])
        for i in range(count)
    ]


def sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.time()))


def published_by_sandbox(sandbox: h.Sandbox, items: list[h.Due]) -> tuple[int, int]:
    """(posts the sandbox made public with our texts, distinct texts among them)."""
    texts = {i.text for i in items}
    found = [p["text"] for p in sandbox.admin("GET", "/published?platform=x") if p["text"] in texts]
    return len(found), len(set(found))


def drain(dsn: str, sandbox: h.Sandbox, accounts: list, count: int, profile: bool) -> Phase:
    with h.worker(dsn, sandbox.url) as process:
        pids = {"bench": os.getpid(), "worker": process.pid, "sandbox": sandbox.process.pid}
        pids["postgres"] = h.postgres_pid()
        with h.PeakRss(process.pid) as rss, profiled(process.pid, profile) as out:
            h.settle()
            items = due_items(accounts, count, time.time() + LEAD_S)
            h.insert_targets(dsn, items)
            sleep_until(items[0].publish_at)
            before = h.db_transactions(dsn)
            with h.CpuMeter(**pids) as meter:
                state = h.wait_final(dsn, count, 240, process)
        time.sleep(2)  # PostgreSQL publishes a backend's statistics within a second or so
        transactions = h.db_transactions(dsn) - before
    h.report_failures(dsn, state, count)
    shown, distinct = published_by_sandbox(sandbox, items)
    extra = {
        "published": f"{state.published}/{shown}/{distinct}",
        "idle_rss": rss.first,
        "peak_rss": rss.peak,
        "transactions": transactions / count,
        "profile": out,
    }
    return Phase("engine", state.published, state.last_published - state.first_due, meter, extra)


def run(args: argparse.Namespace) -> None:
    with h.database() as dsn, h.sandbox() as sandbox:
        tokens = asyncio.run(h.mint_x_tokens(sandbox.url, args.accounts))
        settings = h.settings_for(dsn, sandbox.url)
        accounts = h.seed_accounts(dsn, tokens, settings)
        c, why = engine_concurrency(settings, len(accounts))
        baseline(sandbox, tokens, WARMUP, c, "warm-up")
        phases = [baseline(sandbox, tokens, args.targets, c, "before")]
        phases.append(drain(dsn, sandbox, accounts, args.targets, args.profile))
        phases.append(baseline(sandbox, tokens, args.targets, c, "after"))
    report(args, why, c, phases)


def report(args: argparse.Namespace, why: str, c: int, phases: list[Phase]) -> None:
    before, engine, after = phases
    bare = max(before.rate, after.rate)
    x = engine.extra
    print(f"\nPublish burst: one worker, X via the standalone sandbox, {os.cpu_count()} CPUs")
    print(f"engine's effective concurrency: {why}\n")
    rows = [
        ("targets", f"{args.targets:,}"),
        ("accounts", f"{args.accounts:,}"),
        ("published (db / sandbox / distinct)", x["published"]),
        ("drain s", f"{engine.seconds:.2f}"),
        ("our targets/s", f"{engine.rate:,.0f}"),
        (
            f"bare httpx2 loop req/s (c={c}), before / after",
            f"{before.rate:,.0f} / {after.rate:,.0f}",
        ),
        ("ratio (ours / best bare; target >= 50%)", f"{engine.rate / bare:.0%}"),
        ("worker RSS idle MB", f"{x['idle_rss'] / MB:.0f}"),
        ("worker peak RSS MB (target <= 200)", f"{x['peak_rss'] / MB:.0f}"),
        ("database transactions per target", f"{x['transactions']:.1f}"),
    ]
    print(h.table(rows))
    cpu_table(phases)
    if x["profile"] is not None:
        summarize(x["profile"])


def cpu_table(phases: list[Phase]) -> None:
    """Where the CPU went in each phase, in cores (CPU s / wall s; 2.00 = the machine)."""
    names = ("bench", "worker", "sandbox", "postgres", "rest")
    header = f"{'phase':<20} {'wall s':>7} " + " ".join(f"{n:>8}" for n in names)
    print(f"\nCPU in cores (rest = every other process on the machine)\n{header}")
    for p in phases:
        cores = " ".join(
            f"{p.meter.cores(n):>8.2f}" if n in p.meter.used else f"{'-':>8}" for n in names
        )
        print(f"{p.name:<20} {p.meter.wall:>7.2f} {cores}")
    engine = phases[1]
    per = 1000 * engine.meter.used["worker"] / engine.count
    client = 1000 * phases[0].meter.used["bench"] / phases[0].count
    print(f"worker CPU per target: {per:.2f} ms; bare client CPU per request: {client:.2f} ms")
    noisy = [p.name for p in phases if p.meter.cores("rest") > h.QUIET]
    if noisy:
        print(f"WARNING: other processes used the CPU during {', '.join(noisy)}: unreliable")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--targets", type=int, default=5000)
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--profile", action="store_true", help="py-spy the worker")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
