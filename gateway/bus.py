"""Fan-out and the work queue, in process: the default for one gateway process.

``gateway.redis_bus`` has the same two things on Redis for many processes. Both keep
to the same small Protocols, so the rest of the gateway does not know which it has.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

log = logging.getLogger(__name__)

Handler = Callable[[Mapping[str, Any]], Awaitable[None]]


class PubSub(Protocol):
    """Topic fan-out to every gateway process (each runs its own local handlers)."""

    async def publish(self, topic: str, payload: Mapping[str, Any]) -> None:
        """Deliver ``payload`` to the handlers of ``topic`` in every process; best effort."""
        ...

    async def subscribe(self, topic: str, handler: Handler) -> None:
        """Call ``handler`` for each payload published on ``topic`` from now on."""
        ...

    async def close(self) -> None: ...


class WorkQueue(Protocol):
    """Keys with work to do, and leases so one worker at a time works on a key."""

    async def push(self, key: str) -> None:
        """Note that ``key`` has work. Pushing a key twice is harmless."""
        ...

    async def pop_many(self, limit: int) -> list[str]:
        """Wait for a key with work; return it and up to ``limit - 1`` more, distinct."""
        ...

    async def claim(self, keys: list[str]) -> list[str]:
        """Lease the keys nobody holds; return those now held by the caller."""
        ...

    async def release(self, keys: list[str]) -> None:
        """Give up leases taken with ``claim``."""
        ...

    async def close(self) -> None: ...


async def deliver(handlers: list[Handler], payload: Mapping[str, Any]) -> None:
    """Run each local handler; one failing handler does not starve the others."""
    for handler in list(handlers):
        try:
            await handler(payload)
        except Exception:
            log.exception("pub/sub handler failed")


class MemoryPubSub:
    def __init__(self) -> None:
        self._handlers: dict[str, list[Handler]] = {}

    async def publish(self, topic: str, payload: Mapping[str, Any]) -> None:
        await deliver(self._handlers.get(topic, []), payload)

    async def subscribe(self, topic: str, handler: Handler) -> None:
        self._handlers.setdefault(topic, []).append(handler)

    async def close(self) -> None:
        self._handlers.clear()


class MemoryWorkQueue:
    def __init__(self) -> None:
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._held: set[str] = set()

    async def push(self, key: str) -> None:
        self._queue.put_nowait(key)

    async def pop_many(self, limit: int) -> list[str]:
        keys = {await self._queue.get(): None}
        while len(keys) < limit and not self._queue.empty():
            keys[self._queue.get_nowait()] = None
        return list(keys)

    async def claim(self, keys: list[str]) -> list[str]:
        free = [k for k in dict.fromkeys(keys) if k not in self._held]
        self._held.update(free)
        return free

    async def release(self, keys: list[str]) -> None:
        self._held.difference_update(keys)

    def depth(self) -> int:
        return self._queue.qsize()

    async def close(self) -> None:
        self._held.clear()
