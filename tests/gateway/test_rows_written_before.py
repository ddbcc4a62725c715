"""Rows the engine wrote before its payloads were typed are processed as they were: a
Slack team reply pending since then still reaches the customer (its kind was kept in
the provider's payload then)."""

from __future__ import annotations

from sqlalchemy import select

from store.models import Conversation, Inbound, utcnow
from tests.channels.test_slack import HANDOFF, _settled, slack, team_gateway
from tests.fakes.slack_api import FakeSlack
from tests.helpers import Gateway, eventually

__all__ = ["slack", "team_gateway"]  # the fixtures


async def test_a_team_reply_stored_in_the_old_shape_reaches_the_customer(
    team_gateway: Gateway, slack: tuple[FakeSlack, str]
) -> None:
    gw = team_gateway
    await gw.sms("Can I talk to a person please?")
    [post] = await slack[0].wait(1)
    await gw.twilio.wait_sent(1)
    old = {  # as the pipeline stored a thread reply before InboundExtras
        "raw": {
            "event_id": "EvOld1",
            "channel": HANDOFF,
            "ts": "9.9",
            "thread_ts": post.ts,
            "team": "T0TEAM",
            "kind": "team_reply",
        },
        "attachments": [],
        "thread_key": post.ts,
        "reply_context": {},
        "answer": False,
        "verified": True,
    }
    key = f"slack|{HANDOFF}|U0OLIVE"
    async with gw.services.sessions.begin() as session:
        session.add(
            Inbound(
                channel="slack",
                external_id="EvOld1",
                inbox=HANDOFF,
                sender_kind="slack",
                sender="U0OLIVE",
                queue_key=key,
                text="Olive here, from before.",
                payload=old,
                status="pending",
                attempts=0,
                received_at=utcnow(),
            )
        )
    await gw.services.pipeline.enqueue(key)

    await gw.twilio.wait_sent(2)
    await eventually(lambda: _settled(gw))
    assert [s.body for s in gw.twilio.sent].count("Olive here, from before.") == 1
    [conversation] = await gw.all(select(Conversation).where(Conversation.channel == "sms"))
    assert conversation.status == "operator"
