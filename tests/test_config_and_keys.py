"""Settings precedence and token-key rotation without downtime."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from src.accounts import cipher
from src.config import load_settings
from src.db.tables import Account, User
from src.security import TokenCipher, new_token_key
from tests.appserver import ROOT


def test_environment_overrides_toml_which_overrides_defaults(tmp_path: Path):
    toml = tmp_path / "litestar.toml"
    toml.write_text('[server]\nport = 9001\nhost = "0.0.0.0"\n[database]\nworker_concurrency = 7\n')
    env = {"OKK_PORT": "9100", "OKK_HTTP_TIMEOUT_S": "2.5", "OKK_DATA_DIR": str(tmp_path)}
    settings = load_settings(env=env, toml_path=toml)
    assert settings.port == 9100  # environment wins
    assert settings.host == "0.0.0.0"  # from the file
    assert settings.worker_concurrency == 7
    assert settings.http_timeout_s == 2.5
    assert settings.public_url == "http://0.0.0.0:9100"
    assert settings.oidc_issuer == "https://accounts.google.com"  # default


def test_sandbox_is_on_without_google_credentials_and_off_with_them(tmp_path: Path):
    base = {"OKK_DATA_DIR": str(tmp_path)}
    assert load_settings(env=base).sandbox_enabled
    real = base | {"OKK_OIDC_CLIENT_ID": "id", "OKK_OIDC_CLIENT_SECRET": "secret"}
    assert not load_settings(env=real).sandbox_enabled
    assert load_settings(env=real | {"OKK_SANDBOX": "1"}).sandbox_enabled


def test_printing_the_settings_shows_no_secret(tmp_path: Path):
    secrets_by_name = {
        "OKK_SECRET_KEY": "sk-secret-key-value",
        "OKK_TOKEN_KEYS": "token-key-one,token-key-two",
        "OKK_OIDC_CLIENT_SECRET": "oidc-client-secret-value",
        "OKK_FACEBOOK_APP_SECRET": "facebook-app-secret-value",
        "OKK_TIKTOK_CLIENT_SECRET": "tiktok-client-secret-value",
        "OKK_X_CLIENT_SECRET": "x-client-secret-value",
        "OKK_OPENAI_API_KEY": "openai-api-key-value",
        "OKK_S3_SECRET_ACCESS_KEY": "s3-secret-access-key-value",
    }
    settings = load_settings(env={"OKK_DATA_DIR": str(tmp_path), **secrets_by_name})
    assert settings.s3_secret_access_key == "s3-secret-access-key-value"  # still read
    printed = repr(settings)
    assert "s3_bucket" in printed  # the rest is shown
    for value in secrets_by_name.values():
        for part in value.split(","):
            assert part not in printed


def test_requests_in_flight_per_platform_follow_the_setting(tmp_path: Path):
    from src.publishing import Limits

    default = Limits(load_settings(env={"OKK_DATA_DIR": str(tmp_path)}))
    assert default.platforms["x"]._value == 32 and default.platforms["tiktok"]._value == 16
    env = {"OKK_DATA_DIR": str(tmp_path), "OKK_PUBLISH_CONCURRENCY": "128"}
    wide = Limits(load_settings(env=env))
    assert wide.platforms["instagram"]._value == 128 and wide.platforms["tiktok"]._value == 64


def test_development_secrets_are_generated_once_and_private(tmp_path: Path):
    first = load_settings(env={"OKK_DATA_DIR": str(tmp_path)})
    second = load_settings(env={"OKK_DATA_DIR": str(tmp_path)})
    assert first.secret_key == second.secret_key and first.token_keys == second.token_keys
    assert oct((tmp_path / "secrets" / "token_key").stat().st_mode)[-3:] == "600"


def test_old_keys_still_decrypt_and_new_writes_use_the_newest():
    old, new = new_token_key(), new_token_key()
    sealed = TokenCipher([old]).encrypt("token-value")
    both = TokenCipher([new, old])
    assert both.decrypt(sealed) == "token-value"
    rotated = both.rotate(sealed)
    assert TokenCipher([new]).decrypt(rotated) == "token-value"
    with pytest.raises(ValueError, match="cannot be decrypted"):
        TokenCipher([new]).decrypt(sealed)


@pytest.mark.usefixtures("db")
async def test_rotate_keys_command_reencrypts_every_token(tmp_path: Path):
    settings = load_settings()
    old_key = settings.token_keys[0]
    user = User({User.google_sub: f"rotate-{os.getpid()}", User.email: "rotate@example.com"})
    await user.save()
    account = Account(
        {
            Account.user: user.id,
            Account.platform: "x",
            Account.external_id: f"rot-{os.getpid()}",
            Account.access_token: cipher(settings).encrypt("access-secret"),
            Account.refresh_token: cipher(settings).encrypt("refresh-secret"),
        }
    )
    await account.save()
    new_key = new_token_key()
    env = {**os.environ, "OKK_TOKEN_KEYS": f"{new_key},{old_key}"}
    result = subprocess.run(
        [sys.executable, "-m", "src", "rotate-keys"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "Re-encrypted" in result.stdout
    stored = await Account.objects().get(Account.id == account.id)
    only_new = TokenCipher([new_key])
    assert only_new.decrypt(stored.access_token) == "access-secret"
    assert only_new.decrypt(stored.refresh_token) == "refresh-secret"
    await User.delete().where(User.id == user.id)
