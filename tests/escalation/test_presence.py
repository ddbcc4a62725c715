"""Presence, in process and on Redis: live while beating, offline after the TTL or when
removed, and a beat never brings a removed or expired operator back."""

from __future__ import annotations

import pytest
import redis.asyncio as redis

from escalation.presence import MemoryPresence, Presence, RedisPresence


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_in_process_presence() -> None:
    clock = Clock()
    await _beats_keep_an_operator_live_until_they_stop_for_the_ttl(MemoryPresence(10, clock), clock)


@pytest.mark.redis
async def test_redis_presence(redis_url: str) -> None:
    clock = Clock()
    client = redis.Redis.from_url(redis_url)
    try:
        presence = RedisPresence(client, 10, clock)
        await _beats_keep_an_operator_live_until_they_stop_for_the_ttl(presence, clock)
    finally:
        await client.aclose()


async def _beats_keep_an_operator_live_until_they_stop_for_the_ttl(
    live: Presence, clock: Clock
) -> None:
    await live.go_live(1)
    went_live = clock.now
    await live.go_live(2)
    clock.now += 8
    assert await live.beat(1)
    clock.now += 8  # 1 beat 8 s ago, 2 went live 16 s ago
    assert await live.live() == {1: went_live}
    assert not await live.beat(2)  # expired: a beat does not bring them back
    await live.leave(1)
    assert not await live.beat(1)
    assert await live.live() == {}
    await live.go_live(2)
    assert await live.live() == {2: clock.now}  # live again, since now
