"""SMS carrier keywords: STOP and its kin opt a number out (recorded, never answered by the
agent, and nothing is sent to it after), START opts it back in, HELP gets the help text."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from gateway.settings import from_mapping
from store.models import Consent, Identity, Inbound, Member, Outbox
from tests.fakes.twilio_api import FakeTwilio
from tests.helpers import CUSTOMER, Gateway, add_member, eventually, make_config

HELP = "Reply STOP to stop receiving messages, START to receive them again."


async def _processed(gw: Gateway, count: int) -> None:
    async def done() -> bool:
        return await gw.count(Inbound, Inbound.status == "done") >= count

    await eventually(done)


async def _settled(gw: Gateway, count: int) -> None:
    """``count`` outbox rows, none pending."""

    async def settled() -> bool:
        rows = await gw.all(select(Outbox.status))
        return len(rows) >= count and "pending" not in rows

    await eventually(settled)


async def _member(gw: Gateway, phone: str) -> Member:
    [member] = await gw.all(
        select(Member).join(Identity, Identity.member_id == Member.id)
        .where(Identity.kind == "phone", Identity.address == phone)
    )  # fmt: skip
    return member


@pytest.mark.parametrize("word", ["STOP", "  stop \n", "Unsubscribe", "QUIT", "end", "Cancel"])
async def test_stop_records_the_opt_out_and_is_never_answered(gateway: Gateway, word: str) -> None:
    assert (await gateway.sms(word)).status == 200
    await _processed(gateway, 1)

    [consent] = await gateway.all(select(Consent))
    member = await _member(gateway, CUSTOMER)
    assert (consent.channel, consent.address, consent.choice, consent.text) == (
        "sms", CUSTOMER, "out", word,
    )  # fmt: skip
    assert consent.member_id == member.id
    assert consent.inbound_id is not None
    assert member.notify_sms is False
    assert await gateway.count(Outbox) == 0
    assert gateway.twilio.sent == []


async def test_after_stop_agent_replies_are_suppressed_until_start(gateway: Gateway) -> None:
    await gateway.sms("STOP")
    await gateway.sms("Do you accept insurance?")
    await _settled(gateway, 1)

    [suppressed] = await gateway.all(select(Outbox))
    assert suppressed.status == "failed"
    assert suppressed.last_error.startswith(f"suppressed: {CUSTOMER} opted out with 'STOP'")
    assert gateway.twilio.sent == []

    await gateway.sms("start")
    await gateway.sms("Do you accept insurance?")
    [sent] = await gateway.twilio.wait_sent(1)

    assert "insurance" in sent.body
    assert [c.choice for c in await gateway.all(select(Consent).order_by(Consent.id))] == [
        "out", "in",
    ]  # fmt: skip
    assert (await _member(gateway, CUSTOMER)).notify_sms is True


async def test_help_gets_the_help_text_even_after_stop(gateway: Gateway) -> None:
    await gateway.sms("STOP")
    await gateway.sms("help")
    [sent] = await gateway.twilio.wait_sent(1)

    assert (sent.to, sent.body) == (CUSTOMER, HELP)
    assert await gateway.count(Consent) == 1  # HELP is no opt-in or opt-out


async def test_a_sentence_with_a_keyword_in_it_goes_to_the_agent(gateway: Gateway) -> None:
    await gateway.sms("please stop, do you accept insurance?")
    [sent] = await gateway.twilio.wait_sent(1)

    assert "insurance" in sent.body
    assert await gateway.count(Consent) == 0


async def test_configured_keywords_replace_the_defaults(
    database_url: str, twilio: tuple[FakeTwilio, str]
) -> None:
    fake, base = twilio
    raw = make_config(database_url, twilio_base=base)
    raw["channels"]["sms"].update(opt_out_keywords=["ARRET"], help_text="Call us on 555-0100.")
    async with Gateway.running(from_mapping(raw, env={}), fake) as gw:
        await gw.sms("arret")
        await gw.sms("HELP")
        [sent] = await fake.wait_sent(1)
        await _processed(gw, 2)
        [consent] = await gw.all(select(Consent))
    assert sent.body == "Call us on 555-0100."
    assert consent.choice == "out"


RULE: dict[str, Any] = {
    "name": "on-call", "role": "operator", "channels": ["sms"],
    "message": "Handoff: {member} needs a person ({reason}).",
}  # fmt: skip
OPERATOR = "+14155550201"


async def test_a_notification_to_a_number_that_opted_out_is_not_sent(
    database_url: str, twilio: tuple[FakeTwilio, str]
) -> None:
    """Even with the member's notify.sms turned back on, the number's opt-out holds."""
    fake, base = twilio
    raw = make_config(database_url, twilio_base=base)
    raw["escalation"] = {"notify": [RULE]}
    async with Gateway.running(from_mapping(raw, env={}), fake) as gw:
        operator, _ = await add_member(gw, "op@example.com", kind="team", role="operator",
                                       phone=OPERATOR, token=False)  # fmt: skip
        await gw.sms("STOP", from_=OPERATOR)
        await _processed(gw, 1)
        async with gw.services.sessions.begin() as session:
            member = await session.get(Member, operator)
            assert member is not None
            assert member.notify_sms is False
            member.notify_sms = True  # a preference is not consent
        await gw.sms("Can I talk to a person?")
        [reply] = await fake.wait_sent(1)
        await _settled(gw, 2)
        rows = {r.to_address: r for r in await gw.all(select(Outbox))}
    assert reply.to == CUSTOMER
    assert rows[OPERATOR].status == "failed"
    assert "opted out" in rows[OPERATOR].last_error
    assert [s.to for s in fake.sent] == [CUSTOMER]
