"""Shared setup of the publishing benchmarks: a fresh PostgreSQL database (embedded in
var/bench/pg unless OKK_BENCH_DATABASE_URL names a server), the standalone sandbox in its
own process, X tokens minted through the sandbox's OAuth consent, users, accounts and
due targets written straight into the database, and one `python -m src worker` process.

Every process and the database are removed again when the context managers exit."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urljoin, urlsplit

import httpx2
import psutil
import psycopg

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from src.config import Settings, load_settings  # noqa: E402
from src.publishers.x import SCOPES  # noqa: E402
from src.sandbox.config import SandboxConfig  # noqa: E402
from src.sandbox.x import XAVIER_ID, XENA_ID  # noqa: E402
from tests.appserver import PostgresAdmin  # noqa: E402
from tests.browser import forms_of, hidden_fields  # noqa: E402

BENCH_DIR = ROOT / "var" / "bench"
LOG_DIR = BENCH_DIR / "logs"
# Fixed secrets, given to every process (the bench encrypts the tokens the worker reads).
TOKEN_KEY = base64.urlsafe_b64encode(b"okktopus-benchmark-token-key-32b").decode()
SECRET_KEY = "okktopus-benchmark-secret-key-not-for-production"
REDIRECT = "https://okktopus.example/connections/x/callback"
X_IDENTITIES = ((XAVIER_ID, "xavier_x", "Xavier X"), (XENA_ID, "xena_x", "Xena X"))
UNLIMITED = 10**9
X_LIMITS = {
    "x_tweets_per_15min": UNLIMITED,
    "x_tweets_per_day_user": UNLIMITED,
    "x_tweets_per_day_app": UNLIMITED,
}
POLL_S = 0.2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def log_file(name: str) -> Any:
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    return (LOG_DIR / f"{name}.log").open("wb")


def stop(*processes: subprocess.Popen, grace: float = 20) -> None:
    """SIGINT to each (the graceful stop of uvicorn and SAQ), then SIGKILL to those still
    running after `grace` s."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
    deadline = time.monotonic() + grace
    for process in processes:
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# -- the database ---------------------------------------------------------------------------
def postgres() -> PostgresAdmin:
    url = os.environ.get("OKK_BENCH_DATABASE_URL")
    return PostgresAdmin(url) if url else PostgresAdmin.embedded(BENCH_DIR / "pg")


def base_env(dsn: str) -> dict[str, str]:
    return {
        **os.environ,
        "OKK_DATABASE_URL": dsn,
        "OKK_DATA_DIR": str(BENCH_DIR / "data"),
        "OKK_TOKEN_KEYS": TOKEN_KEY,
        "OKK_SECRET_KEY": SECRET_KEY,
    }


@contextmanager
def databases() -> Iterator[Callable[[], str]]:
    """A factory of freshly migrated databases (clones of one migrated template, so
    migrations run once); every database it made, and the template, dropped on exit."""
    admin = postgres()
    admin.template = f"okk_bench_template_{secrets.token_hex(4)}"
    made = [admin.template]
    try:
        admin.prepare_template()

        def new() -> str:
            made.append(admin.new_database())
            return admin.dsn(made[-1])

        yield new
    finally:
        for name in made:
            admin.drop_database(name)


@contextmanager
def database() -> Iterator[str]:
    """A freshly migrated database, dropped on exit. Yields its DSN."""
    with databases() as new:
        yield new()


# -- the sandbox ----------------------------------------------------------------------------
@dataclass
class Sandbox:
    url: str
    process: subprocess.Popen

    def admin(self, method: str, path: str, **kwargs: Any) -> Any:
        answer = httpx2.request(method, f"{self.url}/admin{path}", timeout=60, **kwargs)
        return answer.raise_for_status().json()


def wait_http(url: str, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode}")
        try:
            httpx2.get(url, timeout=1)
            return
        except httpx2.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


@contextmanager
def sandbox() -> Iterator[Sandbox]:
    """`python -m src sandbox` on a free port, with X's posting limits out of the way."""
    port = free_port()
    command = [sys.executable, "-m", "src", "sandbox", "--port", str(port)]
    with log_file("sandbox") as log:
        process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        try:
            found = Sandbox(f"http://127.0.0.1:{port}", process)
            wait_http(found.url + "/admin/faults", process)
            found.admin("PATCH", "/config", json=X_LIMITS)
            yield found
        finally:
            stop(process)


# -- X tokens, minted the way a person connects an account ----------------------------------
@dataclass
class XToken:
    user_id: str
    username: str
    name: str
    access: str
    refresh: str | None
    expires_in: int
    scope: str


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


async def consent_code(http: httpx2.AsyncClient, identity: str, challenge: str) -> str:
    """Open X's consent page, allow every scope as `identity`, return the code."""
    params = {
        "response_type": "code",
        "client_id": SandboxConfig().x_client_id,
        "redirect_uri": REDIRECT,
        "scope": " ".join(SCOPES),
        "state": secrets.token_urlsafe(16),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    page = (await http.get("/x/www/i/oauth2/authorize", params=params)).raise_for_status()
    form = next(f for f in forms_of(page.text) if f["method"] == "post")
    scopes = [f["value"] for f in form["fields"] if f.get("name") == "scope"]
    data = hidden_fields(form) | {"decision": "allow", "identity": identity, "scope": scopes}
    back = await http.post(urljoin(str(page.url), form["action"]), data=data)
    return dict(parse_qsl(urlsplit(back.headers["location"]).query))["code"]


async def mint_one(http: httpx2.AsyncClient, index: int) -> XToken:
    user_id, username, name = X_IDENTITIES[index % len(X_IDENTITIES)]
    verifier, challenge = pkce()
    code = await consent_code(http, user_id, challenge)
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "code_verifier": verifier,
    }
    config = SandboxConfig()
    auth = (config.x_client_id, config.x_client_secret)
    answer = await http.post("/x/api/2/oauth2/token", data=form, auth=auth)
    body = answer.raise_for_status().json()
    return XToken(
        user_id,
        username,
        name,
        body["access_token"],
        body.get("refresh_token"),
        int(body["expires_in"]),
        body["scope"],
    )


async def mint_x_tokens(url: str, count: int, concurrency: int = 16) -> list[XToken]:
    """`count` access tokens, alternating between the sandbox's two X identities."""
    gate = asyncio.Semaphore(concurrency)
    async with httpx2.AsyncClient(base_url=url, timeout=30) as http:

        async def one(index: int) -> XToken:
            async with gate:
                return await mint_one(http, index)

        return list(await asyncio.gather(*(one(i) for i in range(count))))


# -- users, accounts, posts and targets -----------------------------------------------------
def settings_for(dsn: str, sandbox_url: str) -> Settings:
    return load_settings(worker_env(dsn, sandbox_url))


def insert_users(conn: psycopg.Connection, count: int) -> list[int]:
    run = secrets.token_hex(3)
    subs = [f"bench-{run}-{i}" for i in range(count)]
    emails = [f"bench{i}-{run}@example.test" for i in range(count)]
    rows = conn.execute(
        "INSERT INTO users (google_sub, email, name, timezone, created_at, updated_at) "
        "SELECT s, e, 'Bench ' || s, 'UTC', now(), now() "
        "FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS u(s, e, n) ORDER BY n "
        "RETURNING id",
        (subs, emails),
    ).fetchall()
    return sorted(r[0] for r in rows)


def insert_accounts(
    conn: psycopg.Connection, users: list[int], tokens: list[XToken], settings: Settings
) -> list[tuple[int, int]]:
    """One X account per user, each with its own token. Returns (account, user) pairs."""
    from src.accounts import cipher

    c = cipher(settings)
    rows = []
    for user, token in zip(users, tokens, strict=True):
        row = conn.execute(
            'INSERT INTO accounts ("user", platform, external_id, handle, display_name, '
            "access_token, refresh_token, access_expires_at, scopes, status, "
            "last_refreshed_at, meta, created_at, updated_at) VALUES (%s, 'x', %s, %s, %s, "
            "%s, %s, now() + make_interval(secs => %s), %s, 'active', now(), '{}', now(), "
            "now()) RETURNING id",
            (
                user,
                token.user_id,
                token.username,
                token.name,
                c.encrypt(token.access),
                c.encrypt(token.refresh),
                token.expires_in,
                token.scope,
            ),
        ).fetchone()
        rows.append((row[0], user))
    return rows


def seed_accounts(dsn: str, tokens: list[XToken], settings: Settings) -> list[tuple[int, int]]:
    with psycopg.connect(dsn) as conn:
        users = insert_users(conn, len(tokens))
        return insert_accounts(conn, users, tokens, settings)


@dataclass
class Due:
    text: str
    publish_at: float  # epoch seconds
    account: int
    user: int


def next_ids(conn: psycopg.Connection, table: str, count: int) -> list[int]:
    rows = conn.execute(
        "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
        (table, count),
    ).fetchall()
    return [r[0] for r in rows]


def insert_targets(dsn: str, items: list[Due]) -> None:
    """One post with one scheduled target per item, due at its publish_at, in one go."""
    with psycopg.connect(dsn) as conn:
        posts = next_ids(conn, "posts", len(items))
        moments = [datetime.fromtimestamp(i.publish_at, UTC) for i in items]
        conn.execute(
            'INSERT INTO posts (id, "user", text, publish_at, timezone, status, source, '
            "created_at, updated_at) SELECT p, u, t, at, 'UTC', 'scheduled', 'composer', "
            "now(), now() FROM unnest(%s::int[], %s::int[], %s::text[], %s::timestamptz[]) "
            "AS x(p, u, t, at)",
            (posts, [i.user for i in items], [i.text for i in items], moments),
        )
        conn.execute(
            "INSERT INTO post_targets (post, account, options, status, due_at, progress, "
            "created_at, updated_at) SELECT p, a, '{}', 'scheduled', at, '{}', now(), now() "
            "FROM unnest(%s::int[], %s::int[], %s::timestamptz[]) AS x(p, a, at)",
            (posts, [i.account for i in items], moments),
        )


@dataclass
class Progress:
    published: int
    final: int  # published, failed, cancelled or unconfirmed
    first_due: float | None
    last_published: float | None


def progress(conn: psycopg.Connection) -> Progress:
    row = conn.execute(
        "SELECT count(*) FILTER (WHERE t.status = 'published'), "
        "count(*) FILTER (WHERE t.status IN ('published', 'failed', 'cancelled', "
        "'unconfirmed')), extract(epoch FROM min(p.publish_at)), "
        "extract(epoch FROM max(t.published_at)) "
        "FROM post_targets t JOIN posts p ON p.id = t.post"
    ).fetchone()
    as_float = [None if v is None else float(v) for v in row[2:]]
    return Progress(row[0], row[1], *as_float)


def failures(conn: psycopg.Connection, limit: int = 5) -> list[tuple[str, str, str]]:
    return conn.execute(
        "SELECT status, error_code, last_error FROM post_targets "
        "WHERE status NOT IN ('published', 'scheduled', 'publishing') LIMIT %s",
        (limit,),
    ).fetchall()


def wait_final(
    dsn: str, total: int, timeout: float, *workers: subprocess.Popen, every: Callable | None = None
) -> Progress:
    """Poll the database every POLL_S until every target reached a final state (calling
    `every(conn)` at each poll, to sample something meanwhile)."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(dsn, autocommit=True) as conn:
        while time.monotonic() < deadline:
            state = progress(conn)
            if every is not None:
                every(conn)
            if state.final >= total:
                return state
            for worker in workers:
                if worker.poll() is not None:
                    raise RuntimeError(f"a worker exited with {worker.returncode}")
            time.sleep(POLL_S)
        raise RuntimeError(f"{total - state.final} targets unfinished: {failures(conn)}")


def report_failures(dsn: str, state: Progress, total: int) -> None:
    if state.published == total:
        return
    with psycopg.connect(dsn) as conn:
        print(f"WARNING: {total - state.published} targets not published: {failures(conn)}")


# -- the worker -----------------------------------------------------------------------------
def worker_env(dsn: str, sandbox_url: str) -> dict[str, str]:
    return base_env(dsn) | {"OKK_SANDBOX": "1", "OKK_SANDBOX_BASE_URL": sandbox_url}


def wait_heartbeat(dsn: str, processes: Sequence[subprocess.Popen], timeout: float = 90) -> None:
    """Each worker's startup beats first, then starts its dispatch loops."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(dsn, autocommit=True) as conn:
        while time.monotonic() < deadline:
            for process in processes:
                if process.poll() is not None:
                    raise RuntimeError(f"a worker exited with {process.returncode}")
            try:
                beats = conn.execute("SELECT count(*) FROM worker_heartbeats").fetchone()[0]
                if beats >= len(processes):
                    return
            except psycopg.errors.UndefinedTable:
                pass
            time.sleep(0.1)
    raise RuntimeError(f"the workers did not start within {timeout} s")


WORKER = [sys.executable, "-m", "src", "worker"]


@contextmanager
def workers(
    dsn: str,
    sandbox_url: str,
    count: int,
    env: dict[str, str] | None = None,
    command: Sequence[str] = WORKER,
    name: str = "worker",
) -> Iterator[list[subprocess.Popen]]:
    """`count` worker processes (`python -m src worker` unless `command` says otherwise),
    all ready (their dispatch loops running), logging to var/bench/logs/{name}-{i}.log;
    stopped together on exit."""
    environment = worker_env(dsn, sandbox_url) | (env or {})
    processes: list[subprocess.Popen] = []
    try:
        for i in range(count):
            with log_file(f"{name}-{i}") as log:
                processes.append(
                    subprocess.Popen(command, cwd=ROOT, env=environment, stdout=log, stderr=log)
                )
        wait_heartbeat(dsn, processes)
        yield processes
    finally:
        stop(*processes)


@contextmanager
def worker(dsn: str, sandbox_url: str) -> Iterator[subprocess.Popen]:
    """One `python -m src worker` process, ready (its dispatch loops running)."""
    with workers(dsn, sandbox_url, 1) as processes:
        yield processes[0]


# -- measuring ------------------------------------------------------------------------------
class PeakRss:
    """Samples a process's resident set (with its children) in a thread."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.process = psutil.Process(pid)
        self.interval = interval
        self.peak = self.first = self.rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss(self) -> int:
        family = [self.process, *self.process.children(recursive=True)]
        return sum(p.memory_info().rss for p in family)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.peak = max(self.peak, self.rss())
            except psutil.NoSuchProcess:
                return

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def cpu_seconds(process: psutil.Process, family: bool = False) -> float:
    """User + system CPU of a process; with `family`, also of its children, live and
    exited (a PostgreSQL server: the postmaster and its backends)."""
    try:
        times = process.cpu_times()
        used = times.user + times.system
        if not family:
            return used
        used += times.children_user + times.children_system
        for child in process.children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess):
                used += sum(child.cpu_times()[:2])
        return used
    except psutil.NoSuchProcess:
        return 0.0


class CpuMeter:
    """CPU seconds used by named processes while the body runs, and by everything else
    on the machine ("rest"). `postgres` (when found) counts the server with its backends."""

    def __init__(self, **pids: int | Sequence[int] | None) -> None:
        """Each name counts one process, or the sum of several (`workers=[...]`)."""
        self.processes = {
            n: [psutil.Process(p) for p in ([pid] if isinstance(pid, int) else pid)]
            for n, pid in pids.items()
            if pid
        }
        self.used: dict[str, float] = {}
        self.wall = 0.0

    @staticmethod
    def busy() -> float:
        times = psutil.cpu_times()
        return sum(times) - times.idle - getattr(times, "iowait", 0.0)

    def cpu(self) -> dict[str, float]:
        return {
            n: sum(cpu_seconds(p, family=n == "postgres") for p in group)
            for n, group in self.processes.items()
        }

    def __enter__(self) -> CpuMeter:
        self._start = (time.perf_counter(), self.busy(), self.cpu())
        return self

    def __exit__(self, *exc: object) -> None:
        started, busy, cpu = self._start
        self.wall = time.perf_counter() - started
        now = self.cpu()
        self.used = {n: now[n] - cpu[n] for n in now}
        self.used["rest"] = self.busy() - busy - sum(self.used.values())

    def cores(self, name: str) -> float:
        return self.used.get(name, 0.0) / self.wall


def postgres_pid() -> int | None:
    """The embedded server's postmaster (None when OKK_BENCH_DATABASE_URL names a server)."""
    if os.environ.get("OKK_BENCH_DATABASE_URL"):
        return None
    path = BENCH_DIR / "pg" / "postmaster.pid"
    return int(path.read_text().split()[0]) if path.exists() else None


QUIET = 0.15  # cores other processes may use before a measurement waits for them


def settle(limit: float = 20, window: float = 0.5) -> float:
    """Wait (at most `limit` s) until the rest of the machine leaves the CPUs alone;
    returns the cores it used in the last window (printed when it never got quiet)."""
    me = psutil.Process()
    deadline = time.monotonic() + limit
    while True:
        busy, mine = CpuMeter.busy(), sum(me.cpu_times()[:2])
        time.sleep(window)
        others = (CpuMeter.busy() - busy - (sum(me.cpu_times()[:2]) - mine)) / window
        if others < QUIET or time.monotonic() > deadline:
            return others


@dataclass
class DbStats:
    transactions: int  # committed in this database so far (an autocommit statement is one)
    wal: int  # the server's WAL position in bytes (the embedded server has no other users)
    sizes: dict[str, int]  # bytes of each table, with its indexes and TOAST
    connections: int  # backends connected to this database, this one left out


def db_stats(dsn: str) -> DbStats:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT xact_commit, pg_current_wal_lsn() - '0/0'::pg_lsn, "
            "(SELECT count(*) - 1 FROM pg_stat_activity WHERE datname = current_database()) "
            "FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
        sizes = conn.execute(
            "SELECT relname, pg_total_relation_size(relid) FROM pg_stat_user_tables"
        ).fetchall()
        return DbStats(int(row[0]), int(row[1]), dict(sizes), int(row[2]))


def db_transactions(dsn: str) -> int:
    return db_stats(dsn).transactions


def wait_disconnected(dsn: str, timeout: float = 30) -> DbStats:
    """Wait until no other backend is connected to the database (a backend flushes its
    statistics as it exits), then return the statistics."""
    deadline = time.monotonic() + timeout
    while (stats := db_stats(dsn)).connections and time.monotonic() < deadline:
        time.sleep(0.05)
    return stats


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))
    return ordered[int(rank) - 1]


def table(rows: list[tuple[str, str]]) -> str:
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value:>12}" for name, value in rows)
