"""What only the S3-compatible store does, against moto's server over HTTP: platforms pull
through presigned URLs served by the bucket, a person's deletion empties their prefix,
exports (streamed and built by the worker) carry the objects' bytes, content repositories'
media lands in the bucket, bad settings stop the app at startup, and the secret key never
reaches a log. The flows both stores share run on each in test_media.py and
test_publishing_everywhere.py; chunked uploads from the bucket in
publishers/test_uploads_from_s3.py."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from src import media
from src.config import load_settings
from src.content import service
from src.content.sync import sync_source
from src.db.tables import Media
from tests.appserver import ROOT, AppServer
from tests.browser import Browser
from tests.content_helpers import Repo, post_yaml, unique
from tests.media_samples import jpeg_bytes
from tests.s3 import SECRET_KEY, S3Server, app_on_s3
from tests.test_content_sync import make_user
from tests.test_privacy_export_job import person, wait_for_link

pytestmark = pytest.mark.usefixtures("db")


@pytest.fixture(scope="module")
def app(s3: S3Server, tmp_path_factory: pytest.TempPathFactory):
    started = app_on_s3(s3, tmp_path_factory.mktemp("s3-only"), "s3-tests")
    yield started
    started.stop()


def upload(browser: Browser, name: str, data: bytes) -> dict:
    response = browser.http.post(
        "/media",
        files={"file": (name, data)},
        headers={"accept": "application/json", "x-csrftoken": browser.csrf_token()},
        timeout=60,
    )
    assert response.status_code == 201, response.text
    return response.json()


async def test_platforms_pull_through_presigned_urls_of_the_bucket(app, s3):
    browser = Browser(app.url)
    browser.signed_in_user()
    picture = jpeg_bytes(640, 480)
    row = await Media.objects().get(Media.id == upload(browser, "pulled.jpg", picture)["id"])
    settings = load_settings(env=app.env)
    item = media.publish_item(row, settings)

    assert item.path == "" and item.url.startswith(f"{s3.url}/{s3.bucket}/s3-tests/u")
    query = parse_qs(urlsplit(item.url).query)
    assert query["X-Amz-Expires"] == [str(settings.media_signed_url_ttl_s)]
    with httpx.Client(timeout=20) as platform:  # no cookies, no credentials
        pulled = platform.get(item.url)
        assert pulled.status_code == 200 and pulled.content == picture
        assert pulled.headers["content-type"] == "image/jpeg"
        part = platform.get(item.url, headers={"range": "bytes=10-19"})
        assert part.status_code == 206 and part.content == picture[10:20]
        # The object is private: without the signature the bucket refuses it.
        assert platform.get(item.url.split("?")[0]).status_code == 403
    # Chunked uploaders read ranges through the store, not a local file.
    assert await item.size() == len(picture)
    assert await item.read(100, 4096 + 99) == picture[100 : 4096 + 100]
    assert b"".join([chunk async for chunk in item.chunks()]) == picture


def test_export_carries_the_objects_and_deletion_empties_the_prefix(app, s3):
    browser, email, picture = person(app, upload=True)
    _, _, other_picture = person(app, upload=True)
    archive = zipfile.ZipFile(io.BytesIO(browser.get("/settings/export").content))
    (name,) = [n for n in archive.namelist() if n.startswith("media/")]
    assert archive.read(name) == picture

    before = s3.keys("s3-tests/")
    done = browser.follow(browser.post("/settings/delete", {"confirm_email": email}))
    assert done.status_code == 200 and "account is deleted" in done.text
    after = s3.keys("s3-tests/")
    gone = set(before) - set(after)
    assert len(gone) == 2  # the picture and its thumbnail
    assert len({key.split("/")[1] for key in gone}) == 1  # all under the person's u{id}/
    assert other_picture in {s3.read(key) for key in after}  # the other person keeps theirs


def test_the_worker_builds_a_large_export_from_the_bucket(fresh_server, s3):
    app = fresh_server(worker=True, OKK_EXPORT_INLINE_MAX_BYTES="1", **s3.env("export-job"))
    browser, _, picture = person(app, upload=True)
    assert browser.get("/settings/export").status_code in (302, 303)  # built by a job
    _, link = wait_for_link(browser)
    archive = zipfile.ZipFile(io.BytesIO(browser.get(link).content))
    (name,) = [n for n in archive.namelist() if n.startswith("media/")]
    assert archive.read(name) == picture
    # The media and the built zip are in the bucket (any web process can serve the link),
    # nothing in the data folder.
    keys = s3.keys("export-job/")
    assert any("/exports/" in key and key.endswith(".zip") for key in keys), keys
    assert not [p for p in (Path(app.env["OKK_DATA_DIR"]) / "media").rglob("*") if p.is_file()]


async def test_content_repository_media_is_copied_into_the_bucket(s3, tmp_path):
    """GitOps: a picture a post file names is stored in the bucket at sync time."""
    settings = load_settings(env={**os.environ, **s3.env("content")})
    user = await make_user()
    repo = Repo(tmp_path)
    picture = jpeg_bytes(500, 300)
    repo.write("img/a.jpg", picture)
    repo.write("posts/one.yaml", post_yaml("one", extra="media: ../img/a.jpg\n"))
    repo.commit()
    source = await service.add_git(
        user, settings, name=unique("repo"), url=repo.url, branch="main", subpath=""
    )

    result = await sync_source(source.id, settings)

    assert not [p for p in result.problems if p.severity == "error"]
    (row,) = await Media.objects().where(Media.user == user.id)
    assert s3.read(f"content/{row.storage_key}") == picture
    assert media.publish_item(row, settings).url.startswith(f"{s3.url}/{s3.bucket}/content/")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OKK_MEDIA_STORE": "s3"}, "OKK_MEDIA_STORE=s3 needs a bucket: set OKK_S3_BUCKET"),
        (
            {"OKK_MEDIA_STORE": "s3", "OKK_S3_BUCKET": "b", "OKK_S3_SECRET_ACCESS_KEY": "x"},
            "Set both OKK_S3_ACCESS_KEY_ID and OKK_S3_SECRET_ACCESS_KEY, or neither",
        ),
        ({"OKK_MEDIA_STORE": "gcs"}, "OKK_MEDIA_STORE must be “local” or “s3”"),
    ],
)
@pytest.mark.parametrize("command", ["run", "worker"])
def test_unusable_store_settings_stop_the_app_at_startup(tmp_path, command, env, message):
    result = subprocess.run(
        [sys.executable, "-m", "src", command],
        cwd=ROOT,
        env={**os.environ, "OKK_DATA_DIR": str(tmp_path), **env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert message in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_a_failing_bucket_is_a_503_logged_without_the_secret_key(fresh_server, s3):
    """The store fails (a bucket that does not exist): the person is told to try again,
    the operator finds the service's error in the log, and the secret key is nowhere."""
    app: AppServer = fresh_server(**s3.env("secret", bucket="no-such-bucket"))
    browser = Browser(app.url)
    browser.signed_in_user()
    failed = browser.http.post(
        "/media",
        files={"file": ("lost.jpg", jpeg_bytes(64, 64))},
        headers={"accept": "application/json", "x-csrftoken": browser.csrf_token()},
    )
    assert failed.status_code == 503 and failed.json()["detail"] == media.UNAVAILABLE
    log = app.log_path.read_text(errors="replace")
    assert "NoSuchBucket" in log  # the failure is there for the operator
    assert SECRET_KEY not in log
    store = media.get_store(load_settings(env=app.env))
    assert SECRET_KEY not in repr(store) and "no-such-bucket" in repr(store)
