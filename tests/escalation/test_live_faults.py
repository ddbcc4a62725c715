"""Live operators when things go wrong: Redis goes away, two processes route at once, an
operator takes a conversation while the agent is still answering it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlparse

import pytest
import redis.asyncio as redis
from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage
from sqlalchemy import select

from escalation.operators import Seat
from escalation.presence import RedisPresence
from escalation.routing import loads, offer
from gateway.app import runtime_for
from gateway.settings import from_mapping
from store.engine import create_engine, session_factory
from store.models import Conversation, Handoff, Inbound, Message
from tests.escalation.test_live import ON_CALL_PHONE, _offered, _operator, live_config
from tests.fakes.tcp_proxy import TcpProxy
from tests.fakes.twilio_api import FakeTwilio
from tests.helpers import Gateway, add_member, eventually


@pytest.fixture
async def redis_proxy(redis_url: str) -> AsyncIterator[tuple[TcpProxy, str]]:
    """Redis behind a proxy the test can cut, and the URL through it."""
    parsed = urlparse(redis_url)
    proxy = TcpProxy(parsed.hostname or "127.0.0.1", parsed.port or 6379)
    await proxy.start()
    yield proxy, f"redis://127.0.0.1:{proxy.port}{parsed.path}"
    await proxy.close()


@pytest.mark.redis
async def test_redis_down_routes_as_if_nobody_were_live_and_recovers(
    sqlite_url: str, twilio: tuple[FakeTwilio, str], redis_proxy: tuple[TcpProxy, str]
) -> None:
    fake, base = twilio
    proxy, url = redis_proxy
    client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
    presence = RedisPresence(client, ttl=60)
    settings = from_mapping(live_config(sqlite_url, base), env={})
    try:
        async with Gateway.running(settings, fake, presence=presence) as gw:
            ann = await _operator(gw, "Ann", ON_CALL_PHONE)
            assert (await ann.post("/api/operators/live"))[0] == 200
            await proxy.cut()

            await gw.sms("I want to talk to a person")
            await fake.wait_sent(3)  # the agent answers; the on-call operator is texted
            [handoff] = await gw.all(select(Handoff))
            beat_down, _ = await ann.post("/api/operators/heartbeat")
            board_down, _ = await ann.get("/api/console")
            health = (await gw.client.get("/healthz")).status

            await proxy.restore()
            beat_back = await ann.post("/api/operators/heartbeat")
            await _offered(gw, 1)  # the queued handoff reaches Ann once Redis is back
            [handoff_after] = await gw.all(select(Handoff))
    finally:
        await client.aclose()
    assert [s.to for s in fake.sent].count(ON_CALL_PHONE) == 1
    assert handoff.operator_id is None
    assert handoff.notified_at is not None
    assert (beat_down, board_down, health) == (503, 200, 200)
    assert beat_back == (200, {"live": True})
    assert handoff_after.status == "open"


@pytest.mark.postgres
async def test_two_processes_offering_the_same_handoffs_at_once_give_each_to_one_operator(
    postgres_url: str, twilio: tuple[FakeTwilio, str]
) -> None:
    """Each "process" (an engine with its own connections) thinks a different operator is
    the least loaded; every handoff still ends with exactly one, and only one process
    believes it made the offer."""
    fake, base = twilio
    settings = from_mapping(live_config(postgres_url, base), env={})
    async with Gateway.running(settings, fake) as gw:
        ann_id, _ = await add_member(gw, "ann@example.com", kind="team", role="operator")
        bob_id, _ = await add_member(gw, "bob@example.com", kind="team", role="operator")
        customer, _ = await add_member(gw, "customer@example.org")
        async with gw.services.sessions.begin() as session:
            conversations = [Conversation(member_id=customer, channel="sms", status="queued",
                                          inbox=f"+1415555{i:04}", data={})
                             for i in range(22)]  # fmt: skip
            session.add_all(conversations)
            await session.flush()
            handoffs = [Handoff(conversation_id=c.id, reason="test", trigger="test")
                        for c in conversations[:20]]  # fmt: skip
            session.add_all(handoffs)
            await session.flush()
            ids = [h.id for h in handoffs]
    engines = [create_engine(postgres_url, pool_size=4) for _ in range(2)]
    try:
        makers = [session_factory(e) for e in engines]

        async def route(maker: Any, handoff_id: int, seat: Seat) -> bool:
            async with maker.begin() as session:
                return await offer(session, handoff_id, [seat]) is not None

        won = []
        for handoff_id in ids:
            a = Seat(ann_id, "front", 0, 100, 0.0)
            b = Seat(bob_id, "front", 0, 100, 0.0)
            won.append(await asyncio.gather(route(makers[0], handoff_id, a),
                                            route(makers[1], handoff_id, b)))  # fmt: skip
        # The capacity race: one seat left, two processes filling it with different handoffs.
        async with makers[0].begin() as session:
            spare = [Handoff(conversation_id=c.id, reason="t", trigger="t")
                     for c in conversations[20:]]  # fmt: skip
            session.add_all(spare)
            await session.flush()
            spare_ids = [h.id for h in spare]
            before = (await loads(session, [ann_id]))[ann_id]
        last_seat = Seat(ann_id, "front", before, before + 1, 0.0)
        last = await asyncio.gather(*(route(m, h, last_seat)
                                      for m, h in zip(makers, spare_ids, strict=True)))  # fmt: skip
        async with makers[0]() as session:
            held = await loads(session, [ann_id])
            owners = list((await session.execute(
                select(Handoff.operator_id).where(Handoff.id.in_(ids))
            )).scalars())  # fmt: skip
    finally:
        for engine in engines:
            await engine.dispose()
    assert all(a != b for a, b in won), "each handoff was offered by exactly one process"
    assert all(owner is not None for owner in owners)
    assert sorted(last) == [False, True]  # one filled the last seat, the other did not
    assert held[ann_id] == before + 1


class Gated(FakeMessagesListChatModel):
    """A scripted model that waits at a gate before answering (a slow provider)."""

    gate: Any = None
    asked: Any = None  # an asyncio.Condition notified at each call
    calls: int = 0

    def bind_tools(self, tools: Any, **kwargs: Any) -> Gated:  # type: ignore[override]
        return self

    async def ainvoke(self, messages: Any, *args: Any, **kwargs: Any) -> AIMessage:  # type: ignore[override]
        async with self.asked:
            self.calls += 1
            self.asked.notify_all()
        await self.gate.wait()
        reply = await super().ainvoke(messages, *args, **kwargs)
        assert isinstance(reply, AIMessage)
        return reply


async def test_an_agent_reply_racing_an_operator_taking_the_conversation_is_dropped(
    database_url: str, twilio: tuple[FakeTwilio, str]
) -> None:
    fake, base = twilio
    raw = live_config(database_url, base)
    raw["escalation"]["triggers"] = {"keywords": ["person"]}
    settings = from_mapping(raw, env={})
    model = Gated(responses=[AIMessage(content="Sure, one moment."),
                             AIMessage(content="We are open 8 to 6.")])  # fmt: skip
    model.gate, model.asked = asyncio.Event(), asyncio.Condition()
    model.gate.set()
    runtime = runtime_for(settings, chat_models={"receptionist": model})
    try:
        async with Gateway.running(settings, fake, runtime=runtime) as gw:
            ann = await _operator(gw, "Ann")
            await ann.post("/api/operators/live")
            await gw.sms("I want a person")
            await _offered(gw, 1)
            await fake.wait_sent(2)
            model.gate.clear()
            await gw.sms("What are your hours?")

            async with model.asked:  # the second turn is at the model
                await asyncio.wait_for(model.asked.wait_for(lambda: model.calls == 2), 10)
            [conversation] = await gw.all(select(Conversation))
            took, _ = await ann.post(f"/api/conversations/{conversation.id}/take")
            model.gate.set()

            async def finished() -> bool:
                return await gw.count(Inbound, Inbound.status == "done") == 2

            await eventually(finished)
            await eventually(gw.settled)  # a wrongly queued reply would have been sent
            said = await gw.all(select(Message.text).where(Message.author == "agent"))
    finally:
        await runtime.close()
    assert took == 200
    assert "We are open 8 to 6." not in said
    assert "We are open 8 to 6." not in [s.body for s in fake.sent]
    assert len(fake.sent) == 2
