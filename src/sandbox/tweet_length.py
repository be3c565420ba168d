"""X's weighted post length (twitter-text v3: URLs weigh 23, emoji sequences 2, code points
outside the light ranges 2, after NFC), computed by the `twitter-text-parser` package,
whose default configuration is exactly twitter-text's config/v3.json.

The package finds emoji by trying its (very long) emoji regex at every position of the
text, about 1.5 ms for a 170-character post. We hand it a scanner with the same regex and
the same matches that only tries positions whose character can begin an emoji, and count
plain ASCII posts (the common case) without its per-character loop. Tests check both
against the package's own results."""

from __future__ import annotations

import importlib
import importlib.resources
import importlib.util
import re
import sys
import types
import warnings

MAX_WEIGHTED_LENGTH = 280
_URL_WEIGHT = 23
_LINE_ENDINGS = re.compile(r"\r\n|\r|\n")


def _resource_string(module: str, name: str) -> bytes:
    package = (
        module
        if importlib.util.find_spec(module).submodule_search_locations
        else module.rpartition(".")[0]
    )  # type: ignore[union-attr]
    return importlib.resources.files(package).joinpath(name).read_bytes()


def _load_parser() -> types.ModuleType:
    """twitter-text-parser reads its emoji list through the old `pkg_resources` API, which
    newer setuptools no longer ships; give it a tiny stand-in only when it is missing."""
    if importlib.util.find_spec("pkg_resources") is None:
        shim = types.ModuleType("pkg_resources")
        shim.resource_string = _resource_string  # type: ignore[attr-defined]
        sys.modules["pkg_resources"] = shim
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pkg_resources' own deprecation notice
        import twitter_text

    return twitter_text


_twitter_text = _load_parser()
_emoji = importlib.import_module("twitter_text.regexp.emoji")
_FIRST_CHARS = {entry.emoji[0] for entry in _emoji.emoji_list}
_may_start: dict[str, bool] = {}


def emoji_entities(text: str) -> list[dict]:
    """Exactly the library's extract_emojis_with_indices(text), without trying the regex
    where no emoji can begin (its alternatives all start with an emoji's first character)."""
    found, end = [], 0
    for index, char in enumerate(text):
        if index < end:
            continue
        if char not in _may_start:
            _may_start[char] = char in _FIRST_CHARS or _emoji.emoji.fullmatch(char) is not None
        if _may_start[char] and (match := _emoji.emoji.match(text, index)):
            found.append({"emoji": match.group(0), "indices": [index, match.end()]})
            end = match.end()
    return found


importlib.import_module("twitter_text.parse_tweet").extract_emojis_with_indices = emoji_entities


def _ascii_length(text: str) -> int:
    """parse_tweet's count for ASCII text, where every character weighs 1, none is invalid
    and none begins an emoji, so only line endings and URLs (23 each) change the sum; its
    per-character Python loop costs ~1 µs a character, this a few µs a post."""
    text = _LINE_ENDINGS.sub("\n", text)
    urls = _twitter_text.extract_urls_with_indices(text)
    return len(text) + sum(_URL_WEIGHT - len(url["url"]) for url in urls)


def weighted_length(text: str) -> int:
    if text.isascii():
        return _ascii_length(text)
    return _twitter_text.parse_tweet(text).weightedLength


def fits(text: str) -> bool:
    """True when the text is within 280 weighted characters and has no invalid characters
    (an empty text fits: a post may carry media alone)."""
    if text.isascii():
        return _ascii_length(text) <= MAX_WEIGHTED_LENGTH
    result = _twitter_text.parse_tweet(text)
    return result.weightedLength <= MAX_WEIGHTED_LENGTH and result.valid
