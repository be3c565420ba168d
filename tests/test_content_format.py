"""The file format: the documented examples are valid for the loader and the JSON
Schema alike, invalid files are refused by both, and every problem carries its line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from src.content.loader import (
    MAX_FILE_BYTES,
    YamlRefused,
    load_yaml,
    parse_file,
    parse_settings,
    target_options,
    target_text,
)

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((ROOT / "src/content/schema.json").read_text())
DOCS = (ROOT / "docs/content.md").read_text()


def schema_ok(text: str, definition: str | None = None) -> bool:
    """Validate as an editor would: YAML 1.2 (times stay strings)."""
    data = yaml.load(text, Loader=_Yaml12Loader)
    schema = (
        SCHEMA
        if definition is None
        else {"$ref": f"#/$defs/{definition}", **{"$defs": SCHEMA["$defs"]}}
    )
    try:
        jsonschema.validate(data, schema)
    except jsonschema.ValidationError:
        return False
    return True


class _Yaml12Loader(yaml.SafeLoader):
    """SafeLoader without the YAML 1.1 timestamp resolver (the language server's view)."""


_Yaml12Loader.yaml_implicit_resolvers = {
    key: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.copy().items()
}


def doc_examples() -> list[str]:
    blocks = re.findall(r"```yaml\n(.*?)```", DOCS, re.S)
    return [b for b in blocks if "repos:" not in b]


def test_the_documented_examples_are_valid():
    examples = doc_examples()
    assert len(examples) >= 4
    for text in examples:
        if text.startswith("timezone:") and "aliases:" in text:
            settings, problems = parse_settings("_settings.yaml", text)
            assert problems == [] and settings.aliases["team"]
            assert schema_ok(text, "settings")
            continue
        parsed = parse_file("example.yaml", text, _team())
        assert parsed.problems == [], [str(p) for p in parsed.problems]
        assert schema_ok(text), text


def _team():
    settings, _ = parse_settings("_settings.yaml", "aliases:\n  team: [x:@acme, tiktok:@acme]\n")
    return settings


def test_the_schema_is_valid_json_schema():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


INVALID = [
    ("no id", "publish_at: now\naccounts: [x:@a]\ntext: hi\n", 1, "no id"),
    ("numeric id", "id: 42\npublish_at: now\naccounts: [x:@a]\n", 1, "quote it"),
    ("bad id", "id: 'has space'\npublish_at: now\naccounts: [x:@a]\n", 1, "letters, digits"),
    ("unknown key", "id: a\npublish_at: now\naccounts: [x:@a]\ntxt: hi\n", 4, "unknown key 'txt'"),
    (
        "bad status",
        "id: a\nstatus: later\npublish_at: now\naccounts: [x:@a]\n",
        2,
        "status must be",
    ),
    ("bad time", "id: a\npublish_at: tomorrow\naccounts: [x:@a]\n", 2, "is not a time"),
    ("date only", "id: a\npublish_at: 2027-01-05\naccounts: [x:@a]\n", 2, "no time of day"),
    (
        "bad zone",
        "id: a\npublish_at: 2027-01-05T09:00:00\ntimezone: Mars/Base\naccounts: [x:@a]\n",
        3,
        "unknown time zone",
    ),
    ("no accounts", "id: a\npublish_at: now\ntext: hi\n", 1, "accounts is missing"),
    ("bad platform", "id: a\npublish_at: now\naccounts: [myspace:@a]\n", 3, "unknown platform"),
    ("text number", "id: a\npublish_at: now\naccounts: [x:@a]\ntext: 12\n", 4, "text must be text"),
    (
        "override platform",
        "id: a\npublish_at: now\naccounts: [x:@a]\noverrides:\n  mastodon: {text: hi}\n",
        5,
        "unknown platform",
    ),
    (
        "override option",
        "id: a\npublish_at: now\naccounts: [x:@a]\noverrides:\n  x: {title: hi}\n",
        5,
        "unknown X option",
    ),
    (
        "thread and text",
        "id: a\npublish_at: now\naccounts: [x:@a]\n"
        "overrides:\n  x:\n    text: a\n    thread: [a, b]\n",
        7,
        "not both",
    ),
    (
        "privacy",
        "id: a\npublish_at: now\naccounts: [tiktok:@a]\n"
        "overrides:\n  tiktok: {privacy_level: ALL}\n",
        5,
        "privacy_level must be",
    ),
    (
        "toggle type",
        "id: a\npublish_at: now\naccounts: [tiktok:@a]\n"
        "overrides:\n  tiktok: {allow_comment: maybe}\n",
        5,
        "true or false",
    ),
    ("not a mapping", "- id: a\n", 1, "must be a mapping"),
    ("posts empty", "posts: []\n", 1, "list of posts"),
    (
        "posts extra",
        "posts:\n  - id: a\n    publish_at: now\n    accounts: [x:@a]\ntext: hi\n",
        5,
        "belongs inside a post",
    ),
    ("missing time", "id: a\naccounts: [x:@a]\n", 1, "publish_at is missing"),
]


@pytest.mark.parametrize(("name", "text", "line", "message"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_files_are_refused_with_their_line(name, text, line, message):
    parsed = parse_file("bad.yaml", text)
    errors = [p for p in parsed.problems if p.severity == "error"]
    assert errors, name
    assert parsed.items == []
    assert any(message in p.message for p in errors), [str(p) for p in errors]
    assert any(p.line == line for p in errors if message in p.message), [str(p) for p in errors]
    if name not in ("bad zone", "date only", "bad platform"):
        # (the schema cannot know zones, YAML 1.1 dates, or "required unless draft")
        assert not schema_ok(text), name


def test_problems_print_as_ci_tools_expect():
    (problem,) = parse_file("posts/a.yaml", "id: a\npublish_at: soon\naccounts: [x:@a]\n").problems
    assert str(problem).startswith("posts/a.yaml:2: publish_at 'soon' is not a time")


def test_yaml_safety():
    with pytest.raises(YamlRefused, match="at most"):
        load_yaml("a: " + "x" * MAX_FILE_BYTES)
    with pytest.raises(YamlRefused, match="anchors and aliases") as bomb:
        load_yaml("a: &a [1, 2]\nb: [*a, *a]\n")
    assert bomb.value.line == 2
    with pytest.raises(YamlRefused, match="invalid YAML"):
        load_yaml("a: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(YamlRefused, match="nested more than"):
        load_yaml("a: " + "[" * 20 + "]" * 20)
    with pytest.raises(YamlRefused, match="not UTF-8") as binary:
        load_yaml(b"id: a\ntext: \xff\xfe\n")
    assert binary.value.line == 2
    with pytest.raises(YamlRefused, match="single document"):
        load_yaml("id: a\n---\nid: b\n")
    with pytest.raises(YamlRefused, match="empty"):
        load_yaml("# nothing\n")
    # Text with an asterisk is not an alias.
    value, _ = load_yaml("text: '*bold* and **more**'\n")
    assert value == {"text": "*bold* and **more**"}


def test_targets_get_the_stored_options():
    text = (
        "id: a\npublish_at: now\naccounts: [x:@a, tiktok:@t, instagram:i]\ntext: Main\n"
        "overrides:\n  x: {thread: [Main, Second, Third]}\n"
        "  tiktok: {privacy_level: SELF_ONLY, allow_duet: true, text: Tok}\n"
        "  instagram: {first_comment: '#tags'}\n"
    )
    (item,) = parse_file("a.yaml", text).items
    assert target_text(item, "x") is None  # the thread starts with the main text
    assert target_options(item, "x") == {"thread": ["Second", "Third"]}
    assert target_text(item, "tiktok") == "Tok"
    assert target_options(item, "tiktok") == {
        "privacy_level": "SELF_ONLY",
        "disable_comment": True,
        "disable_duet": False,
        "disable_stitch": True,
    }
    assert target_options(item, "instagram") == {"first_comment": "#tags"}
    assert target_options(item, "facebook") == {}


def test_aliases_and_settings_problems():
    settings, problems = parse_settings(
        "_settings.yaml",
        "timezone: Nowhere/City\naliases:\n  team: [x:@a, bogus]\n  'bad name': x:@a\n",
    )
    assert [p.line for p in problems] == [1, 3, 4]
    assert settings.timezone is None and settings.aliases["team"] == ["x:a"]
    _, problems = parse_settings("_settings.yaml", "color: red\n")
    assert "unknown setting" in problems[0].message
