"""Render every page template with stub data and screenshot it with headless Chromium.

Not a pytest test: a tool for people changing templates/ or static/. It renders the
templates with Jinja2 directly (the same environment options Litestar's
JinjaTemplateEngine uses: a FileSystemLoader on templates/ and autoescape on), stubs
what the app provides to every template, writes HTML files to var/preview/, and takes
screenshots at desktop (1280x900) and phone (390x844) width, in light and dark.

    .venv/bin/python tests/ui_preview.py                 # everything
    .venv/bin/python tests/ui_preview.py --only landing  # scenarios whose name contains it
    .venv/bin/python tests/ui_preview.py --no-shots      # render and check only

Needs /usr/bin/chromium (Debian: apt-get install -y chromium). It also checks that no
page or stylesheet asks for anything from another origin.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import http.server
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import zoneinfo
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "templates"
STATIC = ROOT / "static"
OUT = ROOT / "var" / "preview"

VIEWPORTS = {"desktop": (1280, 900), "phone": (390, 844)}
THEMES = ("light", "dark")

CSRF = "preview-csrf-token-3f9a"
# A same-origin-safe picture (the app serves avatars itself; remote URLs are not shown).
AVATAR = (
    "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 32 32'%3E"
    "%3Crect width='32' height='32' fill='%23f2c48d'/%3E%3Ccircle cx='16' cy='13' r='6' "
    "fill='%238a5a3b'/%3E%3Cpath d='M5 32c1-7 6-10 11-10s10 3 11 10z' fill='%233b3a9c'/%3E"
    "%3C/svg%3E"
)


@dataclass
class Scenario:
    name: str
    template: str
    context: dict[str, Any] = field(default_factory=dict)
    flashes: list[dict[str, str]] = field(default_factory=list)
    # Extra full-length screenshots (window height per viewport) for long pages.
    full: dict[str, int] = field(default_factory=dict)
    # Extra light-theme screenshots at other window sizes, e.g. to check breakpoints.
    extra: dict[str, tuple[int, int]] = field(default_factory=dict)


def stub_settings(**overrides: Any) -> SimpleNamespace:
    values = {
        "sandbox_enabled": True,
        "operator_name": "Harbour Lane Studio",
        "operator_contact": "privacy@harbourlane.example",
        "public_url": "https://social.harbourlane.example",
    }
    values.update(overrides)
    return SimpleNamespace(**values)


def stub_user(**overrides: Any) -> SimpleNamespace:
    values = {
        "name": "Ada Lovelace",
        "email": "ada@harbourlane.example",
        "avatar_url": "https://lh3.googleusercontent.com/a/remote-picture",  # must not load
        "timezone": "Europe/Berlin",
        "is_owner": True,
    }
    values.update(overrides)
    return SimpleNamespace(**values)


def timezones() -> list[str]:
    legacy = ("Etc/", "SystemV/", "US/", "posix/", "right/")
    zones = [z for z in zoneinfo.available_timezones() if "/" in z and not z.startswith(legacy)]
    zones.sort()
    return [*zones, "UTC"]


def scenarios() -> list[Scenario]:
    user = stub_user()
    return [
        Scenario(
            "landing",
            "pages/landing.html",
            {"current_user": None, "active": ""},
            full={"desktop": 1700, "phone": 2600},
        ),
        Scenario(
            "landing-production",
            "pages/landing.html",
            {"current_user": None, "active": "", "settings": stub_settings(sandbox_enabled=False)},
        ),
        Scenario(
            "welcome",
            "pages/welcome.html",
            {
                "current_user": user,
                "active": "",
                "timezones": timezones(),
                "detected_timezone": "Europe/Berlin",
                "error": None,
            },
        ),
        Scenario(
            "welcome-error",
            "pages/welcome.html",
            {
                "current_user": user,
                "active": "",
                "timezones": timezones(),
                "detected_timezone": "UTC",
                "error": "Please confirm that you are 16 or older and accept the privacy policy.",
            },
        ),
        Scenario(
            "calendar-empty",
            "pages/placeholder.html",
            {
                "current_user": user,
                "active": "calendar",
                "page_title": "Calendar",
                "page_intro": "Everything scheduled, week by week, in Europe/Berlin time.",
                "empty_title": "Nothing scheduled yet",
                "empty_body": "Write your first post and pick a time: it will show up here, "
                "and OKKTOPUS publishes it right on time.",
                "icon": "calendar",
                "cta_href": "/compose",
                "cta_label": "Compose a post",
            },
            extra={"laptop": (1024, 768), "midsize": (1180, 800)},
        ),
        Scenario(
            "connections-empty-flash",
            "pages/placeholder.html",
            {
                "current_user": stub_user(avatar_url=AVATAR),
                "active": "connections",
                "page_title": "Connections",
                "empty_title": "No accounts connected",
                "empty_body": "Connect a Facebook Page, an Instagram business account, "
                "a TikTok or an X account to start publishing.",
                "icon": "instagram",
            },
            flashes=[
                {"message": "Signed in. Welcome back, Ada!", "category": "success"},
                {"message": "Your X account needs to be reconnected.", "category": "warning"},
                {
                    "message": "Could not reach TikTok. We'll retry in 2 minutes.",
                    "category": "error",
                },
            ],
        ),
        Scenario(
            "settings-empty",
            "pages/placeholder.html",
            {
                "current_user": stub_user(name="Bartholomew Featherstonehaugh-Smythe"),
                "active": "settings",
                "page_title": "Settings",
                "empty_title": "Settings are on their way",
                "empty_body": "Profile, time zone, export and account deletion will live here.",
                "icon": "settings",
            },
        ),
        Scenario(
            "error-404",
            "pages/error.html",
            {
                "current_user": None,
                "active": "",
                "status_code": 404,
                "title": "Page not found",
                "message": "The page you were looking for does not exist or has moved.",
            },
        ),
        Scenario(
            "error-500-signed-in",
            "pages/error.html",
            {
                "current_user": user,
                "active": "",
                "status_code": 500,
                "title": "Something went wrong",
                "message": "An unexpected error happened on our side. Please try again.",
                "settings": stub_settings(sandbox_enabled=False),
            },
        ),
        Scenario(
            "privacy",
            "pages/privacy.html",
            {"current_user": None, "active": "", "policy_updated": dt.date(2025, 11, 29)},
            full={"desktop": 5200, "phone": 11000},
        ),
        Scenario(
            "privacy-signed-in-no-contact",
            "pages/privacy.html",
            {
                "current_user": user,
                "active": "",
                "policy_updated": "29 November 2025",
                "settings": stub_settings(operator_contact="", sandbox_enabled=False),
            },
        ),
    ]


def make_env() -> Environment:
    # Litestar's JinjaTemplateEngine: Environment(loader=FileSystemLoader(dirs), autoescape=True)
    return Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True)


def render(env: Environment, scenario: Scenario) -> str:
    flashes = list(scenario.flashes)

    def get_flashes() -> list[dict[str, str]]:
        out = list(flashes)
        flashes.clear()
        return out

    def url_for(name: str, **params: Any) -> str:
        if name != "static":
            raise ValueError(f"preview only knows url_for('static', ...), not {name!r}")
        return f"../../static/{params['file_path']}"

    context: dict[str, Any] = {
        "settings": stub_settings(),
        "current_user": None,
        "active": "",
        "csrf_token": lambda: CSRF,
        "csrf_input": f'<input type="hidden" name="_csrf_token" value="{CSRF}">',
        "url_for": url_for,
        "get_flashes": get_flashes,
    }
    context.update(scenario.context)
    return env.get_template(scenario.template).render(**context)


EXTERNAL_IN_HTML = re.compile(
    r"<(?:link|script|img|iframe|source|video|audio|image)\b[^>]*?\b(?:src|href|srcset)\s*=\s*"
    r"[\"']?\s*(?:https?:)?//",
    re.IGNORECASE,
)
EXTERNAL_IN_CSS = re.compile(r"(?:url\(\s*[\"']?\s*(?:https?:)?//|@import)", re.IGNORECASE)


def check_no_third_party(name: str, html: str) -> list[str]:
    problems = []
    for match in EXTERNAL_IN_HTML.finditer(html):
        problems.append(f"{name}: third-party request in HTML: {match.group(0)[:120]}")
    if "style=" in html:
        problems.append(f"{name}: inline style attribute (breaks a strict CSP)")
    if re.search(r"<script(?![^>]*\bsrc=)", html):
        problems.append(f"{name}: inline <script> (breaks a strict CSP)")
    return problems


def check_css() -> list[str]:
    problems = []
    for css in STATIC.rglob("*.css"):
        text = css.read_text()
        # Pico embeds SVG data URIs whose xmlns mentions w3.org: not a request.
        text = re.sub(r"url\(\"data:[^\"]*\"\)", "", text)
        for match in EXTERNAL_IN_CSS.finditer(text):
            problems.append(f"{css.relative_to(ROOT)}: external reference {match.group(0)}")
    return problems


def chromium() -> str | None:
    for candidate in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(candidate)
        if path:
            return path
    return None


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serve_root():
    """Serve the repository on a loopback port, so pages load static files over http the way
    the app serves them (CSS masks, like fonts, are refused to file:// pages)."""
    handler = functools.partial(QuietHandler, directory=str(ROOT))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def screenshot(browser: str, url: str, png: Path, size: tuple[int, int], dark: bool) -> str:
    with tempfile.TemporaryDirectory(prefix="okk-preview-") as profile:
        cmd = [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            "--virtual-time-budget=3000",
            f"--user-data-dir={profile}",
            f"--window-size={size[0]},{size[1]}",
            f"--screenshot={png}",
        ]
        if dark:
            cmd.append("--force-dark-mode")
        cmd.append(url)
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    if not png.exists():
        return f"FAILED {png.name}: {result.stderr.strip()[-300:]}"
    return str(png.relative_to(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="render only scenarios whose name contains this")
    parser.add_argument("--no-shots", action="store_true", help="render HTML, take no screenshots")
    args = parser.parse_args()

    OUT.mkdir(parents=True, exist_ok=True)
    env = make_env()
    problems = check_css()
    jobs: list[tuple[Path, Path, tuple[int, int], bool]] = []
    for scenario in scenarios():
        if args.only and args.only not in scenario.name:
            continue
        html = render(env, scenario)
        problems += check_no_third_party(scenario.name, html)
        page = OUT / f"{scenario.name}.html"
        page.write_text(html)
        print(f"rendered {page.relative_to(ROOT)}")
        for viewport, (width, height) in VIEWPORTS.items():
            for theme in THEMES:
                base = f"{scenario.name}-{viewport}-{theme}"
                jobs.append((page, OUT / f"{base}.png", (width, height), theme == "dark"))
                if viewport in scenario.full:
                    full_size = (width, scenario.full[viewport])
                    jobs.append((page, OUT / f"{base}-full.png", full_size, theme == "dark"))
        for label, size in scenario.extra.items():
            jobs.append((page, OUT / f"{scenario.name}-{label}-light.png", size, False))

    for problem in problems:
        print("PROBLEM", problem)

    if args.no_shots:
        return 1 if problems else 0
    browser = chromium()
    if not browser:
        print("chromium not found: apt-get update && apt-get install -y chromium", file=sys.stderr)
        return 2
    for _, png, _, _ in jobs:
        png.unlink(missing_ok=True)
    with serve_root() as origin, ThreadPoolExecutor(max_workers=2) as pool:

        def shoot(job: tuple[Path, Path, tuple[int, int], bool]) -> str:
            page, png, size, dark = job
            url = f"{origin}/{quote(str(page.relative_to(ROOT)))}"
            return screenshot(browser, url, png, size, dark)

        for line in pool.map(shoot, jobs):
            print(line)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
