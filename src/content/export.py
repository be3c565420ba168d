"""`okktopus content export DIR`: a user's drafts and scheduled posts as post files, so
people can move to GitOps (and back: syncing the folder recreates the same posts)."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from src import posts
from src.config import Settings
from src.content.loader import ID_PATTERN, TIKTOK_INTERACTIONS
from src.db.tables import Account, Media, Post

EXPORTED = ("draft", "scheduled")
MEDIA_FOLDER = "media"
OPTION_KEYS = {
    "x": (),
    "instagram": ("first_comment", "share_to_feed"),
    "tiktok": (
        "title",
        "privacy_level",
        "brand_content_toggle",
        "brand_organic_toggle",
        "is_aigc",
        "photo_cover_index",
    ),
    "facebook": ("link",),
}


class _Dumper(yaml.SafeDumper):
    pass


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value and value == value.rstrip(" ") else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def _options(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        value = json.loads(value or "{}")
    return value if isinstance(value, dict) else {}


def _override(platform: str, text: str | None, options: dict[str, Any], post_text: str):
    out: dict[str, Any] = {}
    thread = options.get("thread") if platform == "x" else None
    if thread:
        out["thread"] = [text if text is not None else post_text, *thread]
    elif text is not None:
        out["text"] = text
    for key in OPTION_KEYS[platform]:
        if options.get(key) is not None:
            out[key] = options[key]
    if platform == "tiktok":
        for name in TIKTOK_INTERACTIONS:
            if options.get(f"disable_{name}") is False:
                out[f"allow_{name}"] = True
    return out


def post_document(post: Post, targets: list, accounts: dict[int, Account], media: list[str]):
    """The file for one post (a dict ready for YAML)."""
    doc: dict[str, Any] = {}
    item_id = post.source_item_id if post.source_item_id else f"post-{post.id}"
    doc["id"] = item_id if ID_PATTERN.fullmatch(item_id) else f"post-{post.id}"
    if post.status == "draft":
        doc["status"] = "draft"
    if post.publish_at is not None:
        local = post.publish_at.astimezone(ZoneInfo(post.timezone or "UTC"))
        doc["publish_at"] = local.isoformat()
    doc["timezone"] = post.timezone or "UTC"
    refs, overrides = [], {}
    for target in targets:
        account = accounts.get(target.account)
        if account is None:
            continue
        refs.append(f"{account.platform}:@{account.handle}")
        if account.platform not in overrides:
            block = _override(account.platform, target.text, _options(target.options), post.text)
            if block:
                overrides[account.platform] = block
    doc["accounts"] = refs
    doc["text"] = post.text
    if media:
        doc["media"] = media
    if overrides:
        doc["overrides"] = overrides
    return doc


async def export(user_id: int, folder: Path, settings: Settings) -> int:
    """Write every draft and scheduled post of the user; returns how many."""
    from src import media as media_domain

    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    rows = (
        await Post.objects()
        .where((Post.user == user_id) & Post.status.is_in(list(EXPORTED)))
        .order_by(Post.id)
    )
    accounts = {a.id: a for a in await Account.objects().where(Account.user == user_id)}
    store = media_domain.get_store(settings)
    written = 0
    for post in rows:
        targets = await posts.targets_of(post.id)
        if any(t.status not in ("draft", "scheduled", "held") for t in targets):
            continue
        names = []
        for item in await posts.media_of(post.id):
            names.append(await _copy_media(store, item, folder))
        doc = post_document(post, targets, accounts, names)
        header = f"# yaml-language-server: $schema={settings.public_url}/content/schema.json\n"
        body = yaml.dump(doc, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
        await asyncio.to_thread((folder / f"{doc['id']}.yaml").write_text, header + body)
        written += 1
    return written


async def _copy_media(store: Any, item: Media, folder: Path) -> str:
    suffix = Path(item.storage_key).suffix
    name = f"{MEDIA_FOLDER}/{item.sha256}{suffix}"
    target = folder / name
    if target.exists():
        return name
    await asyncio.to_thread(target.parent.mkdir, parents=True, exist_ok=True)
    source = store.local_path(item.storage_key)
    if source is not None:
        await asyncio.to_thread(shutil.copyfile, source, target)
    else:
        with target.open("wb") as handle:
            async for chunk in store.open(item.storage_key):
                handle.write(chunk)
    return name
