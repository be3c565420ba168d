"""How much the web process grows while a 1 GB video is uploaded (target: < 50 MB).

Starts `python -m src run --no-worker` on a fresh database (embedded PostgreSQL in
var/bench/pg unless OKK_BENCH_DATABASE_URL names a server), signs a person in through the
sandbox, and uploads a valid MP4 of --size-mb (a real short clip with a `free` box of
padding before its moov, written sparse, so making it costs nothing). The server's RSS is
sampled every 10 ms during the upload; the figure is the peak minus the RSS before.

    .venv/bin/python bench/upload_memory.py [--size-mb 1024] [--url URL --pid PID]

With --url and --pid it measures an app that is already running (sandbox sign-in must be
on, and the new person's address allowed).
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.appserver import AppServer, PostgresAdmin  # noqa: E402
from tests.browser import Browser  # noqa: E402
from tests.test_media import padded_mp4  # noqa: E402

BENCH_DIR = ROOT / "var" / "bench"
TARGET_MB = 50


class PeakRss:
    """Samples a process's RSS in a thread; `peak` is the highest seen."""

    def __init__(self, pid: int, every_s: float = 0.01) -> None:
        self.process = psutil.Process(pid)
        self.every_s = every_s
        self.before = self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(self.every_s)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.after = self.process.memory_info().rss


@contextmanager
def own_app():
    """A fresh database and app process, removed again on exit. Yields (url, pid)."""
    url = os.environ.get("OKK_BENCH_DATABASE_URL")
    admin = PostgresAdmin(url) if url else PostgresAdmin.embedded(BENCH_DIR / "pg")
    admin.prepare_template()
    database = admin.new_database()
    data_dir = BENCH_DIR / f"upload-{secrets.token_hex(3)}"
    app = AppServer(
        database_url=admin.dsn(database),
        data_dir=data_dir,
        log_dir=BENCH_DIR,
        env={"OKK_ALLOWED_EMAILS": "@example.com"},
        worker=False,
    )
    try:
        app.start()
        yield app.url, app.process.pid
    finally:
        app.stop()
        admin.drop_database(database)
        admin.drop_database(admin.template)
        shutil.rmtree(data_dir, ignore_errors=True)


def send(browser: Browser, token: str, path: Path) -> dict:
    with path.open("rb") as handle:
        response = browser.http.post(
            "/media",
            files={"file": (path.name, handle, "video/mp4")},
            headers={"x-csrftoken": token, "accept": "application/json"},
            timeout=600,
        )
    return {"status": response.status_code, **response.json()}


def measure(url: str, pid: int, size_mb: int) -> int:
    browser = Browser(url)
    browser.signed_in_user()
    token = browser.csrf_token()
    with tempfile.TemporaryDirectory(dir=BENCH_DIR) as folder:
        # The first probe in a process loads FFmpeg and Pillow (a fixed cost, not one
        # that grows with the upload): a small video first, measured on its own.
        small = Path(folder) / "small.mp4"
        padded_mp4(small, 1024 * 1024)
        with PeakRss(pid) as warmup:
            send(browser, token, small)
        path = Path(folder) / "big.mp4"
        padded_mp4(path, size_mb * 1024 * 1024)
        started = time.monotonic()
        with PeakRss(pid) as rss:
            body = send(browser, token, path)
        elapsed = time.monotonic() - started
    print(f"first probe     +{(warmup.peak - warmup.before) / 1048576:.1f} MB (libraries loaded)")
    if body["status"] != 201:
        print(f"upload refused: {body}")
        return 1
    growth = (rss.peak - rss.before) / 1048576
    print(f"uploaded        {size_mb} MB as media {body['id']} ({body['content_type']})")
    print(f"time            {elapsed:.2f} s ({size_mb / elapsed:.0f} MB/s, hashed and probed)")
    print(f"web RSS before  {rss.before / 1048576:.1f} MB")
    print(f"web RSS peak    {rss.peak / 1048576:.1f} MB")
    print(f"web RSS after   {rss.after / 1048576:.1f} MB")
    verdict = "ok" if growth < TARGET_MB else "OVER TARGET"
    print(f"growth (peak)   {growth:.1f} MB  (target < {TARGET_MB} MB: {verdict})")
    browser.http.delete(f"/media/{body['id']}", headers={"x-csrftoken": token})
    return 0 if growth < TARGET_MB else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--url", help="a running app (with --pid)")
    parser.add_argument("--pid", type=int, help="the running app's web process")
    args = parser.parse_args()
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    if args.url and args.pid:
        return measure(args.url, args.pid, args.size_mb)
    with own_app() as (url, pid):
        return measure(url, pid, args.size_mb)


if __name__ == "__main__":
    sys.exit(main())
