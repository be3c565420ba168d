"""Post files: safe YAML loading and the file format, with a line for every problem.

Pure (no database, no network): `okktopus content validate` runs this in a fresh clone,
and the sync runs the same code before it asks the scheduling domain for anything.

YAML is parsed with libyaml (`CSafeLoader`, falling back to `SafeLoader`). Files larger
than MAX_FILE_BYTES are refused before they are read; anchors and aliases are refused
(an alias "bomb" is tiny on disk and huge once expanded); so are deep nesting, several
documents in one file and every tag that is not plain data. The format is described in
docs/content.md and, for editors, in schema.json (kept in step with this module by
tests/test_content_format.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import cached_property, lru_cache
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

try:
    from yaml import CSafeLoader as Loader
except ImportError:  # pragma: no cover - wheels ship libyaml
    from yaml import SafeLoader as Loader  # type: ignore[assignment]

MAX_FILE_BYTES = 256 * 1024  # a post file; media are not read through here
MAX_SETTINGS_BYTES = 64 * 1024
MAX_POSTS_PER_FILE = 1000
MAX_DEPTH = 8  # a post is at most 4 levels deep (posts > item > overrides > x > thread)
MAX_ACCOUNTS = 50
MAX_MEDIA = 35
MAX_THREAD = 25
MAX_TEXT = 100_000
SETTINGS_FILE = "_settings.yaml"
YAML_SUFFIXES = (".yaml", ".yml")
PLATFORMS = ("facebook", "instagram", "tiktok", "x")
PLATFORM_NAMES = {"facebook": "Facebook", "instagram": "Instagram", "tiktok": "TikTok", "x": "X"}
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
ALIAS_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
POST_KEYS = ("id", "status", "publish_at", "timezone", "accounts", "text", "media", "overrides")
TIKTOK_INTERACTIONS = ("comment", "duet", "stitch")
# The options each platform accepts in `overrides`, with their type (besides `text`).
OPTION_TYPES: dict[str, dict[str, Any]] = {
    "x": {"thread": list},
    "instagram": {"first_comment": str, "share_to_feed": bool},
    "tiktok": {
        "title": str,
        "privacy_level": str,
        "allow_comment": bool,
        "allow_duet": bool,
        "allow_stitch": bool,
        "brand_content_toggle": bool,
        "brand_organic_toggle": bool,
        "is_aigc": bool,
        "photo_cover_index": int,
    },
    "facebook": {"link": str},
}
TIKTOK_PRIVACY = ("PUBLIC_TO_EVERYONE", "MUTUAL_FOLLOW_FRIENDS", "FOLLOWER_OF_CREATOR", "SELF_ONLY")

Severity = Literal["error", "warning"]
Path_ = tuple[str | int, ...]  # a place in the document: ("posts", 2, "overrides", "x")


@dataclass(frozen=True)
class Problem:
    """Something wrong with a file: `file:line: message`, as CI tools print it."""

    file: str
    line: int | None
    message: str
    severity: Severity = "error"
    item: str | None = None  # the post's id, when the problem is one post's

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        kind = "" if self.severity == "error" else "warning: "
        return f"{where}: {kind}{self.message}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "message": self.message,
            "severity": self.severity,
            "item": self.item,
        }


class YamlRefused(Exception):
    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message, self.line = message, line


# -- YAML ---------------------------------------------------------------------------------
class Locator:
    """Finds the line of a place in a document, composing the node tree only when a
    problem needs a line (most files have none)."""

    def __init__(self, text: str) -> None:
        self.text = text

    @cached_property
    def root(self) -> yaml.Node | None:
        try:
            return yaml.compose(self.text, Loader=Loader)
        except yaml.YAMLError:
            return None

    def line(self, path: Path_) -> int | None:
        node, line = self.root, None
        if node is None:
            return None
        line = node.start_mark.line + 1
        for step in path:
            if isinstance(node, yaml.MappingNode):
                for key, value in node.value:
                    if isinstance(key, yaml.ScalarNode) and key.value == step:
                        node, line = value, key.start_mark.line + 1
                        break
                else:
                    return line
            elif isinstance(node, yaml.SequenceNode) and isinstance(step, int):
                if step >= len(node.value):
                    return line
                node = node.value[step]
                line = node.start_mark.line + 1
            else:
                return line
        return line


def _line_of(error: yaml.YAMLError) -> int | None:
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    return mark.line + 1 if mark is not None else None


def _yaml_message(error: yaml.YAMLError) -> str:
    problem = getattr(error, "problem", None)
    context = getattr(error, "context", None)
    if problem:
        text = f"{context}: {problem}" if context else problem
    else:
        text = str(error).splitlines()[0]
    return f"invalid YAML: {text}"


def _alias_line(text: str) -> int | None:
    """The line of the first alias (`*name`), if any: libyaml shares the aliased node, so
    only the event stream knows where an alias was written."""
    try:
        for event in yaml.parse(text, Loader=Loader):
            if isinstance(event, yaml.AliasEvent):
                return event.start_mark.line + 1
    except yaml.YAMLError:
        return None
    return None


def _too_deep(data: Any, limit: int) -> bool:
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def load_yaml(data: bytes | str, *, max_bytes: int = MAX_FILE_BYTES) -> tuple[Any, Locator]:
    """One YAML document as plain data, or YamlRefused(message, line)."""
    size = len(data)
    if size > max_bytes:
        raise YamlRefused(
            f"the file is {size:,} bytes; post files may be at most {max_bytes:,} bytes"
        )
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            raise YamlRefused("the file is not UTF-8 text", line) from None
    else:
        text = data
    if text.startswith("\ufeff"):
        text = text[1:]
    if "*" in text and (line := _alias_line(text)) is not None:
        raise YamlRefused(
            "anchors and aliases (&name, *name, <<) are not allowed: write the values out",
            line,
        )
    loader = Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise YamlRefused("the file is empty", 1)
        value = loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise YamlRefused(_yaml_message(exc), _line_of(exc)) from None
    except Exception as exc:  # PyYAML's constructors fail in odd ways on odd input
        # (an impossible date, a timestamp tag on a non-timestamp: AttributeError…)
        raise YamlRefused(f"invalid YAML: a value cannot be read ({exc})"[:300], None) from None
    finally:
        loader.dispose()
    if ("[[[[" in text or "{{{{" in text or "\n          " in text) and _too_deep(value, MAX_DEPTH):
        # (libyaml itself stops at 1,000 levels; nothing here recurses into values)
        raise YamlRefused(f"the document is nested more than {MAX_DEPTH} levels deep", 1)
    return value, Locator(text)


# -- the format ---------------------------------------------------------------------------
@dataclass
class FolderSettings:
    """_settings.yaml at the root of a source."""

    timezone: str | None = None
    aliases: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class Override:
    text: str | None = None  # None: the post's text
    options: dict[str, Any] = field(default_factory=dict)  # as stored on the target


@dataclass
class Item:
    """One post, as the file says it (accounts not yet resolved, media not yet read)."""

    id: str
    place: Path_  # where in the document: () or ("posts", i)
    text: str
    accounts: list[tuple[str, str]]  # (platform, handle as written without "@")
    account_places: list[Path_]  # where each account came from (for lines)
    publish_at: datetime | None  # aware; None for a draft without a time
    now: bool  # publish_at: now
    timezone: str
    draft: bool
    media: list[str]  # as written, relative to the file
    overrides: dict[str, Override]

    def platforms(self) -> list[str]:
        return list(dict.fromkeys(platform for platform, _ in self.accounts))

    def canonical(self) -> dict[str, Any]:
        """What identifies the post's content (for the content hash)."""
        return {
            "text": self.text,
            "accounts": [f"{p}:{h.lower()}" for p, h in self.accounts],
            "publish_at": "now" if self.now else _iso(self.publish_at),
            "timezone": self.timezone,
            "draft": self.draft,
            "overrides": {
                p: {"text": o.text, "options": o.options} for p, o in sorted(self.overrides.items())
            },
        }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat()


@dataclass
class ParsedFile:
    path: str
    items: list[Item] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    locator: Locator | None = None
    ids_hint: list[str] = field(default_factory=list)  # ids seen in a file that failed

    @property
    def ok(self) -> bool:
        return not any(p.severity == "error" for p in self.problems)

    def line(self, place: Path_) -> int | None:
        return self.locator.line(place) if self.locator else None

    def problem(
        self, place: Path_, message: str, severity: Severity = "error", item: str | None = None
    ) -> Problem:
        found = Problem(self.path, self.line(place), message, severity, item)
        self.problems.append(found)
        return found


_ID_HINT = re.compile(r"^[\s-]*id:\s*['\"]?([A-Za-z0-9][A-Za-z0-9._-]{0,99})", re.MULTILINE)


def ids_in_text(data: bytes | str) -> list[str]:
    """The ids a file that cannot be read seems to define: their posts are left alone
    (never cancelled) until the file is fixed."""
    if isinstance(data, bytes):
        data = data[: MAX_FILE_BYTES * 4].decode("utf-8", "replace")
    return _ID_HINT.findall(data)


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, datetime | date):
        return "a date"
    return "empty" if value is None else type(value).__name__


def _zone(name: Any) -> str | None:
    if not isinstance(name, str) or not name or len(name) > 64:
        return None
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None
    return name


def parse_settings(path: str, data: bytes | str) -> tuple[FolderSettings, list[Problem]]:
    """_settings.yaml: `timezone:` (the default zone) and `aliases:` (name -> accounts)."""
    settings = FolderSettings()
    try:
        value, locator = load_yaml(data, max_bytes=MAX_SETTINGS_BYTES)
    except YamlRefused as exc:
        return settings, [Problem(path, exc.line, exc.message)]
    parsed = ParsedFile(path, locator=locator)
    if not isinstance(value, dict):
        parsed.problem((), f"the settings file must be a mapping, not {_kind(value)}")
        return settings, parsed.problems
    for key in value:
        if key not in ("timezone", "aliases"):
            parsed.problem((key,), f"unknown setting '{key}': use timezone or aliases")
    if "timezone" in value:
        settings.timezone = _zone(value["timezone"])
        if settings.timezone is None:
            parsed.problem(("timezone",), f"unknown time zone {value['timezone']!r}")
    aliases = value.get("aliases", {})
    if not isinstance(aliases, dict):
        parsed.problem(("aliases",), "aliases must map names to accounts")
        aliases = {}
    for name, refs in aliases.items():
        if not isinstance(name, str) or not ALIAS_PATTERN.fullmatch(name):
            parsed.problem(
                ("aliases", name), f"alias name {name!r} must be letters, digits, _ or -"
            )
            continue
        listed = [refs] if isinstance(refs, str) else refs
        if not isinstance(listed, list) or not listed:
            parsed.problem(("aliases", name), f"alias '{name}' must name one or more accounts")
            continue
        resolved = []
        for index, ref in enumerate(listed):
            place = ("aliases", name) if isinstance(refs, str) else ("aliases", name, index)
            account = _account_ref(ref)
            if isinstance(account, str):
                parsed.problem(place, f"alias '{name}': {account}")
            else:
                resolved.append(f"{account[0]}:{account[1]}")
        settings.aliases[name] = resolved
    return settings, parsed.problems


def _account_ref(ref: Any) -> tuple[str, str] | str:
    """(platform, handle) from "platform:handle", or what is wrong with it."""
    if not isinstance(ref, str):
        return f"an account must be text like x:@handle, not {_kind(ref)}"
    return _account_text(ref)


@lru_cache(maxsize=4096)  # (a source names the same few accounts in every file)
def _account_text(ref: str) -> tuple[str, str] | str:
    platform, sep, handle = ref.partition(":")
    platform, handle = platform.strip().lower(), handle.strip().lstrip("@").strip()
    if not sep:
        return f"unknown account or alias '{ref}': write platform:handle, e.g. x:@acme"
    if platform not in PLATFORMS:
        return f"unknown platform '{platform}' in '{ref}': use facebook, instagram, tiktok or x"
    if not handle or len(handle) > 200:
        return f"'{ref}' names no account: write {platform}:handle"
    return platform, handle


def parse_file(path: str, data: bytes | str, settings: FolderSettings | None = None) -> ParsedFile:
    """A post file: its posts and its problems (with lines)."""
    settings = settings or FolderSettings()
    try:
        value, locator = load_yaml(data)
    except YamlRefused as exc:
        parsed = ParsedFile(path, ids_hint=ids_in_text(data))
        parsed.problems.append(Problem(path, exc.line, exc.message))
        return parsed
    parsed = ParsedFile(path, locator=locator)
    if isinstance(value, dict) and "posts" in value:
        extra = [k for k in value if k != "posts"]
        for key in extra:
            parsed.problem(
                (key,), f"'{key}' belongs inside a post: a file with posts: has nothing else"
            )
        posts = value["posts"]
        if not isinstance(posts, list) or not posts:
            parsed.problem(("posts",), "posts must be a list of posts")
            return parsed
        if len(posts) > MAX_POSTS_PER_FILE:
            parsed.problem(("posts",), f"a file may hold at most {MAX_POSTS_PER_FILE} posts")
            return parsed
        places: list[tuple[Path_, Any]] = [(("posts", i), post) for i, post in enumerate(posts)]
    elif isinstance(value, dict):
        places = [((), value)]
    else:
        parsed.problem(
            (), f"a post file must be a mapping (a post, or posts: [...]), not {_kind(value)}"
        )
        return parsed
    seen: dict[str, Path_] = {}
    for place, raw in places:
        item = _parse_item(parsed, place, raw, settings)
        if item is None:
            if isinstance(raw, dict) and isinstance(raw.get("id"), str):
                parsed.ids_hint.append(raw["id"])
            continue
        if item.id in seen:
            first = parsed.line((*seen[item.id], "id"))
            parsed.problem(
                (*place, "id"),
                f"id '{item.id}' is used twice in this file (also line {first})",
                item=item.id,
            )
            continue
        seen[item.id] = place
        parsed.items.append(item)
    if not parsed.ok:  # a file is all or nothing
        parsed.ids_hint += [i.id for i in parsed.items]
        parsed.items = []
    return parsed


def _publish_at(
    parsed: ParsedFile, place: Path_, raw: dict, zone: str | None, draft: bool, item_id: str
) -> tuple[datetime | None, bool] | None:
    value = raw.get("publish_at")
    where = (*place, "publish_at")
    if value is None:
        if draft:
            return None, False
        parsed.problem(
            where if "publish_at" in raw else (*place, "id"),
            "publish_at is missing: give a time (or `now`), or mark the post `status: draft`",
            item=item_id,
        )
        return None
    if isinstance(value, str) and value.strip().lower() == "now":
        return None, True
    moment: datetime | None = None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        parsed.problem(where, f"publish_at {value} has no time of day", item=item_id)
        return None
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            parsed.problem(
                where,
                f"publish_at {value!r} is not a time: write 2027-01-05T09:00:00+01:00, "
                "or a local time with timezone:, or now",
                item=item_id,
            )
            return None
    else:
        parsed.problem(where, f"publish_at must be a time, not {_kind(value)}", item=item_id)
        return None
    if moment.tzinfo is None or moment.utcoffset() is None:
        if zone is None:
            parsed.problem(
                where,
                f"publish_at {moment:%Y-%m-%d %H:%M} has no time zone: add an offset "
                "(+01:00) or a timezone: (Europe/Berlin)",
                item=item_id,
            )
            return None
        moment = moment.replace(tzinfo=ZoneInfo(zone))
    return moment.astimezone(UTC), False


def _text(parsed: ParsedFile, place: Path_, value: Any, name: str, item_id: str) -> str | None:
    if value is None:
        return ""
    if not isinstance(value, str):
        parsed.problem(place, f"{name} must be text, not {_kind(value)}: quote it", item=item_id)
        return None
    if len(value) > MAX_TEXT:
        parsed.problem(place, f"{name} is longer than {MAX_TEXT:,} characters", item=item_id)
        return None
    return value


def _strings(
    parsed: ParsedFile, place: Path_, value: Any, name: str, limit: int, item_id: str
) -> list[tuple[Path_, Any]] | None:
    """A string or a list of them, with the place of each."""
    if isinstance(value, str):
        return [(place, value)]
    if not isinstance(value, list):
        parsed.problem(place, f"{name} must be text or a list, not {_kind(value)}", item=item_id)
        return None
    if len(value) > limit:
        parsed.problem(place, f"{name} may list at most {limit}", item=item_id)
        return None
    return [((*place, i), v) for i, v in enumerate(value)]


def _parse_item(
    parsed: ParsedFile, place: Path_, raw: Any, settings: FolderSettings
) -> Item | None:
    before = len(parsed.problems)
    if not isinstance(raw, dict):
        parsed.problem(place, f"a post must be a mapping, not {_kind(raw)}")
        return None
    item_id = raw.get("id")
    if item_id is None:
        parsed.problem(place, "the post has no id: give it a stable id (e.g. id: launch-2027)")
        return None
    if not isinstance(item_id, str):
        parsed.problem(
            (*place, "id"), f'id must be text, not {_kind(item_id)}: quote it (id: "{item_id}")'
        )
        return None
    if not ID_PATTERN.fullmatch(item_id):
        parsed.problem(
            (*place, "id"),
            f"id {item_id!r} may use letters, digits, '.', '_' and '-' (at most 100)",
        )
        return None
    for key in raw:
        if key not in POST_KEYS:
            hint = " (did you mean overrides?)" if key in PLATFORMS else ""
            parsed.problem((*place, key), f"unknown key '{key}'{hint}", item=item_id)
    status = raw.get("status", "scheduled")
    if status not in ("scheduled", "draft"):
        parsed.problem((*place, "status"), "status must be scheduled or draft", item=item_id)
    draft = status == "draft"
    zone = settings.timezone
    if "timezone" in raw:
        zone = _zone(raw["timezone"])
        if zone is None:
            parsed.problem(
                (*place, "timezone"),
                f"unknown time zone {raw['timezone']!r}: use an IANA name like Europe/Berlin",
                item=item_id,
            )
    when = _publish_at(parsed, place, raw, zone, draft, item_id)
    text = _text(parsed, (*place, "text"), raw.get("text"), "text", item_id)
    accounts, account_places = _accounts(parsed, place, raw, settings, item_id)
    media: list[str] = []
    if raw.get("media") is not None:
        listed = _strings(parsed, (*place, "media"), raw["media"], "media", MAX_MEDIA, item_id)
        for where, path in listed or []:
            if not isinstance(path, str) or not path.strip() or len(path) > 500:
                parsed.problem(
                    where, "a media entry must be a path relative to this file", item=item_id
                )
            else:
                media.append(path.strip())
    overrides = _overrides(parsed, place, raw.get("overrides"), item_id)
    for platform in overrides:
        if platform not in {p for p, _ in accounts}:
            parsed.problem(
                (*place, "overrides", platform),
                f"overrides for {PLATFORM_NAMES[platform]}, but no {PLATFORM_NAMES[platform]} "
                "account is listed",
                "warning",
                item_id,
            )
    if len(parsed.problems) > before and not all(
        p.severity == "warning" for p in parsed.problems[before:]
    ):
        return None
    if when is None or text is None:
        return None
    publish_at, now = when
    return Item(
        id=item_id,
        place=place,
        text=text,
        accounts=accounts,
        account_places=account_places,
        publish_at=publish_at,
        now=now,
        timezone=zone or "UTC",
        draft=draft,
        media=media,
        overrides=overrides,
    )


def _accounts(
    parsed: ParsedFile, place: Path_, raw: dict, settings: FolderSettings, item_id: str
) -> tuple[list[tuple[str, str]], list[Path_]]:
    where = (*place, "accounts")
    if raw.get("accounts") is None:
        parsed.problem(
            where if "accounts" in raw else (*place, "id"),
            "accounts is missing: name where to publish, e.g. accounts: [x:@acme]",
            item=item_id,
        )
        return [], []
    listed = _strings(parsed, where, raw["accounts"], "accounts", MAX_ACCOUNTS, item_id)
    found: dict[tuple[str, str], Path_] = {}
    for spot, ref in listed or []:
        refs = settings.aliases.get(ref) if isinstance(ref, str) else None
        for one in refs if refs is not None else [ref]:
            account = _account_ref(one)
            if isinstance(account, str):
                parsed.problem(spot, account, item=item_id)
                continue
            key = (account[0], account[1].lower())
            found.setdefault(key, spot)
    if listed == []:
        parsed.problem(where, "accounts is empty: name where to publish", item=item_id)
    return list(found), list(found.values())


def _overrides(parsed: ParsedFile, place: Path_, value: Any, item_id: str) -> dict[str, Override]:
    where = (*place, "overrides")
    if value is None:
        return {}
    if not isinstance(value, dict):
        parsed.problem(where, "overrides must map platforms to their settings", item=item_id)
        return {}
    result: dict[str, Override] = {}
    for platform, raw in value.items():
        spot = (*where, platform)
        if platform not in PLATFORMS:
            parsed.problem(
                spot,
                f"unknown platform '{platform}': use facebook, instagram, tiktok or x",
                item=item_id,
            )
            continue
        if raw is None:
            continue
        if not isinstance(raw, dict):
            parsed.problem(spot, f"overrides.{platform} must be a mapping", item=item_id)
            continue
        override = _override(parsed, spot, platform, raw, item_id)
        if override is not None:
            result[platform] = override
    return result


def _override(
    parsed: ParsedFile, spot: Path_, platform: str, raw: dict, item_id: str
) -> Override | None:
    before = len(parsed.problems)
    types = OPTION_TYPES[platform]
    override = Override()
    if "text" in raw:
        override.text = _text(parsed, (*spot, "text"), raw["text"], "text", item_id)
    given: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "text":
            continue
        if key not in types:
            known = ", ".join(["text", *types])
            parsed.problem(
                (*spot, key),
                f"unknown {PLATFORM_NAMES[platform]} option '{key}': use {known}",
                item=item_id,
            )
            continue
        kind = types[key]
        if value is None and kind is not list:
            continue
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if not ok:
            wanted = {bool: "true or false", int: "a whole number", str: "text", list: "a list"}
            parsed.problem((*spot, key), f"{key} must be {wanted[kind]}", item=item_id)
            continue
        given[key] = value
    if platform == "x" and "thread" in given:
        thread = given.pop("thread")
        if "text" in raw:
            parsed.problem(
                (*spot, "thread"), "give either text or thread for X, not both", item=item_id
            )
        elif not thread or len(thread) > MAX_THREAD:
            parsed.problem(
                (*spot, "thread"), f"thread must list 1 to {MAX_THREAD} texts", item=item_id
            )
        else:
            parts = [
                _text(parsed, (*spot, "thread", i), part, "each thread part", item_id)
                for i, part in enumerate(thread)
            ]
            if all(part is not None for part in parts):
                override.text = parts[0]
                if len(parts) > 1:
                    override.options["thread"] = parts[1:]
    if platform == "tiktok":
        level = given.pop("privacy_level", None)
        if level is not None:
            if level not in TIKTOK_PRIVACY:
                parsed.problem(
                    (*spot, "privacy_level"),
                    f"privacy_level must be one of {', '.join(TIKTOK_PRIVACY)}",
                    item=item_id,
                )
            override.options["privacy_level"] = level
        for name in TIKTOK_INTERACTIONS:  # TikTok's rule: off unless turned on
            override.options[f"disable_{name}"] = not given.pop(f"allow_{name}", False)
    override.options.update(given)
    if len(parsed.problems) > before:
        return None
    return override


# -- what a target stores -----------------------------------------------------------------
def target_text(item: Item, platform: str) -> str | None:
    """The text a target of `platform` publishes, None when it is the post's own."""
    override = item.overrides.get(platform)
    if override is None or override.text is None or override.text == item.text:
        return None
    return override.text


def target_options(item: Item, platform: str) -> dict[str, Any]:
    override = item.overrides.get(platform)
    options = dict(override.options) if override else {}
    if platform == "tiktok":
        for name in TIKTOK_INTERACTIONS:
            options.setdefault(f"disable_{name}", True)
    return options


# Where a rules.Problem's field points in an item.
def place_of_field(item: Item, platform: str, field_name: str) -> Path_:
    base = item.place
    override = item.overrides.get(platform)
    has_override = platform in item.overrides
    if field_name == "text":
        if override and override.text is not None:
            if platform == "x" and "thread" in override.options:
                return (*base, "overrides", "x", "thread", 0)
            return (*base, "overrides", platform, "text")
        return (*base, "text")
    if field_name.startswith("thread."):
        index = int(field_name.split(".", 1)[1]) + 1
        return (*base, "overrides", "x", "thread", index)
    if field_name == "thread":
        return (*base, "overrides", "x", "thread")
    if field_name.startswith("media"):
        index = field_name.partition(".")[2]
        if index.isdigit() and len(item.media) > 1:
            return (*base, "media", int(index))
        return (*base, "media")
    if field_name in ("publish_at", "accounts"):
        return (*base, field_name)
    if has_override:
        name = field_name
        if name.startswith("disable_"):
            name = "allow_" + name.removeprefix("disable_")
        return (*base, "overrides", platform, name)
    return (*base, "accounts")
