"""`okktopus content validate | plan | sync | export`: validate and plan in a fresh
environment without a database (a subprocess whose OKK_DATABASE_URL points nowhere),
sync from the command line, and a lossless export → sync round trip."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from src import posts
from src.config import ROOT, get_settings
from src.content import service
from src.content.export import export
from src.content.sync import sync_source
from src.db.tables import Account, Media, Post, PostMedia, PostTarget
from tests.content_helpers import Repo, post_yaml, unique
from tests.media_samples import jpeg_bytes
from tests.test_content_sync import make_user

NOWHERE = "postgresql://nobody@127.0.0.1:1/nowhere"


def okktopus(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "src", "content", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def offline(tmp_path) -> dict[str, str]:
    """A fresh environment: no database reachable, an empty data folder."""
    return {"OKK_DATABASE_URL": NOWHERE, "OKK_DATA_DIR": str(tmp_path / "data")}


def test_validate_without_a_database(tmp_path, offline):
    folder = tmp_path / "posts"
    folder.mkdir()
    (folder / "good.yaml").write_text(post_yaml("good"))
    result = okktopus("validate", "posts", cwd=tmp_path, env=offline)
    assert result.returncode == 0, result.stderr
    assert "All post files are valid." in result.stdout

    (folder / "bad.yaml").write_text("id: bad\npublish_at: 2030-01-01T09:00:00\naccounts: [x:@a]\n")
    (folder / "worse.yaml").write_text("id: worse\ntext: [\n")
    (folder / "long.yaml").write_text(post_yaml("long", text="'" + "y" * 300 + "'"))
    result = okktopus("validate", "posts", cwd=tmp_path, env=offline)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert (
        "posts/bad.yaml:2: publish_at 2030-01-01 09:00 has no time zone: "
        "add an offset (+01:00) or a timezone: (Europe/Berlin)"
    ) in lines
    assert any(line.startswith("posts/worse.yaml:3: invalid YAML") for line in lines)
    assert any(line.startswith("posts/long.yaml:4: X: X allows 280 characters") for line in lines)
    assert lines[-1] == "3 errors."

    # Single files, as pre-commit passes them: only those are reported.
    result = okktopus("validate", "posts/good.yaml", "posts/bad.yaml", cwd=tmp_path, env=offline)
    assert result.returncode == 1
    reported = [line for line in result.stderr.splitlines() if ".yaml:" in line]
    assert reported == [lines[0]]
    assert not (tmp_path / "data" / "pg").exists()  # no database was started


def test_the_shipped_content_folder_and_examples_validate(offline, tmp_path):
    result = okktopus("validate", str(ROOT / "content"), cwd=tmp_path, env=offline)
    assert result.returncode == 0, result.stdout + result.stderr


def test_plan_without_a_database(tmp_path, offline):
    folder = tmp_path / "content"
    folder.mkdir()
    (folder / "a.yaml").write_text(post_yaml("a", accounts="[x:@acme, facebook:Acme Page]"))
    (folder / "b.yaml").write_text(post_yaml("b", extra="status: draft\n"))
    old = (datetime.now(UTC) - timedelta(days=3)).replace(microsecond=0).isoformat()
    (folder / "old.yaml").write_text(post_yaml("old", when=old))
    result = okktopus("plan", cwd=tmp_path, env=offline)
    assert "No database reachable" in result.stdout
    assert "+ create a (a.yaml)" in result.stdout and "x:acme, facebook:acme page" in result.stdout
    assert "+ create b (b.yaml)  [draft" in result.stdout
    assert "content/old.yaml:2: publish_at" in result.stderr and "already past" in result.stderr
    assert "Plan: 2 to create, 0 to update, 0 to cancel, 0 unchanged, 1 errors" in result.stdout
    assert result.returncode == 1
    (folder / "old.yaml").unlink()
    assert okktopus("plan", "content", cwd=tmp_path, env=offline).returncode == 0


@pytest.mark.usefixtures("db")
async def test_plan_and_sync_from_the_command_line(tmp_path):
    user = await make_user()
    repo = Repo(tmp_path / "repo")
    repo.write("a.yaml", post_yaml("a"))
    repo.write("b.yaml", post_yaml("b", accounts="[x:@stranger]"))
    repo.commit()
    source = await service.add_git(
        user, get_settings(), name=unique("cli"), url=repo.url, branch="main"
    )
    args = ("--source", source.name, "--user", user.email)
    plan = okktopus("plan", *args, cwd=ROOT)
    assert "+ create a (a.yaml)" in plan.stdout
    assert "b.yaml:3: unknown account x:stranger" in plan.stderr
    assert plan.returncode == 1
    assert await Post.count().where(Post.content_source == source.id) == 0  # only a plan

    synced = okktopus("sync", *args, cwd=ROOT)
    assert synced.returncode == 1  # b.yaml has an error
    assert f"{source.name}: partial" in synced.stdout and "1 created" in synced.stdout
    assert await Post.count().where(Post.content_source == source.id) == 1
    again = okktopus("sync", *args, cwd=ROOT)
    assert "0 created" in again.stdout


async def _shape(post: Post) -> dict:
    """What a post publishes, independent of its ids and origin."""
    targets = await PostTarget.objects().where(PostTarget.post == post.id)
    accounts = {a.id: a for a in await Account.objects().where(Account.user == post.user)}
    links = await PostMedia.objects().where(PostMedia.post == post.id).order_by(PostMedia.position)
    media = [(await Media.objects().get(Media.id == link.media)).sha256 for link in links]
    return {
        "text": post.text,
        "publish_at": post.publish_at,
        "timezone": post.timezone,
        "status": post.status,
        "media": media,
        "targets": sorted(
            (
                accounts[t.account].platform,
                accounts[t.account].handle,
                t.text,
                json.dumps(
                    t.options if isinstance(t.options, dict) else json.loads(t.options),
                    sort_keys=True,
                ),
                t.status,
            )
            for t in targets
        ),
    }


@pytest.mark.usefixtures("db")
async def test_export_then_sync_is_a_lossless_round_trip(tmp_path):
    user = await make_user()
    settings = get_settings()
    ids = {
        f"{a.platform}:{a.handle}": a.id
        for a in await Account.objects().where(Account.user == user.id)
    }
    when = datetime(2031, 3, 29, 1, 30, tzinfo=UTC)  # a DST night in Berlin
    composer = [
        posts.PostSpec(
            text="A thread\nwith two lines",
            targets=[
                posts.TargetSpec(ids["x:xavier_x"], None, {"thread": ["part two", "part 3 ✨"]})
            ],
            publish_at=when,
            timezone="Europe/Berlin",
        ),
        posts.PostSpec(
            text="Main text",
            targets=[posts.TargetSpec(ids["x:xena_x"], "X only text", {})],
            publish_at=when + timedelta(days=1, seconds=17),
            timezone="America/New_York",
            draft=True,
        ),
        posts.PostSpec(text="An idea", targets=[posts.TargetSpec(ids["x:xavier_x"])], draft=True),
    ]
    originals = [await posts.schedule(user.id, spec) for spec in composer]
    # And one from a repository, with an image.
    repo = Repo(tmp_path / "repo")
    repo.write("pics/p.jpg", jpeg_bytes(1080, 1350))
    repo.write(
        "with-media.yaml",
        post_yaml(
            "with-media",
            text="Look",
            accounts="[x:@xavier_x, tiktok:@tiktok_tom]",
            extra="media: pics/p.jpg\noverrides:\n  tiktok:\n"
            "    privacy_level: MUTUAL_FOLLOW_FRIENDS\n"
            "    allow_comment: true\n    brand_organic_toggle: true\n    title: A title\n",
        ),
    )
    repo.commit()
    source = await service.add_git(user, settings, name=unique("orig"), url=repo.url)
    assert (await sync_source(source.id, settings)).status == "ok"
    originals.append((await Post.objects().where(Post.content_source == source.id))[0])

    folder = tmp_path / "exported"
    assert await export(user.id, folder, settings) == 4
    assert (folder / "with-media.yaml").is_file() and list((folder / "media").iterdir())
    first = (folder / f"post-{originals[0].id}.yaml").read_text()
    assert first.startswith("# yaml-language-server: $schema=")
    assert "thread:" in first and "Europe/Berlin" in first

    copy = await service.add_local(user, unique("roundtrip"), folder)
    result = await sync_source(copy.id, settings)
    assert result.status == "ok", [str(p) for p in result.problems]
    assert result.counts["created"] == 4
    copies = {
        p.source_item_id: p for p in await Post.objects().where(Post.content_source == copy.id)
    }
    for original in originals:
        key = original.source_item_id or f"post-{original.id}"
        assert await _shape(copies[key]) == await _shape(original), key
