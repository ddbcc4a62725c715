"""Background work that is held, bounded, logged and drained.

Every task the gateway starts after a request has returned lives here: the supervisor
keeps a reference (so it is not garbage-collected mid-flight), logs what fails, and on
shutdown cancels what is left after a grace period.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from gateway.bus import WorkQueue

log = logging.getLogger(__name__)


class Supervisor:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s failed", task.get_name(), exc_info=task.exception())

    def __len__(self) -> int:
        return len(self._tasks)

    async def drain(self, grace: float) -> None:
        """Wait up to ``grace`` seconds for running work, then cancel the rest."""
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)


class Dispatcher:
    """Takes keys off the work queue and runs each key's work, one worker per key.

    At most ``limit`` keys are worked on at once. A key held elsewhere is skipped: its
    holder checks for new work after letting go (``has_work``) and re-queues it, so a
    message stored while its key was busy is never stranded.
    """

    def __init__(
        self,
        queue: WorkQueue,
        supervisor: Supervisor,
        work: Callable[[str], Awaitable[None]],
        has_work: Callable[[str], Awaitable[bool]],
        limit: int,
    ) -> None:
        self._queue = queue
        self._supervisor = supervisor
        self._work = work
        self._has_work = has_work
        self._slots = asyncio.Semaphore(limit)

    async def run(self) -> None:
        while True:
            await self._slots.acquire()
            try:
                key = await self._queue.pop()
            except BaseException:
                self._slots.release()
                raise
            self._supervisor.spawn(self._one(key), name=f"work:{key}")

    async def _one(self, key: str) -> None:
        claimed = False
        try:
            async with self._queue.claim(key) as claimed:
                if claimed:
                    await self._work(key)
        finally:
            self._slots.release()
        if claimed and await self._has_work(key):
            await self._queue.push(key)
