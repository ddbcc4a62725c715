"""The SMS channel on its own: parse a signed Twilio payload, refuse a bad one, send."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import urlencode

import aiohttp
import pytest
from multidict import CIMultiDict, CIMultiDictProxy, MultiDict, MultiDictProxy

from channels.base import ChannelContext, OutboundMessage, RawRequest
from channels.sms import SmsChannel, SmsSettings
from store.errors import DeliveryFailed, SignatureInvalid, ValidationFailed
from tests.fakes.twilio_api import FakeTwilio
from tests.helpers import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    CUSTOMER,
    PUBLIC_URL,
    SMS_NUMBER,
    sms_form,
    twilio_signature,
)

PATH = "/channels/twilio/sms"
MMS = {
    **sms_form("look at this", sid="MM" + "b" * 32),
    "NumMedia": "2",
    "MediaUrl0": "https://api.twilio.com/media/1",
    "MediaContentType0": "image/jpeg",
    "MediaUrl1": "https://api.twilio.com/media/2",
    "MediaContentType1": "application/pdf",
}


def _request(form: dict[str, str], signature: str | None = None, path: str = PATH) -> RawRequest:
    headers: CIMultiDict[str] = CIMultiDict()
    headers["X-Twilio-Signature"] = twilio_signature(path, form) if signature is None else signature
    return RawRequest(
        method="POST",
        url=PUBLIC_URL + path,
        path=path,
        headers=CIMultiDictProxy(headers),
        form=MultiDictProxy(MultiDict(form)),
        body=urlencode(form).encode(),
    )


@pytest.fixture
async def channel(twilio: tuple[FakeTwilio, str]) -> AsyncIterator[SmsChannel]:
    _, base = twilio
    settings = SmsSettings(
        account_sid=ACCOUNT_SID,
        auth_token=AUTH_TOKEN,
        numbers=(SMS_NUMBER,),
        agent="receptionist",
        api_base_url=base,
        timeout_seconds=1.0,
    )
    async with aiohttp.ClientSession() as http:

        async def publish(topic: str, payload: object) -> None:
            raise AssertionError("SMS never publishes")

        context = ChannelContext(PUBLIC_URL, "US", http, publish)  # type: ignore[arg-type]
        yield SmsChannel(settings, context)


async def test_parses_a_signed_mms_into_a_normalised_message(channel: SmsChannel) -> None:
    message = await channel.parse(_request(MMS))

    assert (message.channel, message.inbox, message.sender_kind, message.sender) == (
        "sms",
        SMS_NUMBER,
        "phone",
        CUSTOMER,
    )
    assert message.text == "look at this"
    assert message.external_id == "MM" + "b" * 32
    assert [(a.url, a.content_type) for a in message.attachments] == [
        ("https://api.twilio.com/media/1", "image/jpeg"),
        ("https://api.twilio.com/media/2", "application/pdf"),
    ]
    assert message.raw["NumMedia"] == "2"


async def test_repeated_and_empty_fields_are_kept_for_the_signature(channel: SmsChannel) -> None:
    form = MultiDict(sms_form("hi"))
    form.add("Tag", "a")
    form.add("Tag", "b")
    form.add("Empty", "")
    signature = twilio_signature(PATH, form)  # type: ignore[arg-type]
    request = _request({}, signature)
    request = RawRequest(
        request.method, request.url, request.path, request.headers, MultiDictProxy(form), b""
    )

    message = await channel.parse(request)

    assert message.raw["Tag"] == ["a", "b"]


async def test_a_forged_signature_is_refused(channel: SmsChannel) -> None:
    with pytest.raises(SignatureInvalid):
        await channel.parse(_request(sms_form("hi"), signature="Zm9yZ2Vk"))


async def test_unknown_number_and_bad_media_count_are_refused(channel: SmsChannel) -> None:
    with pytest.raises(ValidationFailed, match="not one of this workspace's SMS numbers"):
        await channel.parse(_request({**sms_form("hi"), "To": "+442071838750"}))
    with pytest.raises(ValidationFailed, match="NumMedia"):
        await channel.parse(_request({**sms_form("hi"), "NumMedia": "lots"}))


async def test_send_reaches_the_api_and_4xx_is_not_retryable(
    channel: SmsChannel, twilio: tuple[FakeTwilio, str]
) -> None:
    fake, _ = twilio
    out = OutboundMessage(channel="sms", inbox=SMS_NUMBER, to=CUSTOMER, text="hello", key="k1")

    delivery = await channel.send(out)
    fake.script.append(("error", 400, 21610))
    with pytest.raises(DeliveryFailed) as refused:
        await channel.send(out)
    fake.script.append(503)
    with pytest.raises(DeliveryFailed) as unavailable:
        await channel.send(out)

    assert delivery.provider_id == fake.sent[0].sid
    assert (fake.sent[0].to, fake.sent[0].from_, fake.sent[0].body) == (
        CUSTOMER,
        SMS_NUMBER,
        "hello",
    )
    assert (refused.value.retryable, refused.value.provider_code) == (False, "21610")
    assert unavailable.value.retryable is True


async def test_status_callback_is_verified_and_read(channel: SmsChannel) -> None:
    sid = "SM" + "a" * 32
    form = {"MessageSid": sid, "AccountSid": ACCOUNT_SID, "MessageStatus": "undelivered",
            "ErrorCode": "30003"}  # fmt: skip
    update = await channel.parse_status(_request(form, path="/channels/twilio/status"))
    assert (update.provider_id, update.status, update.error_code) == (
        sid,
        "undelivered",
        "30003",
    )
    with pytest.raises(SignatureInvalid):
        await channel.parse_status(_request(form, signature="x", path="/channels/twilio/status"))
