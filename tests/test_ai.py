"""AI suggestions in the composer, through the running app and the sandbox's
OpenAI-compatible API over real HTTP."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime

import httpx
import pytest

from src import ai, rules
from src.config import get_settings
from src.db.tables import Account, AuditEvent, User
from tests.browser import Browser

pytestmark = pytest.mark.usefixtures("db")

CHAT = "/v1/chat/completions"


@pytest.fixture
def admin(server):
    with server.sandbox_admin() as client:
        client.delete("/faults")
        yield client
        client.delete("/faults")


def events_of(text: str) -> list[tuple[str, dict]]:
    found = []
    for block in text.split("\n\n"):
        name, data = "message", []
        for line in block.splitlines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
        if data:
            found.append((name, json.loads("\n".join(data))))
    return found


def ask(browser: Browser, **form) -> list[tuple[str, dict]]:
    data = {"action": "suggest", "tone": "friendly", **form}
    headers = {"x-csrftoken": browser.csrf_token(), "accept": "text/event-stream"}
    with browser.http.stream("POST", "/ai/suggest", data=data, headers=headers) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        text = "".join(response.iter_text())
    return events_of(text)


def signed_in(server) -> tuple[Browser, str]:
    browser = Browser(server.url)
    email = browser.signed_in_user()
    return browser, email


def openai_bodies(admin: httpx.Client) -> list[dict]:
    records = admin.get("/records", params={"platform": "openai"}).json()
    return [r for r in records if r["path"] == CHAT]


def test_panel_is_offered_in_the_composer(server):
    browser, _ = signed_in(server)
    browser.connect("x")
    page = browser.get("/compose").text
    assert 'hx-get="/ai/panel"' in page
    panel = browser.get("/ai/panel", headers={"hx-request": "true"}).text
    assert 'id="ai-form"' in panel and "Shorten for X" in panel and "ai.js" in panel


def test_suggestions_stream_end_to_end(server, admin):
    browser, _ = signed_in(server)
    events = ask(
        browser,
        prompt="our bakery opens a second shop on Market Street this Saturday",
        platform=["x", "instagram", "tiktok"],
    )
    kinds = [k for k, _ in events]
    assert kinds[-1] == "end" and "error" not in kinds
    assert kinds.count("start") == 3 and kinds.count("done") == 3
    assert kinds.count("chunk") > 3  # pieces arrive as they are generated
    done = {d["platform"]: d for k, d in events if k == "done"}
    for platform, suggestion in done.items():
        pieces = "".join(
            d["delta"] for k, d in events if k == "chunk" and d["index"] == suggestion["index"]
        )
        assert ai.clean(pieces) == suggestion["text"] or suggestion["note"]
        assert "bakery" in suggestion["text"].lower()
        assert suggestion["used"] == rules.counter(platform, suggestion["text"]).used
        assert not suggestion["over"]
    assert done["x"]["limit"] == 280 and done["x"]["used"] <= 280
    # Streamed from the service: the app asked with stream=True and the limits
    bodies = [r["body"] for r in openai_bodies(admin)[-3:]]
    assert all(b["stream"] is True for b in bodies)
    assert any("280" in b["messages"][0]["content"] for b in bodies)
    assert any("hashtags" in b["messages"][0]["content"] for b in bodies)


def test_shorten_for_x_respects_the_limit(server, admin):
    browser, _ = signed_in(server)
    draft = (
        "We are thrilled to share that our little bakery is opening a second shop. " * 8
    ).strip()
    events = ask(browser, action="shorten_x", text=draft)
    done = [d for k, d in events if k == "done"]
    assert len(done) == 1 and done[0]["platform"] == "x"
    assert rules.counter("x", done[0]["text"]).used <= 280
    sent = openai_bodies(admin)[-1]["body"]["messages"][-1]["content"]
    assert draft in sent  # a rewrite carries the draft


def test_an_x_suggestion_that_comes_back_too_long_is_shortened():
    long = "Fresh bread every morning at our new shop on Market Street, come and see " * 6
    found = ai.checked("x", long)
    assert rules.counter("x", found.text).used <= 280
    assert found.text.endswith("…") and not found.over and "Shortened" in found.note
    assert found.text[:-1] in long  # cut at a word boundary, nothing invented
    assert ai.checked("x", "short one").note == ""


@pytest.mark.parametrize(
    ("kind", "words"),
    [("rate_limit", "rate limited"), ("error", "had an error"), ("timeout", "too long")],
)
def test_service_failures_give_clear_messages(server, admin, kind, words):
    browser, _ = signed_in(server)
    admin.post("/faults", json={"platform": "openai", "path": CHAT, "kind": kind})
    events = ask(browser, prompt="our spring menu arrives on Friday", platform=["x"])
    errors = [d["message"] for k, d in events if k == "error"]
    assert len(errors) == 1 and words in errors[0]
    assert events[-1][0] == "end"
    admin.delete("/faults")
    assert browser.get("/compose").status_code == 200  # the composer is unaffected


async def test_bad_key_and_missing_key_outside_the_sandbox(server):
    bad = dataclasses.replace(
        get_settings(),
        base_url=server.url,
        sandbox=True,
        openai_api_key="sk-wrong-key-123",
        openai_base_url=f"{server.url}/sandbox/openai/v1",
    )
    request = ai.Ask(prompt="a new menu", platforms=("x",))
    with pytest.raises(ai.AIError, match="refused the API key"):
        await ai.suggest(bad, request)
    off = dataclasses.replace(get_settings(), sandbox=False, openai_api_key="")
    assert not ai.available(off)
    with pytest.raises(ai.AIError, match="OKK_OPENAI_API_KEY"):
        await ai.suggest(off, request)
    with pytest.raises(ai.NotConfigured):
        ai.client_for(off)
    assert "OKK_OPENAI_BASE_URL" in ai.ENABLE_HELP and "OKK_OPENAI_MODEL" in ai.ENABLE_HELP


async def test_per_user_rate_limit(server, admin):
    browser, email = signed_in(server)
    user = await User.objects().get(User.email == email)
    now = datetime.now(UTC)
    await AuditEvent.insert(
        *[
            AuditEvent(
                {
                    AuditEvent.user: user.id,
                    AuditEvent.action: ai.AUDIT_ACTION,
                    AuditEvent.created_at: now,
                }
            )
            for _ in range(ai.RATE_LIMIT - 1)
        ]
    )
    before = len(openai_bodies(admin))
    first = ask(browser, prompt="one more idea please", platform=["x"])
    assert "error" not in [k for k, _ in first]
    refused = ask(browser, prompt="and another", platform=["x"])
    assert [k for k, _ in refused] == ["error", "end"]
    assert "Try again in a few minutes" in refused[0][1]["message"]
    assert len(openai_bodies(admin)) == before + 1  # the refused one never reached the service
    rows = await AuditEvent.objects().where(
        (AuditEvent.user == user.id) & (AuditEvent.action == ai.AUDIT_ACTION)
    )
    assert all("prompt" not in json.dumps(r.detail) for r in rows)  # no prompt text stored


async def test_privacy_only_the_prompt_reaches_the_ai_service(server, admin):
    browser = Browser(server.url)
    email = "privacy-person-7f3a@example.com"
    name = "Philippa Quartermain"
    browser.sign_in(email, name=name)
    browser.welcome()
    browser.connect("x")
    browser.connect("tiktok")
    user = await User.objects().get(User.email == email)
    accounts = await Account.objects().where(Account.user == user.id)
    assert accounts
    before = len(openai_bodies(admin))
    prompt = "announce the autumn pottery workshop at the community hall"
    draft = "Our pottery workshop is back this autumn, join us at the community hall!"
    ask(browser, prompt=prompt, platform=["x", "instagram", "tiktok"])
    ask(browser, action="rephrase", text=draft)
    ask(browser, action="fix_grammar", text=draft)
    ask(browser, action="shorten_x", text=draft)
    records = openai_bodies(admin)[before:]
    assert len(records) == 6
    sent = json.dumps([r["body"] for r in records], ensure_ascii=False).lower()
    assert prompt in sent and draft.lower() in sent
    secrets = {email, name, *name.split(), email.split("@")[0]}
    for account in accounts:
        secrets |= {account.handle, account.display_name, account.external_id}
    grants = admin.get("/grants").json()
    secrets |= {g["value"] for g in grants}
    for secret in filter(None, secrets):
        assert secret.lower() not in sent, secret
    # only the service's own key travels in the Authorization header
    assert {r["authorization"] for r in records} == {"Bearer sandbox-openai-key"}
    # nothing but the model, the messages and sampling settings
    assert all(set(r["body"]) <= {"model", "messages", "stream", "temperature"} for r in records)


async def test_concurrent_requests_cannot_overrun_the_rate_limit(server, admin):
    import asyncio

    browser, email = signed_in(server)
    user = await User.objects().get(User.email == email)
    await AuditEvent.insert(
        *[
            AuditEvent({AuditEvent.user: user.id, AuditEvent.action: ai.AUDIT_ACTION})
            for _ in range(ai.RATE_LIMIT - 1)
        ]
    )
    browser.csrf_token()  # the cookie exists before the threads share the client
    results = await asyncio.gather(
        *[
            asyncio.to_thread(ask, browser, prompt=f"idea number {i}", platform=["x"])
            for i in range(4)
        ]
    )
    allowed = [r for r in results if "error" not in [k for k, _ in r]]
    assert len(allowed) == 1


async def test_in_a_real_browser_a_suggestion_streams_in_and_is_inserted(server):
    from pathlib import Path

    from playwright import async_api as playwright  # the test extra; make test installs chromium

    chromium = "/usr/bin/chromium"
    browser, _ = signed_in(server)
    browser.connect("x")
    cookies = [
        {"name": c.name, "value": c.value, "url": server.url} for c in browser.http.cookies.jar
    ]
    async with playwright.async_playwright() as pw:
        chrome = await pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        context = await chrome.new_context(base_url=server.url)
        await context.add_cookies(cookies)
        page = await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        await page.goto("/compose")
        await page.fill("#ai-prompt", "our pottery workshop returns this autumn")
        await page.get_by_role("button", name="Suggest", exact=True).click()
        insert = page.get_by_role("button", name="Insert as X text").first
        await insert.wait_for(timeout=15_000)
        await insert.click()
        artifacts = Path(__file__).resolve().parent.parent / "test-artifacts"
        artifacts.mkdir(exist_ok=True)
        await page.locator("#ai-panel").screenshot(path=str(artifacts / "ai-suggest.png"))
        value = await page.input_value("#override-x")
        assert "pottery" in value.lower()
        await page.fill("#text", "this are a sentence with bad grammar about pottery")
        await page.get_by_role("button", name="Fix grammar").click()
        await page.get_by_role("button", name="Insert into main text").first.click()
        assert "pottery" in (await page.input_value("#text")).lower()
        await chrome.close()
    assert not errors, errors
