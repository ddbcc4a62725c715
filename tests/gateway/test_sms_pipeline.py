"""SMS end to end: Twilio webhook in, embedded agent, reply out through the REST API.

Runs on SQLite and on PostgreSQL (the ``database_url`` fixture)."""

from __future__ import annotations

from sqlalchemy import select

from store.models import Conversation, Handoff, Identity, Inbound, Member, Message, Outbox
from tests.helpers import ACCOUNT_SID, CUSTOMER, SMS_NUMBER, Gateway, eventually


async def test_sms_from_unknown_number_creates_anonymous_member_and_gets_reply(
    gateway: Gateway,
) -> None:
    response = await gateway.sms("What are your opening hours?")

    assert response.status == 200
    assert response.content_type == "application/xml"
    assert "<Response/>" in await response.text()
    [sent] = await gateway.twilio.wait_sent(1)
    assert sent.to == CUSTOMER
    assert sent.from_ == SMS_NUMBER
    assert "8am to 6pm" in sent.body
    assert sent.status_callback == "https://frontdesk.example.com/channels/twilio/status"
    [member] = await gateway.all(select(Member))
    assert member.kind == "anonymous"
    assert member.phone == CUSTOMER
    [identity] = await gateway.all(select(Identity))
    assert (identity.kind, identity.address, identity.member_id) == ("phone", CUSTOMER, member.id)
    [conversation] = await gateway.all(select(Conversation))
    assert (conversation.member_id, conversation.channel, conversation.inbox) == (
        member.id,
        "sms",
        SMS_NUMBER,
    )


async def test_numbers_in_other_formats_are_the_same_member(gateway: Gateway) -> None:
    await gateway.sms("hi", from_="+1 (415) 555-1234")
    await gateway.sms("Where are you?", from_="+14155551234")
    await gateway.twilio.wait_sent(2)

    assert await gateway.count(Member) == 1
    assert await gateway.count(Conversation) == 1
    assert await gateway.count(Message, Message.direction == "in") == 2


async def test_twilio_retry_with_same_message_sid_is_processed_once(gateway: Gateway) -> None:
    first = await gateway.sms("Do you accept insurance?", sid="SM" + "a" * 32)
    second = await gateway.sms("Do you accept insurance?", sid="SM" + "a" * 32)

    assert (first.status, second.status) == (200, 200)
    await gateway.twilio.wait_sent(1)
    await eventually(lambda: _all_done(gateway))
    assert await gateway.count(Inbound) == 1
    assert await gateway.count(Message, Message.direction == "in") == 1
    assert len(gateway.twilio.sent) == 1
    assert await gateway.count(Outbox) == 1


async def _all_done(gateway: Gateway) -> bool:
    pending_in = await gateway.count(Inbound, Inbound.status == "pending")
    pending_out = await gateway.count(Outbox, Outbox.status == "pending")
    return pending_in == 0 and pending_out == 0


async def test_messages_of_one_sender_are_answered_in_order(gateway: Gateway) -> None:
    questions = ["Where are you located?", "Do you accept insurance?", "opening hours?"]
    for text in questions:
        assert (await gateway.sms(text)).status == 200

    sent = await gateway.twilio.wait_sent(3)

    assert ["Main Street" in sent[0].body, "insurance" in sent[1].body, "8am" in sent[2].body] == [
        True,
        True,
        True,
    ]


async def test_asking_for_a_person_opens_one_handoff_and_says_so(gateway: Gateway) -> None:
    await gateway.sms("Can I talk to a real person please?")
    [sent] = await gateway.twilio.wait_sent(1)
    await gateway.sms("I want to speak to a human")
    await gateway.twilio.wait_sent(2)

    assert "person" in sent.body
    [handoff] = await gateway.all(select(Handoff))
    assert (handoff.trigger, handoff.status) == ("member_request", "open")
    [conversation] = await gateway.all(select(Conversation))
    assert conversation.status == "queued"


async def test_status_callbacks_only_move_a_message_forward(gateway: Gateway) -> None:
    await gateway.sms("hello")
    [sent] = await gateway.twilio.wait_sent(1)
    await eventually(lambda: _all_done(gateway))

    for status in ("delivered", "sent"):
        form = {"MessageSid": sent.sid, "MessageStatus": status, "AccountSid": ACCOUNT_SID}
        response = await gateway.post_form("/channels/twilio/status", form)
        assert response.status == 204

    [reply] = await gateway.all(select(Message).where(Message.direction == "out"))
    assert reply.provider_id == sent.sid
    assert reply.status == "delivered"


async def test_unsigned_status_callback_is_refused(gateway: Gateway) -> None:
    form = {"MessageSid": "SMx", "MessageStatus": "delivered"}
    response = await gateway.post_form("/channels/twilio/status", form, signature="bad")
    assert response.status == 403
