"""Media over real HTTP against the running app: uploads streamed and probed by content,
refusals with clear messages, per-user dedup, owner-only and signed serving with ranges,
removal, purging of orphans, and memory that stays flat while a large upload streams."""

from __future__ import annotations

import io
import json
import os
import re
import struct
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import av
import httpx
import psutil
import pytest
from PIL import Image

from src import media
from src.config import Settings, load_settings
from src.db.tables import Media, Post, PostMedia, User
from tests.appserver import AppServer
from tests.browser import Browser
from tests.s3 import S3Server, app_on_s3

pytestmark = pytest.mark.usefixtures("db")


# -- samples, made for real -----------------------------------------------------------------
def jpeg(width: int = 640, height: int = 480, noise: bool = False) -> bytes:
    if noise:  # incompressible: a JPEG of a predictable, large size
        image = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))
    else:
        image = Image.new("RGB", (width, height), (200, 80, 40))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA", (300, 200), (10, 120, 200, 128)).save(buffer, "PNG")
    return buffer.getvalue()


def mp4(frames: int = 10, fps: int = 10, faststart: bool = False) -> bytes:
    """A real H.264 + AAC MP4 of frames/fps seconds, 320x240."""
    options = {"movflags": "faststart"} if faststart else {}
    # A real file: faststart rewrites it in a second pass, which a BytesIO cannot take.
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "sample.mp4"
        _encode(path, frames, fps, options)
        return path.read_bytes()


def _encode(path: Path, frames: int, fps: int, options: dict[str, str]) -> None:
    with av.open(str(path), "w", format="mp4", options=options) as container:
        video = container.add_stream("h264", rate=fps)
        video.width, video.height, video.pix_fmt = 320, 240, "yuv420p"
        audio = container.add_stream("aac", rate=44100)
        audio.layout = "mono"
        for index in range(frames):
            picture = Image.new("RGB", (320, 240), (index * 20 % 256, 100, 50))
            container.mux(video.encode(av.VideoFrame.from_image(picture)))
        container.mux(video.encode())
        sound = av.AudioFrame(format="fltp", layout="mono", samples=1024)
        sound.planes[0].update(bytes(4 * 1024))
        sound.sample_rate, sound.pts = 44100, 0
        container.mux(audio.encode(sound))
        container.mux(audio.encode())


def padded_mp4(path: Path, size: int) -> None:
    """A valid MP4 of `size` bytes without encoding that much video: a real short clip
    with a `free` box of zeros between its mdat and its moov. The moov's chunk offsets
    point into the mdat before the padding, so they stay right. Written sparse: instant."""
    clip = mp4()  # ftyp, free, mdat, moov: PyAV writes the moov last
    moov = _box_offset(clip, b"moov")
    padding = size - len(clip)
    assert 8 <= padding < 2**32, "a 32-bit box size"
    with path.open("wb") as handle:
        handle.write(clip[:moov])
        handle.write(struct.pack(">I4s", padding, b"free"))
        handle.seek(padding - 8, os.SEEK_CUR)
        handle.write(clip[moov:])


def _box_offset(data: bytes, kind: bytes) -> int:
    offset = 0
    while offset < len(data):
        size, found = struct.unpack(">I4s", data[offset : offset + 8])
        if found == kind:
            return offset
        offset += size
    raise ValueError(f"no {kind!r} box")


# -- helpers --------------------------------------------------------------------------------
def signed_in(url: str) -> Browser:
    browser = Browser(url)
    browser.signed_in_user()
    browser.token = browser.csrf_token()  # type: ignore[attr-defined]
    return browser


def upload(browser: Browser, name: str, data, *, htmx: bool = False, csrf: bool = True):
    headers = {"accept": "application/json"}
    if csrf:
        headers["x-csrftoken"] = browser.token  # type: ignore[attr-defined]
    if htmx:
        headers["hx-request"] = "true"
    return browser.http.post("/media", files={"file": (name, data)}, headers=headers, timeout=60)


def server_settings(app: AppServer) -> Settings:
    """The settings the app process runs with (secret, data folder, public URL, store)."""
    return load_settings(env=app.env)


@pytest.fixture(scope="module", params=["local", "s3"])
def app(request: pytest.FixtureRequest, server: AppServer, tmp_path_factory):
    """The app on each media store: the session's app (a local folder) and one storing
    media in an S3 bucket, on the same database (without a worker: the session's runs
    the jobs, so what the tests read through the database is the same either way)."""
    if request.param == "local":
        yield server
        return
    on_s3 = app_on_s3(request.getfixturevalue("s3"), tmp_path_factory.mktemp("s3"), "media-tests")
    yield on_s3
    on_s3.stop()


def stored(app: AppServer, key: str) -> bytes | None:
    """What the app's store holds under `key` (None: nothing), read directly: the file
    in its data folder, or the object in its bucket."""
    s3: S3Server | None = getattr(app, "s3", None)
    if s3 is not None:
        return s3.read(f"{app.env['OKK_S3_PREFIX']}/{key}")
    path = Path(app.env["OKK_DATA_DIR"]) / "media" / key
    return path.read_bytes() if path.is_file() else None


@pytest.fixture(scope="module")
def owner(app) -> Browser:
    return signed_in(app.url)


@pytest.fixture(scope="module")
def video(owner) -> dict:
    response = upload(owner, "clip.mp4", mp4())
    assert response.status_code == 201, response.text
    return response.json()


# -- uploads ----------------------------------------------------------------------------------
def test_jpeg_is_probed_thumbnailed_and_deduplicated(owner):
    data = jpeg(640, 480)
    first = upload(owner, "holiday.jpg", data)
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["content_type"] == "image/jpeg"
    assert (body["width"], body["height"], body["bytes"]) == (640, 480, len(data))
    assert body["duration_ms"] is None and body["name"] == "holiday.jpg"

    thumb = owner.get(body["thumbnail_url"])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/webp"
    assert max(Image.open(io.BytesIO(thumb.content)).size) <= 320

    again = upload(owner, "same-bytes-other-name.jpg", data)
    assert again.status_code == 201 and again.json()["id"] == body["id"]


async def test_png_and_what_lands_in_the_store(app, owner):
    data = png()
    response = upload(owner, "diagram.png", data)
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["content_type"], body["width"], body["height"]) == ("image/png", 300, 200)
    row = await Media.objects().get(Media.id == body["id"])
    assert re.fullmatch(rf"u{row.user}/[0-9a-f]{{2}}/{row.sha256}\.png", row.storage_key)
    assert stored(app, row.storage_key) == data
    thumbnail = stored(app, row.thumbnail_key)
    assert thumbnail is not None and Image.open(io.BytesIO(thumbnail)).format == "WEBP"


async def test_mp4_is_probed(video):
    assert video["content_type"] == "video/mp4"
    assert (video["width"], video["height"], video["duration_ms"]) == (320, 240, 1000)
    row = await Media.objects().get(Media.id == video["id"])
    probe = row.probe if isinstance(row.probe, dict) else json.loads(row.probe)
    assert probe["video_codec"] == "h264" and probe["audio_codec"] == "aac"
    assert probe["fps"] == 10 and probe["frames"] == 10


def _cut(data: bytes, fraction: float) -> bytes:
    return data[: int(len(data) * fraction)]


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("setup.jpg", b"MZ\x90\x00" + os.urandom(2000), media.NOT_MEDIA),
        ("notes.mp4", b"just some text, not a video at all\n" * 20, media.NOT_MEDIA),
        ("tiny.jpg", b"MZ", media.NOT_MEDIA),
        ("empty.jpg", b"", media.EMPTY),
        ("cut.mp4", _cut(mp4(), 0.5), media.VIDEO_DAMAGED),
        ("cut-faststart.mp4", _cut(mp4(faststart=True), 0.8), media.VIDEO_DAMAGED),
        ("cut.jpg", _cut(jpeg(400, 300, noise=True), 0.7), media.IMAGE_DAMAGED),
        ("photo.heic", b"\0\0\0\x18ftypheic" + bytes(100), "HEIC and AVIF images"),
    ],
)
async def test_refusals_say_why_and_store_nothing(owner, name, data, message):
    before = await Media.count()
    response = upload(owner, name, data)
    assert response.status_code == 400, response.text
    assert message in response.json()["detail"]
    assert await Media.count() == before


def test_a_request_without_a_file_field(owner):
    response = owner.http.post(
        "/media",
        files={"picture": ("a.jpg", jpeg())},
        headers={"x-csrftoken": owner.token, "accept": "application/json"},
    )
    assert response.status_code == 400
    assert "“file”" in response.json()["detail"]


@pytest.mark.parametrize(
    ("sent", "shown"),
    [
        ("../../etc/passwd.jpg", "passwd.jpg"),
        ("C:\\Users\\me\\..\\secret.jpg", "secret.jpg"),
        ("  spaced   out .jpg", "spaced out .jpg"),
        ("." * 3 + "hidden.jpg", "hidden.jpg"),
        ("x" * 400 + ".jpg", None),
    ],
)
async def test_file_names_are_labels_only(owner, sent, shown):
    data = jpeg(32 + len(sent) % 50, 32)  # different bytes per case: no dedup
    response = upload(owner, sent, data)
    assert response.status_code == 201, response.text
    name = response.json()["name"]
    if shown:
        assert name == shown
    assert "/" not in name and "\\" not in name and len(name) <= media.NAME_MAX
    row = await Media.objects().get(Media.id == response.json()["id"])
    assert name not in row.storage_key


def test_control_characters_leave_the_name(owner):
    """Sent raw: clients percent-encode most of these, a hostile one need not."""
    boundary = "okkboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        'filename="bell\x07and\x1bescape\x7f\u202e.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    body = head + jpeg(77, 33) + f"\r\n--{boundary}--\r\n".encode()
    response = owner.http.post(
        "/media",
        content=body,
        headers={
            "content-type": f"multipart/form-data; boundary={boundary}",
            "x-csrftoken": owner.token,
            "accept": "application/json",
        },
    )
    assert response.status_code == 201, response.text
    assert response.json()["name"] == "bellandescape.jpg"


def test_htmx_upload_answers_with_the_partial(owner):
    ok = upload(owner, "card.jpg", jpeg(200, 100), htmx=True)
    assert ok.status_code == 201
    item_id = re.search(r'name="media" value="(\d+)"', ok.text).group(1)
    assert f'src="/media/{item_id}/thumbnail"' in ok.text and "card.jpg" in ok.text
    assert f'data-media-remove="/media/{item_id}"' in ok.text

    refused = upload(owner, "evil.jpg", b"MZ" + bytes(500), htmx=True)
    assert refused.status_code == 400
    assert "data-upload-error" in refused.text and "not an image or a video" in refused.text


async def test_upload_needs_the_csrf_header_and_a_session(owner, app):
    before = await Media.count()
    assert upload(owner, "a.jpg", jpeg(), csrf=False).status_code == 403
    anonymous = Browser(app.url)
    anonymous.token = anonymous.csrf_token()  # type: ignore[attr-defined]
    assert upload(anonymous, "a.jpg", jpeg()).status_code == 401
    assert await Media.count() == before


# -- serving ----------------------------------------------------------------------------------
def test_owner_gets_the_file_others_get_404(owner, app, video):
    mine = owner.get(f"/media/{video['id']}")
    assert mine.status_code == 200
    assert mine.headers["content-type"] == "video/mp4"
    assert int(mine.headers["content-length"]) == video["bytes"] == len(mine.content)

    stranger = signed_in(app.url)
    for path in (f"/media/{video['id']}", f"/media/{video['id']}/thumbnail"):
        assert stranger.get(path).status_code == 404
    response = stranger.http.delete(
        f"/media/{video['id']}", headers={"x-csrftoken": stranger.token}
    )
    assert response.status_code == 404
    assert owner.get(f"/media/{video['id']}").status_code == 200
    assert anonymous_get(app.url, f"/media/{video['id']}").status_code == 401


def anonymous_get(base: str, path: str, **kwargs) -> httpx.Response:
    with httpx.Client(base_url=base, timeout=20) as client:
        return client.get(path, **kwargs)


async def test_signed_urls_work_without_a_session_and_expire(app, video):
    settings = server_settings(app)
    row = await Media.objects().get(Media.id == video["id"])
    url = media.signed_url(row, settings)
    assert url.startswith(f"{app.url}/m/{row.id}?expires=")

    with httpx.Client(timeout=20) as platform:  # no cookies: a platform pulling the file
        whole = platform.get(url)
        assert whole.status_code == 200
        assert whole.headers["content-type"] == "video/mp4"
        assert int(whole.headers["content-length"]) == row.bytes == len(whole.content)
        assert whole.headers["accept-ranges"] == "bytes"

        part = platform.get(url, headers={"range": "bytes=100-199"})
        assert part.status_code == 206 and part.content == whole.content[100:200]
        assert part.headers["content-range"] == f"bytes 100-199/{row.bytes}"
        assert part.headers["content-length"] == "100"
        tail = platform.get(url, headers={"range": "bytes=-16"})
        assert tail.status_code == 206 and tail.content == whole.content[-16:]
        beyond = platform.get(url, headers={"range": f"bytes={row.bytes}-"})
        assert beyond.status_code == 416

        head = platform.head(url)
        assert head.status_code == 200 and head.content == b""
        assert int(head.headers["content-length"]) == row.bytes

        expired = media.signed_url(row, settings, now=time.time() - 2 * 3600)
        assert platform.get(expired).status_code == 403
        tampered = re.sub(r"signature=.", "signature=A", url)
        tampered = tampered if tampered != url else re.sub(r"signature=.", "signature=B", url)
        assert platform.get(tampered).status_code == 403
        other = url.replace(f"/m/{row.id}?", f"/m/{row.id + 1}?")
        assert platform.get(other).status_code == 403
        assert platform.get(f"{app.url}/m/{row.id}").status_code == 403


# -- removal and purging --------------------------------------------------------------------
async def _post_with(email: str, media_id: int, status: str) -> int:
    user = await User.objects().get(User.email == email)
    post = Post({Post.user: user.id, Post.text: "with media", Post.status: status})
    await post.save()
    await PostMedia({PostMedia.post: post.id, PostMedia.media: media_id}).save()
    return post.id


async def test_remove_deletes_unless_a_scheduled_post_uses_it(app):
    browser = Browser(app.url)
    email = browser.signed_in_user()
    browser.token = browser.csrf_token()  # type: ignore[attr-defined]
    headers = {"x-csrftoken": browser.token}

    loose = upload(browser, "loose.jpg", jpeg(120, 90)).json()
    row = await Media.objects().get(Media.id == loose["id"])
    assert browser.http.delete(f"/media/{loose['id']}", headers=headers).status_code == 200
    assert await Media.objects().get(Media.id == loose["id"]) is None
    assert stored(app, row.storage_key) is None and stored(app, row.thumbnail_key) is None

    used = upload(browser, "used.jpg", jpeg(121, 90)).json()
    await _post_with(email, used["id"], "scheduled")
    refused = browser.http.delete(
        f"/media/{used['id']}", headers={**headers, "accept": "application/json"}
    )
    assert refused.status_code == 409 and "scheduled or published" in refused.json()["detail"]
    assert await Media.objects().get(Media.id == used["id"]) is not None

    drafted = upload(browser, "drafted.jpg", jpeg(122, 90)).json()
    draft_id = await _post_with(email, drafted["id"], "draft")
    assert browser.http.delete(f"/media/{drafted['id']}", headers=headers).status_code == 200
    assert await PostMedia.count().where(PostMedia.post == draft_id) == 0


async def age(media_ids: list[int], moment: datetime) -> None:
    # Raw SQL: Piccolo's auto_update would overwrite updated_at with now().
    await Media.raw("UPDATE media SET updated_at = {} WHERE id = ANY({})", moment, media_ids)


async def test_purge_deletes_old_orphans_and_keeps_attached_and_recent(app):
    browser = Browser(app.url)
    email = browser.signed_in_user()
    browser.token = browser.csrf_token()  # type: ignore[attr-defined]
    settings = server_settings(app)
    ids = {
        label: upload(browser, f"{label}.jpg", jpeg(200 + n, 100)).json()["id"]
        for n, label in enumerate(("orphan", "attached", "recent"))
    }
    await _post_with(email, ids["attached"], "published")
    two_days_ago = datetime.now(UTC) - timedelta(days=2)
    await age([ids["orphan"], ids["attached"]], two_days_ago)
    orphan = await Media.objects().get(Media.id == ids["orphan"])

    assert await media.purge_orphans(settings, grace=timedelta(hours=24)) >= 1
    assert await Media.objects().get(Media.id == ids["orphan"]) is None
    assert stored(app, orphan.storage_key) is None
    assert stored(app, orphan.thumbnail_key) is None
    assert await Media.objects().get(Media.id == ids["attached"]) is not None
    assert await Media.objects().get(Media.id == ids["recent"]) is not None
    assert browser.get(f"/media/{ids['attached']}").status_code == 200


async def test_uploading_again_rescues_an_old_orphan_from_the_purge(app):
    """Dedup touches the row: the same file uploaded again is not purged under the user."""
    browser = signed_in(app.url)
    data = jpeg(333, 111)
    first = upload(browser, "again.jpg", data).json()["id"]
    old = datetime.now(UTC) - timedelta(days=2)
    await age([first], old)
    assert upload(browser, "again.jpg", data).json()["id"] == first
    await media.purge_orphans(server_settings(app), grace=timedelta(hours=24))
    assert browser.get(f"/media/{first}").status_code == 200


# -- limits and memory ---------------------------------------------------------------------
def test_oversize_uploads_get_413(fresh_server):
    app = fresh_server(
        OKK_MEDIA_MAX_IMAGE_BYTES=str(100 * 1024), OKK_MEDIA_MAX_VIDEO_BYTES=str(300 * 1024)
    )
    browser = signed_in(app.url)

    big_image = jpeg(600, 600, noise=True)
    assert len(big_image) > 100 * 1024
    refused = upload(browser, "big.jpg", big_image)
    assert (
        refused.status_code == 413 and refused.json()["detail"] == "Images can be at most 100 KB."
    )

    padded = mp4() + bytes(320 * 1024)  # within the request limit, over the video limit
    refused = upload(browser, "long.mp4", padded)
    assert (
        refused.status_code == 413 and refused.json()["detail"] == "Videos can be at most 300 KB."
    )

    huge = mp4() + bytes(2 * 1024 * 1024)  # refused on its Content-Length, unread
    refused = upload(browser, "huge.mp4", huge)
    assert refused.status_code == 413 and "too large" in refused.json()["detail"]

    assert upload(browser, "small.jpg", jpeg(64, 64)).status_code == 201


def test_a_100_mb_upload_streams_without_growing_the_server(app, owner, video, tmp_path):
    """A 100 MB video is received, hashed, written, probed and stored: the web process
    must not hold it in memory (bench/upload_memory.py does the same with 1 GB). `video`
    came first: the first probe of a process loads FFmpeg, a fixed cost measured apart."""
    path = tmp_path / "big.mp4"
    padded_mp4(path, 100 * 1024 * 1024)
    process = psutil.Process(app.process.pid)
    before = process.memory_info().rss
    started = time.monotonic()
    with path.open("rb") as handle:
        response = upload(owner, "big.mp4", handle)
    elapsed = time.monotonic() - started
    growth = process.memory_info().rss - before
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["bytes"], body["duration_ms"], body["width"]) == (100 * 1024 * 1024, 1000, 320)
    assert growth < 50 * 1024 * 1024, f"RSS grew by {growth / 1048576:.1f} MB"
    print(f"100 MB upload: {elapsed:.2f} s, server RSS +{growth / 1048576:.1f} MB")
    incoming = Path(app.env["OKK_DATA_DIR"]) / "media" / ".incoming"
    assert list(incoming.iterdir()) == []  # the temp file became the stored one
    owner.http.delete(f"/media/{body['id']}", headers={"x-csrftoken": owner.token})
