"""Editing a post that came from a file: the composer says the next sync will overwrite
it, and can detach it so syncs leave it alone."""

from __future__ import annotations

import pytest

from src.config import get_settings
from src.content import service
from src.content.sync import sync_source
from src.db.tables import Post, User
from tests.browser import Browser
from tests.content_helpers import Repo, post_yaml, unique

pytestmark = pytest.mark.usefixtures("db")


async def owner(email: str) -> User:
    """Repositories on this machine's disk are the owner's to add (setup shortcut)."""
    await User.update({User.is_owner: True}).where(User.email == email)
    return await User.objects().get(User.email == email)


async def test_the_composer_warns_and_detaches_a_file_post(server, tmp_path):
    browser = Browser(server.url)
    email = browser.signed_in_user()
    browser.connect("x")
    user = await owner(email)
    repo = Repo(tmp_path)
    repo.write("note.yaml", post_yaml("note", text="Written in git"))
    repo.commit("add note")
    source = await service.add_git(
        user, get_settings(), name=unique("repo"), url=repo.url, branch="main", subpath=""
    )
    assert (await sync_source(source.id, get_settings())).status == "ok"
    post = await Post.objects().get(Post.content_source == source.id)
    edit = browser.get(f"/posts/{post.id}/edit").text
    assert "note.yaml" in edit and "next sync of its source overwrites" in edit
    back = browser.follow(browser.post(f"/posts/{post.id}/detach"))
    assert back.url.path == f"/posts/{post.id}/edit"
    assert "Detached" in back.text and "next sync of its source overwrites" not in back.text


async def test_history_shows_which_repository_commit_and_file_a_post_came_from(server, tmp_path):
    browser = Browser(server.url)
    email = browser.signed_in_user()
    browser.connect("x")
    user = await owner(email)
    repo = Repo(tmp_path)
    repo.write("posts/hello.yaml", post_yaml("hello", text="Hello from git"))
    commit = repo.commit("add hello")
    name = unique("repo")
    source = await service.add_git(
        user, get_settings(), name=name, url=repo.url, branch="main", subpath=""
    )
    await sync_source(source.id, get_settings())
    page = browser.get("/posts").text
    assert f"{name}@{commit[:7]}:posts/hello.yaml" in page
