"""src/rules.py: what each platform refuses, checked at every limit (pass at the limit,
fail one over) with messages that name the numbers. Pure functions: no server, no database."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from twitter_text import parse_tweet

from src import rules
from src.publishers.base import MediaItem
from src.tweet_length import invalid_characters, weighted_length

MIB = 1024 * 1024
GIB = 1024 * MIB


def item(content_type: str, size: int = 1000, **probe: int) -> MediaItem:
    return MediaItem(
        path="/media/x", url="https://okk.test/m/x", content_type=content_type,
        bytes=size, sha256="0" * 64, **probe,
    )  # fmt: skip


def jpeg(size: int = 1000, width: int = 1080, height: int = 1080) -> MediaItem:
    return item("image/jpeg", size, width=width, height=height)


def mp4(size: int = 1000, ms: int = 10_000, width: int = 720, height: int = 1280) -> MediaItem:
    return item("video/mp4", size, duration_ms=ms, width=width, height=height)


def outcome(problems: list[rules.Problem]) -> tuple[str, str, str] | None:
    """None when nothing is wrong, else the single problem as (field, severity, message):
    every case below is built so that at most one rule fires."""
    assert len(problems) <= 1, problems
    return (problems[0].field, problems[0].severity, problems[0].message) if problems else None


def assert_outcome(problems: list[rules.Problem], expected: tuple | None) -> None:
    got = outcome(problems)
    if expected is None:
        assert got is None, got
        return
    field, severity, *fragments = expected
    assert got is not None, f"expected a problem on {field}"
    assert got[:2] == (field, severity), got
    for fragment in fragments:
        assert fragment in got[2], got[2]


# -- X weighted length (twitter-text v3 conformance-style) ----------------------------------
URL = "https://okktopus.org/a/long/path/" + "p" * 80  # weighs 23 whatever its length
LENGTH_CASES = [
    ("ascii", "a" * 280),
    ("url", "a" * 256 + " " + URL),
    ("bare domain", "a" * 256 + " example.com"),
    ("two urls", "a" * 232 + " https://okktopus.org/ https://example.com/"),
    ("multi-part tld", "a" * 256 + " foo.co.uk"),
    ("cjk", "日" * 140),
    ("cjk and latin", "日本語" * 46 + "abcd"),
    ("hangul", "한" * 140),
    ("hangul jamo U+1100 weighs 2", "\u1100" * 140),
    ("U+10FF still weighs 1", "\u10ff" * 280),
    ("cyrillic", "д" * 280),
    ("devanagari", "क" * 280),
    ("right quote U+2019 weighs 1", "\u2019" * 280),
    ("ellipsis U+2026 weighs 2", "\u2026" * 140),
    ("emoji zwj family", "👨‍👩‍👧‍👦" * 140),
    ("emoji skin tone", "👍🏽" * 140),
    ("emoji flag", "🇯🇵" * 140),
    ("emoji keycap", "1\ufe0f\u20e3" * 140),
    ("emoji with variation selector", "\u2764\ufe0f" * 140),
    ("nfc: e + combining acute is one é", "e\u0301" * 280),
    ("crlf counts 1", "a\r\n" * 140),
    ("mixed", "Café 日本 👋🏾 https://example.com/x?y=1 " + "a" * 243),
]


@pytest.mark.parametrize(
    ("text",), [(text,) for _, text in LENGTH_CASES], ids=[c[0] for c in LENGTH_CASES]
)
def test_x_exactly_280_passes_and_281_fails(text: str) -> None:
    assert weighted_length(text) == 280
    assert rules.check("x", text, []) == []
    longer = "a" + text  # in front: after a URL the "a" would join the URL
    assert weighted_length(longer) == 281
    assert_outcome(rules.check("x", longer, []), ("text", "error", "280", "23", "is 281"))


def test_x_length_message_reads_as_specified() -> None:
    [problem] = rules.check("x", "a" * 297, [])
    assert problem.message == (
        "X allows 280 characters (URLs count 23, emoji and CJK count 2): this text is 297."
    )


ASCII_SAMPLES = [
    "plain words",
    "two\r\nlines\rand\nmore",
    "see https://example.com and http://okktopus.org/x?y=1#z, then example.co.uk.",
    "ftp://not.a.url www.example.com @someone #tag $CASH",
    "https://a.example/ is not a known TLD",
    "",
]


@pytest.mark.parametrize("text", ASCII_SAMPLES)
def test_ascii_shortcut_matches_the_library(text: str) -> None:
    assert weighted_length(text) == parse_tweet(text).weightedLength


def test_x_invalid_characters() -> None:
    assert invalid_characters("a\ufeffb\ufeff\uffff") == ["\ufeff", "\uffff"]
    assert_outcome(rules.check("x", "hi\ufeff", []), ("text", "error", "U+FEFF"))


def test_twitter_text_imports_without_pkg_resources() -> None:
    """Newer setuptools (or none at all) has no pkg_resources; the product must still
    count, and must not leave a fake pkg_resources behind for others."""
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'pkg_resources': raise ImportError('blocked')\n"
        "sys.meta_path.insert(0, Block())\n"
        "from src.tweet_length import weighted_length\n"
        "assert weighted_length('日本 👨‍👩‍👧 x') == 9, weighted_length('日本 👨‍👩‍👧 x')\n"
        "assert 'pkg_resources' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# -- X -------------------------------------------------------------------------------------
def gif(size: int = 1000) -> MediaItem:
    return item("image/gif", size, width=480, height=270)


def png(size: int = 1000) -> MediaItem:
    return item("image/png", size, width=1080, height=1080)


X_CASES = [
    ("text only", "hello", [], None),
    ("media only", "", [jpeg()], None),
    ("empty", "", [], ("text", "error", "empty", "text or media")),
    ("whitespace only", " \n ", [], ("text", "error", "empty")),
    ("4 images", "", [jpeg(), png(), item("image/webp"), jpeg()], None),
    ("5 images", "", [jpeg()] * 5, ("media", "error", "at most 4 images", "has 5")),
    ("1 video", "", [mp4()], None),
    ("2 videos", "", [mp4(), mp4()], ("media", "error", "1 video", "has 2")),
    ("1 gif", "", [gif()], None),
    ("2 gifs", "", [gif(), gif()], ("media", "error", "1 GIF", "has 2")),
    ("image and video", "", [jpeg(), mp4()], ("media", "error", "not a mix", "1 image, 1 video")),
    ("image and gif", "", [jpeg(), jpeg(), gif()], ("media", "error", "2 images, 1 gif")),
    ("pdf", "", [item("application/pdf")], ("media.0", "error", "file 1 is PDF")),
    ("heic", "", [item("image/heic")], ("media.0", "error", "image 1 is HEIC")),
    ("image 5 MB", "", [jpeg(5 * MIB)], None),
    (
        "image 5 MB + 1",
        "",
        [jpeg(), jpeg(5 * MIB + 1)],
        ("media.1", "error", "5 MB", "image 2 is 5,242,881 bytes"),
    ),
    ("image 6.2 MB", "", [jpeg(int(6.2 * MIB))], ("media.0", "error", "up to 5 MB", "6.2 MB")),
    ("gif 15 MB", "", [gif(15 * MIB)], None),
    ("gif 15 MB + 1", "", [gif(15 * MIB + 1)], ("media.0", "error", "GIFs up to 15 MB")),
    ("video 512 MB", "", [mp4(512 * MIB)], None),
    ("video 512 MB + 1", "", [mp4(512 * MIB + 1)], ("media.0", "error", "videos up to 512 MB")),
    ("video 0.5 s", "", [mp4(ms=500)], None),
    ("video 0.499 s", "", [mp4(ms=499)], ("media.0", "error", "0.5 to 140", "0.499 seconds")),
    ("video 140 s", "", [mp4(ms=140_000)], None),
    ("video 140.001 s", "", [mp4(ms=140_001)], ("media.0", "error", "140.001 seconds")),
    ("mov video", "", [item("video/quicktime", duration_ms=5000)], None),
    (
        "webm video",
        "",
        [item("video/webm", duration_ms=5000)],
        ("media.0", "error", "MP4 or MOV", "WEBM"),
    ),
    ("video 32x32", "", [mp4(width=32, height=32)], None),
    ("video 31x32", "", [mp4(width=31, height=32)], ("media.0", "error", "32x32", "31x32")),
    ("video 3:1", "", [mp4(width=960, height=320)], None),
    (
        "video wider than 3:1",
        "",
        [mp4(width=961, height=320)],
        ("media.0", "error", "1:3 to 3:1", "961x320"),
    ),
    ("video taller than 1:3", "", [mp4(width=320, height=961)], ("media.0", "error", "320x961")),
    ("video 1280x1024", "", [mp4(width=1280, height=1024)], None),
    ("video 1024x1280", "", [mp4(width=1024, height=1280)], None),
    (
        "video 1281x720 warns",
        "",
        [mp4(width=1281, height=720)],
        ("media.0", "warning", "1280x1024", "1281x720"),
    ),
    (
        "video 1080x1920 warns",
        "",
        [mp4(width=1080, height=1920)],
        ("media.0", "warning", "1080x1920"),
    ),
]


@pytest.mark.parametrize(
    ("text", "media", "expected"), [c[1:] for c in X_CASES], ids=[c[0] for c in X_CASES]
)
def test_x(text: str, media: list[MediaItem], expected: tuple | None) -> None:
    assert_outcome(rules.check("x", text, media, {}, {}), expected)


THREAD_CASES = [
    ("parts at 280", ["b" * 280, "日" * 140], None),
    ("third part 281", ["ok", "b" * 281], ("thread.1", "error", "thread part 3 is 281")),
    ("empty part", ["ok", " "], ("thread.1", "error", "Thread part 3 is empty")),
    ("not a list", "just text", ("thread", "error", "list of texts")),
    ("not texts", ["ok", 3], ("thread", "error", "list of texts")),
]


@pytest.mark.parametrize(
    ("thread", "expected"), [c[1:] for c in THREAD_CASES], ids=[c[0] for c in THREAD_CASES]
)
def test_x_thread(thread: object, expected: tuple | None) -> None:
    assert_outcome(rules.check("x", "first", [], {"thread": thread}, {}), expected)


# -- Instagram -----------------------------------------------------------------------------
def reel(ms: int = 10_000, size: int = 1000, width: int = 1080) -> MediaItem:
    return mp4(size, ms, width=width, height=1920)


INSTAGRAM_CASES = [
    ("1 image", "hi", [jpeg()], None),
    ("no media", "hi", [], ("media", "error", "needs media", "2 to 10")),
    ("carousel of 10", "", [jpeg()] * 9 + [reel()], None),
    ("carousel of 11", "", [jpeg()] * 11, ("media", "error", "2 to 10", "has 11")),
    ("png", "", [png()], ("media.0", "error", "JPEG", "convert to JPEG", "image 1 is PNG")),
    ("gif", "", [gif()], ("media.0", "error", "convert to JPEG", "GIF")),
    ("pdf", "", [item("application/pdf")], ("media.0", "error", "file 1 is PDF")),
    ("image 8 MiB", "", [jpeg(8 * MIB)], None),
    ("image 8 MiB + 1", "", [jpeg(8 * MIB + 1)], ("media.0", "error", "8 MB", "8,388,609 bytes")),
    ("4:5 exactly", "", [jpeg(width=1080, height=1350)], None),
    (
        "taller than 4:5",
        "",
        [jpeg(width=799, height=1000)],
        ("media.0", "error", "4:5", "799x1000", "0.799"),
    ),
    ("1.91:1 exactly", "", [jpeg(width=1910, height=1000)], None),
    (
        "wider than 1.91:1",
        "",
        [jpeg(width=1911, height=1000)],
        ("media.0", "error", "1.91:1", "1911x1000"),
    ),
    ("reel 3 s", "", [reel(3000)], None),
    (
        "reel 2.999 s",
        "",
        [reel(2999)],
        ("media.0", "error", "3 seconds to 15 minutes", "2.999 seconds"),
    ),
    ("reel 15 min", "", [reel(15 * 60_000)], None),
    ("reel 15 min + 1 ms", "", [reel(15 * 60_000 + 1)], ("media.0", "error", "900.001 seconds")),
    ("reel mov", "", [item("video/quicktime", duration_ms=5000)], None),
    (
        "reel webm",
        "",
        [item("video/webm", duration_ms=5000)],
        ("media.0", "error", "MP4 or MOV", "WEBM"),
    ),
    ("reel 300 MB", "", [reel(size=300 * MIB)], None),
    ("reel 300 MB + 1 warns", "", [reel(size=300 * MIB + 1)], ("media.0", "warning", "300 MB")),
    ("reel 1 GB warns", "", [reel(size=GIB)], ("media.0", "warning", "300 MB", "1024.0 MB")),
    (
        "reel 1 GB + 1",
        "",
        [reel(size=GIB + 1)],
        ("media.0", "error", "up to 1 GB", "1,073,741,825 bytes"),
    ),
    ("reel 1920 wide", "", [reel(width=1920)], None),
    ("reel 1921 wide warns", "", [reel(width=1921)], ("media.0", "warning", "1920", "1921")),
    ("caption 2,200", "é" * 2200, [jpeg()], None),
    ("caption 2,201", "é" * 2201, [jpeg()], ("text", "error", "2,200", "2,201")),
    ("30 hashtags", " ".join(f"#t{i}" for i in range(30)), [jpeg()], None),
    (
        "31 hashtags",
        " ".join(f"#t{i}" for i in range(31)),
        [jpeg()],
        ("text", "error", "30 hashtags", "has 31"),
    ),
    ("20 mentions", " ".join(f"@u{i}" for i in range(20)), [jpeg()], None),
    (
        "21 mentions",
        " ".join(f"@u{i}" for i in range(21)),
        [jpeg()],
        ("text", "error", "20 @mentions", "has 21"),
    ),
    ("e-mails are not mentions", " ".join(f"a{i}@b.com" for i in range(25)), [jpeg()], None),
]


@pytest.mark.parametrize(
    ("text", "media", "expected"),
    [c[1:] for c in INSTAGRAM_CASES],
    ids=[c[0] for c in INSTAGRAM_CASES],
)
def test_instagram(text: str, media: list[MediaItem], expected: tuple | None) -> None:
    assert_outcome(rules.check("instagram", text, media, {}, {}), expected)


# -- TikTok --------------------------------------------------------------------------------
CREATOR = {
    "privacy_level_options": ["PUBLIC_TO_EVERYONE", "MUTUAL_FOLLOW_FRIENDS", "SELF_ONLY"],
    "max_video_post_duration_sec": 300,
    "comment_disabled": False,
    "duet_disabled": False,
    "stitch_disabled": True,
}
PUBLIC = {"privacy_level": "PUBLIC_TO_EVERYONE"}


def webp() -> MediaItem:
    return item("image/webp", 1000, width=1080, height=1920)


TIKTOK_MEDIA_CASES = [
    ("1 video", [mp4()], None),
    ("no media", [], ("media", "error", "one video or 1 to 35 photos")),
    ("2 videos", [mp4(), mp4()], ("media", "error", "exactly one video", "has 2")),
    ("video and photo", [mp4(), jpeg()], ("media", "error", "not both", "1 video and 1 image")),
    ("35 photos", [jpeg()] * 34 + [webp()], None),
    ("36 photos", [jpeg()] * 36, ("media", "error", "1 to 35 photos", "has 36")),
    ("png photo", [jpeg(), png()], ("media.1", "error", "convert to JPEG", "image 2 is PNG")),
    ("photo 20 MB", [jpeg(20 * MIB)], None),
    ("photo 20 MB + 1", [jpeg(20 * MIB + 1)], ("media.0", "error", "20 MB", "20,971,521 bytes")),
    ("photo 1080p", [jpeg(width=1920, height=1080)], None),
    (
        "photo over 1080p warns",
        [jpeg(width=1921, height=1080)],
        ("media.0", "warning", "1080p", "1921x1080"),
    ),
    ("video at the creator's 300 s", [mp4(ms=300_000)], None),
    (
        "video over the creator's 300 s",
        [mp4(ms=300_001)],
        ("media.0", "error", "5 minutes", "300.001 seconds"),
    ),
    ("video 360 px", [mp4(width=360, height=640)], None),
    ("video 359 px", [mp4(width=359, height=640)], ("media.0", "error", "360 to 4096", "359x640")),
    ("video 4096 px", [mp4(width=4096, height=2160)], None),
    (
        "video 4097 px",
        [mp4(width=4097, height=2160)],
        ("media.0", "error", "360 to 4096", "4097x2160"),
    ),
    ("video 4 GB", [mp4(4 * GIB)], None),
    ("video 4 GB + 1", [mp4(4 * GIB + 1)], ("media.0", "error", "up to 4 GB")),
    ("webm video", [item("video/webm", duration_ms=5000)], None),
    (
        "avi video",
        [item("video/x-msvideo", duration_ms=5000)],
        ("media.0", "error", "MP4, WebM or MOV", "X-MSVIDEO"),
    ),
]


@pytest.mark.parametrize(
    ("media", "expected"),
    [c[1:] for c in TIKTOK_MEDIA_CASES],
    ids=[c[0] for c in TIKTOK_MEDIA_CASES],
)
def test_tiktok_media(media: list[MediaItem], expected: tuple | None) -> None:
    assert_outcome(rules.check("tiktok", "", media, PUBLIC, CREATOR), expected)


def test_tiktok_duration_without_creator_info_is_a_warning() -> None:
    assert rules.check("tiktok", "", [mp4(ms=600_000)], PUBLIC, {}) == []
    assert_outcome(
        rules.check("tiktok", "", [mp4(ms=600_001)], PUBLIC, {}),
        ("media.0", "warning", "10 minutes", "600.001 seconds"),
    )


TIKTOK_OPTION_CASES = [
    ("privacy chosen", {"privacy_level": "SELF_ONLY"}, CREATOR, None),
    (
        "privacy missing",
        {},
        CREATOR,
        ("privacy_level", "error", "Choose", "Everyone, Friends or Only you"),
    ),
    ("privacy empty", {"privacy_level": ""}, CREATOR, ("privacy_level", "error", "Choose")),
    (
        "privacy not offered",
        {"privacy_level": "FOLLOWER_OF_CREATOR"},
        CREATOR,
        ("privacy_level", "error", "does not offer 'Followers'", "Everyone, Friends or Only you"),
    ),
    (
        "unaudited: only SELF_ONLY",
        PUBLIC,
        {"privacy_level_options": ["SELF_ONLY"]},
        ("privacy_level", "error", "'Everyone'", "choose Only you"),
    ),
    ("no stored options: any level", {"privacy_level": "FOLLOWER_OF_CREATOR"}, {}, None),
    (
        "unknown level",
        {"privacy_level": "EVERYBODY"},
        {},
        ("privacy_level", "error", "'EVERYBODY'"),
    ),
    ("branded public", {**PUBLIC, "brand_content_toggle": True}, CREATOR, None),
    (
        "branded private",
        {"privacy_level": "SELF_ONLY", "brand_content_toggle": True},
        CREATOR,
        ("brand_content_toggle", "error", "Branded content", "Only you"),
    ),
    ("comments allowed", {**PUBLIC, "allow_comment": True, "allow_duet": True}, CREATOR, None),
    (
        "stitch turned off by the creator",
        {**PUBLIC, "allow_stitch": True},
        CREATOR,
        ("allow_stitch", "error", "turned off stitches"),
    ),
    (
        "comments turned off by the creator",
        {**PUBLIC, "allow_comment": True},
        {**CREATOR, "comment_disabled": True},
        ("allow_comment", "error", "turned off comments"),
    ),
    ("toggles off are always fine", {**PUBLIC, "allow_stitch": False}, CREATOR, None),
    (
        "stored form: disable_stitch False turns stitch on",
        {**PUBLIC, "disable_stitch": False, "disable_comment": False},
        CREATOR,
        ("disable_stitch", "error", "turned off stitches"),
    ),
    ("stored form: disable_stitch True", {**PUBLIC, "disable_stitch": True}, CREATOR, None),
]


@pytest.mark.parametrize(
    ("options", "meta", "expected"),
    [c[1:] for c in TIKTOK_OPTION_CASES],
    ids=[c[0] for c in TIKTOK_OPTION_CASES],
)
def test_tiktok_options(options: dict, meta: dict, expected: tuple | None) -> None:
    assert_outcome(rules.check("tiktok", "a #cat video", [mp4()], options, meta), expected)


def test_tiktok_photo_posts_have_no_duet_or_stitch() -> None:
    options = {**PUBLIC, "allow_stitch": True}
    assert rules.check("tiktok", "", [jpeg()], options, CREATOR) == []


TIKTOK_TEXT_CASES = [
    ("video title 2,200", "a" * 2200, [mp4()], {}, None),
    (
        "video title 2,201",
        "a" * 2201,
        [mp4()],
        {},
        ("text", "error", "video titles", "2,200", "2,201"),
    ),
    ("emoji count 2", "😀" * 1100, [mp4()], {}, None),
    (
        "emoji count 2, one over",
        "😀" * 1100 + "a",
        [mp4()],
        {},
        ("text", "error", "emoji count 2", "2,201"),
    ),
    ("photo description 4,000", "a" * 4000, [jpeg()], {}, None),
    (
        "photo description 4,001",
        "a" * 4001,
        [jpeg()],
        {},
        ("text", "error", "descriptions", "4,001"),
    ),
    ("photo title 90", "", [jpeg()], {"title": "t" * 90}, None),
    ("photo title 91", "", [jpeg()], {"title": "t" * 91}, ("title", "error", "90", "is 91")),
]


@pytest.mark.parametrize(
    ("text", "media", "options", "expected"),
    [c[1:] for c in TIKTOK_TEXT_CASES],
    ids=[c[0] for c in TIKTOK_TEXT_CASES],
)
def test_tiktok_text(text: str, media: list, options: dict, expected: tuple | None) -> None:
    assert_outcome(rules.check("tiktok", text, media, {**PUBLIC, **options}, CREATOR), expected)


# -- Facebook ------------------------------------------------------------------------------
FACEBOOK_CASES = [
    ("text", "hello", [], None),
    ("media only", "", [jpeg()], None),
    ("empty", " ", [], ("text", "error", "text or media")),
    ("63,206 characters", "a" * 63_206, [], None),
    ("63,207 characters", "a" * 63_207, [], ("text", "error", "63,206", "63,207")),
    ("several photos", "", [jpeg(), png(), jpeg()], None),
    ("photo 4 MB", "", [jpeg(4 * MIB)], None),
    (
        "photo 4 MB + 1 warns",
        "",
        [jpeg(4 * MIB + 1)],
        ("media.0", "warning", "4 MB", "4,194,305 bytes"),
    ),
    ("photo and video", "", [jpeg(), mp4()], ("media", "error", "not both", "1 image and 1 video")),
    ("2 videos", "", [mp4(), mp4()], ("media", "error", "one video", "has 2")),
    ("pdf", "x", [item("application/pdf")], ("media.0", "error", "file 1 is PDF")),
]


@pytest.mark.parametrize(
    ("text", "media", "expected"),
    [c[1:] for c in FACEBOOK_CASES],
    ids=[c[0] for c in FACEBOOK_CASES],
)
def test_facebook(text: str, media: list[MediaItem], expected: tuple | None) -> None:
    assert_outcome(rules.check("facebook", text, media, {}, {}), expected)


def test_unknown_platform_is_a_problem_not_a_crash() -> None:
    assert_outcome(rules.check("myspace", "hi", []), ("platform", "error", "'myspace'", "x"))


def test_warnings_do_not_block() -> None:
    problems = rules.check("facebook", "", [jpeg(5 * MIB)], {}, {})
    assert problems and rules.blocking(problems) == []
    assert rules.blocking(rules.check("x", "", [])) != []


# -- counters ------------------------------------------------------------------------------
COUNTER_CASES = [
    ("x", "日本 https://example.com/long/path", [], 28, 280),
    ("instagram", "é" * 10, [], 10, 2200),
    ("tiktok", "😀a", [], 3, 2200),
    ("tiktok", "😀a", [mp4()], 3, 2200),
    ("tiktok", "😀a", [jpeg()], 3, 4000),
    ("facebook", "hello", [], 5, 63_206),
]


@pytest.mark.parametrize(("platform", "text", "media", "used", "limit"), COUNTER_CASES)
def test_counter(platform: str, text: str, media: list, used: int, limit: int) -> None:
    counted = rules.counter(platform, text, media)
    assert (counted.platform, counted.used, counted.limit) == (platform, used, limit)
    assert counted.label and not counted.over and counted.remaining == limit - used


def test_counter_over_the_limit_and_unknown_platform() -> None:
    counted = rules.counter("x", "日" * 141)
    assert counted.over and counted.remaining == -2
    with pytest.raises(ValueError, match="myspace"):
        rules.counter("myspace", "hi")


# -- hashtags and mentions -----------------------------------------------------------------
TAG_CASES = [
    ("#one #two", ["one", "two"], []),
    ("#one#two", ["one", "two"], []),
    ("#日本 #café #tag_1 #हिन्दी", ["日本", "café", "tag_1", "हिन्दी"], []),
    ("# alone, #, #!", [], []),
    ("end #tag! and #tag.", ["tag", "tag"], []),
    ("hi @jane.doe (@bob) @", [], ["jane", "bob"]),
    ("mail me@example.com", [], []),
    ("@a@b", [], ["a"]),
]


@pytest.mark.parametrize(("text", "tags", "names"), TAG_CASES)
def test_hashtags_and_mentions(text: str, tags: list[str], names: list[str]) -> None:
    assert rules.hashtags(text) == tags
    assert rules.mentions(text) == names


# -- schedule ------------------------------------------------------------------------------
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
SCHEDULE_CASES = [
    ("no time", None, None),
    ("future", NOW + timedelta(days=3), None),
    (
        "future in another zone",
        datetime(2026, 11, 20, 13, 30, tzinfo=ZoneInfo("Europe/Paris")),
        None,
    ),
    ("a minute ago", NOW - timedelta(seconds=60), None),
    (
        "61 seconds ago",
        NOW - timedelta(seconds=61),
        ("publish_at", "error", "1 minute in the past"),
    ),
    ("10 minutes ago", NOW - timedelta(minutes=10), ("publish_at", "error", "10 minutes")),
    ("3 hours ago", NOW - timedelta(hours=3), ("publish_at", "error", "3 hours")),
    ("3 days ago", NOW - timedelta(days=3), ("publish_at", "error", "3 days")),
    (
        "naive",
        datetime(2026, 11, 21, 9, 0),
        ("publish_at", "error", "2026-11-21 09:00", "time zone"),
    ),
]


@pytest.mark.parametrize(
    ("publish_at", "expected"), [c[1:] for c in SCHEDULE_CASES], ids=[c[0] for c in SCHEDULE_CASES]
)
def test_check_schedule(publish_at: datetime | None, expected: tuple | None) -> None:
    assert_outcome(rules.check_schedule(publish_at, NOW), expected)


def test_check_schedule_needs_an_aware_now() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        rules.check_schedule(NOW, datetime(2026, 11, 20, 12, 0))
