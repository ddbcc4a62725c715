"""Qualifications in the console, in Chromium: a member takes the demo qualification, and
an admin reviews a provisional attempt."""

from __future__ import annotations

import pytest
from playwright.async_api import Browser, Page, expect

from gateway.settings import load
from tests.fakes.twilio_api import FakeTwilio
from tests.helpers import Api, Gateway, add_member, eventually
from tests.people.test_qualifications_api import CHAT, GOOD_ANSWERS, Q, _mine, _take_it, _team


async def _console(browser: Browser, gw: Gateway, token: str) -> Page:
    """A console page signed in with ``token``."""
    page = await browser.new_page()
    await page.goto(str(gw.client.make_url("/console")))
    await page.fill("#token", token)
    await page.click("#signin button[type=submit]")
    return page


@pytest.mark.browser
async def test_a_member_takes_the_demo_qualification_in_the_console(
    sqlite_url: str, twilio: tuple[FakeTwilio, str], browser: Browser
) -> None:
    settings = load(env={"FRONTDESK_DATABASE_URL": sqlite_url})
    async with Gateway.running(settings, twilio[0]) as gw:
        _, admin = await _team(gw, "Boss", role="admin")
        ann_id, ann_token = await add_member(gw, "ann@example.com", kind="team", role="operator",
                                             name="Ann")  # fmt: skip
        await admin.post(f"{Q}/enrollments", {"member_ids": [ann_id]})
        page = await _console(browser, gw, ann_token)
        await expect(page.locator("#quals li.item")).to_contain_text("enrolled")
        await page.click("#quals li.item")
        exam = page.locator("#exam")
        await exam.locator('[name="q-double-charge"]').fill(GOOD_ANSWERS["double-charge"])
        await exam.locator('input[name="q-refund-days"][value="3-5"]').check()
        await exam.get_by_role("button", name="Start the chat").click()
        chat = exam.locator('[data-requirement="upset-patient"] .chat .msg')
        await expect(chat).to_have_text(["Hi, I was charged twice for my cleaning last week!"])
        for turn, text in enumerate(CHAT, start=1):
            await exam.locator('[name="chat-upset-patient"]').fill(text)
            await exam.locator('[name="chat-upset-patient"]').press("Enter")
            await expect(chat).to_have_count(2 * turn + 1)
        await expect(chat.last).to_have_text("Thanks, that's all I needed.")
        # The answers typed before the chat are still there after the view re-rendered.
        await expect(exam.locator('[name="q-double-charge"]')).to_have_value(
            GOOD_ANSWERS["double-charge"]
        )
        await exam.get_by_role("button", name="Submit answers").click()
        await expect(page.locator("#quals li.item")).to_contain_text("provisional", timeout=20000)
        await expect(exam.locator(".result.pass")).to_have_count(3)
        await expect(exam).to_contain_text("fallback grader")
        await page.close()


@pytest.mark.browser
async def test_an_admin_reviews_a_provisional_attempt_in_the_console(
    sqlite_url: str, twilio: tuple[FakeTwilio, str], browser: Browser
) -> None:
    settings = load(env={"FRONTDESK_DATABASE_URL": sqlite_url})
    async with Gateway.running(settings, twilio[0]) as gw:
        _, boss_token = await add_member(gw, "boss@example.com", kind="team", role="admin",
                                         name="Boss")  # fmt: skip
        _, bob_token = await add_member(gw, "bob@example.com", kind="team", role="operator",
                                        name="Bob")  # fmt: skip
        ann_id, ann = await _team(gw, "Ann")
        await Api(gw, boss_token).post(f"{Q}/enrollments", {"member_ids": [ann_id]})
        await _take_it(ann, ann_id)

        async def provisional() -> bool:
            return (await _mine(ann, ann_id))["status"] == "provisional"

        await eventually(provisional, timeout=20)
        boss, bob = await _console(browser, gw, boss_token), await _console(browser, gw, bob_token)
        for page in (boss, bob):
            await expect(page.locator("#me")).to_contain_text("offline")
        await expect(boss.locator("#reviews li.item")).to_have_text(["Annbilling-support"])
        await boss.click("#reviews li.item")
        view = boss.locator("#exam")
        chat = view.locator('[data-requirement="upset-patient"] .chat .msg')
        await expect(chat).to_have_count(7)
        await expect(chat.nth(1)).to_have_text(CHAT[0])
        await expect(view.locator(".result.pass")).to_have_count(3)
        await view.get_by_role("button", name="Qualify").click()
        await expect(boss.locator("#action-error")).to_contain_text("note")  # a note is needed
        await view.locator('[name="review-note"]').fill("Clear on refund times.")
        await view.get_by_role("button", name="Qualify").click()
        await expect(view).to_contain_text("Status: qualified")
        await expect(boss.locator("#reviews li.empty")).to_have_text("nothing to review")
        await expect(bob.locator("#reviews-head")).to_be_hidden()  # an operator reviews nothing
        status = (await _mine(ann, ann_id))["status"]
        for page in (boss, bob):
            await page.close()
    assert status == "qualified"
