"""The SMS channel's answers about itself: what Twilio already sent (read through the real
SDK's ``messages.list_async`` from the list endpoint) and its carrier keywords."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import aiohttp
import pydantic
import pytest

from channels.base import ChannelContext, OutboundMessage
from channels.sms import SmsChannel, SmsSettings
from store.errors import DeliveryFailed
from tests.fakes.twilio_api import FakeTwilio
from tests.helpers import ACCOUNT_SID, AUTH_TOKEN, CUSTOMER, PUBLIC_URL, SMS_NUMBER

OTHER = "+14155550177"


def _settings(base: str, **more: object) -> SmsSettings:
    return SmsSettings.model_validate({
        "account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN, "numbers": [SMS_NUMBER],
        "agent": "receptionist", "api_base_url": base, "timeout_seconds": 1.0, **more,
    })  # fmt: skip


@pytest.fixture
async def channel(twilio: tuple[FakeTwilio, str]) -> AsyncIterator[SmsChannel]:
    async with aiohttp.ClientSession() as http:

        async def publish(topic: str, payload: object) -> None:
            raise AssertionError("SMS never publishes")

        context = ChannelContext(PUBLIC_URL, "US", http, publish)  # type: ignore[arg-type]
        yield SmsChannel(_settings(twilio[1]), context)


def _out(text: str, to: str = CUSTOMER) -> OutboundMessage:
    return OutboundMessage(channel="sms", inbox=SMS_NUMBER, to=to, text=text, key=text)


async def test_sent_since_finds_the_message_by_number_and_body(
    channel: SmsChannel, twilio: tuple[FakeTwilio, str]
) -> None:
    fake, _ = twilio
    started = datetime.now(UTC)
    taken = await channel.send(_out("See you at 3pm"))
    await channel.send(_out("Something else"))
    await channel.send(_out("See you at 3pm", to=OTHER))

    found = await channel.sent_since(_out("See you at 3pm"), started)

    assert [d.provider_id for d in found] == [taken.provider_id]
    assert fake.lookups == 1
    assert await channel.sent_since(_out("Never sent"), started) == []


async def test_sent_since_leaves_out_what_was_sent_before_the_attempt(
    channel: SmsChannel, twilio: tuple[FakeTwilio, str]
) -> None:
    fake, _ = twilio
    await channel.send(_out("Thanks!"))
    fake.sent[0].date_sent -= timedelta(hours=1)  # an earlier, recorded reply of the same text

    assert await channel.sent_since(_out("Thanks!"), datetime.now(UTC)) == []


async def test_a_lookup_that_cannot_reach_twilio_is_a_retryable_failure(
    channel: SmsChannel,
) -> None:
    channel._client.api.base_url = "http://127.0.0.1:9"  # nothing listens there
    with pytest.raises(DeliveryFailed) as failed:
        await channel.sent_since(_out("x"), datetime.now(UTC))
    assert failed.value.retryable is True


@pytest.mark.parametrize(
    ("text", "meaning"),
    [
        ("STOP", "opt_out"), ("  stop \n", "opt_out"), ("Unsubscribe", "opt_out"),
        ("quit", "opt_out"), ("stopall", "opt_out"), ("cancel", "opt_out"), ("END", "opt_out"),
        ("start", "opt_in"), ("UNSTOP", "opt_in"), ("help", "help"),
        ("please stop", None), ("stop it", None), ("STOP!", None), ("", None), ("hello", None),
    ],
)  # fmt: skip
def test_keywords_match_the_whole_trimmed_message_in_any_case(
    text: str, meaning: str | None
) -> None:
    assert _settings("http://x").consent_keyword(text) == meaning


def test_keywords_are_configurable_and_must_not_overlap() -> None:
    custom = _settings("http://x", opt_out_keywords=["arret", "Stop"], help_keywords=["aide"])
    assert custom.consent_keyword("ARRET") == "opt_out"
    assert custom.consent_keyword("quit") is None
    assert custom.consent_keyword("aide") == "help"
    with pytest.raises(pydantic.ValidationError, match="more than once: START"):
        _settings("http://x", help_keywords=["start"])
