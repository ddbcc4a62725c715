"""No background loop dies silently: failures are logged, counted and restarted, readiness
says which loop is down, and a Redis-mode process keeps answering after idle gaps."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any
from unittest import mock

import pytest
import redis.asyncio as redis

from channels.email import EmailChannel
from gateway.metrics import Metrics
from gateway.redis_bus import PREFIX
from gateway.settings import from_mapping
from gateway.supervisor import Supervisor
from tests.channels.test_email import _email_config, _mail, _smtp_send
from tests.fakes.smtp_sink import SmtpSink
from tests.fakes.twilio_api import FakeTwilio
from tests.helpers import Gateway, eventually, make_settings, receive


async def _ready(gw: Gateway) -> tuple[int, dict[str, Any]]:
    response = await gw.client.get("/readyz")
    body: dict[str, Any] = await response.json()
    return response.status, body


async def _metric(gw: Gateway, line_start: str) -> float:
    text = await (await gw.client.get("/metrics")).text()
    for line in text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def _answered(gw: Gateway, text: str, sent: int) -> None:
    """Text the gateway and wait for its reply (the ``sent``-th SMS at the fake)."""
    assert (await gw.sms(text)).status == 200
    replies = await gw.twilio.wait_sent(sent, timeout=15)
    assert "8am to 6pm" in replies[sent - 1].body


@pytest.mark.postgres
@pytest.mark.redis
async def test_redis_mode_keeps_answering_after_idle_gaps_longer_than_the_redis_timeouts(
    postgres_url: str, redis_url: str, twilio: tuple[FakeTwilio, str]
) -> None:
    # Slowest test of this module (about 13 s): the gaps must outlast redis-py's default
    # socket timeout (5 s), which used to kill the processor of an idle process.
    fake, base = twilio
    settings = make_settings(postgres_url, twilio_base=base, redis_url=redis_url)
    async with Gateway.running(settings, fake) as gw:
        await _answered(gw, "opening hours?", 1)
        for gap in (1, 2):
            await asyncio.sleep(6)  # idling is what is tested: nothing to wait on but time
            await _answered(gw, "and your opening hours?", gap + 1)
        ws = await gw.chat()
        await ws.send_json({"type": "hello", "visitor": None})
        await ws.send_json({"type": "message", "text": "When are you open?", "client_id": "c"})
        reply = await receive(ws, "message", timeout=15)  # fanned out through Redis pub/sub
        await ws.close()
        status, body = await _ready(gw)
        pending = await _metric(gw, "frontdesk_inbound_pending")
        failures = await _metric(gw, "frontdesk_loop_failures_total")

    assert "8am to 6pm" in reply["text"]
    assert status == 200
    assert body["checks"] == {"loops": "ok", "database": "ok", "redis": "ok"}
    assert pending == 0
    assert failures == 0


async def test_a_failing_loop_is_logged_counted_restarted_and_readiness_says_which(
    sqlite_gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    gw = sqlite_gateway
    queue = gw.services.queue
    await _answered(gw, "opening hours?", 1)
    fault = RuntimeError("injected: the queue broke")
    with mock.patch.object(queue, "pop_many", side_effect=fault):
        # The processor is already waiting in the real pop; this text wakes it, and its
        # next pop fails, and so does every restart while the fault lasts.
        await _answered(gw, "opening hours again?", 2)

        async def processor_down() -> bool:
            status, body = await _ready(gw)
            return status == 503 and body["checks"]["loops"] == "down: processor"

        await eventually(processor_down)
    await eventually(lambda: _status_is(gw, 200))

    await _answered(gw, "are you open on saturday? opening hours?", 3)
    restarts = await _metric(gw, 'frontdesk_loop_failures_total{loop="processor"}')
    assert restarts >= 1
    assert await _metric(gw, 'frontdesk_loop_up{loop="processor"}') == 1
    logged = [r for r in caplog.records if r.getMessage().startswith("loop processor failed")]
    assert logged
    assert logged[0].exc_info is not None
    assert logged[0].exc_info[1] is fault


async def _status_is(gw: Gateway, status: int) -> bool:
    return (await _ready(gw))[0] == status


@pytest.mark.redis
async def test_pubsub_reader_outlives_a_message_that_is_not_json(
    sqlite_url: str, redis_url: str, twilio: tuple[FakeTwilio, str]
) -> None:
    fake, base = twilio
    settings = make_settings(sqlite_url, twilio_base=base, redis_url=redis_url)
    async with Gateway.running(settings, fake) as gw:
        other = redis.Redis.from_url(redis_url)
        for junk in (b"not json", json.dumps([1, 2]).encode(), b"\xff\xfe"):
            await other.publish(PREFIX + "webchat", junk)
        await other.aclose()
        ws = await gw.chat()
        await ws.send_json({"type": "hello", "visitor": None})
        await ws.send_json({"type": "message", "text": "When are you open?", "client_id": "c"})
        reply = await receive(ws, "message", timeout=15)
        await ws.close()
    assert "8am to 6pm" in reply["text"]


async def test_a_loop_that_returns_early_is_restarted_and_one_stopped_is_not(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    metrics = Metrics()
    supervisor = Supervisor(metrics)
    runs = 0
    third = asyncio.Event()
    release = asyncio.Event()

    async def loop() -> None:
        nonlocal runs
        runs += 1
        if runs == 3:
            third.set()
            await release.wait()  # the owner tells it to stop

    supervisor.keep("flaky", loop)
    await asyncio.wait_for(third.wait(), 10)
    assert supervisor.down() == []
    stopping = asyncio.create_task(supervisor.stop(5))
    release.set()
    await stopping

    assert runs == 3
    assert metrics.loop_failures.labels("flaky")._value.get() == 2
    assert sum("flaky returned while running" in r.getMessage() for r in caplog.records) == 2


async def test_an_smtp_listener_closed_under_the_process_listens_again(
    sqlite_url: str, twilio: tuple[FakeTwilio, str], sink: SmtpSink
) -> None:
    settings = from_mapping(_email_config(sqlite_url, sink), env={})
    async with Gateway.running(settings, twilio[0]) as gw:
        channel = gw.services.channels["email"]
        assert isinstance(channel, EmailChannel)
        assert channel._listener is not None
        assert channel._listener._server is not None
        channel._listener._server.close()  # fault injection: the listening socket goes away

        async def listening_again() -> bool:
            assert channel._listener is not None
            server = channel._listener._server
            return server is not None and server.is_serving()

        await eventually(listening_again)
        await _smtp_send(gw, _mail("Hi, what are your opening hours?"))
        [reply] = await sink.wait(1)
        restarts = await _metric(gw, 'frontdesk_loop_failures_total{loop="email-listener"}')

    assert "8am to 6pm" in reply.get_content()
    assert restarts == 1


async def test_a_loop_cancelled_by_nobody_who_owns_it_is_restarted_and_counted(
    sqlite_gateway: Gateway,
) -> None:
    gw = sqlite_gateway
    gw.services.supervisor._loops["processor"].cancel()  # fault injection: a stray cancel

    await _answered(gw, "opening hours?", 1)

    assert await _metric(gw, 'frontdesk_loop_failures_total{loop="processor"}') == 1


async def test_a_deliverer_failing_every_pass_is_counted_and_makes_the_process_unready(
    sqlite_gateway: Gateway,
) -> None:
    gw = sqlite_gateway
    fault = RuntimeError("injected: the outbox is unreadable")
    with mock.patch.object(gw.services.deliverer, "_claim", side_effect=fault):
        assert (await gw.sms("opening hours?")).status == 200

        async def deliverer_down() -> bool:
            status, body = await _ready(gw)
            return status == 503 and body["checks"]["loops"] == "down: deliverer"

        await eventually(deliverer_down)
    replies = await gw.twilio.wait_sent(1, timeout=15)

    assert "8am to 6pm" in replies[0].body
    assert await _metric(gw, 'frontdesk_loop_failures_total{loop="deliverer"}') >= 1


async def test_a_loop_whose_body_leaks_a_cancellation_is_restarted() -> None:
    metrics = Metrics()
    supervisor = Supervisor(metrics)
    second = asyncio.Event()
    runs = 0

    async def loop() -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            raise asyncio.CancelledError  # a library's own cancellation leaking out
        second.set()
        await asyncio.Event().wait()

    supervisor.keep("leaky", loop, cancel_on_stop=True)
    await asyncio.wait_for(second.wait(), 10)
    await supervisor.stop(5)

    assert metrics.loop_failures.labels("leaky")._value.get() == 1
