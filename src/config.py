"""One typed Settings object: defaults < litestar.toml < OKK_* environment variables."""

from __future__ import annotations

import dataclasses
import os
import secrets
import tomllib
from dataclasses import dataclass, field, fields
from functools import cache
from pathlib import Path
from typing import Any, get_type_hints

ROOT = Path(__file__).resolve().parent.parent
TOML_FILE = ROOT / "litestar.toml"
ENV_PREFIX = "OKK_"


@dataclass(frozen=True)
class Settings:
    """Secrets are left out of repr(): a logged or printed Settings shows none."""

    # Server
    host: str = "127.0.0.1"
    port: int = 8000
    base_url: str = ""  # public URL; default http://{host}:{port}
    data_dir: Path = ROOT / "var"
    debug: bool = False
    access_log: bool = False  # uvicorn's request log (IPs, URLs with tokens): opt-in
    # Database and queue
    database_url: str = ""  # unset: embedded PostgreSQL in data_dir
    queue_url: str = ""  # unset: the same PostgreSQL; redis://… uses Redis
    worker_concurrency: int = 20
    db_pool_size: int = 12  # PostgreSQL connections per process (SAQ's queue adds its own)
    http_timeout_s: float = 30.0  # outbound calls to platforms
    publish_loops: int = 4  # concurrent claim-and-publish loops per worker
    publish_batch: int = 50  # targets claimed at once by a loop
    publish_poll_s: float = 0.5  # longest sleep when nothing is due
    publish_concurrency: int = 32  # requests in flight per platform per worker (TikTok: half)
    claim_lease_s: int = 120  # a claim without a checkpoint this long is presumed dead
    refresh_cron: str = "* * * * * */20"  # token refresh job (cron with seconds last)
    worker_shutdown_grace_s: int = 2  # jobs cut short resume safely (claims + sweeper)
    # Media (uploads are streamed to disk; the limits are per kind, decided by content)
    media_max_image_bytes: int = 20 * 1024 * 1024
    media_max_video_bytes: int = 1024 * 1024 * 1024
    media_signed_url_ttl_s: int = 3600  # links that platforms pull media through
    media_orphan_grace_s: int = 24 * 3600  # unattached uploads are purged after this
    # Media store: "local" (files in data_dir/media) or "s3" (any S3-compatible service)
    media_store: str = "local"
    s3_bucket: str = ""
    s3_endpoint_url: str = ""  # unset: AWS; e.g. http://127.0.0.1:9000 for MinIO
    s3_region: str = "us-east-1"
    s3_access_key_id: str = ""  # unset: the default credential chain (env, profile, role)
    s3_secret_access_key: str = field(default="", repr=False)
    s3_prefix: str = ""  # key prefix inside the bucket, e.g. "okktopus/"
    # GitOps content: watch local-folder sources and sync on change (None: on with debug
    # or the sandbox, i.e. in development; folders are also polled every minute)
    content_watch: bool | None = None
    # Data export: above this many media bytes the zip is built by a job, not streamed
    export_inline_max_bytes: int = 200 * 1024 * 1024
    export_link_ttl_s: int = 24 * 3600  # a built export's download link expires
    # Secrets (generated once in data_dir for development when unset)
    secret_key: str = field(default="", repr=False)
    token_keys: tuple[str, ...] = field(default=(), repr=False)
    # Sign-in
    oidc_issuer: str = "https://accounts.google.com"
    oidc_client_id: str = ""
    oidc_client_secret: str = field(default="", repr=False)
    allowed_emails: tuple[str, ...] = ()
    session_max_age: int = 14 * 24 * 3600
    # Platforms
    facebook_app_id: str = ""
    facebook_app_secret: str = field(default="", repr=False)
    facebook_graph_url: str = "https://graph.facebook.com"
    facebook_dialog_url: str = "https://www.facebook.com"
    facebook_graph_version: str = "v24.0"
    tiktok_client_key: str = ""
    tiktok_client_secret: str = field(default="", repr=False)
    tiktok_api_url: str = "https://open.tiktokapis.com"
    tiktok_auth_url: str = "https://www.tiktok.com"
    x_client_id: str = ""
    x_client_secret: str = field(default="", repr=False)
    x_api_url: str = "https://api.x.com"
    x_auth_url: str = "https://x.com"
    # AI
    openai_api_key: str = field(default="", repr=False)
    openai_base_url: str = ""
    openai_model: str = "gpt-4o-mini"
    # Sandbox: None means "on when no real credentials are configured"
    sandbox: bool | None = None
    sandbox_base_url: str = ""  # a standalone sandbox; default: mounted at {public_url}/sandbox
    # Operator, shown in the privacy policy
    operator_name: str = "The operator of this instance"
    operator_contact: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def public_url(self) -> str:
        return (self.base_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def secure_cookies(self) -> bool:
        return self.public_url.startswith("https://")

    @property
    def sandbox_enabled(self) -> bool:
        if self.sandbox is not None:
            return self.sandbox
        return not (self.oidc_client_id and self.oidc_client_secret)

    @property
    def sandbox_url(self) -> str:
        return (self.sandbox_base_url or f"{self.public_url}/sandbox").rstrip("/")


def _coerce(value: Any, kind: Any) -> Any:
    """Turn a TOML or environment value into the field's declared type."""
    name = str(kind)
    if isinstance(value, str):
        text = value.strip()
        if "bool" in name:
            if not text and "None" in name:
                return None  # "auto"
            return text.lower() in {"1", "true", "yes", "on"}
        if kind in (int, float, Path):
            return kind(text)
        if "tuple" in name:
            return tuple(item.strip() for item in text.split(",") if item.strip())
        return value
    if "tuple" in name and isinstance(value, list):
        return tuple(str(item) for item in value)
    if kind in (float, Path):
        return kind(value)
    return value


def _from_toml(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    data = tomllib.loads(path.read_text())
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):  # [server], [database]… sections are for readability only
            flat.update(value)
        else:
            flat[key] = value
    return flat


def load_settings(env: dict[str, str] | None = None, toml_path: Path | None = None) -> Settings:
    env = dict(os.environ if env is None else env)
    hints = get_type_hints(Settings)
    values: dict[str, Any] = {}
    for key, value in _from_toml(toml_path or TOML_FILE).items():
        if key in hints:
            values[key] = _coerce(value, hints[key])
    for f in fields(Settings):
        raw = env.get(ENV_PREFIX + f.name.upper())
        if raw is not None:
            values[f.name] = _coerce(raw, hints[f.name])
    settings = Settings(**values)
    data_dir = settings.data_dir if settings.data_dir.is_absolute() else ROOT / settings.data_dir
    settings = dataclasses.replace(settings, data_dir=data_dir)
    return _with_secrets(settings)


def _stored_secret(data_dir: Path, name: str, make: Any) -> str:
    """A development secret generated once and kept in the data folder (mode 600)."""
    path = data_dir / "secrets" / name
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    value = make()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: use theirs
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(value)
    return value


def _with_secrets(settings: Settings) -> Settings:
    changes: dict[str, Any] = {}
    if not settings.secret_key:
        changes["secret_key"] = _stored_secret(
            settings.data_dir, "secret_key", lambda: secrets.token_urlsafe(48)
        )
    if not settings.token_keys:
        from src.security import new_token_key

        changes["token_keys"] = (_stored_secret(settings.data_dir, "token_key", new_token_key),)
    return dataclasses.replace(settings, **changes) if changes else settings


@cache
def get_settings() -> Settings:
    return load_settings()
