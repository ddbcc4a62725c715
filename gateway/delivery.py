"""The deliverer: sends what the outbox holds, at least once, and records it once.

It wakes when a turn has written replies (``wake``), when a retry falls due, and every
``sweep_seconds`` to pick up rows whose sender's lease ran out (a crashed process).
Failures the provider calls permanent (a 4xx such as an invalid number) fail the row
at once; others back off exponentially with jitter up to ``outbox_max_attempts``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Mapping
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from channels.base import Channel, OutboundMessage
from gateway.errors import DeliveryFailed
from gateway.metrics import Metrics
from gateway.settings import GatewaySettings
from gateway.supervisor import Supervisor
from store import outbox
from store.models import utcnow

log = logging.getLogger(__name__)

BATCH = 50


class Deliverer:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        channels: Mapping[str, Channel],
        settings: GatewaySettings,
        metrics: Metrics,
        supervisor: Supervisor,
    ) -> None:
        self._sessions = sessions
        self._channels = channels
        self._settings = settings
        self._metrics = metrics
        self._supervisor = supervisor
        self._wake = asyncio.Event()
        self._stopping = False
        self._slots = asyncio.Semaphore(max(settings.workers, 1))

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        """Finish the current pass and return from ``run`` (cancelling mid-transaction would
        strand a SQLite write lock)."""
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
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
            idle = await self._idle_seconds()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=idle)

    async def _claim(self) -> list[outbox.Due]:
        lease = timedelta(seconds=self._settings.outbox_lease_seconds)
        async with self._sessions.begin() as session:
            return await outbox.claim_due(session, utcnow(), lease, BATCH)

    async def _idle_seconds(self) -> float:
        try:
            async with self._sessions() as session:
                due = await outbox.next_due_at(session)
        except Exception:
            log.exception("could not read the outbox's next due time")
            return self._settings.sweep_seconds
        if due is None:
            return self._settings.sweep_seconds
        return min(max((due - utcnow()).total_seconds(), 0.01), self._settings.sweep_seconds)

    async def _send_one(self, due: outbox.Due) -> None:
        try:
            await self._deliver(due)
        finally:
            self._slots.release()

    async def _deliver(self, due: outbox.Due) -> None:
        channel = self._channels.get(due.channel)
        message = OutboundMessage(
            channel=due.channel,
            inbox=due.inbox,
            to=due.to_address,
            text=str(due.payload.get("text", "")),
            key=due.key,
            message_id=str(due.message_id or ""),
            author=str(due.payload.get("author", "agent")),
            author_name=str(due.payload.get("name", "")),
        )
        try:
            if channel is None:
                raise DeliveryFailed(f"channel '{due.channel}' is not configured", retryable=False)
            delivery = await channel.send(message)
        except DeliveryFailed as exc:
            await self._failed(due, exc)
            return
        async with self._sessions.begin() as session:
            await outbox.mark_sent(session, due, utcnow(), delivery.provider_id, delivery.status)
        self._metrics.replies.labels(due.channel).inc()

    async def _failed(self, due: outbox.Due, exc: DeliveryFailed) -> None:
        async with self._sessions.begin() as session:
            if exc.retryable and due.attempts < self._settings.outbox_max_attempts:
                delay = self._settings.outbox_backoff_seconds * 2 ** (due.attempts - 1)
                delay *= random.uniform(0.8, 1.2)
                log.warning("delivery %s failed (%s); retry in %.1fs", due.key, exc.message, delay)
                await outbox.reschedule(
                    session, due, utcnow() + timedelta(seconds=delay), exc.message
                )
                self._metrics.failures.labels("delivery_retry").inc()
            else:
                log.error("delivery %s failed for good: %s", due.key, exc.message)
                await outbox.mark_failed(session, due, exc.message)
                self._metrics.failures.labels("delivery").inc()
        self.wake()
