"""GitOps sync of a repository of 10,000 post files (one post each), on a real git
repository (bare remote, real commits) and a real PostgreSQL (the embedded one in
var/bench/pg unless OKK_BENCH_DATABASE_URL names a server). Prints:

- the first sync's time next to the time to merely read and parse the same files with
  PyYAML's C loader, measured in the same run (target: at most 3x);
- a re-sync of the unchanged commit (target: at most 100 ms);
- a commit changing one file, the median of three (target: at most 5% of the first sync);
- the peak RSS of this process (target: at most 300 MB).

    .venv/bin/python bench/content_sync.py [--files 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.appserver import PostgresAdmin  # noqa: E402

BENCH_DIR = ROOT / "var" / "bench"
GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
}
TEXT = (
    "Post number {i}: what we shipped this week, why it matters and what comes next. "
    "Read more at https://example.org/notes/{i} #release #weekly"
)


def git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, env=GIT_ENV, check=True, capture_output=True)


def post_file(i: int, start: datetime, variant: str = "") -> str:
    when = (start + timedelta(minutes=i)).isoformat()
    lines = [
        "# yaml-language-server: $schema=https://okktopus.example/content/schema.json",
        f"id: post-{i:05d}",
        f"publish_at: {when}",
        "timezone: Europe/Berlin",
        "accounts: [x:@xavier_x, x:@xena_x]" if i % 2 else "accounts: [x:@xavier_x]",
        f'text: "{TEXT.format(i=i)}{variant}"',
    ]
    if i % 5 == 0:
        lines += [
            "overrides:",
            "  x:",
            "    thread:",
            f"      - Part one of {i}",
            f"      - Part two of {i}",
        ]
    return "\n".join(lines) + "\n"


def make_repo(folder: Path, count: int) -> tuple[Path, Path, datetime]:
    work, remote = folder / "work", folder / "remote.git"
    git("init", "--quiet", "--initial-branch=main", str(work), cwd=folder)
    start = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)
    for i in range(count):
        sub = work / "posts" / f"{i // 1000:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"post-{i:05d}.yaml").write_text(post_file(i, start))
    git("add", "--all", cwd=work)
    git("commit", "--quiet", "-m", "10k posts", cwd=work)
    git("clone", "--quiet", "--bare", "--no-local", str(work), str(remote), cwd=folder)
    git("repack", "-adq", cwd=remote)  # packed, as a forge keeps it
    git("remote", "add", "origin", str(remote), cwd=work)
    return work, remote, start


def parse_baseline(work: Path) -> tuple[float, int]:
    import yaml

    files = sorted((work / "posts").rglob("*.yaml"))
    started = time.perf_counter()
    for path in files:
        yaml.load(path.read_bytes(), Loader=yaml.CSafeLoader)
    return time.perf_counter() - started, len(files)


async def seed(dsn: str) -> tuple[int, int]:
    from src.config import get_settings
    from src.db.tables import Account, User

    user = User(
        {
            User.google_sub: f"bench-{secrets.token_hex(4)}",
            User.email: "bench@example.com",
            User.is_owner: True,
        }
    )
    await user.save()
    for handle in ("xavier_x", "xena_x"):
        await Account(
            {
                Account.user: user.id,
                Account.platform: "x",
                Account.external_id: handle,
                Account.handle: handle,
                Account.status: "active",
                Account.meta: {},
            }
        ).save()
    return user.id, get_settings()  # type: ignore[return-value]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def run(count: int, folder: Path) -> None:
    from piccolo.engine import engine_finder

    from src.config import get_settings
    from src.content import service
    from src.content.sync import sync_source
    from src.db.tables import Post, User

    print(f"Making a git repository of {count:,} post files…", flush=True)
    work, remote, start = make_repo(folder, count)
    engine = engine_finder()
    await engine.start_connection_pool(min_size=1, max_size=4)
    try:
        settings = get_settings()
        user_id, _ = await seed(os.environ["OKK_DATABASE_URL"])
        user = await User.objects().get(User.id == user_id)
        source = await service.add_git(user, settings, name="bench", url=str(remote), branch="main")

        parse_s, files = parse_baseline(work)
        gc.collect()
        profile = None
        if os.environ.get("BENCH_PROFILE"):
            import cProfile

            profile = cProfile.Profile()
            profile.enable()
        started = time.perf_counter()
        first = await sync_source(source.id, settings, trigger="bench")
        first_s = time.perf_counter() - started
        if profile is not None:
            profile.disable()
            profile.dump_stats(os.environ["BENCH_PROFILE"])
        assert first.status == "ok", [str(p) for p in first.problems[:5]]
        created = first.counts["created"]
        first_timings = first.timings
        assert created == count, first.counts
        assert await Post.count().where(Post.content_source == source.id) == count

        times = []
        for _ in range(5):
            started = time.perf_counter()
            again = await sync_source(source.id, settings, trigger="bench")
            times.append(time.perf_counter() - started)
            assert again.status == "unchanged", again
        resync_s = sorted(times)[len(times) // 2]

        ones = []  # three commits, each changing another file (one sample is too noisy)
        for i in (42, 43, 44):
            changed = work / "posts" / "00" / f"post-{i:05d}.yaml"
            changed.write_text(post_file(i, start, variant=" (edited)"))
            git("commit", "--quiet", "-am", "edit one post", cwd=work)
            git("push", "--quiet", "origin", "main", cwd=work)
            started = time.perf_counter()
            one = await sync_source(source.id, settings, trigger="bench")
            ones.append((time.perf_counter() - started, one.timings))
            expected = {"created": 0, "updated": 1, "cancelled": 0, "unchanged": count - 1}
            assert one.counts == expected, one.counts
        one_s, one_timings = sorted(ones, key=lambda o: o[0])[len(ones) // 2]
    finally:
        await engine.close_connection_pool()

    rss = peak_rss_mb()
    ratio = first_s / parse_s
    share = one_s / first_s
    print()
    print(f"files                                  {files:>10,}")
    print(f"parse only (read + CSafeLoader)        {parse_s:>10.2f} s")

    def verdict(ok: bool) -> str:
        return "OK" if ok else "MISSED"

    print(
        f"first sync (fetch, plan, {created:,} posts)  {first_s:>10.2f} s   = {ratio:.1f}x parse"
        f"   (target <= 3x)  {verdict(ratio <= 3)}"
    )
    print(
        f"re-sync, unchanged commit (median of 5) {resync_s * 1000:>9.0f} ms"
        f"              (target <= 100 ms) {verdict(resync_s <= 0.1)}"
    )
    print(
        f"one-file commit sync (median of 3)     {one_s:>10.2f} s   = {share:.1%} of first"
        f" (target <= 5%)   {verdict(share <= 0.05)}"
    )
    print(
        f"peak RSS of this process               {rss:>10.0f} MB"
        f"              (target <= 300 MB) {verdict(rss <= 300)}"
    )
    per_post = first_s / created * 1000
    print(f"  ({per_post:.2f} ms per new post; first sync {created / first_s:,.0f} posts/s)")
    phases = ", ".join(f"{k} {v:.2f} s" for k, v in first_timings.items())
    print(f"  first sync phases: {phases}")
    phases = ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in one_timings.items())
    print(f"  one-file sync phases: {phases}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=10_000)
    args = parser.parse_args()
    url = os.environ.get("OKK_BENCH_DATABASE_URL")
    admin = PostgresAdmin(url) if url else PostgresAdmin.embedded(BENCH_DIR / "pg")
    name = f"okk_content_bench_{secrets.token_hex(3)}"
    admin.execute(f'CREATE DATABASE "{name}"')
    folder = Path(tempfile.mkdtemp(prefix="okk-content-bench-"))
    try:
        dsn = admin.dsn(name)
        env = {"OKK_DATABASE_URL": dsn, "OKK_DATA_DIR": str(folder / "data")}
        subprocess.run(
            [sys.executable, "-m", "src", "migrate"],
            cwd=ROOT,
            env={**os.environ, **env},
            check=True,
            capture_output=True,
            timeout=300,
        )
        os.environ.update(env)
        asyncio.run(run(args.files, folder))
    finally:
        admin.drop_database(name)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
