"""The deliverer: sends what the outbox holds, at least once, and records it once.

It wakes when a turn has written replies (``wake``), when a retry it scheduled falls
due, and every ``sweep_seconds`` to pick up rows whose sender's lease ran out (a crashed
process) or that another process scheduled. Outcomes are recorded in batches. Failures
the provider calls permanent (a 4xx such as an invalid number) fail the row at once;
others back off exponentially with jitter, up to ``outbox_max_attempts``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from channels.base import Channel, OutboundMessage
from gateway.batcher import Batcher
from gateway.errors import DeliveryFailed
from gateway.metrics import Metrics
from gateway.settings import GatewaySettings
from gateway.supervisor import Supervisor
from store import outbox
from store.models import utcnow

log = logging.getLogger(__name__)

BATCH = 50


@dataclass(frozen=True)
class _Failure:
    due: outbox.Due
    error: DeliveryFailed


@dataclass(frozen=True)
class _Waiting:
    """Not yet sendable (its thread is not posted): again shortly, no attempt used."""

    due: outbox.Due


class Deliverer:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        channels: Mapping[str, Channel],
        settings: GatewaySettings,
        metrics: Metrics,
        supervisor: Supervisor,
        defer: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """``defer`` is awaited before each transaction, to let more urgent work go first."""
        self._sessions = sessions
        self._channels = channels
        self._settings = settings
        self._metrics = metrics
        self._supervisor = supervisor
        self._wake = asyncio.Event()
        self._stopping = False
        self._slots = asyncio.Semaphore(max(settings.workers, 1))
        self._next_retry: datetime | None = None
        self._defer = defer
        self._record = Batcher(self._record_many, 256, "delivered", defer)

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        """Finish the current pass and return from ``run`` (cancelling mid-transaction would
        strand a SQLite write lock)."""
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        await self._recall_next_due()
        while not self._stopping:
            self._wake.clear()
            try:
                claimed = await self._claim()
            except Exception:
                log.exception("could not read the outbox; trying again shortly")
                claimed = []
            for due in claimed:
                await self._slots.acquire()
                if self._stopping:  # leased but not sent: the lease runs out, then it is resent
                    self._slots.release()
                    break
                self._supervisor.spawn(self._send_one(due), name=f"deliver:{due.key}")
            if len(claimed) == BATCH or self._stopping:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._idle_seconds())

    async def _recall_next_due(self) -> None:
        """Retries scheduled before a restart are due at times only the store knows."""
        try:
            async with self._sessions() as session:
                self._next_retry = await outbox.next_due_at(session)
        except Exception:
            log.exception("could not read the outbox's next due time")

    def _idle_seconds(self) -> float:
        idle = self._settings.sweep_seconds
        if self._next_retry is not None:
            idle = min(idle, max((self._next_retry - utcnow()).total_seconds(), 0.0))
            if idle <= 0:
                self._next_retry = None
        return max(idle, 0.001)

    async def _claim(self) -> list[outbox.Due]:
        if self._defer is not None:
            await self._defer()
        lease = timedelta(seconds=self._settings.outbox_lease_seconds)
        async with self._sessions.begin() as session:
            return await outbox.claim_due(session, utcnow(), lease, BATCH)

    async def _send_one(self, due: outbox.Due) -> None:
        try:
            await self._record.submit(await self._deliver(due))
        finally:
            self._slots.release()

    async def _deliver(self, due: outbox.Due) -> outbox.Sent | _Failure | _Waiting:
        context = {str(k): str(v) for k, v in (due.payload.get("context") or {}).items()}
        thread_of = due.payload.get("thread_of")
        if thread_of and "thread_ts" not in context:
            # A reply in the thread another row opens: it waits until that one is posted,
            # and fails with it.
            try:
                async with self._sessions() as session:
                    thread = await outbox.state_of(session, str(thread_of))
            except Exception as exc:  # the store is away: like any transient failure
                return _Failure(due, DeliveryFailed(f"could not read its thread: {exc!r}",
                                                    retryable=True))  # fmt: skip
            if thread is None or thread[0] == "failed":
                why = "its thread was never posted"
                return _Failure(due, DeliveryFailed(why, retryable=False))
            if thread[1] is None:
                return _Waiting(due)
            context["thread_ts"] = thread[1]
        message = OutboundMessage(
            channel=due.channel,
            inbox=due.inbox,
            to=due.to_address,
            text=str(due.payload.get("text", "")),
            key=due.key,
            message_id=str(due.message_id or ""),
            author=str(due.payload.get("author", "agent")),
            author_name=str(due.payload.get("name", "")),
            context=context,
        )
        channel = self._channels.get(due.channel)
        try:
            if channel is None:
                raise DeliveryFailed(f"channel '{due.channel}' is not configured", retryable=False)
            delivery = await channel.send(message)
        except DeliveryFailed as exc:
            return _Failure(due, exc)
        return outbox.Sent(due, delivery.provider_id, delivery.status)

    async def _record_many(
        self, outcomes: Sequence[outbox.Sent | _Failure | _Waiting]
    ) -> list[None]:
        sent = [o for o in outcomes if isinstance(o, outbox.Sent)]
        now = utcnow()
        async with self._sessions.begin() as session:
            await outbox.mark_sent(session, sent, now)
            for failure in (o for o in outcomes if isinstance(o, _Failure)):
                await self._failed(session, failure.due, failure.error, now)
            for waiting in (o for o in outcomes if isinstance(o, _Waiting)):
                at = now + timedelta(seconds=self._settings.outbox_backoff_seconds)
                await outbox.wait(session, waiting.due, at, "waiting for its thread")
                self._next_retry = at if self._next_retry is None else min(self._next_retry, at)
                self.wake()
        for done in sent:
            self._metrics.replies.labels(done.due.channel).inc()
        return [None] * len(outcomes)

    async def _failed(
        self, session: AsyncSession, due: outbox.Due, exc: DeliveryFailed, now: datetime
    ) -> None:
        if exc.retryable and due.attempts < self._settings.outbox_max_attempts:
            delay = self._settings.outbox_backoff_seconds * 2 ** (due.attempts - 1)
            at = now + timedelta(seconds=delay * random.uniform(0.8, 1.2))
            log.warning("delivery %s failed (%s); retry at %s", due.key, exc.message, at)
            await outbox.reschedule(session, due, at, exc.message)
            self._next_retry = at if self._next_retry is None else min(self._next_retry, at)
            self._metrics.failures.labels("delivery_retry").inc()
            self.wake()
        else:
            log.error("delivery %s failed for good: %s", due.key, exc.message)
            await outbox.mark_failed(session, due, exc.message)
            self._metrics.failures.labels("delivery").inc()

    async def close(self) -> None:
        await self._record.close()
