"""Natural batching (group commit): concurrent callers share one flush.

``submit(item)`` queues the item and waits for its result. One flusher runs at a time;
whatever arrived while it ran goes into the next flush. Under no load a flush holds one
item and adds no delay; under load a flush holds many, so one transaction (and a few
bulk statements) serves them all. A flush that fails with several items is retried item
by item, so one bad item fails alone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class Batcher(Generic[T, R]):
    def __init__(
        self,
        flush: Callable[[Sequence[T]], Awaitable[Sequence[R]]],
        max_batch: int,
        name: str,
        before_flush: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """``before_flush`` is awaited before each flush (to let more urgent work go first)."""
        self._flush = flush
        self._max = max_batch
        self._name = name
        self._before = before_flush
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self.idle = asyncio.Event()
        self.idle.set()

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        self.idle.clear()
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._drain(), name=f"batch:{self._name}")
        return await future

    async def _drain(self) -> None:
        try:
            while self._pending:
                if self._before is not None:
                    await self._before()
                batch, self._pending = self._pending[: self._max], self._pending[self._max :]
                try:
                    await self._settle(batch)
                except asyncio.CancelledError:
                    for _, future in batch:
                        future.cancel()
                    raise
        finally:
            if not self._pending:
                self.idle.set()

    async def _settle(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            results = await self._flush([item for item, _ in batch])
        except Exception as exc:
            if len(batch) == 1:
                _fail(batch[0][1], exc)
                return
            log.warning(
                "%s: a batch of %s failed (%r); retrying one by one", self._name, len(batch), exc
            )
            for one in batch:
                await self._settle([one])
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)

    async def close(self) -> None:
        """Wait for what is queued to be flushed."""
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)


def _fail(future: asyncio.Future[R], exc: Exception) -> None:
    if not future.done():
        future.set_exception(exc)
