"""A send whose answer was lost (a timeout: Twilio may have taken it) is looked up at Twilio
before it is sent again: found, it is recorded; not found, it is sent."""

from __future__ import annotations

from sqlalchemy import select

from store.models import Outbox
from tests.helpers import Gateway, eventually


async def _all_sent(gateway: Gateway, count: int) -> bool:
    return await gateway.count(Outbox, Outbox.status == "sent") >= count


async def test_a_send_taken_but_timed_out_is_recorded_not_sent_again(gateway: Gateway) -> None:
    fake = gateway.twilio
    fake.script.append("taken")  # Twilio takes it; the answer never comes (1 s timeout)

    assert (await gateway.sms("Do you accept insurance?")).status == 200
    await eventually(lambda: _all_sent(gateway, 1))

    assert len(fake.sent) == 1
    assert (fake.requests, fake.lookups) == (1, 1)
    assert await gateway.all(select(Outbox.provider_id)) == [fake.sent[0].sid]


async def test_the_same_text_sent_before_is_not_taken_for_a_lost_send(gateway: Gateway) -> None:
    """The first reply went out and was recorded; the second, identical, timed out without
    reaching Twilio: the first one's message is not mistaken for it."""
    fake = gateway.twilio
    assert (await gateway.sms("Do you accept insurance?")).status == 200
    await eventually(lambda: _all_sent(gateway, 1))
    fake.script.append("hang")  # never taken, never answered

    assert (await gateway.sms("Do you accept insurance?")).status == 200
    await eventually(lambda: _all_sent(gateway, 2))

    assert len(fake.sent) == 2
    assert fake.sent[0].body == fake.sent[1].body
    assert fake.lookups == 1
