"""Sync = reconcile, on real git repositories (a bare remote, real commits and pushes):
add, change, rename, move between files, delete, force-push, broken files among good
ones, past dates, unknown accounts, media and paths that leave the repository, huge
files and YAML bombs, drift after publishing, concurrent syncs."""

from __future__ import annotations

import asyncio
import itertools
import secrets
from datetime import UTC, datetime, timedelta

import pytest

from src.config import get_settings
from src.content import service
from src.content import sync as sync_module
from src.content.sync import REMOVED, sync_source
from src.db.tables import Account, ContentSource, Media, Post, PostMedia, PostTarget, SyncRun, User
from tests.content_helpers import Repo, future, post_yaml, unique
from tests.media_samples import jpeg_bytes

pytestmark = pytest.mark.usefixtures("db")


# -- fixtures -----------------------------------------------------------------------------
async def make_user(owner: bool = True) -> User:
    tag = secrets.token_hex(4)
    user = User(
        {
            User.google_sub: f"content-{tag}",
            User.email: f"content-{tag}@example.com",
            User.is_owner: owner,
            User.timezone: "Europe/Berlin",
        }
    )
    await user.save()
    for platform, handle in (("x", "xavier_x"), ("x", "xena_x"), ("tiktok", "tiktok_tom")):
        await Account(
            {
                Account.user: user.id,
                Account.platform: platform,
                Account.external_id: f"{handle}-{tag}",
                Account.handle: handle,
                Account.display_name: handle.title(),
                Account.status: "active",
                Account.meta: {},
            }
        ).save()
    return user


@pytest.fixture
async def user():
    return await make_user()


@pytest.fixture
def repo(tmp_path):
    return Repo(tmp_path)


async def git_source(user: User, repo: Repo, subpath: str = "") -> ContentSource:
    return await service.add_git(
        user, get_settings(), name=unique("repo"), url=repo.url, branch="main", subpath=subpath
    )


async def sync(source: ContentSource, **kw):
    return await sync_source(source.id, get_settings(), **kw)


async def posts_of(source: ContentSource) -> dict[str, Post]:
    rows = await Post.objects().where(Post.content_source == source.id)
    return {p.source_item_id: p for p in rows}


async def statuses(post_id: int) -> list[str]:
    return [t.status for t in await PostTarget.objects().where(PostTarget.post == post_id)]


async def snapshot(source: ContentSource) -> list[tuple]:
    """Everything a sync may write, to prove a run changed nothing."""
    rows = []
    for post in (await posts_of(source)).values():
        targets = (
            await PostTarget.objects().where(PostTarget.post == post.id).order_by(PostTarget.id)
        )
        rows.append(
            (
                post.id,
                post.text,
                post.publish_at,
                post.status,
                post.content_hash,
                post.source_path,
                post.source_commit,
                post.updated_at,
                tuple((t.id, t.status, t.text, t.due_at, t.updated_at) for t in targets),
            )
        )
    return sorted(rows)


def messages(result) -> list[str]:
    return [str(p) for p in result.problems]


# -- the life of a post file --------------------------------------------------------------
async def test_add_change_and_an_idempotent_second_run(user, repo):
    source = await git_source(user, repo)
    repo.write(
        "launch.yaml", post_yaml("launch", text="We launch", accounts="[x:@xavier_x, x:@xena_x]")
    )
    commit = repo.commit("add launch")
    result = await sync(source)
    assert result.status == "ok", messages(result)
    assert result.counts["created"] == 1
    post = (await posts_of(source))["launch"]
    assert post.text == "We launch" and post.status == "scheduled"
    assert post.source_path == "launch.yaml" and post.source_commit == commit
    assert await statuses(post.id) == ["scheduled", "scheduled"]

    before = await snapshot(source)
    again = await sync(source)
    assert again.status == "unchanged"
    assert await snapshot(source) == before

    repo.write("launch.yaml", post_yaml("launch", text="We launch today", when=future(120)))
    second = repo.commit("reword")
    result = await sync(source)
    assert result.counts == {"created": 0, "updated": 1, "cancelled": 0, "unchanged": 0}
    post = (await posts_of(source))["launch"]
    assert post.text == "We launch today" and post.source_commit == second
    assert await statuses(post.id) == ["scheduled"]  # xena_x left the file
    assert abs((post.publish_at - datetime.now(UTC)).total_seconds() - 7200) < 120
    assert (await sync(source)).status == "unchanged"


async def test_rename_and_move_between_files_never_publish_twice(user, repo):
    source = await git_source(user, repo)
    repo.write("a.yaml", post_yaml("first"))
    second = repo.write("b.yaml", post_yaml("second")).read_text()
    repo.commit()
    await sync(source)
    original = {k: p.id for k, p in (await posts_of(source)).items()}

    repo.move("a.yaml", "2027/renamed.yaml")
    repo.commit("rename")
    result = await sync(source)
    assert result.counts["created"] == 0 and result.counts["cancelled"] == 0
    assert result.counts["updated"] == 1  # the path, and nothing else
    posts = await posts_of(source)
    assert posts["first"].id == original["first"]
    assert posts["first"].source_path == "2027/renamed.yaml"
    assert await statuses(posts["first"].id) == ["scheduled"]

    # "second" moves into the renamed file as a posts: list, in one commit.
    repo.remove("b.yaml")
    first = (repo.work / "2027/renamed.yaml").read_text()
    as_list = "posts:\n" + "".join(
        "  - " + text.replace("\n", "\n    ").rstrip() + "\n" for text in (first, second)
    )
    repo.write("2027/renamed.yaml", as_list)
    repo.commit("move between files")
    result = await sync(source)
    assert result.status == "ok", messages(result)
    assert result.counts == {"created": 0, "updated": 1, "cancelled": 0, "unchanged": 1}
    posts = await posts_of(source)
    assert {k: p.id for k, p in posts.items()} == original
    assert all(p.source_path == "2027/renamed.yaml" for p in posts.values())
    assert [await statuses(p.id) for p in posts.values()] == [["scheduled"], ["scheduled"]]
    assert await Post.count().where(Post.content_source == source.id) == 2


async def test_delete_cancels_keeps_history_and_bringing_it_back_reschedules(user, repo):
    source = await git_source(user, repo)
    repo.write("keep.yaml", post_yaml("keep"))
    repo.write("drop.yaml", post_yaml("drop"))
    repo.commit()
    await sync(source)
    repo.remove("drop.yaml")
    repo.commit("delete")
    result = await sync(source)
    assert result.counts["cancelled"] == 1
    posts = await posts_of(source)
    assert posts["drop"].status == "cancelled" and posts["drop"].content_hash == REMOVED
    assert await statuses(posts["drop"].id) == ["cancelled"]
    assert posts["keep"].status == "scheduled"
    assert (await sync(source)).counts.get("cancelled", 0) == 0  # idempotent

    repo.write("drop.yaml", post_yaml("drop"))
    repo.commit("revert")
    result = await sync(source)
    assert result.counts["updated"] == 1, messages(result)
    posts = await posts_of(source)
    assert posts["drop"].status == "scheduled" and await statuses(posts["drop"].id) == ["scheduled"]


async def test_force_push_rewriting_history(user, repo):
    source = await git_source(user, repo)
    repo.write("one.yaml", post_yaml("one"))
    repo.commit("first")
    repo.write("two.yaml", post_yaml("two", text="Two"))
    repo.commit("second")
    await sync(source)
    assert set(await posts_of(source)) == {"one", "two"}
    # Rewrite "second": two.yaml never existed, three.yaml did.
    repo.remove("two.yaml")
    repo.write("three.yaml", post_yaml("three"))
    rewritten = repo.amend("second, rewritten")
    result = await sync(source)
    assert result.status == "ok", messages(result)
    assert result.commit == rewritten
    assert result.counts["created"] == 1 and result.counts["cancelled"] == 1
    posts = await posts_of(source)
    assert posts["two"].status == "cancelled" and posts["three"].status == "scheduled"
    assert posts["one"].status == "scheduled"


async def test_a_broken_file_changes_nothing_while_the_rest_syncs(user, repo):
    source = await git_source(user, repo)
    repo.write("stable.yaml", post_yaml("stable", text="Before"))
    repo.write("pair.yaml", "posts:\n  - " + post_yaml("pair-a").replace("\n", "\n    ") + "\n")
    repo.commit()
    await sync(source)
    before = {k: (p.id, p.text, p.content_hash) for k, p in (await posts_of(source)).items()}

    # One commit: stable.yaml breaks (YAML error on line 3), pair.yaml gains a post and
    # changes its first one but names an unknown account, and good.yaml is new.
    repo.write("stable.yaml", "id: stable\ntext: After\naccounts: [x:@xavier_x\npublish_at: now\n")
    pair = (
        "posts:\n"
        f"  - id: pair-a\n    publish_at: {future()}\n"
        "    accounts: [x:@xavier_x]\n    text: Changed\n"
        f"  - id: pair-b\n    publish_at: {future()}\n    accounts: [x:@nobody]\n    text: New\n"
    )
    repo.write("pair.yaml", pair)
    repo.write("good.yaml", post_yaml("good"))
    repo.commit("mixed")
    result = await sync(source)
    assert result.status == "partial"
    assert result.counts["created"] == 1 and result.counts["cancelled"] == 0
    errors = {(p.file, p.line) for p in result.problems if p.severity == "error"}
    assert ("pair.yaml", 8) in errors  # the unknown account's line
    assert any(file == "stable.yaml" for file, _ in errors)
    text = "\n".join(messages(result))
    assert "unknown account x:nobody" in text and "invalid YAML" in text
    posts = await posts_of(source)
    assert "pair-b" not in posts  # all or nothing per file
    after = {k: (p.id, p.text, p.content_hash) for k, p in posts.items() if k != "good"}
    assert after == before  # stable and pair-a kept their previous state
    assert posts["stable"].status == "scheduled"  # broken, not "removed"
    run = await SyncRun.objects().get(SyncRun.id == result.run_id).output(load_json=True)
    assert run.status == "partial" and {e["file"] for e in run.errors} >= {
        "pair.yaml",
        "stable.yaml",
    }
    # A second run with the same commit retries the broken files and changes nothing.
    assert (await sync(source)).counts["created"] == 0

    repo.write("stable.yaml", post_yaml("stable", text="Fixed"))
    repo.commit("fix")
    result = await sync(source)
    assert (await posts_of(source))["stable"].text == "Fixed"


async def test_past_dates_are_errors_on_first_sight_unless_now(user, repo):
    source = await git_source(user, repo)
    past = (datetime.now(UTC) - timedelta(days=400)).replace(microsecond=0).isoformat()
    repo.write("old.yaml", post_yaml("old", when=past))
    repo.write("asap.yaml", post_yaml("asap", when="now"))
    repo.write("later.yaml", post_yaml("later", when=past, extra="status: draft\n"))
    repo.commit()
    result = await sync(source)
    assert result.status == "partial"
    (problem,) = [p for p in result.problems if p.severity == "error"]
    assert problem.file == "old.yaml" and problem.line == 2
    assert "already past" in problem.message and "publish_at: now" in problem.message
    posts = await posts_of(source)
    assert "old" not in posts
    assert posts["asap"].status == "scheduled"
    assert abs((posts["asap"].publish_at - datetime.now(UTC)).total_seconds()) < 60
    assert posts["later"].status == "draft"
    assert await statuses(posts["later"].id) == ["draft"]


async def test_naive_times_and_time_zones(user, repo):
    source = await git_source(user, repo)
    repo.write(
        "naive.yaml", "id: naive\npublish_at: 2031-01-05T09:00:00\naccounts: [x:@xavier_x]\n"
    )
    repo.write(
        "zoned.yaml",
        "id: zoned\npublish_at: 2031-01-05T09:00:00\ntimezone: Europe/Berlin\n"
        "accounts: [x:@xavier_x]\ntext: hi\n",
    )
    repo.commit()
    result = await sync(source)
    (problem,) = [p for p in result.problems if p.severity == "error"]
    assert (problem.file, problem.line) == ("naive.yaml", 2) and "no time zone" in problem.message
    zoned = (await posts_of(source))["zoned"]
    assert zoned.publish_at == datetime(2031, 1, 5, 8, 0, tzinfo=UTC)
    assert zoned.timezone == "Europe/Berlin"


async def test_aliases_and_a_broken_settings_file(user, repo):
    source = await git_source(user, repo, subpath="posts")
    repo.write(
        "posts/_settings.yaml",
        "timezone: Europe/Berlin\naliases:\n  team: [x:@xavier_x, tiktok:@tiktok_tom]\n",
    )
    repo.write(
        "posts/a.yaml",
        "id: a\npublish_at: 2031-03-01 10:00\naccounts: team\ntext: Hello\nmedia: pic.jpg\n"
        "overrides:\n  tiktok: {privacy_level: SELF_ONLY, allow_comment: true}\n",
    )
    repo.write("posts/pic.jpg", jpeg_bytes(1080, 1350))
    repo.write("elsewhere.yaml", post_yaml("outside"))  # not under the subfolder
    repo.commit()
    result = await sync(source)
    assert result.status == "ok", messages(result)
    posts = await posts_of(source)
    assert set(posts) == {"a"}
    assert posts["a"].source_path == "posts/a.yaml"
    targets = await PostTarget.objects().where(PostTarget.post == posts["a"].id)
    options = {t.account: t.options for t in targets}
    assert len(targets) == 2
    tiktok = next(o for o in options.values() if "privacy_level" in str(o))
    assert "SELF_ONLY" in str(tiktok) and '"disable_comment": false' in str(tiktok)

    before = await snapshot(source)
    repo.write("posts/_settings.yaml", "aliases: [oops\n")
    repo.remove("posts/a.yaml")
    repo.commit("break settings and delete a")
    result = await sync(source)
    assert result.status == "failed"
    assert any(p.file == "posts/_settings.yaml" for p in result.problems)
    assert await snapshot(source) == before  # nothing cancelled


async def test_draft_status_keeps_it_unscheduled_until_it_changes(user, repo):
    source = await git_source(user, repo)
    repo.write("d.yaml", post_yaml("d", extra="status: draft\n"))
    repo.commit()
    await sync(source)
    assert (await posts_of(source))["d"].status == "draft"
    repo.write("d.yaml", post_yaml("d"))
    repo.commit("schedule it")
    await sync(source)
    post = (await posts_of(source))["d"]
    assert post.status == "scheduled" and await statuses(post.id) == ["scheduled"]


async def test_changed_after_publishing_started_is_a_warning(user, repo):
    source = await git_source(user, repo)
    repo.write("p.yaml", post_yaml("p", text="Original"))
    repo.commit()
    await sync(source)
    post = (await posts_of(source))["p"]
    # The worker published it (simulated: the test plays the worker's part).
    await PostTarget.update({PostTarget.status: "published"}).where(PostTarget.post == post.id)
    await Post.update({Post.status: "published"}).where(Post.id == post.id)
    repo.write("p.yaml", post_yaml("p", text="Edited after publishing"))
    repo.commit("too late")
    result = await sync(source)
    assert result.status == "ok"
    (warning,) = result.problems
    assert warning.severity == "warning" and "after publishing started" in warning.message
    post = await Post.objects().get(Post.id == post.id)
    assert post.text == "Original" and await statuses(post.id) == ["published"]
    # Removing it later cancels nothing that was published.
    repo.remove("p.yaml")
    repo.commit("remove")
    await sync(source)
    assert await statuses(post.id) == ["published"]


async def test_media_are_stored_once_and_paths_may_not_leave_the_repository(user, repo, tmp_path):
    source = await git_source(user, repo)
    picture = jpeg_bytes(640, 480)
    repo.write("img/a.jpg", picture)
    repo.write("posts/one.yaml", post_yaml("one", extra="media: ../img/a.jpg\n"))
    repo.write("posts/two.yaml", post_yaml("two", extra="media: [../img/a.jpg]\n"))
    outside = tmp_path / "secret.jpg"
    outside.write_bytes(jpeg_bytes(32, 32))
    repo.symlink("img/link.jpg", str(outside))
    repo.symlink("img/rel.jpg", "../../secret.jpg")
    repo.symlink("inside.jpg", "img/a.jpg")
    bad = {
        "trav.yaml": "../../etc/passwd",
        "abs.yaml": "/etc/passwd",
        "link.yaml": "img/link.jpg",
        "rel.yaml": "img/rel.jpg",
        "gone.yaml": "img/missing.jpg",
    }
    for name, path in bad.items():
        repo.write(name, post_yaml(name.split(".")[0], extra=f"media: {path}\n"))
    repo.write("ok-link.yaml", post_yaml("ok-link", extra="media: inside.jpg\n"))
    repo.commit()
    result = await sync(source)
    errors = {p.file: p for p in result.problems if p.severity == "error"}
    assert set(errors) == set(bad), messages(result)
    assert "leaves the repository" in errors["trav.yaml"].message
    assert "absolute" in errors["abs.yaml"].message
    assert "symlink out of the repository" in errors["link.yaml"].message
    assert "symlink out of the repository" in errors["rel.yaml"].message
    assert "does not exist" in errors["gone.yaml"].message
    assert all(p.line == 5 for p in errors.values())
    posts = await posts_of(source)
    assert set(posts) == {"one", "two", "ok-link"}
    media_ids = {
        link.media
        for link in await PostMedia.objects().where(
            PostMedia.post.is_in([p.id for p in posts.values()])
        )
    }
    assert len(media_ids) == 1  # one file, stored once
    media = await Media.objects().get(Media.id == media_ids.pop())
    assert media.content_type == "image/jpeg" and media.bytes == len(picture)


async def test_huge_files_and_yaml_bombs_are_refused(user, repo):
    source = await git_source(user, repo)
    repo.write("huge.yaml", post_yaml("huge", text="'" + "x" * 400_000 + "'"))
    lol = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [" + ",".join([f"*{chr(97 + i)}"] * 9) + "]\n"
        for i in range(8)
    )
    repo.write("bomb.yaml", "id: bomb\n" + lol)
    repo.write("merge.yaml", "base: &b {accounts: [x:@xavier_x]}\nid: merge\n<<: *b\n")
    repo.write("tag.yaml", "id: tag\ntext: !!python/object/apply:os.system ['true']\n")
    repo.write("fine.yaml", post_yaml("fine"))
    repo.commit()
    result = await sync(source)
    errors = {p.file: p for p in result.problems}
    assert "at most 262,144 bytes" in errors["huge.yaml"].message
    assert "anchors and aliases" in errors["bomb.yaml"].message
    assert errors["bomb.yaml"].line == 3
    assert "anchors and aliases" in errors["merge.yaml"].message
    assert "invalid YAML" in errors["tag.yaml"].message and errors["tag.yaml"].line == 2
    assert set(await posts_of(source)) == {"fine"}


async def test_ids_must_be_unique_across_files(user, repo):
    source = await git_source(user, repo)
    repo.write("a.yaml", post_yaml("same"))
    repo.commit()
    await sync(source)
    post = (await posts_of(source))["same"]
    repo.write("b.yaml", post_yaml("same", text="Other"))
    repo.commit("duplicate")
    result = await sync(source)
    files = {p.file for p in result.problems}
    assert "b.yaml" in files and files <= {"a.yaml", "b.yaml"}  # at least the newcomer
    assert all("also used in" in p.message for p in result.problems)
    kept = (await posts_of(source))["same"]
    assert (kept.id, kept.text, kept.status) == (post.id, post.text, "scheduled")


async def test_a_duplicate_id_found_late_takes_back_what_was_written_early(user, repo):
    """The first sync of a large source writes new posts while it still parses later
    files: an id that a file far down the source uses again must still leave both
    files' posts unwritten, as if everything had been read first."""
    source = await git_source(user, repo)
    count = sync_module.BATCH_POSTS + 20  # the first batch is written before the end
    for index in range(count):
        repo.write(f"posts/p{index:04d}.yaml", post_yaml(f"p{index:04d}"))
    repo.write(f"posts/p{count - 1:04d}.yaml", post_yaml("p0000", text="Again"))
    repo.commit("many")
    result = await sync(source)
    assert result.status == "partial"
    assert result.counts["created"] == count - 2
    assert {p.file for p in result.problems} == {"posts/p0000.yaml", f"posts/p{count - 1:04d}.yaml"}
    found = await posts_of(source)
    assert "p0000" not in found and len(found) == count - 2
    assert await Post.count().where(Post.content_source == source.id) == count - 2
    again = await sync(source)  # nothing half-done stays behind: the next run agrees
    assert again.counts["created"] == 0 and again.counts["unchanged"] == count - 2


async def test_a_large_first_sync_with_media_among_its_files(user, repo, caplog):
    """New posts are written while later files are parsed; the media of those later
    files (each its own picture) are stored meanwhile, and every post gets its own."""
    source = await git_source(user, repo)
    count = sync_module.BATCH_POSTS + 20
    pictured = range(count - 20, count)  # after the first batch has gone to the writer
    for index in range(count):
        extra = ""
        if index in pictured:
            repo.write(f"img/{index}.jpg", jpeg_bytes(32 + index % 40, 32))
            extra = f"media: ../img/{index}.jpg\n"
        repo.write(f"posts/p{index:04d}.yaml", post_yaml(f"p{index:04d}", extra=extra))
    repo.commit("many, some with media")
    result = await sync(source)
    assert (result.status, result.counts["created"]) == ("ok", count), messages(result)
    found = await posts_of(source)
    linked = await PostMedia.objects().where(PostMedia.post.is_in([p.id for p in found.values()]))
    assert sorted(link.post for link in linked) == sorted(
        found[f"p{index:04d}"].id for index in pictured
    )
    assert len({link.media for link in linked}) == 20
    assert "early failed" not in caplog.text  # (it would still be right, only slower)


async def test_concurrent_syncs_of_one_source_are_serialised(user, repo):
    source = await git_source(user, repo)
    for index in range(30):
        repo.write(f"p{index}.yaml", post_yaml(f"p{index}"))
    repo.commit()
    results = await asyncio.gather(*(sync(source, trigger="webhook") for _ in range(3)))
    assert sorted(r.status for r in results) == ["ok", "unchanged", "unchanged"]
    assert sum(r.counts.get("created", 0) for r in results) == 30
    runs = await SyncRun.objects().where(SyncRun.source == source.id).order_by(SyncRun.id)
    for earlier, later in itertools.pairwise(runs):
        assert earlier.finished_at <= later.created_at  # never overlapping
    assert await Post.count().where(Post.content_source == source.id) == 30


async def test_a_paused_source_does_not_sync(user, repo):
    source = await git_source(user, repo)
    repo.write("a.yaml", post_yaml("a"))
    repo.commit()
    await service.set_enabled(user.id, source.id, False)
    assert (await sync(source)).status == "disabled"
    assert await posts_of(source) == {}


async def test_an_unreachable_repository_is_a_failed_run_that_changes_nothing(user, repo, tmp_path):
    source = await git_source(user, repo)
    repo.write("a.yaml", post_yaml("a"))
    repo.commit()
    await sync(source)
    before = await snapshot(source)
    repo.remote.rename(tmp_path / "moved.git")
    result = await sync(source)
    assert result.status == "failed" and "git" in result.problems[0].message
    assert await snapshot(source) == before


async def test_the_local_folder_source(user, tmp_path):
    folder = tmp_path / "content"
    folder.mkdir()
    (folder / "a.yaml").write_text(post_yaml("a"))
    source = await service.add_local(user, unique("folder"), folder)
    result = await sync(source)
    assert result.status == "ok" and result.counts["created"] == 1
    assert result.commit.startswith("local-")
    assert (await sync(source)).status == "unchanged"
    (folder / "a.yaml").write_text(post_yaml("a", text="Changed"))
    assert (await sync(source)).counts["updated"] == 1
    (folder / "a.yaml").unlink()
    assert (await sync(source)).counts["cancelled"] == 1


async def test_a_local_folder_with_a_changed_picture_updates_its_post(user, tmp_path):
    """A folder has no commits: replacing only a picture must still count as a change."""
    folder = tmp_path / "content"
    (folder / "img").mkdir(parents=True)
    (folder / "img" / "a.jpg").write_bytes(jpeg_bytes(640, 480))
    (folder / "p.yaml").write_text(post_yaml("p", extra="media: img/a.jpg\n"))
    source = await service.add_local(user, unique("folder"), folder)
    assert (await sync(source)).counts["created"] == 1
    post = (await posts_of(source))["p"]
    (before,) = await PostMedia.objects().where(PostMedia.post == post.id)
    (folder / "img" / "a.jpg").write_bytes(jpeg_bytes(800, 600))  # same name, new picture
    result = await sync(source)
    assert result.status == "ok" and result.counts["updated"] == 1
    (after,) = await PostMedia.objects().where(PostMedia.post == post.id)
    assert after.media != before.media
    assert (await Media.objects().get(Media.id == after.media)).width == 800
    assert (await sync(source)).status == "unchanged"


async def test_a_crashed_sync_records_it_and_releases_the_lock(user, repo, monkeypatch):
    from src.content import sync as sync_module

    source = await git_source(user, repo)
    repo.write("a.yaml", post_yaml("a"))
    repo.commit()

    async def boom(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(sync_module, "build_plan", boom)
    with pytest.raises(RuntimeError):
        await sync(source)
    monkeypatch.undo()
    result = await asyncio.wait_for(sync(source), 20)  # not waiting on a stale lock
    assert result.status == "ok" and result.counts["created"] == 1
    runs = await SyncRun.objects().where(SyncRun.source == source.id).order_by(SyncRun.id)
    assert [r.status for r in runs] == ["failed", "ok"]
    assert "disk on fire" in str(runs[0].errors)


async def test_a_changed_media_file_updates_the_posts_that_use_it(user, repo):
    source = await git_source(user, repo)
    repo.write("img/a.jpg", jpeg_bytes(640, 480))
    repo.write("p.yaml", post_yaml("p", extra="media: img/a.jpg\n"))
    repo.write("q.yaml", post_yaml("q"))
    repo.commit()
    await sync(source)
    post = (await posts_of(source))["p"]
    (before,) = await PostMedia.objects().where(PostMedia.post == post.id)
    repo.write("img/a.jpg", jpeg_bytes(800, 600))  # same path, new picture
    repo.commit("new picture")
    result = await sync(source)
    assert result.counts == {"created": 0, "updated": 1, "cancelled": 0, "unchanged": 1}
    (after,) = await PostMedia.objects().where(PostMedia.post == post.id)
    assert after.media != before.media
    # A commit touching only post files reads only those (and stays exact).
    repo.write("q.yaml", post_yaml("q", text="Edited"))
    repo.write("r.yaml", post_yaml("r"))
    repo.commit("posts only")
    result = await sync(source)
    assert result.counts == {"created": 1, "updated": 1, "cancelled": 0, "unchanged": 1}
    assert (await posts_of(source))["q"].text == "Edited"


# -- taking a file post over in the app -------------------------------------------------------
async def test_a_detached_post_is_left_alone_by_later_syncs(user, repo):
    from src import posts

    source = await git_source(user, repo)
    repo.write("promo.yaml", post_yaml("promo", text="From the file"))
    repo.commit("add promo")
    assert (await sync(source)).status == "ok"
    post = (await posts_of(source))["promo"]
    await posts.detach(user.id, post.id)
    repo.write("promo.yaml", post_yaml("promo", text="Changed in the file", when=future(90)))
    repo.commit("reword promo")
    result = await sync(source)
    assert any("detached" in m for m in messages(result))
    kept = (await posts_of(source))["promo"]
    assert kept.text == "From the file" and kept.id == post.id
    repo.remove("promo.yaml")
    repo.commit("drop promo")
    await sync(source)
    assert await statuses(post.id) == ["scheduled"]  # not cancelled by the file's removal
    assert len(await posts_of(source)) == 1  # and never created again
