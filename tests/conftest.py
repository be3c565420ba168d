"""Test infrastructure: a real PostgreSQL (the embedded one, or OKK_TEST_DATABASE_URL),
a migrated template database cloned per app server, and the app itself running as a
real `okktopus run` process on a loopback port with the sandbox mounted."""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.appserver import ROOT, AppServer, PostgresAdmin

TEST_DIR = ROOT / "var" / "test"


def _database_server() -> PostgresAdmin:
    url = os.environ.get("OKK_TEST_DATABASE_URL")
    if url:
        return PostgresAdmin(url)
    return PostgresAdmin.embedded(TEST_DIR / "pg")


def pytest_configure(config: pytest.Config) -> None:
    """Before anything imports the app: pick the database and migrate a template."""
    if hasattr(config, "workerinput"):
        return
    TEST_DIR.mkdir(parents=True, exist_ok=True)
    admin = _database_server()
    admin.prepare_template()
    database = admin.new_database()
    data_dir = TEST_DIR / f"data-{secrets.token_hex(3)}"
    os.environ.update(
        {
            "OKK_DATABASE_URL": admin.dsn(database),
            "OKK_DATA_DIR": str(data_dir),
            "OKK_SECRET_KEY": "test-secret-key-" + "x" * 32,
            "OKK_ALLOWED_EMAILS": "@example.com,@example.org",
        }
    )
    config.okk_admin = admin  # type: ignore[attr-defined]
    config.okk_database = database  # type: ignore[attr-defined]
    config.okk_data_dir = data_dir  # type: ignore[attr-defined]


def pytest_unconfigure(config: pytest.Config) -> None:
    admin: PostgresAdmin | None = getattr(config, "okk_admin", None)
    if admin is None:
        return
    admin.drop_database(config.okk_database)  # type: ignore[attr-defined]
    admin.drop_database(admin.template)
    shutil.rmtree(config.okk_data_dir, ignore_errors=True)  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def pg_admin(pytestconfig: pytest.Config) -> PostgresAdmin:
    return pytestconfig.okk_admin  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
async def db(pytestconfig: pytest.Config) -> Iterator[None]:
    """The test process's own connection pool to the shared test database."""
    from piccolo.engine import engine_finder

    engine = engine_finder()
    await engine.start_connection_pool(min_size=1, max_size=4)
    yield
    await engine.close_connection_pool()


@pytest.fixture(scope="session")
def server(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory):
    """The app with its in-process worker, on the test database."""
    app = AppServer(
        database_url=os.environ["OKK_DATABASE_URL"],
        data_dir=Path(os.environ["OKK_DATA_DIR"]),
        log_dir=tmp_path_factory.mktemp("server"),
        env={"OKK_ALLOWED_EMAILS": os.environ["OKK_ALLOWED_EMAILS"]},
    )
    app.start()
    yield app
    app.stop()


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory):
    """An S3-compatible server (moto, a real process) with a bucket for this run."""
    from tests.s3 import S3Server

    with S3Server.running(tmp_path_factory.mktemp("s3")) as server:
        yield server


@pytest.fixture
def fresh_server(pg_admin: PostgresAdmin, tmp_path: Path):
    """Start an app on a database of its own (for first-user and config tests)."""
    started: list[AppServer] = []
    databases: list[str] = []

    def start(worker: bool = False, **env: str) -> AppServer:
        database = pg_admin.new_database()
        databases.append(database)
        app = AppServer(
            database_url=pg_admin.dsn(database),
            data_dir=tmp_path / f"data-{len(started)}",
            log_dir=tmp_path,
            env=env,
            worker=worker,
        )
        app.start()
        started.append(app)
        return app

    yield start
    for app in started:
        app.stop()
    for database in databases:
        pg_admin.drop_database(database)
