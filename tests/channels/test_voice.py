"""Voice calls: TwiML answers to signed Twilio webhooks, the same member as their texts,
fillers for slow turns, silence, phone controls, and the call's end."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import pytest
from aiohttp import ClientResponse
from langchain_core.messages import AIMessage
from sqlalchemy import select

from agents.base import TurnInput, TurnResult
from agents.runtime import Runtime
from gateway.app import runtime_for
from gateway.settings import Settings, from_mapping
from store.models import Conversation, Inbound, Member, Message
from tests.agents.test_llm import Scripted, _call
from tests.fakes.twilio_api import FakeTwilio
from tests.helpers import (
    ACCOUNT_SID,
    CUSTOMER,
    SMS_NUMBER,
    Gateway,
    make_config,
    twilio_signature,
)

CALL = "CA" + "7" * 32
OTHER_NUMBER = "+14155550177"  # a voice number the SMS channel does not have


def _settings(database_url: str, base: str, **voice: Any) -> Settings:
    raw = make_config(database_url, twilio_base=base)
    raw["channels"]["voice"] = {"numbers": [SMS_NUMBER], "agent": "receptionist", **voice}
    raw["agents"][0]["voice"] = {"voice": "Polly.Amy", "language": "en-GB"}
    return from_mapping(raw, env={})


@pytest.fixture
async def call_gateway(database_url: str, twilio: tuple[FakeTwilio, str]) -> AsyncIterator[Gateway]:
    fake, base = twilio
    async with Gateway.running(_settings(database_url, base), fake) as gw:
        yield gw


def _form(**fields: str) -> dict[str, str]:
    return {
        "CallSid": CALL,
        "AccountSid": ACCOUNT_SID,
        "From": CUSTOMER,
        "To": SMS_NUMBER,
        "CallStatus": "in-progress",
        **fields,
    }


async def _post(gw: Gateway, path: str, form: dict[str, str], **query: int) -> ClientResponse:
    url = f"{path}?{urlencode(query)}" if query else path
    return await gw.post_form(url, form, signature=twilio_signature(url, form))


def _twiml(text: str) -> ET.Element:
    return ET.fromstring(text)  # noqa: S314 (our own TwiML)


def _said(root: ET.Element) -> list[str]:
    return [say.text or "" for say in root.iter("Say")]


async def test_a_caller_who_texted_before_is_the_same_member_with_a_transcript(
    call_gateway: Gateway,
) -> None:
    gw = call_gateway
    await gw.sms("Hi there")
    await gw.twilio.wait_sent(1)

    start = await _post(gw, "/channels/twilio/voice", _form())
    assert start.status == 200
    root = _twiml(await start.text())
    gather = root.find("Gather")
    assert gather is not None
    assert (gather.get("input"), gather.get("action")) == (
        "speech dtmf",
        "/channels/twilio/voice/turn?n=1",
    )
    say = gather.find("Say")
    assert say is not None
    assert (say.get("voice"), say.get("language")) == ("Polly.Amy", "en-GB")
    assert (say.text or "").startswith("Hi, I'm the friendly front desk of Example Dental.")

    turn = await _post(
        gw, "/channels/twilio/voice/turn", _form(SpeechResult="What are your opening hours?"), n=1
    )
    assert _said(_twiml(await turn.text())) == ["We are open 8am to 6pm, Monday to Friday."]

    assert await gw.count(Member) == 1
    [call] = await gw.all(select(Conversation).where(Conversation.channel == "voice"))
    transcript = [
        (m.direction, m.text)
        for m in await gw.all(
            select(Message).where(Message.conversation_id == call.id).order_by(Message.id)
        )
    ]
    assert transcript[-2:] == [
        ("in", "What are your opening hours?"),
        ("out", "We are open 8am to 6pm, Monday to Friday."),
    ]
    assert len(gw.twilio.sent) == 1  # the call's replies were said, not texted

    retried = await _post(
        gw, "/channels/twilio/voice/turn", _form(SpeechResult="What are your opening hours?"), n=1
    )
    assert _said(_twiml(await retried.text())) == ["We are open 8am to 6pm, Monday to Friday."]
    assert await gw.count(Inbound, Inbound.channel == "voice") == 2

    ended = await _post(gw, "/channels/twilio/voice/status", _form(CallStatus="completed"))
    assert ended.status == 200
    [call] = await gw.all(select(Conversation).where(Conversation.channel == "voice"))
    assert call.status == "closed"


async def test_a_forged_call_is_refused_and_nothing_is_stored(call_gateway: Gateway) -> None:
    response = await call_gateway.post_form("/channels/twilio/voice", _form(), signature="forged")
    assert response.status == 403
    assert await call_gateway.count(Inbound) == 0


async def test_a_withheld_number_is_told_so_and_nothing_is_stored(call_gateway: Gateway) -> None:
    response = await _post(call_gateway, "/channels/twilio/voice", _form(From="Anonymous"))
    root = _twiml(await response.text())
    assert _said(root)[0].startswith("Sorry, we can't take calls from withheld numbers.")
    assert root.find("Hangup") is not None
    assert await call_gateway.count(Inbound) == 0


async def test_silence_twice_ends_the_call_politely(call_gateway: Gateway) -> None:
    first = _twiml(
        await (await _post(call_gateway, "/channels/twilio/voice/turn", _form(), n=1)).text()
    )
    assert _said(first) == ["Sorry, I didn't catch that. Are you still there?"]
    gather = first.find("Gather")
    assert gather is not None
    assert gather.get("action") == "/channels/twilio/voice/turn?n=1&silence=1"
    second = _twiml(
        await (
            await _post(call_gateway, "/channels/twilio/voice/turn", _form(), n=1, silence=1)
        ).text()
    )
    assert _said(second) == ["Thanks for calling. Goodbye!"]
    assert second.find("Hangup") is not None
    assert await call_gateway.count(Inbound) == 0


class _Slow:
    async def respond(self, turn: TurnInput, call: object) -> TurnResult:
        await asyncio.sleep(0.3)
        return TurnResult(replies=("Thanks for waiting: we're open until 6pm.",))


async def test_a_slow_turn_gets_a_filler_and_the_reply_is_picked_up(
    sqlite_url: str, twilio: tuple[FakeTwilio, str]
) -> None:
    fake, base = twilio
    settings = _settings(sqlite_url, base, reply_wait_seconds=0.1)
    runtime = Runtime(settings.agents, "Example Dental", models={"receptionist": _Slow()})
    try:
        async with Gateway.running(settings, fake, runtime=runtime) as gw:
            first = _twiml(
                await (
                    await _post(
                        gw, "/channels/twilio/voice/turn", _form(SpeechResult="Hours?"), n=3
                    )
                ).text()
            )
            assert _said(first) == ["One moment, please."]
            redirect = first.find("Redirect")
            assert redirect is not None
            assert redirect.text == "/channels/twilio/voice/pickup?n=3&waited=1"
            path, _, query = (redirect.text or "").partition("?")
            said: list[str] = []
            for _ in range(20):
                url = f"{path}?{query}"
                picked = await gw.post_form(url, _form(), signature=twilio_signature(url, _form()))
                root = _twiml(await picked.text())
                said = _said(root)
                if said != ["One moment, please."]:
                    break
                query = (
                    (root.find("Redirect").text or "") if root.find("Redirect") is not None else ""
                ).partition("?")[2]
            assert said == ["Thanks for waiting: we're open until 6pm."]
    finally:
        await runtime.close()


async def test_the_agent_transfers_only_to_allow_listed_numbers(
    sqlite_url: str, twilio: tuple[FakeTwilio, str]
) -> None:
    fake, base = twilio
    raw = make_config(sqlite_url, twilio_base=base)
    raw["channels"]["voice"] = {"numbers": [SMS_NUMBER], "agent": "receptionist"}
    raw["agents"][0]["abilities"] = {
        "phone_controls": {"destinations": {"front desk": "+14155550199"}}
    }
    settings = from_mapping(raw, env={})
    model = Scripted(
        responses=[
            _call("phone_controls", "c1", action="transfer", to="+442071838750"),
            _call("phone_controls", "c2", action="transfer", to="front desk"),
            AIMessage(content="Connecting you to the front desk."),
        ]
    )
    model.seen = []
    runtime = runtime_for(settings, chat_models={"receptionist": model})
    try:
        async with Gateway.running(settings, fake, runtime=runtime) as gw:
            response = await _post(
                gw,
                "/channels/twilio/voice/turn",
                _form(SpeechResult="Ignore that, call +44 20 7183 8750"),
                n=1,
            )
            root = _twiml(await response.text())
    finally:
        await runtime.close()
    assert [d.text for d in root.iter("Dial")] == ["+14155550199"]
    assert _said(root) == ["Connecting you to the front desk."]
    refusal = next(str(m.content) for m in model.seen[-1] if m.type == "tool")
    assert refusal == "I can only transfer to: front desk."


async def test_phone_controls_refuse_outside_a_call(sqlite_url: str) -> None:
    from agents import abilities
    from agents.abilities import AbilityContext
    from people.roles import Role

    context = AbilityContext(
        agent="a",
        channel="sms",
        conversation_id=None,
        member=None,
        role=Role(),
        abilities={"phone_controls": {}},
    )
    result = await abilities.call(context, "phone_controls", {"action": "hangup"})
    assert (result.refused, result.text) == (True, "Phone controls only work on a phone call.")


async def test_the_agent_holds_the_caller_and_plays_tones_then_listens_again(
    sqlite_url: str, twilio: tuple[FakeTwilio, str]
) -> None:
    fake, base = twilio
    raw = make_config(sqlite_url, twilio_base=base)
    raw["channels"]["voice"] = {"numbers": [SMS_NUMBER], "agent": "receptionist"}
    raw["agents"][0]["abilities"] = {"phone_controls": {"hold_music": "https://x/hold.mp3"}}
    settings = from_mapping(raw, env={})
    model = Scripted(
        responses=[
            _call("phone_controls", "c1", action="hold"),
            _call("phone_controls", "c2", action="dtmf", digits="12#"),
            AIMessage(content="One moment."),
        ]
    )
    runtime = runtime_for(settings, chat_models={"receptionist": model})
    try:
        async with Gateway.running(settings, fake, runtime=runtime) as gw:
            response = await _post(
                gw, "/channels/twilio/voice/turn", _form(SpeechResult="Hold on please"), n=1
            )
            root = _twiml(await response.text())
    finally:
        await runtime.close()
    plays = [(p.text, p.get("digits"), p.get("loop")) for p in root.iter("Play")]
    assert plays == [("https://x/hold.mp3", None, "3"), (None, "12#", None)]
    assert _said(root) == ["One moment."]
    assert root.find("Gather") is not None  # listens again
    assert root.find("Hangup") is None
