"""The local-folder watcher, in the real app process (its in-process worker watches):
files written, edited, deleted under a local-folder source sync it without Sync now; a
burst of files syncs a few times, not once per file; a broken file is reported with its
line; a vanished folder leaves the others watched; switched off, nothing syncs until
someone asks, and Ctrl-C still stops the process promptly."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from src.config import get_settings
from src.content import service
from src.content.watch import QUIET_MS, RESCAN_MS, sources_of
from src.db.tables import ContentSource, Post, PostTarget, SyncRun, User
from src.jobs import enqueue_sync, make_queue
from tests.appserver import AppServer
from tests.content_helpers import post_yaml, run_git, unique
from tests.test_content_sync import make_user

pytestmark = pytest.mark.usefixtures("db")


def start_app(watch: str, log_dir: Path) -> AppServer:
    """An app on the shared test database and data folder."""
    app = AppServer(
        database_url=os.environ["OKK_DATABASE_URL"],
        data_dir=Path(os.environ["OKK_DATA_DIR"]),
        log_dir=log_dir,
        env={"OKK_CONTENT_WATCH": watch},
    )
    app.start()
    return app


@pytest.fixture
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AppServer]:
    """The app with the watcher on (or as parametrized)."""
    app = start_app(getattr(request, "param", "true"), tmp_path)
    yield app
    app.stop()


async def local_source(user: User, folder: Path) -> ContentSource:
    folder.mkdir(parents=True, exist_ok=True)
    source = await service.add_local(user, unique("watched"), folder)
    # Out of the poll's way: only the watcher (or the test) syncs it.
    await ContentSource.update(
        {ContentSource.last_synced_at: datetime.now(UTC), ContentSource.poll_interval_s: 3600}
    ).where(ContentSource.id == source.id)
    return source


async def until(condition: Callable[[], Awaitable[object]], what: str, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while not (result := await condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)
    return result


async def watching(app: AppServer, source: ContentSource) -> None:
    """The server's log says the watcher has taken this source's folder on."""
    line = re.compile(rf"watching content folders: .*source {source.id} {re.escape(source.url)}")
    await until(lambda: asyncio.to_thread(lambda: line.search(app.log_path.read_text())), "watch")


async def logged(app: AppServer, text: str) -> bool:
    return text in await asyncio.to_thread(app.log_path.read_text)


async def runs(source_id: int) -> list[SyncRun]:
    return (
        await SyncRun.objects()
        .where(SyncRun.source == source_id)
        .order_by(SyncRun.id)
        .output(load_json=True)
    )


async def finished_runs(source_id: int, count: int) -> list[SyncRun]:
    async def done():
        found = await runs(source_id)
        settled = [r for r in found if r.status != "running"]
        return found if len(settled) >= count and len(settled) == len(found) else None

    return await until(done, f"{count} sync runs of source {source_id}")


async def post_states(source_id: int) -> dict[str, tuple[str, list[str]]]:
    """item id → (text, target statuses) of every post of the source."""
    states = {}
    for post in await Post.objects().where(Post.content_source == source_id):
        targets = await PostTarget.select(PostTarget.status).where(PostTarget.post == post.id)
        states[post.source_item_id] = (post.text, sorted(t["status"] for t in targets))
    return states


def atomic_write(path: Path, text: str) -> None:
    """How editors save: a temporary file renamed over the original."""
    temp = path.with_name(path.name + ".tmp")
    temp.write_text(text)
    os.replace(temp, path)


def test_dot_folders_and_editor_files_are_not_changes(tmp_path: Path):
    root = tmp_path / "content"
    folders = {1: root, 2: root / "nested"}
    assert sources_of(str(root / "a.yaml"), folders) == {1}
    assert sources_of(str(root / "nested" / "img" / "b.jpg"), folders) == {1, 2}
    assert sources_of(str(root / "nested"), folders) == {1, 2}  # the folder itself removed
    for ignored in (".git/index", ".a.yaml.swp", "a.yaml~", "a.yaml.tmp", "#a.yaml#", "4913"):
        assert sources_of(str(root / ignored), folders) == set(), ignored
    assert sources_of(str(tmp_path / "elsewhere.yaml"), folders) == set()


async def test_files_written_edited_and_deleted_sync_without_sync_now(app, tmp_path):
    user = await make_user()
    folder = tmp_path / "content"
    source = await local_source(user, folder)  # added while the app runs
    await watching(app, source)

    (folder / "hello.yaml").write_text(post_yaml("hello", text="Hello from a file"))
    await until(
        lambda: _state_is(source.id, "hello", ("Hello from a file", ["scheduled"])), "created"
    )
    (run,) = await finished_runs(source.id, 1)
    assert (run.trigger, run.status, run.created) == ("watch", "ok", 1)

    atomic_write(folder / "hello.yaml", post_yaml("hello", text="Edited in place"))
    await until(lambda: _state_is(source.id, "hello", ("Edited in place", ["scheduled"])), "edit")

    (folder / "hello.yaml").unlink()
    await until(lambda: _state_is(source.id, "hello", ("Edited in place", ["cancelled"])), "gone")
    assert {r.trigger for r in await finished_runs(source.id, 3)} == {"watch"}

    # Ctrl-C still stops the app (and its watcher) promptly.
    started = time.monotonic()
    app.process.send_signal(signal.SIGINT)
    assert await asyncio.to_thread(app.process.wait, 15) == 0
    assert time.monotonic() - started < 8


async def _state_is(source_id: int, item: str, state: tuple[str, list[str]]) -> bool:
    return (await post_states(source_id)).get(item) == state


async def test_a_git_checkout_of_200_files_makes_a_few_syncs(app, tmp_path):
    """The folder is a git work tree: switching branches writes (or removes) 200 post
    files at once, and git's own churn in .git is no change."""
    user = await make_user()
    folder = tmp_path / "content"
    folder.mkdir()
    run_git("init", "--quiet", "--initial-branch=main", ".", cwd=folder)
    run_git("commit", "--quiet", "--allow-empty", "-m", "empty", cwd=folder)
    run_git("checkout", "--quiet", "-b", "campaign", cwd=folder)
    for index in range(200):
        (folder / f"post-{index:03}.yaml").write_text(post_yaml(f"p{index}", text=f"Post {index}"))
    run_git("add", "--all", cwd=folder)
    run_git("commit", "--quiet", "-m", "campaign", cwd=folder)
    run_git("checkout", "--quiet", "main", cwd=folder)
    source = await local_source(user, folder)
    await watching(app, source)

    async def all_are(status: str) -> bool:
        states = await post_states(source.id)
        return len(states) == 200 and all(s == [status] for _, s in states.values())

    run_git("checkout", "--quiet", "campaign", cwd=folder)
    await until(lambda: all_are("scheduled"), "200 posts", timeout=120)
    done = await finished_runs(source.id, 1)
    assert len(done) <= 3, [(r.trigger, r.created) for r in done]
    assert sum(r.created for r in done) == 200

    run_git("checkout", "--quiet", "main", cwd=folder)
    await until(lambda: all_are("cancelled"), "200 cancelled", timeout=120)
    more = (await finished_runs(source.id, len(done) + 1))[len(done) :]
    assert len(more) <= 3, [(r.trigger, r.cancelled) for r in more]
    assert sum(r.cancelled for r in more) == 200
    print(f"git checkout of 200 files: {len(done)} + {len(more)} sync runs")


async def test_a_broken_file_is_reported_and_the_other_posts_keep_their_state(app, tmp_path):
    user = await make_user()
    folder = tmp_path / "content"
    (folder / "posts").mkdir(parents=True)
    (folder / "posts" / "a.yaml").write_text(post_yaml("a", text="Post A"))
    (folder / "posts" / "b.yaml").write_text(post_yaml("b", text="Post B"))
    source = await local_source(user, folder)
    await watching(app, source)

    (folder / "posts" / "c.yaml").write_text(post_yaml("c", text="Post C"))  # syncs all three
    await until(lambda: _state_is(source.id, "c", ("Post C", ["scheduled"])), "first sync")
    before = await post_states(source.id)
    assert len(before) == 3

    atomic_write(
        folder / "posts" / "a.yaml", "id: a\npublish_at: now\naccounts: [x:@xavier_x]\ntext: [\n"
    )

    async def reported() -> SyncRun | None:
        return next((r for r in await runs(source.id) if r.status == "partial"), None)

    last = await until(reported, "a run reporting the broken file")
    assert last.trigger == "watch"
    (error,) = [e for e in last.errors if e["severity"] == "error"]
    assert (error["file"], error["line"]) == ("posts/a.yaml", 5)
    assert "invalid YAML" in error["message"]
    assert await post_states(source.id) == before  # A as it was, B and C untouched


async def test_a_vanished_folder_is_reported_once_and_the_others_stay_watched(app, tmp_path):
    user = await make_user()
    doomed = await local_source(user, tmp_path / "doomed")
    kept = await local_source(user, tmp_path / "kept")
    await watching(app, doomed)
    await watching(app, kept)

    shutil.rmtree(tmp_path / "doomed")
    (run,) = await finished_runs(doomed.id, 1)  # its removal synced: it says what happened
    assert (run.trigger, run.status) == ("watch", "failed")

    (tmp_path / "kept" / "k.yaml").write_text(post_yaml("k", text="Still watched"))
    await until(lambda: _state_is(kept.id, "k", ("Still watched", ["scheduled"])), "kept")
    assert app.process.poll() is None
    log = app.log_path.read_text()
    assert log.count(f"content source {doomed.id}: folder") == 1


async def test_one_process_watches_and_another_takes_over_when_it_stops(app, tmp_path):
    second = start_app("true", tmp_path)
    try:
        user = await make_user()
        source = await local_source(user, tmp_path / "content")
        await watching(app, source)
        await until(lambda: logged(second, "watched by another process"), "the second app")
        assert f"source {source.id} " not in second.log_path.read_text()

        app.stop()  # Ctrl-C: the second app's watcher takes the folders over
        await watching(second, source)
        (tmp_path / "content" / "t.yaml").write_text(post_yaml("t", text="Taken over"))
        await until(lambda: _state_is(source.id, "t", ("Taken over", ["scheduled"])), "sync")
        (run,) = await finished_runs(source.id, 1)
        assert run.trigger == "watch"
    finally:
        second.stop()


@pytest.mark.parametrize("app", ["false"], indirect=True)
async def test_switched_off_nothing_syncs_until_someone_asks(app, tmp_path):
    user = await make_user()
    folder = tmp_path / "content"
    source = await local_source(user, folder)

    # New files, one every QUIET_MS, for longer than the watcher takes to take a new
    # source on and ask for a sync (RESCAN_MS + QUIET_MS): none is synced.
    deadline = time.monotonic() + 3 * RESCAN_MS / 1000
    written = 0
    while time.monotonic() < deadline:
        (folder / f"quiet-{written}.yaml").write_text(post_yaml(f"q{written}"))
        written += 1
        await asyncio.sleep(QUIET_MS / 1000)
        assert await runs(source.id) == []
    assert "watching content folders" not in app.log_path.read_text()

    queue = make_queue(get_settings())  # what Sync now does
    await queue.connect()
    try:
        await enqueue_sync(queue, source.id, "manual")
    finally:
        await queue.disconnect()
    (run,) = await finished_runs(source.id, 1)
    assert (run.trigger, run.created) == ("manual", written)  # none had been synced
