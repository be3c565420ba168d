"""An S3-compatible service for tests: moto's server mode as a real process on a free
loopback port, one bucket per test run, and the OKK_* environment that points an app at
it. Checks read the bucket with boto3 directly, not through the app's store."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import httpx
from botocore.config import Config

from tests.appserver import AppServer
from tests.servers import free_port

ACCESS_KEY = "okk-test-access"
SECRET_KEY = "okk-test-SECRET-" + "s" * 24  # distinctive: searched for in server logs


class S3Server:
    def __init__(self, url: str, bucket: str) -> None:
        self.url, self.bucket = url, bucket
        self.client: Any = self.client_for(SECRET_KEY)

    @classmethod
    @contextmanager
    def running(cls, log_dir: Path) -> Iterator[S3Server]:
        port = free_port()
        with (log_dir / "moto.log").open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            try:
                url = f"http://127.0.0.1:{port}"
                _wait_until_up(url, process)
                server = cls(url, f"okk-test-{secrets.token_hex(4)}")
                server.client.create_bucket(Bucket=server.bucket)
                yield server
            finally:
                process.terminate()
                process.wait(10)

    def client_for(self, secret: str) -> Any:
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=secret,
            config=Config(s3={"addressing_style": "path"}),
        )

    def env(self, prefix: str = "", bucket: str | None = None) -> dict[str, str]:
        """The app's settings for this bucket (under `prefix`, to keep apps apart)."""
        return {
            "OKK_MEDIA_STORE": "s3",
            "OKK_S3_BUCKET": bucket or self.bucket,
            "OKK_S3_ENDPOINT_URL": self.url,
            "OKK_S3_REGION": "us-east-1",
            "OKK_S3_ACCESS_KEY_ID": ACCESS_KEY,
            "OKK_S3_SECRET_ACCESS_KEY": SECRET_KEY,
            "OKK_S3_PREFIX": prefix,
        }

    def read(self, key: str) -> bytes | None:
        """The object's bytes; None when there is no such object."""
        try:
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None

    def keys(self, prefix: str) -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        )
        return [item["Key"] for page in pages for item in page.get("Contents", [])]


def app_on_s3(s3: S3Server, folder: Path, prefix: str, **env: str) -> AppServer:
    """An app process (no worker) on the tests' database, storing media under `prefix`
    in the bucket; `app.s3` is the server. Started: stop() it."""
    app = AppServer(
        database_url=os.environ["OKK_DATABASE_URL"],
        data_dir=folder / "data",
        log_dir=folder,
        env={"OKK_ALLOWED_EMAILS": os.environ["OKK_ALLOWED_EMAILS"], **s3.env(prefix), **env},
        worker=False,
    )
    app.s3 = s3  # type: ignore[attr-defined]
    app.start()
    return app


def _wait_until_up(url: str, process: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("moto_server exited early")
        try:
            httpx.get(url + "/moto-api/", timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError(f"moto_server did not answer within {timeout}s")
