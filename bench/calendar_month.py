"""Month view of a person with 2,000 posts in that month: server time of the full page and
of the htmx partial, against a bare Litestar handler rendering a small template in the
same process and run, and the SQL statements per render (which must not grow with the
number of posts).

    .venv/bin/python bench/calendar_month.py [--posts 2000] [--requests 300]

The app runs as a real process (`python -m tests.instrumented --bare`: `okktopus run
--no-worker` plus a statement counter and a `server-timing` header per response, see
tests/instrumented.py) on a fresh database, embedded in var/bench/pg unless
OKK_BENCH_DATABASE_URL names a server. Requests are sequential over keep-alive; "server
time" is from the request's arrival in the ASGI app to its response headers (Litestar
sends them once the page is rendered). Targets: partial p95 <= 30 ms, page p95 <= 60 ms."""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.appserver import PostgresAdmin  # noqa: E402

BENCH_DIR = ROOT / "var" / "bench"
HTMX = {"hx-request": "true", "hx-target": "calendar"}
ZONE = ZoneInfo("Europe/Berlin")
TEXTS = [
    "Launch day! Our new feature ships at noon, here is what is inside",
    "Behind the scenes: how we built the calendar",
    "Weekly tips: schedule posts when your audience is awake",
    "Thank you for 10k followers",
    "Webinar tomorrow: social strategy for small teams",
    "New on the blog: privacy-first analytics",
]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def populate(email: str, count: int, month_start: datetime) -> int:
    """`count` posts spread over the month, through the scheduling domain, with a mix of
    statuses as the worker would leave them. Returns the user id."""
    from piccolo.engine import engine_finder

    from src import posts
    from src.db.tables import Account, PostTarget, User

    engine = engine_finder()
    await engine.start_connection_pool(min_size=1, max_size=8)
    try:
        user = await User.objects().get(User.email == email)
        accounts = await Account.objects().where(Account.user == user.id)
        rng = random.Random(6)
        days = 28

        async def one(i: int) -> None:
            at = month_start + timedelta(
                days=i % days, hours=6 + rng.randrange(15), minutes=rng.randrange(60)
            )
            spec = posts.PostSpec(
                text=f"{TEXTS[i % len(TEXTS)]} #{i}",
                targets=[posts.TargetSpec(a.id) for a in accounts[: 1 + i % len(accounts)]],
                publish_at=at.astimezone(UTC),
                timezone="Europe/Berlin",
                draft=i % 11 == 0,
            )
            await posts.schedule(user.id, spec)

        for start in range(0, count, 50):
            await asyncio.gather(*(one(i) for i in range(start, min(count, start + 50))))
        # What a month looks like after the worker: some published, a few failed.
        for status, share in (("published", 0.3), ("failed", 0.03)):
            rows = await PostTarget.raw(
                "SELECT t.id, t.post FROM post_targets t JOIN posts p ON p.id = t.post "
                "WHERE p.\"user\" = {} AND t.status = 'scheduled' ORDER BY random() LIMIT {}",
                user.id,
                int(count * share),
            )
            ids = [r["id"] for r in rows]
            await PostTarget.update({PostTarget.status: status}).where(PostTarget.id.is_in(ids))
            for post_id in {r["post"] for r in rows}:
                await posts.refresh_post_status(post_id)
        return user.id
    finally:
        await engine.close_connection_pool()


def measure(client, path: str, headers: dict[str, str], n: int) -> dict[str, float]:
    from tests.instrumented import server_ms, statements

    for _ in range(max(10, n // 10)):  # warm-up: templates compiled, pools filled
        client.get(path, headers=headers)
    server, wall, counts, sizes = [], [], set(), set()
    for _ in range(n):
        began = time.perf_counter()
        response = client.get(path, headers=headers)
        wall.append((time.perf_counter() - began) * 1000)
        assert response.status_code == 200, (path, response.status_code)
        server.append(server_ms(response))
        counts.add(statements(response))
        sizes.add(len(response.content))
    return {
        "p50": statistics.median(server),
        "p95": percentile(server, 95),
        "wall_p50": statistics.median(wall),
        "statements": max(counts),
        "kb": max(sizes) / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--posts", type=int, default=2000)
    parser.add_argument("--requests", type=int, default=300)
    options = parser.parse_args()

    url = os.environ.get("OKK_BENCH_DATABASE_URL")
    admin = PostgresAdmin(url) if url else PostgresAdmin.embedded(BENCH_DIR / "pg")
    admin.prepare_template()
    database = admin.new_database()
    os.environ.update(
        {
            "OKK_DATABASE_URL": admin.dsn(database),
            "OKK_SECRET_KEY": "okktopus-benchmark-secret-key-not-for-production",
            "OKK_ALLOWED_EMAILS": "@example.com",
        }
    )
    from tests.browser import Browser
    from tests.instrumented import InstrumentedServer

    data_dir = BENCH_DIR / f"calendar-{secrets.token_hex(3)}"
    app = InstrumentedServer(
        database_url=admin.dsn(database), data_dir=data_dir, log_dir=BENCH_DIR, bare=True
    )
    try:
        app.start()
        browser = Browser(app.url)
        email = browser.signed_in_user("bench@example.com")
        browser.connect("x")
        browser.connect("x", identity=1)
        now = datetime.now(ZONE)
        month = (now.replace(day=1) + timedelta(days=40)).replace(
            day=1, hour=0, minute=0, second=0, microsecond=0
        )
        quiet = (month + timedelta(days=40)).replace(day=1)
        began = time.perf_counter()
        asyncio.run(populate(email, options.posts, month))
        print(
            f"{options.posts} posts scheduled in {month:%B %Y} "
            f"({time.perf_counter() - began:.1f} s through posts.schedule)"
        )
        client = browser.http
        day = month.date().isoformat()
        n = options.requests
        rows = {
            f"month page ({options.posts} posts)": measure(client, f"/calendar?date={day}", {}, n),
            f"month partial ({options.posts} posts)": measure(
                client, f"/calendar?date={day}", HTMX, n
            ),
            "month partial (empty month)": measure(
                client, f"/calendar?date={quiet.date()}", HTMX, n // 3
            ),
            "bare Litestar + small template": measure(client, "/__bare__", {}, n),
        }
    finally:
        app.stop()
        admin.drop_database(database)
        admin.drop_database(admin.template)

    print(f"\nsequential requests, keep-alive, n={n} (server time = ASGI arrival to headers)")
    print(f"{'':34} {'p50 ms':>8} {'p95 ms':>8} {'client p50':>11} {'SQL/render':>11} {'KB':>6}")
    for name, r in rows.items():
        print(
            f"{name:34} {r['p50']:8.2f} {r['p95']:8.2f} {r['wall_p50']:11.2f} "
            f"{r['statements']:>11} {r['kb']:6.0f}"
        )
    page = rows[f"month page ({options.posts} posts)"]
    partial = rows[f"month partial ({options.posts} posts)"]
    bare = rows["bare Litestar + small template"]
    print(
        f"\npartial p95 {partial['p95']:.1f} ms (target <= 30), "
        f"page p95 {page['p95']:.1f} ms (target <= 60); "
        f"partial / bare at p50: {partial['p50'] / bare['p50']:.1f}x"
    )
    print(
        f"SQL statements per render: {partial['statements']} with {options.posts} posts, "
        f"{rows['month partial (empty month)']['statements']} with none "
        "(bare handler: 0; the app's own per request: session read and write, user)"
    )


if __name__ == "__main__":
    main()
