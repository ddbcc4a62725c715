"""Health, readiness, metrics, request ids, and what never reaches the logs."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import select

from agents.base import TurnInput, TurnResult
from agents.runtime import HOLDING_REPLY, Runtime
from store.models import Handoff, Message, Outbox
from tests.fakes.twilio_api import FakeTwilio
from tests.helpers import (
    AUTH_TOKEN,
    Gateway,
    eventually,
    make_settings,
    sms_form,
    twilio_signature,
)


async def test_health_and_readiness(gateway: Gateway) -> None:
    assert await (await gateway.client.get("/healthz")).json() == {"status": "ok"}
    ready = await gateway.client.get("/readyz")
    assert ready.status == 200
    assert (await ready.json())["checks"] == {"loops": "ok", "database": "ok"}


async def test_readiness_checks_redis_when_configured(
    postgres_url: str, redis_url: str, twilio: tuple[FakeTwilio, str]
) -> None:
    fake, base = twilio
    settings = make_settings(postgres_url, twilio_base=base, redis_url=redis_url)
    async with Gateway.running(settings, fake) as gw:
        await gw.sms("hello there")
        await fake.wait_sent(1)
        body = await (await gw.client.get("/readyz")).json()
    assert body["checks"] == {"loops": "ok", "database": "ok", "redis": "ok"}


async def test_metrics_count_inbound_replies_rejections_and_turns(gateway: Gateway) -> None:
    await gateway.sms("opening hours?")
    await gateway.twilio.wait_sent(1)
    await eventually(lambda: _sent(gateway))
    await gateway.post_form("/channels/twilio/sms", sms_form("x"), signature="bad")

    response = await gateway.client.get("/metrics")
    text = await response.text()

    assert response.headers["Content-Type"].startswith("text/plain; version=")
    assert 'frontdesk_inbound_messages_total{channel="sms"} 1.0' in text
    assert 'frontdesk_replies_sent_total{channel="sms"} 1.0' in text
    assert 'frontdesk_inbound_rejected_total{channel="sms",reason="signature_invalid"} 1.0' in text
    assert "frontdesk_turn_seconds_count 1.0" in text
    assert "frontdesk_outbox_pending 0.0" in text


async def _sent(gateway: Gateway) -> bool:
    return await gateway.count(Outbox, Outbox.status == "sent") == 1


async def test_request_id_is_echoed_or_made_up(gateway: Gateway) -> None:
    given = await gateway.client.get("/healthz", headers={"X-Request-Id": "abc-123"})
    made = await gateway.client.get("/healthz", headers={"X-Request-Id": "bad id; drop"})
    assert given.headers["X-Request-Id"] == "abc-123"
    assert made.headers["X-Request-Id"] != "bad id; drop"
    assert len(made.headers["X-Request-Id"]) == 16


async def test_rejected_webhooks_log_no_signature_token_or_body(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    form = sms_form("my card number is 4111 1111 1111 1111")
    signature = twilio_signature("/channels/twilio/sms", form, token="wrong-token")
    caplog.set_level(logging.DEBUG)

    response = await gateway.post_form("/channels/twilio/sms", form, signature=signature)
    body = await response.text()

    assert response.status == 403
    logged = caplog.text + body
    for secret in (signature, AUTH_TOKEN, "4111 1111"):
        assert secret not in logged
    assert "denied" in caplog.text


class _Broken:
    async def respond(self, turn: TurnInput, call: object) -> TurnResult:
        raise ConnectionError("model provider unreachable")


async def test_a_failing_agent_sends_one_holding_reply_and_asks_for_a_person(
    database_url: str, twilio: tuple[FakeTwilio, str]
) -> None:
    fake, base = twilio
    settings = make_settings(database_url, twilio_base=base)
    runtime = Runtime(settings.agents, "Example Dental", models={"receptionist": _Broken()})
    async with Gateway.running(settings, fake, runtime=runtime) as gw:
        await gw.sms("hello?")
        [sent] = await fake.wait_sent(1)
        [handoff] = await gw.all(select(Handoff))
        replies = await gw.all(select(Message).where(Message.direction == "out"))

    assert sent.body == HOLDING_REPLY
    assert "Traceback" not in sent.body
    assert handoff.trigger == "agent_error"
    assert len(replies) == 1
