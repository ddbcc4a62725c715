"""A call handed to people: never offered to a console (its replies can only be said
during the call), a voicemail left for the team, and an operator's reply after the call
(by SMS from the number called, or refused before anything is stored)."""

from __future__ import annotations

from sqlalchemy import select

from gateway.settings import from_mapping
from store.models import Conversation, Handoff, Inbound, Message, Outbox
from tests.channels.test_voice import (
    OTHER_NUMBER,
    _form,
    _post,
    _said,
    _settings,
    _twiml,
)
from tests.fakes.twilio_api import FakeTwilio
from tests.helpers import (
    CUSTOMER,
    SMS_NUMBER,
    Api,
    Gateway,
    add_member,
    eventually,
    make_config,
)


async def test_a_call_that_asks_for_a_person_is_not_offered_to_a_console_and_ends_its_handoff(
    sqlite_url: str, twilio: tuple[FakeTwilio, str]
) -> None:
    """A call's replies can only be said during the call: live operators are not offered
    it (the notification rules run), and when the call ends its handoff is over."""
    fake, base = twilio
    raw = make_config(sqlite_url, twilio_base=base)
    raw["channels"]["voice"] = {"numbers": [SMS_NUMBER], "agent": "receptionist"}
    raw["escalation"] = {
        "operators": {"enabled": True, "groups": [{"name": "all", "role": "operator"}]},
        "notify": [{"name": "team", "role": "operator", "channels": ["sms"]}],
    }
    async with Gateway.running(from_mapping(raw, env={}), fake) as gw:
        _, token = await add_member(gw, "ann@example.com", kind="team", role="operator",
                                    phone="+14155550201")  # fmt: skip
        assert (await Api(gw, token).post("/api/operators/live"))[0] == 200
        await _post(gw, "/channels/twilio/voice", _form())
        await _post(
            gw, "/channels/twilio/voice/turn", _form(SpeechResult="Can I talk to a person?"), n=1
        )
        await fake.wait_sent(1)  # Ann is texted instead of offered the call
        [handoff] = await gw.all(select(Handoff))
        await _post(gw, "/channels/twilio/voice/status", _form(CallStatus="completed"))
        [ended] = await gw.all(select(Handoff))
    assert handoff.operator_id is None
    assert fake.sent[0].to == "+14155550201"
    assert ended.status == "closed"


async def test_a_caller_handed_to_people_can_leave_a_voicemail_for_the_team(
    sqlite_url: str, twilio: tuple[FakeTwilio, str]
) -> None:
    fake, base = twilio
    settings = _settings(sqlite_url, base, voicemail=True, voicemail_seconds=60)
    async with Gateway.running(settings, fake) as gw:
        await _post(gw, "/channels/twilio/voice", _form())
        asked = await _post(
            gw, "/channels/twilio/voice/turn", _form(SpeechResult="Can I talk to a person?"), n=1
        )
        root = _twiml(await asked.text())
        [record] = list(root.iter("Record"))
        recording = "https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE1"
        left = _form(RecordingUrl=recording, RecordingDuration="14", RecordingSid="RE" + "1" * 32)
        # The caller hung up to finish: the call's end may be told before the recording.
        await _post(gw, "/channels/twilio/voice/status", _form(CallStatus="completed"))
        thanked = [await _post(gw, "/channels/twilio/voice/voicemail", left) for _ in range(2)]
        thanks = _said(_twiml(await thanked[0].text()))
        forged = await gw.post_form("/channels/twilio/voice/voicemail", left, signature="bad")

        async def stored() -> bool:
            return await gw.count(Inbound, Inbound.status == "done") == 3

        await eventually(stored)
        messages = await gw.all(select(Message).order_by(Message.id))
        [handoff] = await gw.all(select(Handoff))
        [conversation] = await gw.all(select(Conversation))  # the voicemail is in the call's
    assert "leave a message for the team" in " ".join(_said(root))
    assert (record.get("action"), record.get("maxLength")) == (
        "/channels/twilio/voice/voicemail",
        "60",
    )
    assert [r.status for r in thanked] == [200, 200]  # Twilio's retry is the same message
    assert "the team has your message" in " ".join(thanks)
    assert forged.status == 403
    assert messages[-1].text == f"Voicemail (14 s): {recording}"
    assert messages[-1].direction == "in"  # no reply: it is for the team
    assert {m.conversation_id for m in messages} == {conversation.id}
    assert conversation.status == "queued"  # the call is over, but someone is to call back
    assert handoff.status == "open"


async def _call_left_for_the_team(gw: Gateway) -> Conversation:
    """A caller asks for a person and leaves a voicemail: their call's conversation stays
    open for the team after the call."""
    await _post(gw, "/channels/twilio/voice", _form())
    await _post(gw, "/channels/twilio/voice/turn", _form(SpeechResult="Can I talk to a person?"),
                n=1)  # fmt: skip
    await _post(gw, "/channels/twilio/voice/status", _form(CallStatus="completed"))
    [conversation] = await gw.all(select(Conversation))
    return conversation


async def test_a_reply_to_a_call_after_it_goes_by_sms_from_the_number_called(
    database_url: str, twilio: tuple[FakeTwilio, str]
) -> None:
    fake, base = twilio
    settings = _settings(database_url, base, voicemail=True)  # SMS has the same number
    async with Gateway.running(settings, fake) as gw:
        _, token = await add_member(gw, "ann@example.com", kind="team", role="operator")
        conversation = await _call_left_for_the_team(gw)
        status, answer = await Api(gw, token).post(
            f"/api/conversations/{conversation.id}/reply", {"text": "We'll call you at 3pm."}
        )
        await fake.wait_sent(1)
        [sent] = await gw.all(select(Message).where(Message.author == "operator"))
    assert status == 200
    assert answer["channel"] == "sms"
    assert answer["notice"] == (
        f"the voice channel cannot deliver a reply now; sent by SMS from {SMS_NUMBER}"
    )
    assert (fake.sent[0].to, fake.sent[0].from_, fake.sent[0].body) == (
        CUSTOMER, SMS_NUMBER, "We'll call you at 3pm.",
    )  # fmt: skip
    assert sent.conversation_id == conversation.id  # kept with the call's conversation


async def test_a_reply_to_a_call_with_no_sms_on_its_number_is_refused_and_nothing_stored(
    database_url: str, twilio: tuple[FakeTwilio, str]
) -> None:
    fake, base = twilio
    raw = make_config(database_url, twilio_base=base)
    raw["channels"]["voice"] = {"numbers": [OTHER_NUMBER], "agent": "receptionist",
                                "voicemail": True}  # fmt: skip
    async with Gateway.running(from_mapping(raw, env={}), fake) as gw:
        _, token = await add_member(gw, "ann@example.com", kind="team", role="operator")
        await _post(gw, "/channels/twilio/voice", _form(To=OTHER_NUMBER))
        asks = _form(To=OTHER_NUMBER, SpeechResult="Can I talk to a person?")
        await _post(gw, "/channels/twilio/voice/turn", asks, n=1)
        await _post(gw, "/channels/twilio/voice/status", _form(To=OTHER_NUMBER,
                                                               CallStatus="completed"))  # fmt: skip
        [before] = await gw.all(select(Conversation))
        [handoff_before] = await gw.all(select(Handoff))
        outbox_before = await gw.count(Outbox)
        status, answer = await Api(gw, token).post(
            f"/api/conversations/{before.id}/reply", {"text": "We'll call you at 3pm."}
        )
        [after] = await gw.all(select(Conversation))
        [handoff] = await gw.all(select(Handoff))
        operator_messages = await gw.count(Message, Message.author == "operator")
        outbox_after = await gw.count(Outbox)
    assert status == 409
    assert answer["error"]["code"] == "conflict"
    assert answer["error"]["message"] == (
        f"a reply to a voice conversation can only be said during the call, and no SMS "
        f"channel has {OTHER_NUMBER} to text it from"
    )
    assert (operator_messages, outbox_after) == (0, outbox_before)
    assert (after.status, handoff.operator_id) == (before.status, handoff_before.operator_id)
    assert fake.sent == []
