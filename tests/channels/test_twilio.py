"""Every Twilio webhook (SMS, status callbacks, each voice step) proves the same things
before anything is read: Twilio's signature, our account, and well-formed ids."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from store.models import Inbound, Message
from tests.channels.test_voice import _form, _settings
from tests.fakes.twilio_api import FakeTwilio
from tests.helpers import ACCOUNT_SID, Gateway, eventually, sms_form

OTHER_ACCOUNT = "AC" + "9" * 32
VOICE = "/channels/twilio/voice"
RECORDING = "https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE1"
DOORS: dict[str, dict[str, str]] = {
    "/channels/twilio/sms": sms_form("hello"),
    "/channels/twilio/status": {"MessageSid": "SM" + "a" * 32, "AccountSid": ACCOUNT_SID,
                                "MessageStatus": "delivered"},
    VOICE: _form(),
    f"{VOICE}/turn?n=1": _form(SpeechResult="What are your opening hours?"),
    f"{VOICE}/pickup?n=1": _form(),
    f"{VOICE}/status": _form(CallStatus="completed"),
    f"{VOICE}/voicemail": _form(RecordingUrl=RECORDING, RecordingSid="RE" + "1" * 32),
    f"{VOICE}/notify?handoff=1": _form(Digits="1"),
}  # fmt: skip


@pytest.fixture
async def twilio_gateway(
    database_url: str, twilio: tuple[FakeTwilio, str]
) -> AsyncIterator[Gateway]:
    fake, base = twilio
    async with Gateway.running(_settings(database_url, base, voicemail=True), fake) as gw:
        yield gw


async def _stored(gw: Gateway) -> tuple[int, int]:
    return await gw.count(Inbound), await gw.count(Message)


@pytest.mark.parametrize("path", DOORS)
@pytest.mark.parametrize("account", [OTHER_ACCOUNT, None], ids=["other", "missing"])
async def test_a_request_about_another_account_is_refused_and_stores_nothing(
    twilio_gateway: Gateway, path: str, account: str | None
) -> None:
    """Well signed (the auth token may be a subaccount's, or leak) but not our account."""
    form = {k: v for k, v in DOORS[path].items() if k != "AccountSid"}
    if account is not None:
        form["AccountSid"] = account
    response = await twilio_gateway.post_form(path, form)
    assert response.status == 403
    assert "AccountSid" in (await response.json())["error"]["message"]
    assert await _stored(twilio_gateway) == (0, 0)


LONG, SHORT = "SM" + "a" * 33, "SM" + "a" * 31


@pytest.mark.parametrize(
    ("path", "field", "sid"),
    [("/channels/twilio/sms", "MessageSid", ""), ("/channels/twilio/sms", "MessageSid", LONG),
     ("/channels/twilio/sms", "MessageSid", SHORT),
     ("/channels/twilio/sms", "MessageSid", "SM" + "a" * 31 + "g"),
     ("/channels/twilio/sms", "MessageSid", "SM" + "a" * 5000),
     ("/channels/twilio/sms", "MessagingServiceSid", "MG1"),
     ("/channels/twilio/status", "MessageSid", ""), ("/channels/twilio/status", "SmsSid", LONG),
     (VOICE, "CallSid", ""), (f"{VOICE}/turn?n=1", "CallSid", "CA" + "1" * 33),
     (f"{VOICE}/status", "CallSid", "CA1"), (f"{VOICE}/voicemail", "RecordingSid", ""),
     (f"{VOICE}/pickup?n=1", "ParentCallSid", LONG)],
)  # fmt: skip
async def test_an_empty_or_malformed_sid_is_a_400_and_stores_nothing(
    twilio_gateway: Gateway, path: str, field: str, sid: str
) -> None:
    """Twilio's ids are two letters and 32 hex digits; anything else is not from Twilio."""
    response = await twilio_gateway.post_form(path, {**DOORS[path], field: sid})
    assert response.status == 400
    assert field in (await response.json())["error"]["message"]
    assert await _stored(twilio_gateway) == (0, 0)


async def test_a_status_callback_about_another_account_changes_nothing(
    twilio_gateway: Gateway,
) -> None:
    gw = twilio_gateway
    assert (await gw.sms("What are your opening hours?")).status == 200
    [sent] = await gw.twilio.wait_sent(1)
    await eventually(lambda: _reply_sent(gw, sent.sid))
    form = {"MessageSid": sent.sid, "MessageStatus": "delivered"}
    foreign = await gw.post_form("/channels/twilio/status", {**form, "AccountSid": OTHER_ACCOUNT})
    assert foreign.status == 403
    [before] = await gw.all(select(Message.status).where(Message.direction == "out"))
    ours = await gw.post_form("/channels/twilio/status", {**form, "AccountSid": ACCOUNT_SID})
    assert ours.status == 204
    [after] = await gw.all(select(Message.status).where(Message.direction == "out"))
    assert (before, after) == ("queued", "delivered")


async def _reply_sent(gw: Gateway, sid: str) -> bool:
    return await gw.count(Message, Message.provider_id == sid) == 1
