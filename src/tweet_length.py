"""X's weighted post length (twitter-text v3), for the product.

The counting itself is the `twitter-text-parser` package, whose default configuration is
twitter-text's config/v3.json: URLs weigh 23, every emoji sequence 2, code points outside
the light ranges (CJK, most non-Latin scripts beyond U+10FF) 2, everything after NFC.

The sandbox has its own copy (src/sandbox/tweet_length.py); the product must not import
the sandbox, so this is the product's small one."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

MAX_WEIGHTED_LENGTH = 280
URL_WEIGHT = 23
_LINE_ENDINGS = re.compile(r"\r\n|\r|\n")


def _resource_string(module_name: str, resource: str) -> bytes:
    """pkg_resources.resource_string for a module of a regular (unzipped) install: the
    resource sits next to the module's file."""
    module_file = sys.modules[module_name].__file__
    return (Path(str(module_file)).parent / resource).read_bytes()


def _import_twitter_text() -> types.ModuleType:
    """twitter-text-parser reads its emoji list with `pkg_resources.resource_string`, an
    API newer setuptools no longer ships (and a venv need not have setuptools at all).
    Lend it a one-function stand-in for the duration of the import only, so nobody else
    sees a fake pkg_resources (and we skip the real one's slow, deprecated import)."""
    lent = None
    if "pkg_resources" not in sys.modules:
        lent = types.ModuleType("pkg_resources")
        lent.resource_string = _resource_string  # type: ignore[attr-defined]
        sys.modules["pkg_resources"] = lent
    try:
        import twitter_text
    finally:
        if lent is not None and sys.modules.get("pkg_resources") is lent:
            del sys.modules["pkg_resources"]
    return twitter_text


_twitter_text = _import_twitter_text()
_INVALID = re.compile("[\ufffe\ufeff\uffff]")  # twitter-text's invalid_chars group


def weighted_length(text: str) -> int:
    """The length X counts against 280. The library walks the text in Python (~2 ms a
    post); for ASCII text every character weighs 1, none is invalid and none starts an
    emoji, so only line endings (CRLF counts 1) and URLs (23 each) change the sum."""
    if not text.isascii():
        return _twitter_text.parse_tweet(text).weightedLength
    text = _LINE_ENDINGS.sub("\n", text)
    urls = _twitter_text.extract_urls_with_indices(text)
    return len(text) + sum(URL_WEIGHT - len(url["url"]) for url in urls)


def invalid_characters(text: str) -> list[str]:
    """The characters X refuses in a post (U+FFFE, U+FEFF, U+FFFF), in order, once each."""
    return list(dict.fromkeys(_INVALID.findall(text)))
