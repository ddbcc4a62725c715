"""The processor: takes keys off the work queue and runs their agent turns.

Up to ``workers`` turns run at once, at most one per key (a key's lease is held from
``prepare`` until its reply is in the outbox), so one sender's messages are answered in
order. Keys are prepared in batches. After letting a key go, the processor looks for
more work on it and re-queues it: a message stored while its key was held elsewhere
(and whose queue entry was therefore dropped) is never stranded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from agents.runtime import Runtime
from gateway.bus import WorkQueue
from gateway.metrics import Metrics
from gateway.pipeline import Pipeline
from gateway.supervisor import Supervisor
from gateway.turns import Turn

log = logging.getLogger(__name__)

BATCH = 32


class Processor:
    def __init__(
        self,
        queue: WorkQueue,
        pipeline: Pipeline,
        runtime: Runtime,
        supervisor: Supervisor,
        metrics: Metrics,
        workers: int,
    ) -> None:
        self._queue = queue
        self._pipeline = pipeline
        self._runtime = runtime
        self._supervisor = supervisor
        self._metrics = metrics
        self._workers = workers
        self._busy = 0
        self._free = asyncio.Condition()
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        """Return from ``run`` once no transaction is in progress (cancelling one mid-way
        would strand SQLite's write lock); turns already started finish on their own."""
        self._stopping.set()

    async def run(self) -> None:
        while not self._stopping.is_set():
            async with self._free:
                await self._free.wait_for(lambda: self._busy < self._workers)
            keys = await self._next_keys(min(self._workers - self._busy, BATCH))
            claimed = await self._queue.claim(keys) if keys else []
            if claimed:
                await self._start(claimed)

    async def _next_keys(self, limit: int) -> list[str]:
        """Keys from the queue, or none once ``stop`` is called while waiting for them."""
        popping = asyncio.ensure_future(self._queue.pop_many(limit))
        stopping = asyncio.ensure_future(self._stopping.wait())
        await asyncio.wait({popping, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if popping.done():
            return popping.result()
        popping.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await popping
        return []

    async def _start(self, keys: list[str]) -> None:
        try:
            turns = await self._pipeline.prepare(keys)
        except Exception:
            log.exception("could not prepare %s keys", len(keys))
            self._metrics.failures.labels("prepare").inc()
            turns = await self._isolate(keys) if len(keys) > 1 else []
            if len(keys) == 1:
                await self._pipeline.note_failure(keys)
        started = {turn.key for turn in turns}
        await self._queue.release([k for k in keys if k not in started])
        for turn in turns:
            self._busy += 1
            self._supervisor.spawn(self._turn(turn), name=f"turn:{turn.inbound_id}")

    async def _isolate(self, keys: list[str]) -> list[Turn]:
        """Prepare keys one by one, so one bad message holds up only its own sender."""
        turns: list[Turn] = []
        for key in keys:
            try:
                turns.extend(await self._pipeline.prepare([key]))
            except Exception:
                log.exception("could not prepare %s", key)
                await self._pipeline.note_failure([key])
        return turns

    async def _turn(self, turn: Turn) -> None:
        started = time.perf_counter()
        try:
            # A conversation a person has taken gets no agent reply, nor does automatic
            # mail or a sender past the channel's hourly cap of automatic replies.
            result = None
            if turn.answer and turn.status in ("bot", "queued"):
                result = await self._runtime.run_turn(turn.agent, turn.input)
            await self._pipeline.finish(turn, result)
            self._metrics.turn_seconds.observe(time.perf_counter() - started)
        except Exception:
            log.exception("turn for inbound %s failed; it stays pending", turn.inbound_id)
            self._metrics.failures.labels("turn").inc()
            await self._pipeline.note_failure([turn.key])
        finally:
            await self._queue.release([turn.key])
            async with self._free:
                self._busy -= 1
                self._free.notify_all()
        if await self._pipeline.has_work(turn.key):
            await self._pipeline.enqueue(turn.key)
