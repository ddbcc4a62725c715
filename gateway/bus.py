"""Fan-out and the work queue, in process: the default for one gateway process.

``gateway.redis_bus`` has the same two things on Redis for many processes. Both keep
to the same small Protocols, so the rest of the gateway does not know which it has.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
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
    """Keys of work to do, and a lease so one key is worked on by one worker at a time."""

    async def push(self, key: str) -> None:
        """Note that ``key`` has work. Pushing a key twice is harmless."""
        ...

    async def pop(self) -> str:
        """The next key with work; waits for one."""
        ...

    def claim(self, key: str) -> contextlib.AbstractAsyncContextManager[bool]:
        """Hold ``key`` exclusively while inside; yields False when someone else holds it."""
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

    async def pop(self) -> str:
        return await self._queue.get()

    @contextlib.asynccontextmanager
    async def claim(self, key: str) -> AsyncIterator[bool]:
        if key in self._held:
            yield False
            return
        self._held.add(key)
        try:
            yield True
        finally:
            self._held.discard(key)

    def depth(self) -> int:
        return self._queue.qsize()

    async def close(self) -> None:
        self._held.clear()
