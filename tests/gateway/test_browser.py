"""The web chat widget in headless Chromium (Debian's, driven by Playwright)."""

from __future__ import annotations

import pytest
from playwright.async_api import Browser, expect

from tests.helpers import Gateway

pytestmark = pytest.mark.browser


async def test_visitor_chats_with_the_agent_in_the_widget_and_keeps_it_after_reload(
    sqlite_gateway: Gateway, browser: Browser
) -> None:
    page = await browser.new_page()
    await page.goto(str(sqlite_gateway.client.make_url("/webchat")))
    await expect(page.locator("#status")).to_have_text("online")

    await page.fill("#text", "What are your opening hours?")
    await page.click("button[type=submit]")
    await expect(page.locator(".msg.agent")).to_contain_text("8am to 6pm")
    await expect(page.locator(".msg.member.pending")).to_have_count(0)

    await page.reload()
    await expect(page.locator(".msg.member")).to_have_text(["What are your opening hours?"])
    await expect(page.locator(".msg.agent")).to_have_count(1)

    await page.fill("#text", "Can I talk to a person?")
    await page.press("#text", "Enter")
    await expect(page.locator(".msg.agent").nth(1)).to_contain_text("person")
    await page.close()
