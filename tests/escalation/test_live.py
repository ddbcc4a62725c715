"""Live operators: going live, routing a handoff to the least-loaded one, taking it (the AI
stays silent), replying, handing back; what happens when an operator goes away or loses
the right to answer."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from gateway.settings import Settings, from_mapping
from store.models import Conversation, Handoff, Inbound, Message, Notification
from tests.fakes.smtp_sink import SmtpSink
from tests.fakes.twilio_api import FakeTwilio
from tests.helpers import CUSTOMER, Api, Gateway, add_member, eventually, make_config

ON_CALL_PHONE = "+14155550201"


def live_config(
    database_url: str, base: str, sink: SmtpSink | None = None, **operators: Any
) -> dict[str, Any]:
    """Always after hours; a rule that texts and emails operators after hours; one group of
    every operator."""
    raw = make_config(database_url, twilio_base=base)
    if sink is not None:
        raw["channels"]["email"] = {
            "inboxes": [{"address": "support@example.com", "agent": "receptionist"}],
            "smtp": {"host": "127.0.0.1", "port": sink.port, "starttls": False},
        }
    raw["escalation"] = {
        "business_hours": {"weekly": {}},
        "notify": [{"name": "on-call", "role": "operator", "hours": "out",
                    "channels": ["sms", "email"]}],
        "operators": {"enabled": True, "groups": [{"name": "front", "role": "operator"}],
                      **operators},
    }  # fmt: skip
    return raw


def settings_for(raw: dict[str, Any]) -> Settings:
    return from_mapping(raw, env={})


async def _operator(gw: Gateway, name: str, phone: str | None = None, **notify: bool) -> Api:
    fields: dict[str, Any] = {"name": name, "notify": notify or {"sms": True}}
    if phone:
        fields["phone"] = phone
    _, token = await add_member(gw, f"{name.lower()}@example.com", kind="team", role="operator",
                                **fields)  # fmt: skip
    return Api(gw, token)


async def _processed(gw: Gateway, count: int) -> None:
    async def done() -> bool:
        return await gw.count(Inbound, Inbound.status == "done") >= count

    await eventually(done)


async def test_after_hours_the_on_call_member_is_texted_takes_it_live_and_the_ai_waits(
    database_url: str, twilio: tuple[FakeTwilio, str], sink: SmtpSink
) -> None:
    fake, base = twilio
    async with Gateway.running(settings_for(live_config(database_url, base, sink)), fake) as gw:
        sam = await _operator(gw, "Sam", ON_CALL_PHONE, sms=True, email=False)
        await gw.sms("Can I talk to a person?")
        await fake.wait_sent(3)  # the agent's answer, the after-hours message, the text to Sam
        [handoff] = await gw.all(select(Handoff))
        [conversation] = await gw.all(select(Conversation))
        _, told = await sam.get(f"/api/handoffs/{handoff.id}/notifications")

        assert (await sam.post("/api/operators/live"))[0] == 200
        await _offered(gw, 1)
        status, board = await sam.get("/api/console")
        assert status == 200
        assert [c["conversation"] for c in board["mine"]] == [str(conversation.id)]
        assert board["mine"][0]["taken"] is False  # offered to Sam: theirs to take
        status, taken = await sam.post(f"/api/conversations/{conversation.id}/take")
        assert (status, taken["status"]) == (200, "operator")
        status, _ = await sam.post(f"/api/conversations/{conversation.id}/reply",
                                   {"text": "Hi, this is Sam. How can I help?"})  # fmt: skip
        assert status == 200
        await fake.wait_sent(4)

        await gw.sms("What are your opening hours?")
        await _processed(gw, 2)
        silent = len(fake.sent)
        assert (await sam.post(f"/api/conversations/{conversation.id}/handback"))[0] == 204
        await gw.sms("What are your opening hours, please?")
        await fake.wait_sent(5)

    to_customer = [s.body for s in fake.sent if s.to == CUSTOMER]
    assert to_customer[1] == "We're closed right now; a person will reply as soon as we can."
    to_sam = [s.body for s in fake.sent if s.to == ON_CALL_PHONE]
    assert to_sam == ["Handoff: +14155551234 on sms needs a person (asked for a person)."]
    assert not sink.messages  # Sam's email notifications are off
    assert {(n["channel"], n["status"], n["reason"]) for n in told["items"]} == {
        ("sms", "sent", ""), ("email", "suppressed", "the member's email notifications are off"),
    }  # fmt: skip
    assert to_customer[2] == "Hi, this is Sam. How can I help?"
    assert silent == 4  # while Sam had it, the AI said nothing
    assert "8am" in to_customer[3]  # handed back: the agent answers again
    assert len(to_customer) == 4


async def test_a_handoff_goes_to_the_least_loaded_live_operator(
    database_url: str, twilio: tuple[FakeTwilio, str]
) -> None:
    fake, base = twilio
    async with Gateway.running(settings_for(live_config(database_url, base)), fake) as gw:
        ann, bob = await _operator(gw, "Ann"), await _operator(gw, "Bob")
        await ann.post("/api/operators/live")
        await bob.post("/api/operators/live")
        await gw.sms("I want to talk to a person", from_="+14155551001")
        await _offered(gw, 1)
        await gw.sms("Let me speak to a human", from_="+14155551002")
        await _offered(gw, 2)
        held = [h.operator_id for h in await gw.all(select(Handoff).order_by(Handoff.id))]
        _, operators = await ann.get("/api/operators")
        notified = await _notified(gw)
    assert len(set(held)) == 2  # the second went to whoever had none
    assert sorted(o["load"] for o in operators["items"]) == [1, 1]
    assert notified == 0  # someone was live: nobody was texted


async def _offered(gw: Gateway, count: int) -> None:
    async def offered() -> bool:
        return await gw.count(Handoff, Handoff.operator_id.is_not(None)) >= count

    await eventually(offered)


async def _notified(gw: Gateway) -> int:
    return await gw.count(Notification)


async def test_a_full_operator_queues_the_handoff_until_the_timeout_then_rules_notify(
    sqlite_url: str, twilio: tuple[FakeTwilio, str]
) -> None:
    fake, base = twilio
    raw = live_config(sqlite_url, base)
    raw["escalation"]["operators"]["groups"][0].update(capacity=1, queue_timeout_seconds=1)
    async with Gateway.running(settings_for(raw), fake) as gw:
        ann = await _operator(gw, "Ann", ON_CALL_PHONE)
        await ann.post("/api/operators/live")
        await gw.sms("I want to talk to a person", from_="+14155551001")
        await _offered(gw, 1)
        await gw.sms("Let me speak to a human", from_="+14155551002")
        await eventually(lambda: _has_notifications(gw), timeout=10)
        [first, second] = await gw.all(select(Handoff).order_by(Handoff.id))
        waited = (second.notified_at - second.created_at).total_seconds()
        # Ann closes the first: the queued one is offered to her.
        assert (await ann.post(f"/api/conversations/{first.conversation_id}/close"))[0] == 204
        await _offered(gw, 2)
        [_, second] = await gw.all(select(Handoff).order_by(Handoff.id))
    assert waited >= 1.0
    assert second.operator_id == first.operator_id


async def _has_notifications(gw: Gateway) -> bool:
    return await _notified(gw) > 0


async def test_an_operator_who_stops_beating_goes_offline_and_loses_untaken_offers(
    sqlite_url: str, twilio: tuple[FakeTwilio, str]
) -> None:
    fake, base = twilio
    raw = live_config(sqlite_url, base, heartbeat_ttl_seconds=3)
    async with Gateway.running(settings_for(raw), fake) as gw:
        ann = await _operator(gw, "Ann")
        await ann.post("/api/operators/live")
        await gw.sms("I want to talk to a person", from_="+14155551001")
        await gw.sms("Let me speak to a human", from_="+14155551002")
        await ann.post("/api/operators/heartbeat")  # her console beats while she works
        await _offered(gw, 2)
        await ann.post("/api/operators/heartbeat")
        first, _ = await gw.all(select(Conversation).order_by(Conversation.id))
        await ann.post(f"/api/conversations/{first.id}/take")
        _, beat = await ann.post("/api/operators/heartbeat")
        # ...then the laptop sleeps: no more beats.

        async def released() -> bool:
            return await gw.count(Handoff, Handoff.operator_id.is_(None)) == 1

        await eventually(released, timeout=10)
        taken, offered = await gw.all(select(Conversation).order_by(Conversation.id))
        _, late = await ann.post("/api/operators/heartbeat")
        _, operators = await ann.get("/api/operators")
        status, _ = await ann.call("DELETE", "/api/operators/live")  # she leaves for good

        async def all_back() -> bool:
            return await gw.count(Handoff, Handoff.operator_id.is_(None)) == 2

        await eventually(all_back)
        [after, _] = await gw.all(select(Conversation).order_by(Conversation.id))
    assert beat == {"live": True}
    assert (taken.status, offered.status) == ("operator", "queued")  # the untaken offer went
    assert late == {"live": False}  # a beat does not bring an expired operator back
    assert operators["items"] == []
    assert status == 204
    assert after.status == "queued"  # leaving gives back what she took too


async def test_an_operator_whose_role_lost_send_cannot_reply_and_the_conversation_requeues(
    database_url: str, twilio: tuple[FakeTwilio, str]
) -> None:
    fake, base = twilio
    groups = [{"name": "front", "role": "operator"}, {"name": "desk", "role": "desk"}]
    raw = live_config(database_url, base, groups=groups)
    async with Gateway.running(settings_for(raw), fake) as gw:
        _, owner_token = await add_member(gw, "owner@example.com", kind="team", role="owner")
        owner = Api(gw, owner_token)
        _, token = await add_member(gw, "ann@example.com", kind="team", role="desk", name="Ann")
        ann = Api(gw, token)
        desk = {"admin_access": True, "features": {"chats": "edit", "operators": "use"},
                "workflows": ["*"], "inboxes": {"*": {"read": True, "send": True}}}  # fmt: skip
        assert (await owner.call("PUT", "/api/roles/desk", desk))[0] == 200
        await ann.post("/api/operators/live")
        await gw.sms("I want to talk to a person")
        await _offered(gw, 1)
        [conversation] = await gw.all(select(Conversation))
        assert (await ann.post(f"/api/conversations/{conversation.id}/take"))[0] == 200
        desk["inboxes"] = {"*": {"read": True, "send": False}}
        assert (await owner.call("PUT", "/api/roles/desk", desk))[0] == 200
        sent_before = len(fake.sent)
        status, body = await ann.post(f"/api/conversations/{conversation.id}/reply",
                                      {"text": "Hello from Ann"})  # fmt: skip
        [conversation] = await gw.all(select(Conversation))
        [handoff] = await gw.all(select(Handoff))
        said = await gw.all(select(Message.text).where(Message.author == "operator"))
    assert status == 403
    assert "may not send on +14155550100" in body["error"]["message"]
    assert (conversation.status, handoff.operator_id, handoff.status) == ("queued", None, "open")
    assert said == []
    assert len(fake.sent) == sent_before


@pytest.mark.parametrize("action", ["take", "reply"])
async def test_a_customer_or_contact_cannot_act_as_an_operator(
    sqlite_url: str, twilio: tuple[FakeTwilio, str], action: str
) -> None:
    fake, base = twilio
    async with Gateway.running(settings_for(live_config(sqlite_url, base)), fake) as gw:
        await gw.sms("I want to talk to a person")
        await _offered(gw, 0)
        await fake.wait_sent(1)
        [conversation] = await gw.all(select(Conversation))
        _, token = await add_member(gw, "someone@example.org")
        status, _ = await Api(gw, token).post(f"/api/conversations/{conversation.id}/{action}",
                                              {"text": "hi"})  # fmt: skip
        [conversation] = await gw.all(select(Conversation))
    assert status == 403
    assert conversation.status == "queued"


async def test_an_offer_nobody_takes_moves_on_and_the_rules_run_after_the_queue_timeout(
    sqlite_url: str, twilio: tuple[FakeTwilio, str]
) -> None:
    fake, base = twilio
    raw = live_config(sqlite_url, base)
    raw["escalation"]["operators"]["groups"][0].update(
        offer_timeout_seconds=1, queue_timeout_seconds=2.5
    )
    async with Gateway.running(settings_for(raw), fake) as gw:
        ann = await _operator(gw, "Ann", ON_CALL_PHONE)
        bob = await _operator(gw, "Bob")
        await ann.post("/api/operators/live")
        await bob.post("/api/operators/live")
        await gw.sms("I want to talk to a person")
        await _offered(gw, 1)
        [first] = await gw.all(select(Handoff))

        async def moved() -> bool:
            [handoff] = await gw.all(select(Handoff))
            return handoff.operator_id not in (None, first.operator_id)

        await eventually(moved)  # Ann let it sit: Bob is offered it
        await eventually(lambda: _has_notifications(gw))  # still untaken: the rules run

        await fake.wait_sent_to(ON_CALL_PHONE)  # the rule's text goes out through the outbox
        [handoff] = await gw.all(select(Handoff))
    assert handoff.taken_at is None
    assert handoff.notified_at is not None
    assert [s.to for s in fake.sent].count(ON_CALL_PHONE) == 1  # Ann is on call: one text
