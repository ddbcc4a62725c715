"""The deliverer: sends what the outbox holds, at least once, and records it once.

It wakes when a turn has written replies (``wake``), when a retry it scheduled falls
due, and every ``sweep_seconds`` to pick up rows whose sender's lease ran out (a crashed
process) or that another process scheduled. Failures the provider calls permanent (a 4xx
such as an invalid number) fail the row at once; others back off exponentially with
jitter, up to ``outbox_max_attempts``.

Exactly once, as nearly as the provider allows: each send's outcome is committed as soon
as its answer arrives, on its own (a batch would widen the window in which a crash
forgets a send that happened). A row whose earlier attempt may have gone out unrecorded
(``Due.unsure_since``: its process died, or the request timed out, while sending) is
first looked up at the provider where the channel can (``SupportsSentLookup``: SMS) and
recorded as sent if found. Elsewhere (SMTP, Slack) that one window remains: a crash
between the provider's answer and the commit sends that one message again.

A row to an address whose latest consent record is an opt-out (SMS ``STOP``) is never
sent: it fails at the claim, with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from channels.base import Channel, OutboundMessage, SupportsSentLookup
from gateway.metrics import Metrics
from gateway.opt_outs import HELP_KIND
from gateway.settings import GatewaySettings
from gateway.supervisor import Supervisor
from store import consents, outbox
from store.errors import DeliveryFailed
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
        self._in_doubt: dict[tuple[str, str], asyncio.Lock] = {}

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
            # A failure here (the store away) is the supervisor's: logged, counted, the
            # loop restarted after a backoff, and the process unready meanwhile.
            claimed = await self._claim()
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
            claimed = await outbox.claim_due(session, utcnow(), lease, BATCH)
            return await self._suppress_opted_out(session, claimed)

    async def _suppress_opted_out(
        self, session: AsyncSession, claimed: list[outbox.Due]
    ) -> list[outbox.Due]:
        """Fail the rows to addresses that opted out (agent and operator replies and
        notifications alike); the others, to send."""
        out = await consents.opted_out(session, {(d.channel, d.to_address) for d in claimed})
        if not out:
            return claimed
        kept = []
        for due in claimed:
            consent = out.get((due.channel, due.to_address))
            # Carriers answer HELP whatever the number's choice: so do we.
            if consent is None or due.payload.kind == HELP_KIND:
                kept.append(due)
            else:
                why = (
                    f"suppressed: {due.to_address} opted out with '{consent.text.strip()}' "
                    f"at {consent.created_at.isoformat(timespec='seconds')}"
                )
                log.info("delivery %s %s", due.key, why)
                await outbox.mark_failed(session, due, why)
                self._metrics.failures.labels("delivery_suppressed").inc()
        return kept

    async def _send_one(self, due: outbox.Due) -> None:
        try:
            if due.unsure_since is None:
                await self._send_and_record(due)
                return
            # Rows in doubt to one address are looked up and recorded one at a time: two
            # with the same text would otherwise both claim the one message the provider
            # has, and one would never be sent. (Across processes the window remains.)
            lock = self._in_doubt.setdefault((due.channel, due.to_address), asyncio.Lock())
            async with lock:  # kept: rows in doubt are few (a crash's or a timeout's)
                await self._send_and_record(due)
        finally:
            self._slots.release()

    async def _send_and_record(self, due: outbox.Due) -> None:
        outcome = await self._deliver(due)
        try:
            await self._record(outcome)
        except Exception:
            # Its lease runs out and it is claimed again, in doubt: a send is looked up.
            log.exception("could not record the delivery of %s", due.key)

    async def _deliver(self, due: outbox.Due) -> outbox.Sent | _Failure | _Waiting:
        context = dict(due.payload.context)
        thread_of = due.payload.thread_of
        if thread_of and "thread_ts" not in context:
            # A reply in the thread another row opens: it waits until that one is posted,
            # and fails with it.
            try:
                async with self._sessions() as session:
                    thread = await outbox.state_of(session, thread_of)
            except Exception as exc:  # the store is away: like any transient failure
                return _Failure(
                    due, DeliveryFailed(f"could not read its thread: {exc!r}", retryable=True)
                )
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
            text=due.payload.text,
            key=due.key,
            message_id=str(due.message_id or ""),
            author=due.payload.author,
            author_name=due.payload.name,
            context=context,
        )
        channel = self._channels.get(due.channel)
        try:
            if channel is None:
                raise DeliveryFailed(f"channel '{due.channel}' is not configured", retryable=False)
            if due.unsure_since is not None and isinstance(channel, SupportsSentLookup):
                already = await self._sent_before(channel, message, due, due.unsure_since)
                if already is not None:
                    return already
            delivery = await channel.send(message)
        except DeliveryFailed as exc:
            return _Failure(due, exc)
        return outbox.Sent(due, delivery.provider_id, delivery.status)

    async def _sent_before(
        self,
        channel: SupportsSentLookup,
        message: OutboundMessage,
        due: outbox.Due,
        since: datetime,
    ) -> outbox.Sent | None:
        """The provider's record of an attempt since ``since`` that went unrecorded, unless
        another row already owns it (the same text to the same number); None: none went
        out."""
        try:
            found = await channel.sent_since(message, since)
        except DeliveryFailed as exc:
            # Not knowing is no licence to send again: retry, still in doubt.
            raise DeliveryFailed(exc.message, retryable=True, maybe_sent=True) from exc
        ids = [d.provider_id for d in found if d.provider_id]
        async with self._sessions() as session:
            known = await outbox.known_provider_ids(session, ids)
        mine = [d for d in found if d.provider_id and d.provider_id not in known]
        if not mine:
            return None
        log.warning(
            "delivery %s had gone out unrecorded (%s): recorded, not sent again",
            due.key,
            mine[-1].provider_id,
        )
        self._metrics.failures.labels("delivery_recovered").inc()
        return outbox.Sent(due, mine[-1].provider_id, mine[-1].status)

    async def _record(self, outcome: outbox.Sent | _Failure | _Waiting) -> None:
        """Commit one outcome, at once."""
        now = utcnow()
        async with self._sessions.begin() as session:
            if isinstance(outcome, outbox.Sent):
                await outbox.mark_sent(session, [outcome], now)
            elif isinstance(outcome, _Failure):
                await self._failed(session, outcome.due, outcome.error, now)
            else:
                at = now + timedelta(seconds=self._settings.outbox_backoff_seconds)
                await outbox.wait(session, outcome.due, at, "waiting for its thread")
                self._next_retry = at if self._next_retry is None else min(self._next_retry, at)
                self.wake()
        if isinstance(outcome, outbox.Sent):
            self._metrics.replies.labels(outcome.due.channel).inc()

    async def _failed(
        self, session: AsyncSession, due: outbox.Due, exc: DeliveryFailed, now: datetime
    ) -> None:
        if exc.retryable and due.attempts < self._settings.outbox_max_attempts:
            delay = self._settings.outbox_backoff_seconds * 2 ** (due.attempts - 1)
            at = now + timedelta(seconds=delay * random.uniform(0.8, 1.2))
            log.warning("delivery %s failed (%s); retry at %s", due.key, exc.message, at)
            await outbox.reschedule(session, due, at, exc.message, unsure=exc.maybe_sent)
            self._next_retry = at if self._next_retry is None else min(self._next_retry, at)
            self._metrics.failures.labels("delivery_retry").inc()
            self.wake()
        else:
            log.error("delivery %s failed for good: %s", due.key, exc.message)
            await outbox.mark_failed(session, due, exc.message)
            self._metrics.failures.labels("delivery").inc()

    async def close(self) -> None:
        """Nothing is queued here: each outcome was committed by its own send."""
