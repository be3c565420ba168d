"""What each platform will refuse, known before we try: the one place that knows it.

Pure functions (no I/O, no database, no web), used by the composer (live counters and
errors as the person types), the scheduling domain (nothing is scheduled with an error)
and the YAML content sync. Limits and their sources: /work/shared/platforms.md (X §4.3-4.5,
Instagram §2.3, TikTok §3.4-3.8, Facebook §1.3).

Severity: "error" is a refusal we are sure of (the post cannot be scheduled); "warning"
is a limit the platforms' documents disagree on or state loosely (shown, not blocking).

Problem.field names what to point at: "text", "title", "media" (the set), "media.<i>"
(one item, 0-based), "thread.<i>" (options["thread"][i]), "privacy_level",
"allow_comment" / "disable_comment" (and duet, stitch: whichever option turned it on),
"brand_content_toggle", "publish_at", "platform"."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from src.publishers.base import MediaItem
from src.tweet_length import MAX_WEIGHTED_LENGTH, URL_WEIGHT, invalid_characters, weighted_length

Severity = Literal["error", "warning"]
PLATFORMS = ("facebook", "instagram", "tiktok", "x")
MIB = 1024 * 1024
GIB = 1024 * MIB


@dataclass(frozen=True)
class Problem:
    platform: str
    field: str
    message: str
    severity: Severity = "error"


@dataclass(frozen=True)
class Counter:
    """A live counter: `used` of `limit`, in the unit `label` names."""

    platform: str
    used: int
    limit: int
    label: str

    @property
    def over(self) -> bool:
        return self.used > self.limit

    @property
    def remaining(self) -> int:
        return self.limit - self.used


def blocking(problems: Sequence[Problem]) -> list[Problem]:
    """The problems that stop a post from being scheduled."""
    return [problem for problem in problems if problem.severity == "error"]


# -- counting ------------------------------------------------------------------------------
def utf16_length(text: str) -> int:
    """TikTok counts UTF-16 code units: characters outside the BMP (most emoji) count 2."""
    return len(text.encode("utf-16-le")) // 2


def _tag_char(char: str) -> bool:
    # Letters and combining marks (Indic vowel signs belong inside a tag), digits, "_".
    category = unicodedata.category(char)
    return char == "_" or category[0] in "LM" or category == "Nd"


def _tags(text: str, sign: str, *, inside_words: bool) -> list[str]:
    found: list[str] = []
    start = text.find(sign)
    while start != -1:
        end = start + 1
        while end < len(text) and _tag_char(text[end]):
            end += 1
        attached = start > 0 and _tag_char(text[start - 1])
        if end > start + 1 and (inside_words or not attached):
            found.append(text[start + 1 : end])
        start = text.find(sign, max(end, start + 1))
    return found


def hashtags(text: str) -> list[str]:
    """Every #tag (letters, digits, underscore), in order, repeats included: what
    Instagram's 30-hashtag limit counts. "#one#two" is two tags there, so a tag may
    follow a word character."""
    return _tags(text, "#", inside_words=True)


def mentions(text: str) -> list[str]:
    """Every @name, in order, repeats included (Instagram allows 20). An "@" right after
    a letter or digit is an e-mail address, not a mention."""
    return _tags(text, "@", inside_words=False)


def _tiktok_photo_post(media: Sequence[MediaItem]) -> bool:
    return bool(media) and not any(item.is_video for item in media)


def counter(platform: str, text: str, media: Sequence[MediaItem] = ()) -> Counter:
    """The live counter for the main text. TikTok's text is a video's title (2,200) or, in
    a photo post, the description (4,000), so it depends on the media."""
    if platform == "x":
        return Counter(platform, weighted_length(text), MAX_WEIGHTED_LENGTH, "weighted characters")
    if platform == "instagram":
        return Counter(platform, len(text), INSTAGRAM_CAPTION, "characters")
    if platform == "tiktok":
        limit = TIKTOK_DESCRIPTION if _tiktok_photo_post(media) else TIKTOK_VIDEO_TITLE
        return Counter(platform, utf16_length(text), limit, "characters (emoji count 2)")
    if platform == "facebook":
        return Counter(platform, len(text), FACEBOOK_TEXT, "characters")
    raise ValueError(f"unknown platform {platform!r}")


# -- wording -------------------------------------------------------------------------------
def _size_limit(limit: int) -> str:
    return f"{limit // GIB} GB" if limit % GIB == 0 else f"{limit / MIB:g} MB"


def _size(size: int, limit: int) -> str:
    """The size in the limit's unit, with enough decimals to show it is over the limit."""
    unit, name = (GIB, "GB") if limit % GIB == 0 else (MIB, "MB")
    for digits in (1, 2, 3):
        shown = f"{size / unit:.{digits}f}"
        if float(shown) > limit / unit:
            return f"{shown} {name}"
    return f"{size:,} bytes"


def _seconds(ms: int) -> str:
    text = f"{ms / 1000:.3f}".rstrip("0").rstrip(".")
    return f"{text} seconds" if text != "1" else "1 second"


def _minutes(ms: int) -> str:
    return f"{ms // 60000} minutes" if ms % 60000 == 0 else _seconds(ms)


def _kind_name(item: MediaItem) -> str:
    subtype = item.content_type.partition("/")[2].upper() or item.content_type or "unknown"
    return "MOV" if subtype == "QUICKTIME" else subtype


def _item(media: Sequence[MediaItem], index: int) -> str:
    """The item as the person sees it in the composer: image 2, video 1, file 3."""
    item = media[index]
    noun = "video" if item.is_video else "image" if _is_image(item) else "file"
    return f"{noun} {index + 1}"


def _is_image(item: MediaItem) -> bool:
    return item.content_type.startswith("image/")


def _frame(item: MediaItem) -> tuple[int, int] | None:
    """(width, height) when the probe found them."""
    return (item.width, item.height) if item.width and item.height else None


def _one_of(names: Sequence[str]) -> str:
    names = list(names)
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


# -- X (§4.3-4.5) --------------------------------------------------------------------------
X_IMAGE_TYPES = {"image/jpeg", "image/png", "image/webp"}
X_VIDEO_TYPES = {"video/mp4", "video/quicktime"}
X_MAX_IMAGES = 4
X_IMAGE_BYTES = 5 * MIB  # X's own error names 5242880 bytes
X_GIF_BYTES = 15 * MIB
X_VIDEO_BYTES = 512 * MIB
X_VIDEO_MS = (500, 140_000)
X_VIDEO_MIN_SIDE = 32
X_VIDEO_MAX = (1280, 1024)
X_LENGTH_RULE = (
    f"X allows {MAX_WEIGHTED_LENGTH} characters (URLs count {URL_WEIGHT}, emoji and CJK count 2)"
)


def _x_kind(item: MediaItem) -> str:
    if item.content_type == "image/gif":
        return "gif"  # X posts a GIF alone, like a video (tweet_gif)
    if item.content_type in X_IMAGE_TYPES:
        return "image"
    return "video" if item.content_type in X_VIDEO_TYPES else "other"


def _x_text(text: str, field: str, name: str, has_media: bool) -> Iterator[Problem]:
    if not text.strip():
        if not has_media:
            yield Problem("x", field, f"{name} is empty: X needs text or media.")
        return
    if bad := invalid_characters(text):
        codes = _one_of([f"U+{ord(char):04X}" for char in bad])
        yield Problem("x", field, f"X refuses the invisible character {codes}: remove it.")
    if length_bound(text) <= MAX_WEIGHTED_LENGTH:
        return  # fits for sure: twitter-text's walk (~40 µs a post) is not needed
    length = weighted_length(text)
    if length > MAX_WEIGHTED_LENGTH:
        yield Problem("x", field, f"{X_LENGTH_RULE}: {name.lower()} is {length}.")


def length_bound(text: str) -> int:
    """An upper bound of weighted_length(text), in C-speed string calls. After NFC (as
    X counts) a character or emoji weighs at most 2, and 1 in ASCII; a URL weighs 23 in
    place of at least one character and always holds a '.' (twitter-text finds no URL
    in text without one), so there are no more URLs than dots.
    (tests/test_content_perf_equivalence.py checks the bound against twitter-text.)"""
    if text.isascii():
        return len(text) + URL_WEIGHT * text.count(".")
    text = unicodedata.normalize("NFC", text)
    return 2 * len(text) + URL_WEIGHT * text.count(".")


def _x_thread(thread: Any) -> Iterator[Problem]:
    if thread is None:
        return
    if not isinstance(thread, list) or not all(isinstance(part, str) for part in thread):
        yield Problem("x", "thread", "The X thread must be a list of texts.")
        return
    for index, part in enumerate(thread):
        # The main text is part 1 of the thread, so options["thread"][0] is part 2.
        yield from _x_text(part, f"thread.{index}", f"Thread part {index + 2}", False)


def _x_media_set(media: Sequence[MediaItem]) -> Iterator[Problem]:
    if not media:
        return  # (most posts: nothing to count)
    kinds = [_x_kind(item) for item in media]
    counts = {kind: kinds.count(kind) for kind in ("image", "gif", "video")}
    if sum(1 for count in counts.values() if count) > 1:
        found = ", ".join(
            f"{count} {kind}{'s' * (count > 1)}" for kind, count in counts.items() if count
        )
        yield Problem(
            "x",
            "media",
            f"X takes 4 images, or 1 video, or 1 GIF, not a mix: this post has {found}.",
        )
    elif counts["image"] > X_MAX_IMAGES:
        yield Problem(
            "x", "media", f"X takes at most {X_MAX_IMAGES} images: this post has {counts['image']}."
        )
    elif counts["video"] > 1 or counts["gif"] > 1:
        kind = "video" if counts["video"] > 1 else "GIF"
        count = max(counts["video"], counts["gif"])
        yield Problem("x", "media", f"X takes 1 {kind} per post: this post has {count}.")


def _x_video(item: MediaItem, field: str, name: str) -> Iterator[Problem]:
    low, high = X_VIDEO_MS
    if item.duration_ms is not None and not low <= item.duration_ms <= high:
        yield Problem(
            "x",
            field,
            f"X takes videos of 0.5 to 140 seconds: {name} is {_seconds(item.duration_ms)}.",
        )
    if frame := _frame(item):
        yield from _x_video_frame(*frame, field, name)


def _x_video_frame(width: int, height: int, field: str, name: str) -> Iterator[Problem]:
    if min(width, height) < X_VIDEO_MIN_SIDE:
        yield Problem(
            "x", field, f"X takes videos of at least 32x32 pixels: {name} is {width}x{height}."
        )
    if width > 3 * height or height > 3 * width:
        yield Problem("x", field, f"X takes videos from 1:3 to 3:1: {name} is {width}x{height}.")
    # Documented as 1280x1024, yet X transcodes common 1080p uploads: a warning only.
    if max(width, height) > X_VIDEO_MAX[0] or min(width, height) > X_VIDEO_MAX[1]:
        yield Problem(
            "x",
            field,
            f"X documents videos up to 1280x1024 and may refuse {name} at {width}x{height}.",
            "warning",
        )


def _x_item(media: Sequence[MediaItem], index: int) -> Iterator[Problem]:
    item, field, name = media[index], f"media.{index}", _item(media, index)
    kind = _x_kind(item)
    if kind == "other":
        yield Problem(
            "x",
            field,
            f"X takes JPEG, PNG, WebP or GIF images and MP4 or MOV videos: "
            f"{name} is {_kind_name(item)}.",
        )
        return
    limit = {"image": X_IMAGE_BYTES, "gif": X_GIF_BYTES, "video": X_VIDEO_BYTES}[kind]
    if item.bytes > limit:
        noun = {"image": "images", "gif": "GIFs", "video": "videos"}[kind]
        yield Problem(
            "x",
            field,
            f"X takes {noun} up to {_size_limit(limit)}: {name} is {_size(item.bytes, limit)}.",
        )
    if kind == "video":
        yield from _x_video(item, field, name)


def _check_x(text: str, media: Sequence[MediaItem], options: dict, meta: dict) -> Iterator[Problem]:
    yield from _x_text(text, "text", "This text", bool(media))
    yield from _x_media_set(media)
    for index in range(len(media)):
        yield from _x_item(media, index)
    yield from _x_thread(options.get("thread"))


# -- Instagram (§2.3) ----------------------------------------------------------------------
INSTAGRAM_CAPTION = 2200
INSTAGRAM_HASHTAGS = 30
INSTAGRAM_MENTIONS = 20
INSTAGRAM_CAROUSEL = 10
INSTAGRAM_IMAGE_BYTES = 8 * MIB  # Meta's error 2207004: "less than 8 MiB"
INSTAGRAM_VIDEO_TYPES = {"video/mp4", "video/quicktime"}
INSTAGRAM_REEL_MS = (3_000, 15 * 60_000)
INSTAGRAM_REEL_BYTES = (300 * MIB, 1 * GIB)  # sources disagree: warn over 300 MB, refuse over 1 GB
INSTAGRAM_REEL_WIDTH = 1920


def _instagram_media_set(media: Sequence[MediaItem]) -> Iterator[Problem]:
    if not media:
        yield Problem(
            "instagram",
            "media",
            "Instagram needs media: add 1 image or video, or 2 to 10 for a carousel.",
        )
    elif len(media) > INSTAGRAM_CAROUSEL:
        yield Problem(
            "instagram",
            "media",
            f"Instagram carousels take 2 to {INSTAGRAM_CAROUSEL} items: "
            f"this post has {len(media)}.",
        )


def _instagram_image(item: MediaItem, field: str, name: str) -> Iterator[Problem]:
    if item.content_type != "image/jpeg":
        yield Problem(
            "instagram",
            field,
            f"Instagram takes JPEG images only (convert to JPEG): {name} is {_kind_name(item)}.",
        )
    if item.bytes > INSTAGRAM_IMAGE_BYTES:
        yield Problem(
            "instagram",
            field,
            f"Instagram takes images up to 8 MB: "
            f"{name} is {_size(item.bytes, INSTAGRAM_IMAGE_BYTES)}.",
        )
    if frame := _frame(item):
        yield from _instagram_aspect(*frame, field, name)


def _instagram_aspect(width: int, height: int, field: str, name: str) -> Iterator[Problem]:
    # 4:5 ≤ width/height ≤ 1.91:1, compared in integers so 1080x1350 is exactly 4:5.
    if width * 5 < height * 4 or width * 100 > height * 191:
        yield Problem(
            "instagram",
            field,
            f"Instagram takes images from 4:5 (portrait) to 1.91:1 (landscape): {name} is "
            f"{width}x{height} ({width / height:.3f}:1); crop it.",
        )


def _instagram_video(item: MediaItem, field: str, name: str) -> Iterator[Problem]:
    if item.content_type not in INSTAGRAM_VIDEO_TYPES:
        yield Problem(
            "instagram", field, f"Instagram takes MP4 or MOV videos: {name} is {_kind_name(item)}."
        )
    low, high = INSTAGRAM_REEL_MS
    if item.duration_ms is not None and not low <= item.duration_ms <= high:
        yield Problem(
            "instagram",
            field,
            f"Instagram takes videos of 3 seconds to 15 minutes: "
            f"{name} is {_minutes(item.duration_ms)}.",
        )
    yield from _instagram_video_size(item, field, name)


def _instagram_video_size(item: MediaItem, field: str, name: str) -> Iterator[Problem]:
    soft, hard = INSTAGRAM_REEL_BYTES
    if item.bytes > hard:
        yield Problem(
            "instagram",
            field,
            f"Instagram takes videos up to 1 GB: {name} is {_size(item.bytes, hard)}.",
        )
    elif item.bytes > soft:
        yield Problem(
            "instagram",
            field,
            f"Instagram may refuse videos over 300 MB: {name} is {_size(item.bytes, soft)}.",
            "warning",
        )
    if item.width and item.width > INSTAGRAM_REEL_WIDTH:
        yield Problem(
            "instagram",
            field,
            f"Instagram documents videos up to 1920 pixels wide: {name} is {item.width}.",
            "warning",
        )


def _instagram_caption(text: str) -> Iterator[Problem]:
    if len(text) > INSTAGRAM_CAPTION:
        yield Problem(
            "instagram",
            "text",
            f"Instagram captions take {INSTAGRAM_CAPTION:,} characters: this one is {len(text):,}.",
        )
    if (tags := len(hashtags(text))) > INSTAGRAM_HASHTAGS:
        yield Problem(
            "instagram",
            "text",
            f"Instagram allows {INSTAGRAM_HASHTAGS} hashtags: this caption has {tags}.",
        )
    if (names := len(mentions(text))) > INSTAGRAM_MENTIONS:
        yield Problem(
            "instagram",
            "text",
            f"Instagram allows {INSTAGRAM_MENTIONS} @mentions: this caption has {names}.",
        )


def _check_instagram(
    text: str, media: Sequence[MediaItem], options: dict, meta: dict
) -> Iterator[Problem]:
    yield from _instagram_media_set(media)
    for index, item in enumerate(media):
        field, name = f"media.{index}", _item(media, index)
        if item.is_video:
            yield from _instagram_video(item, field, name)
        elif _is_image(item):
            yield from _instagram_image(item, field, name)
        else:
            yield Problem(
                "instagram",
                field,
                f"Instagram takes JPEG images and MP4 or MOV videos: {name} is {_kind_name(item)}.",
            )
    yield from _instagram_caption(text)


# -- TikTok (§3.4-3.8) ---------------------------------------------------------------------
TIKTOK_VIDEO_TITLE = 2200
TIKTOK_PHOTO_TITLE = 90
TIKTOK_DESCRIPTION = 4000
TIKTOK_PHOTOS = 35
TIKTOK_PHOTO_TYPES = {"image/jpeg", "image/webp"}
TIKTOK_PHOTO_BYTES = 20 * MIB
TIKTOK_VIDEO_TYPES = {"video/mp4", "video/quicktime", "video/webm"}
TIKTOK_VIDEO_BYTES = 4 * GIB
TIKTOK_VIDEO_SIDES = (360, 4096)
TIKTOK_DEFAULT_MAX_SEC = 600  # "platform max 10 min" when creator_info did not say
PRIVACY_LEVELS = {
    "PUBLIC_TO_EVERYONE": "Everyone",
    "MUTUAL_FOLLOW_FRIENDS": "Friends",
    "FOLLOWER_OF_CREATOR": "Followers",
    "SELF_ONLY": "Only you",
}
INTERACTIONS = {"comment": "comments", "duet": "duets", "stitch": "stitches"}


def _tiktok_media_set(media: Sequence[MediaItem]) -> Iterator[Problem]:
    videos = sum(1 for item in media if item.is_video)
    images = sum(1 for item in media if _is_image(item))
    if not media:
        yield Problem("tiktok", "media", "TikTok needs one video or 1 to 35 photos.")
    elif videos and images:
        yield Problem(
            "tiktok",
            "media",
            f"TikTok takes one video or photos, not both: this post has {videos} video"
            f"{'s' * (videos > 1)} and {images} image{'s' * (images > 1)}.",
        )
    elif videos > 1:
        yield Problem("tiktok", "media", f"TikTok takes exactly one video: this post has {videos}.")
    elif images > TIKTOK_PHOTOS:
        yield Problem(
            "tiktok", "media", f"TikTok takes 1 to {TIKTOK_PHOTOS} photos: this post has {images}."
        )


def _tiktok_photo(item: MediaItem, field: str, name: str) -> Iterator[Problem]:
    if item.content_type not in TIKTOK_PHOTO_TYPES:
        yield Problem(
            "tiktok",
            field,
            f"TikTok takes JPEG or WebP photos only (convert to JPEG): "
            f"{name} is {_kind_name(item)}.",
        )
    if item.bytes > TIKTOK_PHOTO_BYTES:
        yield Problem(
            "tiktok",
            field,
            f"TikTok takes photos up to 20 MB: {name} is {_size(item.bytes, TIKTOK_PHOTO_BYTES)}.",
        )
    if (frame := _frame(item)) and (max(frame) > 1920 or min(frame) > 1080):
        yield Problem(
            "tiktok",
            field,
            f"TikTok documents photos up to 1080p (1920x1080) and may refuse {name} at "
            f"{item.width}x{item.height}.",
            "warning",
        )


def _tiktok_video(item: MediaItem, field: str, name: str, meta: dict) -> Iterator[Problem]:
    if item.content_type not in TIKTOK_VIDEO_TYPES:
        yield Problem(
            "tiktok", field, f"TikTok takes MP4, WebM or MOV videos: {name} is {_kind_name(item)}."
        )
    if item.bytes > TIKTOK_VIDEO_BYTES:
        yield Problem(
            "tiktok",
            field,
            f"TikTok takes videos up to 4 GB: {name} is {_size(item.bytes, TIKTOK_VIDEO_BYTES)}.",
        )
    yield from _tiktok_duration(item, field, name, meta.get("max_video_post_duration_sec"))
    low, high = TIKTOK_VIDEO_SIDES
    if (frame := _frame(item)) and not (low <= min(frame) and max(frame) <= high):
        yield Problem(
            "tiktok",
            field,
            f"TikTok takes videos of 360 to 4096 pixels per side: "
            f"{name} is {item.width}x{item.height}.",
        )


def _tiktok_duration(item: MediaItem, field: str, name: str, max_sec: Any) -> Iterator[Problem]:
    if item.duration_ms is None:
        return
    if isinstance(max_sec, int | float) and max_sec > 0:
        if item.duration_ms > max_sec * 1000:
            yield Problem(
                "tiktok",
                field,
                f"This TikTok account can post videos up to {_minutes(max_sec * 1000)}: "
                f"{name} is {_minutes(item.duration_ms)}.",
            )
    elif item.duration_ms > TIKTOK_DEFAULT_MAX_SEC * 1000:
        # creator_info was not asked yet: the account's own limit may be longer or shorter.
        yield Problem(
            "tiktok",
            field,
            f"TikTok usually takes videos up to 10 minutes: "
            f"{name} is {_minutes(item.duration_ms)}.",
            "warning",
        )


def _tiktok_text(text: str, options: dict, photo: bool) -> Iterator[Problem]:
    # A video's text is its title; a photo post has a short title and the text as description.
    limit, what = (
        (TIKTOK_DESCRIPTION, "descriptions") if photo else (TIKTOK_VIDEO_TITLE, "video titles")
    )
    if (used := utf16_length(text)) > limit:
        yield Problem(
            "tiktok",
            "text",
            f"TikTok {what} take {limit:,} characters (emoji count 2): this text is {used:,}.",
        )
    title = options.get("title") or ""
    if photo and (used := utf16_length(title)) > TIKTOK_PHOTO_TITLE:
        yield Problem(
            "tiktok",
            "title",
            f"TikTok photo titles take {TIKTOK_PHOTO_TITLE} characters (emoji count 2): "
            f"this title is {used}.",
        )


def _privacy_choices(meta: dict) -> list[str]:
    # The account's stored creator_info options; [] when it named none (connect stores a
    # list either way), in which case any of TikTok's levels may be chosen here and the
    # fresh creator_info query before posting decides.
    offered = [
        level for level in meta.get("privacy_level_options") or [] if level in PRIVACY_LEVELS
    ]
    return offered or list(PRIVACY_LEVELS)


def _tiktok_privacy(options: dict, meta: dict) -> Iterator[Problem]:
    choices = _privacy_choices(meta)
    names = _one_of([PRIVACY_LEVELS[level] for level in choices])
    level = options.get("privacy_level")
    if not level:
        yield Problem("tiktok", "privacy_level", f"Choose who can see this TikTok post: {names}.")
    elif level not in choices:
        shown = PRIVACY_LEVELS.get(level, level) if isinstance(level, str) else str(level)
        yield Problem(
            "tiktok",
            "privacy_level",
            f"This TikTok account does not offer '{shown}': choose {names}.",
        )
    if options.get("brand_content_toggle") and level == "SELF_ONLY":
        yield Problem(
            "tiktok",
            "brand_content_toggle",
            "Branded content cannot be private on TikTok: "
            "choose who can see it other than Only you.",
        )


def _turned_on(options: dict, name: str) -> str | None:
    """The option that turns an interaction on, if any. Off unless chosen (TikTok's UX
    rule): the composer's form says allow_comment, a stored target carries TikTok's own
    disable_comment (False = allowed)."""
    if options.get(f"allow_{name}"):
        return f"allow_{name}"
    return f"disable_{name}" if options.get(f"disable_{name}") is False else None


def _tiktok_interactions(options: dict, meta: dict, photo: bool) -> Iterator[Problem]:
    for name, noun in INTERACTIONS.items():
        if photo and name != "comment":
            continue  # photo posts have no duet or stitch
        option = _turned_on(options, name)
        if option and meta.get(f"{name}_disabled"):  # creator_info's comment_disabled etc.
            yield Problem(
                "tiktok",
                option,
                f"This TikTok account has turned off {noun}: turn 'Allow {noun}' off.",
            )


def _check_tiktok(
    text: str, media: Sequence[MediaItem], options: dict, meta: dict
) -> Iterator[Problem]:
    photo = _tiktok_photo_post(media)
    yield from _tiktok_media_set(media)
    for index, item in enumerate(media):
        field, name = f"media.{index}", _item(media, index)
        if item.is_video:
            yield from _tiktok_video(item, field, name, meta)
        else:
            yield from _tiktok_photo(item, field, name)
    yield from _tiktok_text(text, options, photo)
    yield from _tiktok_privacy(options, meta)
    yield from _tiktok_interactions(options, meta, photo)


# -- Facebook (§1.3) -----------------------------------------------------------------------
FACEBOOK_TEXT = 63_206
FACEBOOK_PHOTO_BYTES = 4 * MIB  # Meta's advice, not a documented refusal: a warning


def _facebook_media(media: Sequence[MediaItem]) -> Iterator[Problem]:
    videos = sum(1 for item in media if item.is_video)
    images = sum(1 for item in media if _is_image(item))
    if videos and images:
        yield Problem(
            "facebook",
            "media",
            f"Facebook posts take photos or one video, not both: this post has {images} image"
            f"{'s' * (images > 1)} and {videos} video{'s' * (videos > 1)}.",
        )
    elif videos > 1:
        yield Problem(
            "facebook", "media", f"Facebook posts take one video: this post has {videos}."
        )
    for index, item in enumerate(media):
        field, name = f"media.{index}", _item(media, index)
        if not (item.is_video or _is_image(item)):
            yield Problem(
                "facebook",
                field,
                f"Facebook takes images and videos: {name} is {_kind_name(item)}.",
            )
        elif _is_image(item) and item.bytes > FACEBOOK_PHOTO_BYTES:
            yield Problem(
                "facebook",
                field,
                f"Facebook advises photos under 4 MB: "
                f"{name} is {_size(item.bytes, FACEBOOK_PHOTO_BYTES)}.",
                "warning",
            )


def _check_facebook(
    text: str, media: Sequence[MediaItem], options: dict, meta: dict
) -> Iterator[Problem]:
    if not text.strip() and not media:
        yield Problem("facebook", "text", "This post is empty: Facebook needs text or media.")
    if len(text) > FACEBOOK_TEXT:
        yield Problem(
            "facebook",
            "text",
            f"Facebook allows {FACEBOOK_TEXT:,} characters: this text is {len(text):,}.",
        )
    yield from _facebook_media(media)


# -- entry points --------------------------------------------------------------------------
_CHECKS = {
    "x": _check_x,
    "instagram": _check_instagram,
    "tiktok": _check_tiktok,
    "facebook": _check_facebook,
}


def check(
    platform: str,
    text: str,
    media: Sequence[MediaItem],
    options: dict[str, Any] | None = None,
    account_meta: dict[str, Any] | None = None,
) -> list[Problem]:
    """Everything `platform` would refuse in this post (errors) or may refuse (warnings).
    `text` is the text this target publishes (the override or the main text); `options`
    the target's per-platform options; `account_meta` the connected account's meta (for
    TikTok, the creator_info values stored at connect or queried just now)."""
    checker = _CHECKS.get(platform)
    if checker is None:
        return [
            Problem(
                platform, "platform", f"Unknown platform '{platform}': use {_one_of(PLATFORMS)}."
            )
        ]
    return list(checker(text, media, options or {}, account_meta or {}))


SCHEDULE_GRACE = timedelta(minutes=1)


def _ago(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes < 120:
        return f"{minutes} minute{'s' * (minutes != 1)}"
    hours = minutes // 60
    return f"{hours} hours" if hours < 48 else f"{hours // 24} days"


def check_schedule(publish_at: datetime | None, now: datetime) -> list[Problem]:
    """A publish time is a moment: it needs its zone. None (publish now, or a draft) is
    fine. Up to a minute in the past is allowed, for the time it took to press the button;
    later than that, the person meant another time."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    if publish_at is None:
        return []
    if publish_at.tzinfo is None or publish_at.utcoffset() is None:
        return [
            Problem(
                "",
                "publish_at",
                f"The publish time {publish_at:%Y-%m-%d %H:%M} has no time zone: give one.",
            )
        ]
    late = now - publish_at
    if late > SCHEDULE_GRACE:
        return [
            Problem(
                "",
                "publish_at",
                f"This publish time is {_ago(late)} in the past: choose a time from now on.",
            )
        ]
    return []
