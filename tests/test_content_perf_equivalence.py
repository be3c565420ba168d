"""The content sync's fast paths give exactly the answers of the slow ones they skip.

X's length rule skips twitter-text's walk when a cheap bound proves the text fits: the
bound must never be below what twitter-text counts, so the rule reports the same
problems, with the same length, either way. The content hash of a post is the sha256
of its canonical JSON, now written by msgspec: the bytes must be json.dumps' own, or
every post synced before would look changed."""

from __future__ import annotations

import hashlib
import json

from hypothesis import given, settings
from hypothesis import strategies as st
from twitter_text import parse_tweet

from src import rules
from src.content.loader import parse_file
from src.content.sources import Entry
from src.content.sync import canonical_json, item_hash
from src.tweet_length import MAX_WEIGHTED_LENGTH, weighted_length

# Pieces that move X's count away from one per character: URLs with and without a
# protocol (t.co, IDN, ports, paths, trailing dots), emoji and their sequences, CJK,
# characters NFC composes or expands, line endings, full-width and other dots.
PIECES = [
    "https://example.org/notes/42",
    "http://a.co",
    "example.com",
    "www.example.co.uk/path?q=1#x",
    "https://t.co/abcdefghij",
    "日本語.jp",
    "http://例え.テスト/ページ",
    "a.b",
    "x.y.z.",
    "...",
    "😷",
    "👨‍👩‍👧‍👦",
    "#️⃣",
    "©",
    "🇩🇪",
    "日本語",
    "e\u0301",
    "\u0958",
    "\ufb2c",
    "\u0344",
    "\r\n",
    "\r",
    "\uff0e",  # full-width full stop
    "。",
    " #release @someone ",
]
texts = st.one_of(
    st.text(max_size=300),
    st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=12)), max_size=60).map("".join),
    st.tuples(st.sampled_from(PIECES), st.integers(1, 160)).map(lambda p: p[0] * p[1]),
)


@settings(max_examples=600, deadline=None)
@given(texts)
def test_length_bound_is_never_below_twitter_text(text: str) -> None:
    bound = rules.length_bound(text)
    assert bound >= weighted_length(text)
    assert bound >= parse_tweet(text).weightedLength


@settings(max_examples=400, deadline=None)
@given(texts)
def test_x_length_rule_reports_exactly_what_twitter_text_counts(text: str) -> None:
    found = [
        p.message for p in rules.check("x", text, [], {}, {}) if p.message.startswith("X allows")
    ]
    length = weighted_length(text)
    fails = bool(text.strip()) and length > MAX_WEIGHTED_LENGTH
    assert found == ([f"{rules.X_LENGTH_RULE}: this text is {length}."] if fails else [])


def test_the_bound_proves_an_ordinary_post_fits_and_never_hides_a_long_one() -> None:
    post = (
        "Post number 7: what we shipped this week, why it matters and what comes next. "
        "Read more at https://example.org/notes/7 #release #weekly"
    )
    assert rules.length_bound(post) <= MAX_WEIGHTED_LENGTH
    assert not rules.check("x", post, [], {}, {})
    long = "日本語 " * 60  # 240 characters, 420 weighted
    assert rules.length_bound(long) > MAX_WEIGHTED_LENGTH
    assert rules.check("x", long, [], {}, {})[0].message.endswith("this text is 420.")


plain = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**80), max_value=2**80),
        st.text(),
        st.sampled_from(["", "\x00\x1f\x7f", "\u2028\u2029", '"\\/', "😷é日\uffff"]),
    ),
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(st.text(), inner)),
    max_leaves=30,
)


@settings(max_examples=500, deadline=None)
@given(plain)
def test_canonical_json_is_byte_for_byte_json_dumps(value: object) -> None:
    expected = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    assert canonical_json(value) == expected.encode()


def test_a_posts_content_hash_is_the_one_stored_before() -> None:
    """The hash as json.dumps made it (what posts synced before carry)."""
    text = (
        "id: launch-2027\npublish_at: 2027-01-05T09:00:00+01:00\naccounts: [x:@acme, tiktok:@t]\n"
        'text: "Ünïcödé \\"quoted\\" \\u0007 😷 日本語"\nmedia: [a.png]\noverrides:\n'
        "  x: {thread: [One, Two]}\n  tiktok: {privacy_level: SELF_ONLY, allow_duet: true}\n"
    )
    item = parse_file("posts/launch.yaml", text).items[0]
    media = [Entry("posts/a.png", "0123456789abcdef0123456789abcdef01234567", 10)]
    payload = item.canonical() | {"media": [["posts/a.png", media[0].blob]]}
    before = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    assert item_hash(item, media) == hashlib.sha256(before.encode()).hexdigest()
