"""The deployment guide and deploy/ stay true to the code: every OKK_* name is a real
setting, the units' and the guide's commands parse with the real CLI, the proxies' body
limits admit the largest upload, the health path answers, and the client address the
guide promises reaches the audit log (through a trusted proxy only)."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import httpx
import pytest

from src.config import Settings, load_settings
from tests.appserver import ROOT
from tests.browser import Browser
from tests.test_privacy import export_of

GUIDE = ROOT / "docs" / "deployment.md"
DEPLOY = ROOT / "deploy"
ENV_EXAMPLE = DEPLOY / "okktopus.env.example"
UNITS = sorted(DEPLOY.glob("*.service"))
OKKTOPUS = Path(sys.executable).parent / "okktopus"  # the venv's entry point
SETTING_NAMES = {"OKK_" + f.name.upper() for f in fields(Settings) if f.name != "extra"}
OKK_NAME = re.compile(r"\bOKK_[A-Z0-9_]*[A-Z0-9]\b")


def _env_file(path: Path) -> dict[str, str]:
    """KEY=value lines as systemd's EnvironmentFile= reads them (quotes removed)."""
    values = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = " ".join(shlex.split(value))
    return values


# -- settings ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "path", [GUIDE, ENV_EXAMPLE, *UNITS], ids=lambda p: str(p.relative_to(ROOT))
)
def test_every_okk_name_is_a_real_setting(path: Path):
    names = set(OKK_NAME.findall(path.read_text()))
    assert not names - SETTING_NAMES, f"not settings: {sorted(names - SETTING_NAMES)}"


def test_every_setting_is_documented_for_operators():
    documented = set(OKK_NAME.findall(GUIDE.read_text() + (ROOT / "README.md").read_text()))
    missing = SETTING_NAMES - documented
    assert not missing, f"document these in docs/deployment.md: {sorted(missing)}"


def test_env_example_is_a_production_configuration(tmp_path: Path):
    env = _env_file(ENV_EXAMPLE)
    settings = load_settings(env=env, toml_path=tmp_path / "none.toml")
    assert settings.public_url.startswith("https://") and settings.secure_cookies
    assert settings.database_url.startswith("postgresql://")
    assert settings.secret_key == env["OKK_SECRET_KEY"]  # never a generated one
    assert settings.token_keys == (env["OKK_TOKEN_KEYS"],)
    assert not settings.sandbox_enabled and not settings.debug and not settings.access_log
    assert settings.allowed_emails and settings.oidc_client_id and settings.oidc_client_secret
    assert settings.operator_name == "Example Org"  # a quoted value with a space


# -- commands ---------------------------------------------------------------------------
def _exec_starts() -> list[list[str]]:
    commands = []
    for unit in UNITS:
        for line in unit.read_text().splitlines():
            if line.startswith("ExecStart="):
                argv = shlex.split(line.removeprefix("ExecStart=").replace("%i", "8001"))
                assert argv[0] == "/opt/okktopus/.venv/bin/okktopus", unit.name
                commands.append(argv[1:])
    return commands


def _guide_commands() -> list[list[str]]:
    found = re.findall(r"bin/okktopus((?:[ \t]+[^\s>&|;#'\"`]+)+)", GUIDE.read_text())
    return [args.split() for args in found]


def test_units_and_guide_name_real_commands_and_flags():
    commands = {tuple(argv) for argv in _exec_starts() + _guide_commands()}
    assert {c[0] for c in commands} >= {"run", "worker", "migrate", "rotate-keys"}
    assert ("run", "--no-worker", "--port", "8001") in commands
    for argv in sorted(commands):
        # Click parses every option before --help acts: an unknown flag exits 2.
        result = subprocess.run(
            [str(OKKTOPUS), *argv, "--help"], capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, f"okktopus {' '.join(argv)}: {result.stderr[-2000:]}"
        assert f"Usage: okktopus {argv[0]}" in result.stdout


def test_worker_unit_waits_longer_than_the_shutdown_grace():
    unit = (DEPLOY / "okktopus-worker@.service").read_text()
    stop_after = int(re.search(r"^TimeoutStopSec=(\d+)$", unit, flags=re.M).group(1))
    saq_cancel_s = 1  # SAQ's hard deadline after cancelling, on top of the grace
    assert stop_after > Settings().worker_shutdown_grace_s + saq_cancel_s


# -- reverse proxy ----------------------------------------------------------------------
SIZE_UNITS = {"k": 1024, "m": 1024**2, "g": 1024**3, "kib": 1024, "mib": 1024**2, "gib": 1024**3}


def _bytes(number: str, unit: str) -> int:
    return int(number) * SIZE_UNITS[unit.lower()]


def test_proxies_admit_the_largest_upload():
    caddy = re.search(r"max_size (\d+)(MiB|GiB)", (DEPLOY / "Caddyfile").read_text())
    nginx = re.search(r"client_max_body_size (\d+)([kmg]);", (DEPLOY / "nginx.conf").read_text())
    for limit in (caddy, nginx):
        assert limit, "no body limit"
        assert _bytes(*limit.groups()) > Settings().media_max_video_bytes


def test_health_path_of_the_proxy_and_guide_answers(server):
    caddy = re.findall(r"health_uri (\S+)", (DEPLOY / "Caddyfile").read_text())
    guide = re.findall(r"(/[a-z]*health[a-z]*)\b", GUIDE.read_text())
    assert caddy and guide
    for path in set(caddy + guide):
        response = httpx.get(server.url + path, timeout=10)
        assert response.status_code == 200, path
        body = response.json()
        assert body["status"] in ("ok", "degraded") and body["database"] == {"ok": True}
        assert {"queue", "worker"} <= body.keys()


# -- the client address behind a proxy ----------------------------------------------------
def _sign_in_address(url: str) -> str:
    """Sign up through the sandbox with a proxy's X-Forwarded-For; the address the
    person's data export shows for that sign-up."""
    browser = Browser(url)
    browser.http.headers["x-forwarded-for"] = "198.51.100.9, 203.0.113.7"
    browser.signed_in_user()
    _, archive = export_of(browser)
    events = json.loads(archive.read("export.json"))["audit_events"]
    (sign_up,) = [e for e in events if e["action"] == "sign_up"]
    return sign_up["ip"]


def test_a_local_proxy_forwards_the_client_address_to_the_audit_log(server):
    # From 127.0.0.1 (trusted by default) the right-most address is the client's; the
    # one on its left is what a client claimed about itself and is not believed.
    assert _sign_in_address(server.url) == "203.0.113.7"


def test_an_untrusted_proxy_cannot_choose_the_logged_address(fresh_server):
    app = fresh_server(FORWARDED_ALLOW_IPS="192.0.2.1")  # a proxy elsewhere; not us
    assert _sign_in_address(app.url) == "127.0.0.1"
