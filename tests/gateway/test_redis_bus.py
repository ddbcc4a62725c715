"""The Redis pub/sub and work queue against the real server."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

from gateway.redis_bus import RedisPubSub, RedisWorkQueue, connect

pytestmark = pytest.mark.redis


async def test_a_payload_published_by_one_process_reaches_anothers_handler(redis_url: str) -> None:
    here, there = connect(redis_url), connect(redis_url)
    got: asyncio.Queue[Mapping[str, Any]] = asyncio.Queue()

    async def handler(payload: Mapping[str, Any]) -> None:
        await got.put(payload)

    receiver, sender = RedisPubSub(here), RedisPubSub(there)
    await receiver.subscribe("webchat", handler)
    await sender.publish("webchat", {"visitor": "v_1", "frame": {"type": "message"}})

    assert await asyncio.wait_for(got.get(), 5) == {"visitor": "v_1", "frame": {"type": "message"}}
    await receiver.close()
    await sender.close()
    await here.aclose()
    await there.aclose()


async def test_work_queue_hands_out_keys_and_a_key_has_one_holder(redis_url: str) -> None:
    client, blocking = connect(redis_url), connect(redis_url)
    here, there = RedisWorkQueue(client, blocking), RedisWorkQueue(client, connect(redis_url))
    for key in ("sms|+1|+2", "sms|+1|+3", "sms|+1|+2"):
        await here.push(key)

    keys = await asyncio.wait_for(here.pop_many(10), 5)
    first = await here.claim(keys)
    second = await there.claim(keys)
    await here.release(["sms|+1|+2"])
    after_release = await there.claim(keys)

    assert sorted(keys) == ["sms|+1|+2", "sms|+1|+3"]
    assert sorted(first) == sorted(keys)
    assert second == []
    assert after_release == ["sms|+1|+2"]
    await here.close()
    await there.close()
    await client.aclose()
