"""The journey of a new person in a real browser (Playwright driving Debian's Chromium)
against the real app, worker and sandbox: sign in, connect X and Instagram, compose a
post with an image, schedule it, find it on the calendar, drag it to another day, publish
it from the panel and watch its chip turn published without a reload, follow its link
into the sandbox, duplicate it, disconnect Instagram and see what waits for it held.

Screenshots of the composer and the calendar go to test-artifacts/. Synchronisation is
Playwright's own waiting (expect, wait_for_*), never sleeps."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from playwright.async_api import async_playwright, expect

from src.db.tables import Account, Post, PostTarget, User
from tests.media_samples import jpeg_bytes

pytestmark = pytest.mark.usefixtures("db")

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
BERLIN = ZoneInfo("Europe/Berlin")
SLOW = 60_000  # ms: the worker and the sandbox's Instagram processing take a few seconds


@pytest.fixture
async def page(server):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium")
    ARTIFACTS.mkdir(exist_ok=True)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = await browser.new_context(
            viewport={"width": 1280, "height": 900},
            timezone_id="Europe/Berlin",
            locale="en-GB",
            base_url=server.url,
        )
        context.set_default_timeout(15_000)
        page = await context.new_page()
        page.on("dialog", lambda dialog: dialog.accept())  # hx-confirm
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        yield page
        await context.close()
        await browser.close()
        assert not errors, errors


async def shot(page, name: str, full_page: bool = True) -> None:
    if full_page:  # from the top, nothing focused: the sticky bar stays where it belongs
        await page.evaluate("document.activeElement && document.activeElement.blur()")
        await page.evaluate("window.scrollTo(0, 0)")
    await page.screenshot(
        path=str(ARTIFACTS / f"{name}.png"), full_page=full_page, animations="disabled"
    )


async def sign_in(page, email: str) -> None:
    await page.goto("/auth/login")  # the sandbox's Google consent screen
    await page.get_by_label("Another test identity").check()
    await page.get_by_role("textbox", name="Name").fill("Journey Person")
    await page.get_by_role("textbox", name="Email").fill(email)
    await page.get_by_role("button", name="Allow").click()
    await expect(page).to_have_url(re.compile(r"/auth/welcome$"))
    await page.get_by_label("I am 16 years or older").check()
    await page.get_by_label(re.compile("I have read and accept")).check()
    await expect(page.get_by_label("Your time zone")).to_have_value("Europe/Berlin")
    await page.get_by_role("button", name="Continue").click()
    await expect(page).to_have_url(re.compile(r"/calendar$"))
    await expect(page.get_by_text("Connect an account to start.")).to_be_visible()


async def connect(page, platform: str) -> None:
    await page.goto("/connections")
    await page.locator(f"form[action='/connections/{platform}/connect'] button").click()
    await page.get_by_role("button", name="Allow").click()  # the platform's consent screen
    await expect(page).to_have_url(re.compile(r"/connections(#.*)?$"))


async def test_the_journey_of_a_new_person(server, page):
    email = f"journey-{datetime.now().timestamp():.0f}@example.com"
    await sign_in(page, email)
    await connect(page, "x")
    await connect(page, "instagram")
    user = await User.objects().get(User.email == email)
    accounts = {a.platform: a for a in await Account.objects().where(Account.user == user.id)}
    assert set(accounts) == {"x", "instagram"}

    # Compose a post with an image for both accounts, three days ahead.
    today = datetime.now(BERLIN).date()
    planned = datetime.combine(today + timedelta(days=3), datetime.min.time(), BERLIN)
    planned = planned.replace(hour=10, minute=30)
    await page.goto("/compose")
    for account in accounts.values():
        await page.locator(f"input[name=account][value='{account.id}']").check()
    text = "Fresh bread, straight from the oven — come by before noon #bakery"
    await page.get_by_label("Text", exact=True).fill(text)
    await page.locator("#media-upload-input").set_input_files(
        files=[{"name": "bread.jpg", "mimeType": "image/jpeg", "buffer": jpeg_bytes(1080, 1080)}]
    )
    await expect(page.locator("#media-list .media-item")).to_have_count(1, timeout=SLOW)
    await page.get_by_label("Date and time").fill(planned.strftime("%Y-%m-%dT%H:%M"))
    await expect(page.locator("#checks")).to_contain_text("Instagram")
    await shot(page, "composer")
    await page.get_by_role("button", name="Schedule", exact=True).click()
    await expect(page).to_have_url(re.compile(r"/posts/\d+$"))
    post_id = int(page.url.rsplit("/", 1)[1])

    # It is on the calendar, on its day.
    await page.goto("/calendar")
    chip = page.locator(f"#chip-{post_id}")
    await expect(page.locator(f"#day-{planned.date()} #chip-{post_id}")).to_be_visible()
    await expect(chip).to_have_class(re.compile(r"\bs-scheduled\b"))
    await expect(chip.locator(".i-x")).to_have_count(1)
    await expect(chip.locator(".i-instagram")).to_have_count(1)
    await expect(chip).to_contain_text("10:30")
    await shot(page, "calendar-month")
    await page.evaluate("window.__sameDocument = true")  # gone if the page ever reloads

    # Drag it to tomorrow: the domain moves it, the calendar shows it there.
    tomorrow = today + timedelta(days=1)
    await chip.drag_to(page.locator(f"#day-{tomorrow}"))
    await expect(page.locator(f"#day-{tomorrow} #chip-{post_id}")).to_be_visible()
    await expect(page.locator("#flashes")).to_contain_text("Moved to")
    moved = await Post.objects().get(Post.id == post_id)
    assert moved.publish_at == planned.replace(
        year=tomorrow.year, month=tomorrow.month, day=tomorrow.day
    )

    # A day in the past refuses the move, and the chip snaps back with the reason.
    yesterday = today - timedelta(days=1)
    if await page.locator(f"#day-{yesterday}").count():  # on the grid unless a month began
        await page.locator(f"#chip-{post_id}").drag_to(page.locator(f"#day-{yesterday}"))
        await expect(page.locator("#flashes")).to_contain_text("in the past")
        await expect(page.locator(f"#day-{tomorrow} #chip-{post_id}")).to_be_visible()

    # Open it in the panel (the composer, as a partial) and bring it due now.
    await page.locator(f"#chip-{post_id}").click()
    panel = page.locator("#post-panel")
    await expect(panel).to_be_visible()
    await expect(panel.locator("#composer textarea[name=text]")).to_have_value(text)
    await shot(page, "calendar-panel-edit", full_page=False)
    await panel.get_by_role("button", name="Publish now").click()
    # The panel follows the publishing on its own; so does the chip, without a reload.
    await expect(panel.locator(".panel-facts .status-chip")).to_have_text("Published", timeout=SLOW)
    await expect(page.locator(f"#chip-{post_id}")).to_have_class(
        re.compile(r"\bs-published\b"), timeout=SLOW
    )
    assert await page.evaluate("window.__sameDocument === true")
    await shot(page, "calendar-published", full_page=False)

    # Follow its link into the sandbox.
    link = panel.get_by_role("link", name="View on X")
    async with page.context.expect_page() as opened:
        await link.click()
    tweet = await opened.value
    await tweet.wait_for_load_state()
    assert "/sandbox/" in tweet.url
    await expect(tweet.locator("body")).to_contain_text("Fresh bread")
    await tweet.close()
    await expect(panel.get_by_role("link", name="View on Instagram")).to_be_visible()

    # Duplicate it (a draft for tomorrow at the same time) and schedule the copy.
    await panel.get_by_role("button", name="Duplicate").click()
    await expect(panel.locator("#panel-title")).to_have_text("Edit post")
    copy_id = int(await panel.locator("[data-save-url]").get_attribute("data-post"))
    assert copy_id != post_id
    await expect(panel.locator(".panel-facts .status-chip")).to_have_text("Draft")
    await panel.get_by_role("button", name="Schedule", exact=True).click()
    await expect(panel.locator(".panel-facts .status-chip")).to_have_text("Scheduled")
    await expect(page.locator(f"#chip-{copy_id}")).to_have_class(re.compile(r"\bs-scheduled\b"))
    await panel.get_by_role("button", name="Close panel").click()
    await expect(panel).to_be_hidden()

    # Disconnect Instagram: what was waiting for it is held, and says so.
    await page.goto("/connections")
    row = page.locator(f"#account-{accounts['instagram'].id}")
    await row.get_by_role("button", name="Disconnect").click()
    await expect(row.locator(".status-badge")).to_have_text("Disconnected")
    held = await PostTarget.objects().get(
        (PostTarget.post == copy_id) & (PostTarget.account == accounts["instagram"].id)
    )
    assert held.status == "held"
    await page.goto(f"/calendar?date={tomorrow}")
    copy_chip = page.locator(f"#chip-{copy_id}")
    await expect(copy_chip).to_have_class(re.compile(r"\bis-held\b"))
    await copy_chip.click()
    await expect(panel.locator(".panel-targets")).to_contain_text("Held")
    await shot(page, "calendar-held", full_page=False)

    # Keyboard: arrows move between days, Enter writes a post on the focused day.
    await panel.get_by_role("button", name="Close panel").click()
    focused = page.locator("#calendar [role=gridcell][tabindex='0']")
    await focused.focus()
    start = await focused.get_attribute("data-date")
    await page.keyboard.press("ArrowRight")
    after = await page.evaluate("document.activeElement.dataset.date")
    assert after == str(datetime.fromisoformat(start).date() + timedelta(days=1))
    await page.keyboard.press("Enter")
    await expect(page).to_have_url(re.compile(rf"/compose\?at={after}T"))


async def test_a_phone_opens_on_the_agenda_in_the_dark(server):
    """Under 640 px wide the calendar opens on the agenda (the URL says so), in the
    system's dark theme, and the month stays one tap away."""
    from tests.browser import Browser

    person = Browser(server.url)
    person.signed_in_user()
    person.connect("x")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = await browser.new_context(
            viewport={"width": 390, "height": 844},
            color_scheme="dark",
            timezone_id="Europe/Berlin",
            base_url=server.url,
        )
        host = server.url.split("//", 1)[1].split(":")[0]
        await context.add_cookies(
            [
                {"name": k, "value": v, "domain": host, "path": "/"}
                for k, v in person.http.cookies.items()
            ]
        )
        page = await context.new_page()
        await page.goto("/calendar")
        await expect(page).to_have_url(re.compile(r"/calendar\?view=agenda"))
        await expect(page.locator("#calendar")).to_have_attribute("data-view", "agenda")
        await expect(page.get_by_role("link", name="Agenda")).to_have_attribute(
            "aria-current", "page"
        )
        background = await page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert background != "rgb(255, 255, 255)"
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390  # nothing sticks out sideways
        ARTIFACTS.mkdir(exist_ok=True)
        await shot(page, "calendar-phone-dark")
        await page.get_by_role("link", name="Month").click()
        await expect(page.locator("#calendar")).to_have_attribute("data-view", "month")
        await expect(page).to_have_url(re.compile(r"view=month"))
        await context.close()
        await browser.close()
