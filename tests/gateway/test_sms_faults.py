"""Bad webhooks are refused with a clear 4xx and leave nothing behind; a failing Twilio API
is retried from the outbox until the reply is sent exactly once."""

from __future__ import annotations

import io
from urllib.parse import urlencode

import pytest
from sqlalchemy import select

from store.models import Inbound, Member, Message, Outbox
from tests.helpers import CUSTOMER, Gateway, eventually, sms_form, twilio_signature

SMS_PATH = "/channels/twilio/sms"


async def _nothing_stored(gateway: Gateway) -> None:
    assert await gateway.count(Inbound) == 0
    assert await gateway.count(Member) == 0
    assert (await gateway.client.get("/healthz")).status == 200


@pytest.mark.parametrize(
    "signature",
    [None, "", "bm90IGEgc2lnbmF0dXJl"],
    ids=["missing", "empty", "wrong"],
)
async def test_sms_with_bad_signature_is_rejected_and_not_stored(
    gateway: Gateway, signature: str | None
) -> None:
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if signature is not None:
        headers["X-Twilio-Signature"] = signature
    response = await gateway.client.post(SMS_PATH, data=urlencode(sms_form("hi")), headers=headers)

    assert response.status == 403
    body = await response.json()
    assert body["error"]["code"] == "signature_invalid"
    await _nothing_stored(gateway)


async def test_signature_replayed_with_another_body_is_rejected(gateway: Gateway) -> None:
    signed = sms_form("hi")
    signature = twilio_signature(SMS_PATH, signed)
    tampered = {**signed, "Body": "send me everyone's phone numbers"}

    response = await gateway.post_form(SMS_PATH, tampered, signature=signature)

    assert response.status == 403
    await _nothing_stored(gateway)


async def test_signature_for_another_url_is_rejected(gateway: Gateway) -> None:
    form = sms_form("hi")
    signature = twilio_signature("/channels/twilio/voice", form)

    response = await gateway.post_form(SMS_PATH, form, signature=signature)

    assert response.status == 403
    await _nothing_stored(gateway)


@pytest.mark.parametrize("missing", ["From", "Body", "MessageSid"])
async def test_webhook_missing_a_field_is_a_400_naming_it(gateway: Gateway, missing: str) -> None:
    form = sms_form("hi")
    del form[missing]

    response = await gateway.post_form(SMS_PATH, form)

    assert response.status == 400
    assert missing in (await response.json())["error"]["message"]
    await _nothing_stored(gateway)


async def test_from_that_is_not_a_phone_number_is_a_400(gateway: Gateway) -> None:
    response = await gateway.post_form(SMS_PATH, sms_form("hi", from_="not-a-number"))

    assert response.status == 400
    assert "From" in (await response.json())["error"]["message"]
    await _nothing_stored(gateway)


async def test_two_megabyte_body_is_refused_with_413(gateway: Gateway) -> None:
    form = sms_form("x" * (2 * 1024 * 1024))
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": twilio_signature(SMS_PATH, form),
    }

    response = await gateway.client.post(
        SMS_PATH, data=io.BytesIO(urlencode(form).encode()), headers=headers
    )

    assert response.status == 413
    await _nothing_stored(gateway)


async def test_invalid_utf8_body_is_a_400(gateway: Gateway) -> None:
    body = urlencode(sms_form("hi")).encode() + b"&Extra=%FF%FE"
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": "irrelevant",
    }
    raw = await gateway.client.post(SMS_PATH, data=body, headers=headers)
    raw_bytes = await gateway.client.post(SMS_PATH, data=b"Body=\xff\xfe&From=x", headers=headers)

    assert raw.status == 400
    assert "UTF-8" in (await raw.json())["error"]["message"]
    assert raw_bytes.status == 400
    await _nothing_stored(gateway)


async def test_text_to_a_number_not_ours_is_a_400(gateway: Gateway) -> None:
    form = {**sms_form("hi"), "To": "+14155559999"}

    response = await gateway.post_form(SMS_PATH, form)

    assert response.status == 400
    await _nothing_stored(gateway)


async def test_twilio_5xx_is_retried_and_the_reply_sent_once(gateway: Gateway) -> None:
    gateway.twilio.script.extend([500, 503])

    await gateway.sms("Where are you located?")

    [sent] = await gateway.twilio.wait_sent(1)
    assert "Main Street" in sent.body
    assert gateway.twilio.requests == 3
    await eventually(lambda: _outbox_status(gateway, "sent"))
    [row] = await gateway.all(select(Outbox))
    assert row.attempts == 3


async def test_twilio_timeout_is_retried_and_the_reply_sent_once(gateway: Gateway) -> None:
    gateway.twilio.script.append("hang")  # longer than the client's 1 s timeout

    await gateway.sms("Do you accept insurance?")

    [sent] = await gateway.twilio.wait_sent(1)
    assert "insurance" in sent.body
    await eventually(lambda: _outbox_status(gateway, "sent"))
    assert len(gateway.twilio.sent) == 1


async def test_twilio_4xx_fails_the_reply_without_retrying(gateway: Gateway) -> None:
    gateway.twilio.script.append(("error", 400, 21211))

    await gateway.sms("hello", from_=CUSTOMER)

    await eventually(lambda: _outbox_status(gateway, "failed"))
    [reply] = await gateway.all(select(Message).where(Message.direction == "out"))
    assert reply.status == "failed"
    assert "21211" in (reply.error or "")
    [row] = await gateway.all(select(Outbox))
    assert row.attempts == 1
    assert gateway.twilio.requests == 1
    assert gateway.twilio.sent == []


async def _outbox_status(gateway: Gateway, status: str) -> bool:
    return await gateway.count(Outbox, Outbox.status == status) == 1


async def test_a_nul_character_is_a_400_not_a_database_error(gateway: Gateway) -> None:
    response = await gateway.post_form(SMS_PATH, sms_form("hello\x00there"))
    assert response.status == 400
    assert "NUL" in (await response.json())["error"]["message"]
    await _nothing_stored(gateway)
