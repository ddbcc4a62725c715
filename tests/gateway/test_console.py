"""The operator console in headless Chromium: two operators go live, a web chat customer's
handoff goes to the less loaded one, whose reply reaches the customer's widget."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import Browser, Page, expect

from gateway.settings import from_mapping
from people import credentials
from store.models import Inbound, Member
from tests.escalation.test_live import ON_CALL_PHONE, live_config
from tests.fakes.smtp_sink import SmtpSink
from tests.fakes.twilio_api import FakeTwilio
from tests.helpers import CUSTOMER, Gateway, add_member, eventually


async def _with_password(gw: Gateway, email: str, **fields: str) -> int:
    """An operator who signs in with the password "correct horse battery"."""
    member_id, _ = await add_member(gw, email, kind="team", role="operator", token=False,
                                    **fields)  # fmt: skip
    async with gw.services.sessions.begin() as session:
        member = await session.get(Member, member_id)
        assert member is not None
        member.password_hash = credentials.hash_password("correct horse battery")
    return member_id


async def _sign_in(page: Page, gw: Gateway, **how: str) -> None:
    await page.goto(str(gw.client.make_url("/console")))
    if "token" in how:
        await page.fill("#token", how["token"])
    else:
        await page.fill("#email", how["email"])
        await page.fill("#password", how["password"])
    await page.click("#signin button[type=submit]")
    await expect(page.locator("#me")).to_contain_text("offline")
    await page.click("#live")
    await expect(page.locator("#me")).to_contain_text("live")


@pytest.mark.browser
async def test_two_operators_a_web_chat_handoff_goes_to_the_less_loaded_and_they_reply(
    sqlite_url: str, twilio: tuple[FakeTwilio, str], browser: Browser
) -> None:
    fake, base = twilio
    async with Gateway.running(from_mapping(live_config(sqlite_url, base), env={}), fake) as gw:
        await _with_password(gw, "ann@example.com", name="Ann")
        _, bob_token = await add_member(gw, "bob@example.com", kind="team", role="operator",
                                        name="Bob")  # fmt: skip

        ann, bob, customer = [await browser.new_page() for _ in range(3)]
        await _sign_in(ann, gw, email="ann@example.com", password="correct horse battery")
        await _sign_in(bob, gw, token=bob_token)
        await expect(ann.locator("#operators li")).to_have_count(2)

        # Ann went live first: a texter's handoff is hers, and she now holds one.
        await gw.sms("I want to talk to a person")
        await expect(ann.locator("#mine li.item")).to_have_count(1)

        await customer.goto(str(gw.client.make_url("/webchat")))
        await expect(customer.locator("#status")).to_have_text("online")
        await customer.fill("#text", "Can I talk to a person?")
        await customer.press("#text", "Enter")

        # The web chat handoff goes to Bob, who holds none.
        await expect(bob.locator("#mine li.item")).to_have_count(1)
        await expect(ann.locator("#mine li.item")).to_have_count(1)
        await bob.click("#mine li.item")
        await expect(bob.locator("#history .msg.member")).to_have_text(["Can I talk to a person?"])
        await bob.click("#take")
        await expect(bob.locator("#take")).to_be_disabled()
        await bob.fill("#reply", "/note regular patient, check the file")
        await bob.press("#reply", "Enter")
        await expect(bob.locator("#history .msg.note")).to_contain_text("check the file")
        await bob.fill("#reply", "Hi, I'm Bob from the front desk. How can I help?")
        await bob.press("#reply", "Enter")

        await expect(customer.locator(".msg.operator")).to_contain_text("I'm Bob")
        await expect(customer.locator(".msg.operator .name")).to_have_text("Bob")
        await expect(ann.locator("#operators li")).to_contain_text(["Ann (1)", "Bob (1)"])
        await bob.click("#handback")
        await expect(bob.locator("#mine li.item")).to_have_count(0)
        await expect(customer.locator(".msg")).not_to_contain_text(["check the file"])
        for page in (ann, bob, customer):
            await page.close()


async def test_signing_in_gives_a_token_and_says_nothing_about_which_part_was_wrong(
    sqlite_gateway: Gateway,
) -> None:
    gw = sqlite_gateway
    ann_id = await _with_password(gw, "ann@example.com")
    await add_member(gw, "customer@example.com", token=False)

    async def sign_in(email: str, password: str) -> tuple[int, dict[str, Any]]:
        response = await gw.client.post("/api/sessions", json={"email": email,
                                                               "password": password})  # fmt: skip
        return response.status, await response.json()

    wrong = await sign_in("ann@example.com", "wrong horse battery")
    unknown = await sign_in("nobody@example.com", "correct horse battery")
    customer = await sign_in("customer@example.com", "correct horse battery")
    status, body = await sign_in("ANN@example.com", "correct horse battery")
    response = await gw.client.get(
        "/api/tokens", headers={"Authorization": f"Bearer {body['token']}"}
    )
    bad = await gw.client.post("/api/sessions", data=b"not json")
    assert (
        wrong
        == unknown
        == customer
        == (
            401,
            {
                "error": {
                    "code": "unauthenticated",
                    "message": "the email or password is wrong",
                    "details": [],
                }
            },
        )
    )
    assert (status, body["member"]) == (201, str(ann_id))
    assert response.status == 200
    assert bad.status == 400


async def test_the_console_socket_refuses_a_bad_token_and_a_contact(
    sqlite_gateway: Gateway,
) -> None:
    gw = sqlite_gateway
    _, contact = await add_member(gw, "customer@example.com")
    frames = []
    for token in ("fd_not-a-token", contact):
        ws = await gw.client.ws_connect("/console/ws")
        await ws.send_json({"type": "hello", "token": token})
        frames.append(await ws.receive_json(timeout=5))
        assert (await ws.receive()).type.name in ("CLOSE", "CLOSED", "CLOSING")
    assert [f["code"] for f in frames] == ["unauthenticated", "unauthenticated"]


async def test_repeated_wrong_passwords_are_slowed_down_and_signing_out_revokes_the_token(
    sqlite_gateway: Gateway,
) -> None:
    gw = sqlite_gateway
    await _with_password(gw, "ann@example.com")

    async def sign_in(password: str) -> int:
        response = await gw.client.post("/api/sessions", json={"email": "ann@example.com",
                                                               "password": password})  # fmt: skip
        return response.status

    good = await gw.client.post(
        "/api/sessions", json={"email": "ann@example.com", "password": "correct horse battery"}
    )
    token = (await good.json())["token"]
    wrong = [await sign_in(f"guess {i}") for i in range(10)]
    blocked = await sign_in("correct horse battery")  # even the right one, for a while
    headers = {"Authorization": f"Bearer {token}"}
    out = await gw.client.delete("/api/sessions", headers=headers)
    after = await gw.client.get("/api/tokens", headers=headers)
    assert wrong == [401] * 10
    assert blocked == 429
    assert out.status == 204
    assert after.status == 401


@pytest.mark.browser
async def test_after_hours_sms_the_on_call_member_takes_it_in_the_console_and_replies(
    database_url: str, twilio: tuple[FakeTwilio, str], sink: SmtpSink, browser: Browser
) -> None:
    """Issue 6's acceptance, through the console: after hours the AI answers with the
    after-hours message, the on-call member (SMS on, email off) gets only a text, goes
    live in the console, takes the conversation, replies by SMS; the AI stays silent until
    they hand back."""
    fake, base = twilio
    raw = live_config(database_url, base, sink)
    async with Gateway.running(from_mapping(raw, env={}), fake) as gw:
        _, token = await add_member(gw, "sam@example.com", kind="team", role="operator",
                                    name="Sam", phone=ON_CALL_PHONE,
                                    notify={"sms": True, "email": False})  # fmt: skip
        await gw.sms("Can I talk to a person?")
        await fake.wait_sent(3)
        console = await browser.new_page()
        await _sign_in(console, gw, token=token)
        await expect(console.locator("#mine li.item")).to_have_count(1)
        await console.click("#mine li.item")
        await console.click("#take")
        await expect(console.locator("#take")).to_be_disabled()
        await console.fill("#reply", "Hi, this is Sam from Example Dental.")
        await console.press("#reply", "Enter")
        await fake.wait_sent(4)
        await gw.sms("What are your opening hours?")
        await expect(console.locator("#history .msg.member")).to_have_count(2)

        async def processed() -> bool:
            return await gw.count(Inbound, Inbound.status == "done") == 2

        await eventually(processed)
        await eventually(gw.settled)  # a wrongly queued reply would have been sent by now
        silent = len(fake.sent)
        await console.click("#handback")
        await expect(console.locator("#mine li.item")).to_have_count(0)
        await gw.sms("What are your opening hours, please?")
        await fake.wait_sent(5)
        await console.close()
    to_customer = [s.body for s in fake.sent if s.to == CUSTOMER]
    assert to_customer[1] == "We're closed right now; a person will reply as soon as we can."
    assert [s.to for s in fake.sent].count(ON_CALL_PHONE) == 1
    assert not sink.messages  # Sam's email notifications are off
    assert to_customer[2] == "Hi, this is Sam from Example Dental."
    assert silent == 4  # the customer's question while Sam had it got no AI answer
    assert "8am" in to_customer[3]
