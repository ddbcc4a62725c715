"""A call's webhook waits for its turn's replies on an event, from whichever process
finished the turn."""

from __future__ import annotations

import asyncio
from urllib.parse import urlencode

import pytest

from gateway.settings import from_mapping
from tests.fakes.twilio_api import FakeTwilio
from tests.helpers import ACCOUNT_SID, CUSTOMER, SMS_NUMBER, Gateway, make_config, twilio_signature

WAIT = 10.0  # the most a turn's webhook may wait before a filler


def _voice_config(postgres_url: str, base: str, redis_url: str, workers: int) -> dict[str, object]:
    raw = make_config(postgres_url, twilio_base=base, redis_url=redis_url, workers=workers)
    raw["channels"]["voice"] = {
        "numbers": [SMS_NUMBER], "agent": "receptionist", "reply_wait_seconds": WAIT,
    }  # fmt: skip
    return raw


@pytest.mark.postgres
@pytest.mark.redis
async def test_a_reply_finished_by_another_process_is_said_at_once_not_at_the_deadline(
    postgres_url: str, redis_url: str, twilio: tuple[FakeTwilio, str]
) -> None:
    fake, base = twilio
    # A only accepts (no workers): the turn is B's, and only B's publish can wake A early.
    accepting = from_mapping(_voice_config(postgres_url, base, redis_url, workers=0), env={})
    working = from_mapping(_voice_config(postgres_url, base, redis_url, workers=4), env={})
    async with Gateway.running(accepting, fake) as a, Gateway.running(working, fake):
        form = {"CallSid": "CA" + "8" * 32, "AccountSid": ACCOUNT_SID, "From": CUSTOMER,
                "To": SMS_NUMBER, "CallStatus": "in-progress",
                "SpeechResult": "What are your opening hours?"}  # fmt: skip
        url = "/channels/twilio/voice/turn?" + urlencode({"n": 1})
        loop = asyncio.get_running_loop()
        began = loop.time()
        answer = await a.post_form(url, form, signature=twilio_signature(url, form))
        took = loop.time() - began
        text = await answer.text()
    assert answer.status == 200
    assert "We are open 8am to 6pm" in text
    assert took < WAIT / 2  # woken by B's publish, not by its own last look at the store
