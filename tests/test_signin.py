"""Google sign-in end to end against the sandbox provider over real HTTP, and each
refusal: a clear message and no session."""

from __future__ import annotations

import secrets
from urllib.parse import parse_qs, urlsplit

import pytest

from src.db.tables import AuditEvent, Session, User
from tests.browser import Browser

pytestmark = pytest.mark.usefixtures("db")


def session_cookie(browser: Browser) -> str | None:
    return browser.http.cookies.get("okk_session")


async def sessions_of(email: str) -> int:
    user = await User.objects().get(User.email == email)
    if user is None:
        return 0
    return await Session.count().where(Session.user == user.id)


def tamper(server, how: str) -> None:
    with server.sandbox_admin() as admin:
        admin.patch("/config", json={"google_id_token_tamper": how}).raise_for_status()


async def test_sign_in_creates_user_asks_consent_then_lands_on_calendar(server):
    browser = Browser(server.url)
    email = f"new-{secrets.token_hex(3)}@example.com"
    first = browser.sign_in(email, name="Nora New")
    assert first.url.path == "/auth/welcome"
    assert "16" in first.text  # the age confirmation is asked
    refused = browser.post("/auth/welcome", {"timezone": "Europe/Paris"})
    assert refused.status_code == 400
    assert "16 or older" in refused.text
    done = browser.welcome("Europe/Paris")
    assert done.headers["location"] == "/calendar"
    calendar = browser.follow(done)
    assert calendar.status_code == 200
    assert "Nora New" in calendar.text
    user = await User.objects().get(User.email == email)
    assert user.timezone == "Europe/Paris"
    assert user.age_confirmed_at is not None and user.policy_accepted_at is not None
    events = await AuditEvent.select(AuditEvent.action, AuditEvent.ip, AuditEvent.user_agent).where(
        AuditEvent.user == user.id
    )
    actions = [e["action"] for e in events]
    assert "sign_up" in actions and "consent_given" in actions
    assert all(e["ip"] == "127.0.0.1" and e["user_agent"] for e in events)


async def test_session_id_rotates_at_sign_in(server):
    browser = Browser(server.url)
    consent = browser.start_sign_in()  # a pre-sign-in session exists now
    before = session_cookie(browser)
    assert before
    back = browser.consent(consent, custom_email=f"r-{secrets.token_hex(3)}@example.com")
    browser.follow(browser.http.get(back.headers["location"]))
    after = session_cookie(browser)
    assert after and after != before
    assert await Session.count().where(Session.id == before) == 0


async def test_private_pages_need_sign_in(server):
    browser = Browser(server.url)
    response = browser.get("/calendar")
    assert response.status_code == 302 and response.headers["location"] == "/"
    htmx = browser.get("/calendar", headers={"hx-request": "true"})
    assert htmx.status_code == 401 and htmx.headers["hx-redirect"] == "/"


async def test_consent_required_before_private_pages(server):
    browser = Browser(server.url)
    browser.sign_in()
    response = browser.get("/compose")
    assert response.headers["location"] == "/auth/welcome"


def assert_refused(browser: Browser, response, message: str) -> None:
    assert response.url.path == "/"
    assert message in response.text
    assert "Sign out" not in response.text
    assert browser.get("/calendar").status_code == 302


async def test_denied_consent_is_a_clear_message_and_no_session(server):
    browser = Browser(server.url)
    back = browser.consent(browser.start_sign_in(), decision="deny")
    final = browser.follow(browser.http.get(back.headers["location"]))
    assert_refused(browser, final, "Sign-in was cancelled")


async def test_wrong_state_is_refused(server):
    browser = Browser(server.url)
    back = browser.consent(browser.start_sign_in(), custom_email="s@example.com")
    query = parse_qs(urlsplit(back.headers["location"]).query)
    forged = f"/auth/callback?code={query['code'][0]}&state=forged"
    final = browser.follow(browser.get(forged))
    assert_refused(browser, final, "state mismatch")


async def test_missing_pending_sign_in_is_refused(server):
    """A callback from a sign-in this browser never started (login CSRF)."""
    attacker, victim = Browser(server.url), Browser(server.url)
    back = attacker.consent(attacker.start_sign_in(), custom_email="mallory@example.com")
    final = victim.follow(victim.http.get(back.headers["location"]))
    assert_refused(victim, final, "expired")


async def test_replayed_code_is_refused(server):
    first = Browser(server.url)
    email = f"replay-{secrets.token_hex(3)}@example.com"
    back = first.consent(first.start_sign_in(), custom_email=email)
    code = parse_qs(urlsplit(back.headers["location"]).query)["code"][0]
    first.follow(first.http.get(back.headers["location"]))
    assert await sessions_of(email) == 1
    # Another browser with a genuine pending sign-in of its own replays the used code.
    thief = Browser(server.url)
    state = parse_qs(urlsplit(str(thief.start_sign_in().url)).query)["state"][0]
    final = thief.follow(thief.get(f"/auth/callback?code={code}&state={state}"))
    assert_refused(thief, final, "code was refused")
    assert await sessions_of(email) == 1


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("nonce", "nonce mismatch"),
        ("audience", "wrong audience"),
        ("expired", "expired"),
        ("signature", "signature is not valid"),
        ("issuer", "unexpected issuer"),
    ],
)
async def test_bad_id_tokens_are_refused(server, how, message):
    email = f"{how}-{secrets.token_hex(3)}@example.com"
    browser = Browser(server.url)
    tamper(server, how)
    final = browser.sign_in(email)
    assert_refused(browser, final, message)
    assert await User.count().where(User.email == email) == 0


async def test_unverified_email_is_refused(server):
    browser = Browser(server.url)
    email = f"unverified-{secrets.token_hex(3)}@example.com"
    final = browser.sign_in(email, verified=False)
    assert_refused(browser, final, "not verified")
    assert await User.count().where(User.email == email) == 0


async def test_address_not_allowed_is_refused(server):
    browser = Browser(server.url)
    final = browser.sign_in("stranger@elsewhere.net")
    assert_refused(browser, final, "not allowed to sign up")
    assert await User.count().where(User.email == "stranger@elsewhere.net") == 0


async def test_without_allowed_list_only_the_first_user_gets_in_and_owns(fresh_server):
    app = fresh_server(OKK_ALLOWED_EMAILS="")
    owner = Browser(app.url)
    owner.signed_in_user("owner@anywhere.net")
    assert owner.get("/calendar").status_code == 200
    second = Browser(app.url)
    final = second.sign_in("second@anywhere.net")
    assert_refused(second, final, "not allowed to sign up")
    # The owner can still come back.
    again = Browser(app.url)
    assert again.sign_in("owner@anywhere.net").url.path == "/calendar"
