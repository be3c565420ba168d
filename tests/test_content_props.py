"""Property-based: generated and mutated files fed to the loader, to validate and to the
sync. Never a crash; never a partial write (a file with an error leaves nothing of
itself behind, a file without one is applied whole); a second sync changes nothing."""

from __future__ import annotations

import secrets
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from src.config import get_settings
from src.content import service
from src.content.loader import POST_KEYS, parse_file
from src.content.sync import sync_source
from src.content.validate import validate
from src.db.tables import Post, PostTarget
from tests.test_content_sync import make_user

FUTURE = (datetime.now(UTC) + timedelta(days=60)).replace(microsecond=0)
VALID = (
    f"id: {{id}}\npublish_at: {FUTURE.isoformat()}\naccounts: [x:@xavier_x]\ntext: Hello {{id}}\n"
)
VALID_LIST = (
    "posts:\n"
    "  - id: {id}-a\n"
    f"    publish_at: {FUTURE.isoformat()}\n"
    "    accounts: [x:@xavier_x, x:@xena_x]\n"
    "    text: First\n"
    "  - id: {id}-b\n"
    "    status: draft\n"
    "    accounts: [x:@xena_x]\n"
    "    overrides:\n"
    "      x: {{thread: [One, Two]}}\n"
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.datetimes(timezones=st.none() | st.timezones()),
    st.dates(),
    st.sampled_from(
        ["now", "x:@xavier_x", "tiktok:@t", "draft", "Europe/Berlin", "../../etc/passwd"]
    ),
)
keys = st.one_of(
    st.sampled_from([*POST_KEYS, "posts", "x", "tiktok", "thread", "privacy_level"]),
    st.text(max_size=8),
)
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=6)),
    max_leaves=25,
)

MUTATIONS = [
    "&a ",
    "*a",
    "<<: ",
    "\t",
    "---\n",
    ":",
    "- ",
    "[",
    "{",
    "'",
    '"',
    "\n  ",
    "!!python/name:os.system ",
    "\x00",
    "\xff",
    "#",
]


@st.composite
def mutated(draw, template: str = VALID) -> str:
    text = template.format(id=draw(st.from_regex(r"[a-z][a-z0-9-]{0,12}", fullmatch=True)))
    for _ in range(draw(st.integers(0, 4))):
        position = draw(st.integers(0, len(text)))
        kind = draw(st.sampled_from(["insert", "delete", "swap-lines"]))
        if kind == "insert":
            text = (
                text[:position]
                + draw(st.sampled_from(MUTATIONS) | st.text(max_size=3))
                + text[position:]
            )
        elif kind == "delete":
            text = text[:position] + text[position + draw(st.integers(1, 8)) :]
        else:
            lines = text.splitlines(keepends=True)
            if len(lines) > 1:
                i = draw(st.integers(0, len(lines) - 2))
                lines[i], lines[i + 1] = lines[i + 1], lines[i]
                text = "".join(lines)
    return text


def _check(parsed) -> None:
    for problem in parsed.problems:
        assert problem.file == "f.yaml"
        assert problem.line is None or (isinstance(problem.line, int) and problem.line >= 1)
        assert problem.message
    if not parsed.ok:
        assert parsed.items == []  # a file is all or nothing


@settings(max_examples=300, deadline=None, database=None)
@given(documents)
def test_generated_documents_never_crash_the_loader(document):
    try:
        text = yaml.safe_dump(document, allow_unicode=True)
    except (yaml.YAMLError, ValueError):
        return
    _check(parse_file("f.yaml", text))
    _check(parse_file("f.yaml", text.encode("utf-8")))


@settings(max_examples=400, deadline=None, database=None)
@given(st.one_of(mutated(), mutated(VALID_LIST), st.binary(max_size=200)))
def test_mutated_files_never_crash_the_loader(text):
    _check(parse_file("f.yaml", text))


@settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(st.lists(st.one_of(mutated(), mutated(VALID_LIST)), min_size=1, max_size=4))
async def test_validate_never_crashes(files):
    with tempfile.TemporaryDirectory() as folder:
        for index, text in enumerate(files):
            (Path(folder) / f"f{index}.yaml").write_text(text, errors="surrogateescape")
        problems = await validate([Path(folder)])
        for problem in problems:
            assert problem.message and str(problem)


@pytest.fixture(scope="module")
async def prop_user(db):
    return await make_user()


@pytest.mark.usefixtures("db")
@settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    first=st.lists(st.one_of(mutated(), mutated(VALID_LIST)), min_size=1, max_size=4),
    second=st.lists(st.one_of(mutated(), mutated(VALID_LIST)), min_size=0, max_size=4),
)
async def test_sync_never_writes_part_of_a_file(prop_user, first, second):
    user = prop_user
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        for index, text in enumerate(first):
            (root / f"f{index}.yaml").write_text(text, errors="surrogateescape")
        source = await service.add_local(user, f"prop-{secrets.token_hex(4)}", root)
        before = await _state(source.id)
        result = await sync_source(source.id, get_settings())
        await _check_applied(source.id, root, result, before)

        # A second version of the folder: new, changed and removed files.
        for path in root.glob("*.yaml"):
            path.unlink()
        for index, text in enumerate(second):
            (root / f"g{index}.yaml").write_text(text, errors="surrogateescape")
        before = await _state(source.id)
        result = await sync_source(source.id, get_settings())
        await _check_applied(source.id, root, result, before)
        settled = await _state(source.id)
        assert (await sync_source(source.id, get_settings())).status in (
            "unchanged",
            "partial",
            "ok",
        )
        assert await _state(source.id) == settled  # idempotent


async def _state(source_id: int) -> dict:
    rows = await Post.objects().where(Post.content_source == source_id)
    state = {}
    for post in rows:
        targets = (
            await PostTarget.objects().where(PostTarget.post == post.id).order_by(PostTarget.id)
        )
        state[post.source_item_id] = (
            post.source_path,
            post.content_hash,
            post.text,
            post.status,
            tuple((t.account, t.status, t.text) for t in targets),
        )
    return state


async def _check_applied(source_id: int, root: Path, result, before: dict) -> None:
    assert result.status in ("ok", "partial", "failed"), result
    broken = {p.file for p in result.problems if p.severity == "error"}
    after = await _state(source_id)
    for item_id, row in after.items():
        path = row[0]
        if path in broken:
            # a broken file changes nothing of what it defined before
            assert before.get(item_id) == row, (item_id, path)
    for path in root.glob("*.yaml"):
        name = path.name
        parsed = parse_file(name, path.read_bytes())
        ids = [i.id for i in parsed.items]
        if name in broken or not parsed.ok:
            for item_id in ids:
                assert after.get(item_id) == before.get(item_id)
        else:
            # applied whole: every post of the file exists, from this file
            for item_id in ids:
                assert item_id in after and after[item_id][0] == name, (
                    name,
                    item_id,
                    result.problems,
                )
