"""Escalation ladders, voice notifications and quiet hours: SMS now, a call later if
nobody took the conversation (pressing 1 takes it), and nothing during a rule's quiet
hours -- each decision recorded."""

from __future__ import annotations

import html
import re
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from gateway.settings import from_mapping
from store.models import Conversation, Handoff, Notification
from tests.escalation.test_live import ON_CALL_PHONE, _operator, live_config
from tests.fakes.twilio_api import FakeTwilio
from tests.helpers import ACCOUNT_SID, PUBLIC_URL, SMS_NUMBER, Gateway, eventually

RULE: dict[str, Any] = {"name": "on-call", "role": "operator", "channels": ["sms"],
                        "ladder": [{"after_seconds": 1, "channels": ["voice"]}]}  # fmt: skip


def _config(database_url: str, base: str, rule: dict[str, Any]) -> dict[str, Any]:
    raw = live_config(database_url, base)
    raw["channels"]["voice"] = {"numbers": [SMS_NUMBER], "agent": "receptionist"}
    raw["escalation"]["notify"] = [rule]
    return raw


async def _decisions(gw: Gateway) -> list[tuple[int, str, str, str]]:
    rows = await gw.all(select(Notification).order_by(Notification.step, Notification.id))
    return [(n.step, n.channel, n.status, n.reason) for n in rows]


async def test_nobody_takes_it_so_a_call_follows_the_text_and_pressing_1_takes_it(
    database_url: str, twilio: tuple[FakeTwilio, str]
) -> None:
    fake, base = twilio
    async with Gateway.running(from_mapping(_config(database_url, base, RULE), env={}), fake) as gw:
        await _operator(gw, "Sam", ON_CALL_PHONE)
        await gw.sms("Can I talk to a person?")
        await fake.wait_sent(3)  # the agent, the after-hours message, the text to Sam
        [call] = await fake.wait_calls(1)
        action = html.unescape(re.search(r'action="([^"]+)"', call.twiml).group(1))  # type: ignore[union-attr]
        path = action.removeprefix(PUBLIC_URL)
        form = {"CallSid": call.sid, "AccountSid": ACCOUNT_SID, "From": SMS_NUMBER,
                "To": ON_CALL_PHONE, "Digits": "1"}  # fmt: skip
        answered = await gw.post_form(path, form)
        said = await answered.text()
        [handoff] = await gw.all(select(Handoff))
        [conversation] = await gw.all(select(Conversation))
        decisions = await _decisions(gw)
        forged = await gw.post_form(path, form, signature="bad")
    assert (call.to, call.from_) == (ON_CALL_PHONE, SMS_NUMBER)
    assert "needs a person (asked for a person). Press 1 to take the conversation." in call.twiml
    assert "The conversation is yours" in said
    assert handoff.taken_at is not None
    assert conversation.status == "operator"
    assert decisions == [(0, "sms", "sent", ""), (1, "voice", "sent", "")]
    assert forged.status == 403


async def test_a_conversation_taken_before_the_next_step_gets_no_call(
    sqlite_url: str, twilio: tuple[FakeTwilio, str]
) -> None:
    fake, base = twilio
    rule = {**RULE, "ladder": [{"after_seconds": 4, "channels": ["voice"]}]}
    async with Gateway.running(from_mapping(_config(sqlite_url, base, rule), env={}), fake) as gw:
        sam = await _operator(gw, "Sam", ON_CALL_PHONE)
        await gw.sms("Can I talk to a person?")
        await fake.wait_sent(3)
        [conversation] = await gw.all(select(Conversation))
        assert (await sam.post(f"/api/conversations/{conversation.id}/take"))[0] == 200

        async def past_the_step() -> bool:
            [handoff] = await gw.all(select(Handoff))
            return bool(handoff.notified_at) and datetime.now(handoff.notified_at.tzinfo) > (
                handoff.notified_at + timedelta(seconds=5.5)
            )

        await eventually(past_the_step)
        decisions = await _decisions(gw)
    assert fake.calls == []
    assert decisions == [(0, "sms", "sent", "")]


async def test_quiet_hours_suppress_the_rule_and_say_so(
    sqlite_url: str, twilio: tuple[FakeTwilio, str]
) -> None:
    fake, base = twilio
    now = datetime.now(ZoneInfo("America/New_York"))
    start, end = now - timedelta(hours=1), now + timedelta(hours=1)
    rule = {**RULE, "ladder": [], "quiet_hours": f"{start:%H:%M}-{end:%H:%M}"}
    async with Gateway.running(from_mapping(_config(sqlite_url, base, rule), env={}), fake) as gw:
        await _operator(gw, "Sam", ON_CALL_PHONE)
        await gw.sms("Can I talk to a person?")
        await fake.wait_sent(2)

        async def decided() -> bool:
            return await gw.count(Notification) == 1

        await eventually(decided)
        decisions = await _decisions(gw)
    assert decisions == [(0, "sms", "suppressed", "quiet hours")]
    assert ON_CALL_PHONE not in [s.to for s in fake.sent]


def test_a_ladder_must_wait_longer_at_each_step() -> None:
    from escalation.notify import NotifyRule

    bad = {**RULE, "ladder": [{"after_seconds": 60, "channels": ["voice"]},
                              {"after_seconds": 30, "channels": ["email"]}]}  # fmt: skip
    with pytest.raises(ValueError, match="after_seconds increasing"):
        NotifyRule.model_validate(bad)
