"""Who is live: operators' presence, kept by heartbeats with a time to live.

An operator goes live, then beats (the console does, every few seconds); one that stops
beating -- a closed console, a crashed laptop -- is offline once the TTL has passed
since its last beat, with nobody having to notice. Leaving, or an admin forcing someone
offline, removes them at once; a beat does not bring a removed operator back (they go
live again, deliberately).

Two back ends with one protocol: ``MemoryPresence`` for a single process, and
``RedisPresence`` so every gateway process sees the same operators (a sorted set of
member -> expiry, plus a hash of when each went live; one round trip per question).

When Redis cannot be reached every call raises ``PresenceUnavailable``: routing then
treats nobody as live (notifications go, the AI keeps the customer company), nobody's
conversations are taken away from them, and the API says 503 to going live. All of it
recovers when Redis is back.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

import redis.asyncio as redis
from redis.exceptions import RedisError

Clock = Callable[[], float]
EXPIRES = "frontdesk:presence:expires"
SINCE = "frontdesk:presence:since"


class PresenceUnavailable(Exception):
    """Presence could not be changed (Redis is unreachable)."""


class Presence(Protocol):
    async def go_live(self, member_id: int, ttl: float | None = None) -> None:
        """Live now, until ``ttl`` (default: the configured one) passes without a beat."""
        ...

    async def beat(self, member_id: int) -> bool:
        """Extend a live operator's TTL; False when they are not live (any more)."""
        ...

    async def leave(self, member_id: int) -> None: ...

    async def live(self) -> dict[int, float]:
        """Live operators -> when they went live (epoch seconds)."""
        ...


class MemoryPresence:
    def __init__(self, ttl: float, clock: Clock = time.time) -> None:
        self._ttl = ttl
        self._clock = clock
        self._expires: dict[int, float] = {}
        self._since: dict[int, float] = {}

    async def go_live(self, member_id: int, ttl: float | None = None) -> None:
        now = self._clock()
        if self._expires.get(member_id, 0.0) <= now:
            self._since[member_id] = now
        self._expires[member_id] = now + (ttl or self._ttl)

    async def beat(self, member_id: int) -> bool:
        now = self._clock()
        if self._expires.get(member_id, 0.0) <= now:
            return False
        self._expires[member_id] = now + self._ttl
        return True

    async def leave(self, member_id: int) -> None:
        self._expires.pop(member_id, None)
        self._since.pop(member_id, None)

    async def live(self) -> dict[int, float]:
        now = self._clock()
        for member_id in [m for m, expires in self._expires.items() if expires <= now]:
            await self.leave(member_id)
        return {m: self._since.get(m, now) for m in self._expires}


class RedisPresence:
    def __init__(self, client: redis.Redis, ttl: float, clock: Clock = time.time) -> None:
        self._client = client
        self._ttl = ttl
        self._clock = clock

    async def go_live(self, member_id: int, ttl: float | None = None) -> None:
        now = self._clock()
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.zscore(EXPIRES, member_id)
                pipe.zadd(EXPIRES, {str(member_id): now + (ttl or self._ttl)})
                expires, _ = await pipe.execute()
                if expires is None or float(expires) <= now:
                    await self._client.hset(SINCE, str(member_id), now)
        except (RedisError, OSError) as exc:
            raise PresenceUnavailable(f"presence is unavailable: {exc}") from exc

    async def beat(self, member_id: int) -> bool:
        now = self._clock()
        try:
            expires = await self._client.zscore(EXPIRES, member_id)
            if expires is None or float(expires) <= now:
                return False
            # XX: only while still there, so a forced-offline operator stays offline.
            await self._client.zadd(EXPIRES, {str(member_id): now + self._ttl}, xx=True)
        except (RedisError, OSError) as exc:
            raise PresenceUnavailable(f"presence is unavailable: {exc}") from exc
        return True

    async def leave(self, member_id: int) -> None:
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.zrem(EXPIRES, member_id)
                pipe.hdel(SINCE, str(member_id))
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise PresenceUnavailable(f"presence is unavailable: {exc}") from exc

    async def live(self) -> dict[int, float]:
        now = self._clock()
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.zrangebyscore(EXPIRES, f"({now}", "+inf")
                pipe.hgetall(SINCE)
                members, since = await pipe.execute()
        except (RedisError, OSError) as exc:
            raise PresenceUnavailable(f"presence is unavailable: {exc}") from exc
        started = {int(k): float(v) for k, v in since.items()}
        return {int(m): started.get(int(m), now) for m in members}
