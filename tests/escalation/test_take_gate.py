"""One gate for answering a customer: routing, taking, replying (API and Slack thread) and
reading a workflow's conversation all ask the same questions, and a refusal names the one
that failed -- chats, the inbox, the workflows feature, the role's workflows, or a
qualification the workflow requires."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select, update

from gateway.settings import from_mapping
from store.models import (
    Conversation,
    Handoff,
    Identity,
    Inbound,
    Message,
    QualificationProgress,
)
from tests.channels.test_slack import HANDOFF, SECRET, TOKEN, _deliver, _event, _settled, slack
from tests.escalation.test_live import live_config
from tests.fakes.slack_api import FakeSlack
from tests.fakes.twilio_api import FakeTwilio
from tests.helpers import Api, Gateway, add_member, eventually

__all__ = ["slack"]  # the fixture, for the Slack thread test

BILLING = {
    "name": "billing-support",
    "workflows": ["billing"],
    "requirements": [{"id": "days", "prompt": "Refund days?", "choices": ["1-2", "3-5"],
                      "criteria": [{"formula": "answer == choices[1]"}]}],
}  # fmt: skip
EVERY_INBOX = {"*": {"read": True, "send": True}}
ROLES = {  # each lacks one thing a billing conversation needs
    "no_workflows": {"admin_access": True, "features": {"chats": "edit", "operators": "use"},
                     "workflows": ["*"], "inboxes": EVERY_INBOX},
    "shipping_only": {"admin_access": True, "features": {"chats": "edit", "workflows": "use",
                                                             "operators": "use"},
                      "workflows": ["shipping"], "inboxes": EVERY_INBOX},
}  # fmt: skip


def _config(database_url: str, base: str) -> dict[str, Any]:
    raw = live_config(database_url, base)
    raw["workflows"] = [{"name": "billing", "steps": [{"say": "Let me look at your bill."}]}]
    raw["qualifications"] = [BILLING]
    raw["roles"] = ROLES
    raw["escalation"]["operators"]["groups"] = [
        {"name": "team", "filter": {"field": "kind", "op": "eq", "value": "team"}}
    ]
    return raw


@pytest.fixture
async def desk(
    database_url: str, twilio: tuple[FakeTwilio, str]
) -> AsyncIterator[tuple[Gateway, int]]:
    """A billing conversation with an open handoff, waiting."""
    fake, base = twilio
    async with Gateway.running(from_mapping(_config(database_url, base), env={}), fake) as gw:
        customer, _ = await add_member(gw, "customer@example.org", token=False)
        async with gw.services.sessions.begin() as session:
            conversation = Conversation(
                member_id=customer, channel="sms", status="queued", inbox="+14155550100",
                workflow="billing", data={},
            )  # fmt: skip
            session.add(conversation)
            await session.flush()
            inbound = Inbound(channel="sms", external_id="SM1", inbox="+14155550100",
                              sender_kind="phone", sender="+14155557777", text="double charge",
                              queue_key="sms|+14155550100|+14155557777", status="done")  # fmt: skip
            session.add(inbound)
            await session.flush()
            session.add(Message(conversation_id=conversation.id, direction="in",
                                author="member", text="double charge", status="received",
                                inbound_id=inbound.id))  # fmt: skip
            session.add(Handoff(conversation_id=conversation.id, reason="t", trigger="t"))
        yield gw, conversation.id


async def _team(gw: Gateway, name: str, role: str, status: str | None = None) -> Api:
    member_id, token = await add_member(gw, f"{name}@example.com", kind="team", role=role)
    if status is not None:
        async with gw.services.sessions.begin() as session:
            session.add(QualificationProgress(member_id=member_id, qualification=BILLING["name"],
                                              status=status, attempts=1, drafts={}))  # fmt: skip
    return Api(gw, token)


async def _untouched(gw: Gateway) -> bool:
    [handoff] = await gw.all(select(Handoff))
    [conversation] = await gw.all(select(Conversation))
    said = await gw.count(Message, Message.author == "operator")
    return (handoff.operator_id, conversation.status, said) == (None, "queued", 0)


@pytest.mark.parametrize(
    ("role", "status", "reason"),
    [
        ("operator", "provisional", "you are not qualified for workflow 'billing'"),
        ("operator", None, "you are not qualified for workflow 'billing'"),
        ("no_workflows", "qualified", "your role has no access to workflows (workflow 'billing')"),
        ("shipping_only", "qualified", "your role does not take part in workflow 'billing'"),
    ],
)
async def test_taking_or_answering_a_workflow_s_conversation_is_refused_for_the_real_reason(
    desk: tuple[Gateway, int], role: str, status: str | None, reason: str
) -> None:
    gw, conversation = desk
    ann = await _team(gw, "ann", role, status)
    for action, body in (("take", None), ("reply", {"text": "Hello"})):
        answer_status, answer = await ann.post(f"/api/conversations/{conversation}/{action}", body)
        assert (answer_status, answer["error"]["message"]) == (403, reason), action
    assert await _untouched(gw)
    if role != "operator":  # nor may they read it
        assert (await ann.get(f"/api/conversations/{conversation}/messages"))[0] == 404
        status_, board = await ann.get("/api/console")
        assert (status_, board["queue"]) == (200, [])


async def test_a_qualified_operator_takes_and_answers_it(desk: tuple[Gateway, int]) -> None:
    gw, conversation = desk
    ann = await _team(gw, "ann", "operator", "qualified")
    assert [q["conversation"] for q in (await ann.get("/api/console"))[1]["queue"]] == [
        str(conversation)
    ]
    assert (await ann.post(f"/api/conversations/{conversation}/take"))[0] == 200
    status, body = await ann.post(f"/api/conversations/{conversation}/reply", {"text": "Hi"})
    assert status == 200, body
    assert (await ann.get(f"/api/conversations/{conversation}/messages"))[0] == 200


async def test_a_provisional_member_replying_in_the_slack_thread_is_refused_for_that_reason(
    database_url: str, twilio: tuple[FakeTwilio, str], slack: tuple[FakeSlack, str]
) -> None:
    raw = _config(database_url, twilio[1])
    raw["channels"]["slack"] = {"bot_token": TOKEN, "signing_secret": SECRET,
                                "handoff_channel": HANDOFF, "agent": "receptionist",
                                "api_base_url": slack[1]}  # fmt: skip
    raw["escalation"]["operators"]["enabled"] = False  # Slack threads only
    async with Gateway.running(from_mapping(raw, env={}), twilio[0]) as gw:
        await _team(gw, "olive", "operator", "provisional")
        [olive] = await gw.all(
            select(Identity.member_id).where(Identity.address == "olive@example.com")
        )
        async with gw.services.sessions.begin() as session:
            session.add(Identity(member_id=olive, kind="slack", address="U0OLIVE"))
        await gw.sms("Can I talk to a person please?")
        [post] = await slack[0].wait(1)
        await eventually(lambda: _settled(gw))
        async with gw.services.sessions.begin() as session:
            await session.execute(update(Conversation).values(workflow="billing"))
        reply = _event("Ev0200", channel=HANDOFF, user="U0OLIVE", thread_ts=post.ts,
                       text="Olive here, about your bill.")  # fmt: skip
        assert (await _deliver(gw, reply)).status == 200
        posts = await slack[0].wait(2)
        await eventually(lambda: _settled(gw))
        [handoff] = await gw.all(select(Handoff))
    assert posts[-1].thread_ts == post.ts
    assert posts[-1].text == (
        "Not sent to the customer: you are not qualified for workflow 'billing'."
    )
    assert "Olive here, about your bill." not in [s.body for s in gw.twilio.sent]
    assert handoff.operator_id is None
