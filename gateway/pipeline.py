"""The inbound pipeline (DESIGN §2).

``accept`` is the webhook's whole job: one insert that is both the dedupe receipt and
the durable work item, committed before the 2xx. Everything else runs later, per
sender key in order, through the work queue: resolve the member, find the
conversation, run the agent turn, and write the replies to the outbox in the same
transaction that marks the message done. A crash anywhere before that commit leaves the
message pending, and it is processed again; the outbox key makes that re-run send
nothing twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agents.base import TurnInput, TurnResult
from agents.runtime import Runtime
from channels.base import InboundMessage
from escalation import handoffs
from gateway import conversations
from gateway.bus import WorkQueue
from gateway.metrics import Metrics
from gateway.settings import Settings
from people import members
from store import outbox
from store.engine import insert
from store.models import Conversation, Inbound, Message, Outbox, utcnow

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5


@dataclass(frozen=True)
class Accepted:
    """The outcome of ``accept``: the stored row, or that it was a retry of one."""

    inbound_id: int | None
    duplicate: bool


def queue_key(message: InboundMessage) -> str:
    """Messages with the same key are processed one at a time, in arrival order."""
    return f"{message.channel}|{message.inbox}|{message.sender}"


@dataclass
class _Turn:
    inbound_id: int
    conversation_id: int
    channel: str
    inbox: str
    to: str
    agent: str
    status: str
    input: TurnInput


class Pipeline:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        queue: WorkQueue,
        runtime: Runtime,
        settings: Settings,
        metrics: Metrics,
        on_outbox: Callable[[], None],
    ) -> None:
        self._sessions = sessions
        self._queue = queue
        self._runtime = runtime
        self._settings = settings
        self._metrics = metrics
        self._on_outbox = on_outbox

    async def accept(self, message: InboundMessage) -> Accepted:
        """Store ``message`` durably unless it is a retry; return only after the commit."""
        key = queue_key(message)
        async with self._sessions.begin() as session:
            stmt = (
                insert(session, Inbound)
                .values(
                    channel=message.channel,
                    external_id=message.external_id,
                    inbox=message.inbox,
                    sender_kind=message.sender_kind,
                    sender=message.sender,
                    queue_key=key,
                    text=message.text,
                    payload={
                        "raw": dict(message.raw),
                        "attachments": [vars(a) for a in message.attachments],
                        "thread_key": message.thread_key,
                    },
                    status="pending",
                    attempts=0,
                    received_at=message.received_at,
                )
                .on_conflict_do_nothing(index_elements=["channel", "external_id"])
                .returning(Inbound.id)
            )
            inbound_id = (await session.execute(stmt)).scalar_one_or_none()
        if inbound_id is None:
            self._metrics.duplicates.labels(message.channel).inc()
            return Accepted(inbound_id=None, duplicate=True)
        self._metrics.inbound.labels(message.channel).inc()
        await self.enqueue(key)
        return Accepted(inbound_id=inbound_id, duplicate=False)

    async def enqueue(self, key: str) -> None:
        try:
            await self._queue.push(key)
        except Exception as exc:
            # The message is committed; the sweeper re-queues it when the queue is back.
            log.warning("could not queue %s (%r); the sweeper will pick it up", key, exc)

    async def has_work(self, key: str) -> bool:
        async with self._sessions() as session:
            stmt = select(exists().where(Inbound.queue_key == key, Inbound.status == "pending"))
            return bool((await session.execute(stmt)).scalar())

    async def work(self, key: str) -> None:
        """Process every pending message of ``key``, oldest first."""
        while True:
            async with self._sessions() as session:
                inbound_id = (
                    await session.execute(
                        select(Inbound.id)
                        .where(Inbound.queue_key == key, Inbound.status == "pending")
                        .order_by(Inbound.id)
                        .limit(1)
                    )
                ).scalar_one_or_none()
            if inbound_id is None:
                return
            try:
                await self.process(inbound_id)
            except Exception:
                self._metrics.failures.labels("turn").inc()
                if not await self._give_up_after_attempts(inbound_id):
                    raise

    async def _give_up_after_attempts(self, inbound_id: int) -> bool:
        async with self._sessions.begin() as session:
            inbound = await session.get(Inbound, inbound_id)
            if inbound is None:
                return True
            inbound.attempts += 1
            if inbound.attempts < MAX_ATTEMPTS:
                log.warning(
                    "inbound %s failed (attempt %s); will retry", inbound_id, inbound.attempts
                )
                return False
            inbound.status = "failed"
            log.error("inbound %s failed %s times; giving up", inbound_id, inbound.attempts)
            return True

    async def process(self, inbound_id: int) -> None:
        """Run one stored message through member, conversation, agent and outbox."""
        started = time.perf_counter()
        turn = await self._prepare(inbound_id)
        if turn is None:
            return
        result: TurnResult | None = None
        if turn.status in ("bot", "queued"):
            result = await self._runtime.run_turn(turn.agent, turn.input)
        await self._finish(turn, result)
        self._metrics.turn_seconds.observe(time.perf_counter() - started)
        if result is not None and result.replies:
            self._on_outbox()

    async def _prepare(self, inbound_id: int) -> _Turn | None:
        async with self._sessions.begin() as session:
            inbound = await session.get(Inbound, inbound_id)
            if inbound is None or inbound.status != "pending":
                return None
            member = await members.resolve(
                session, inbound.sender_kind, inbound.sender, seen_at=inbound.received_at
            )
            agent = self._settings.channel(inbound.channel).agent_for(inbound.inbox)
            conversation = await conversations.open_for(
                session, member.id, inbound.channel, inbound.inbox, agent
            )
            message = await conversations.record_inbound(session, conversation, inbound)
            history = await conversations.history(
                session, conversation.id, message.id, self._settings.gateway.history_turns
            )
            return _Turn(
                inbound_id=inbound.id,
                conversation_id=conversation.id,
                channel=inbound.channel,
                inbox=inbound.inbox,
                to=inbound.sender,
                agent=conversation.agent or agent,
                status=conversation.status,
                input=TurnInput(
                    text=inbound.text,
                    channel=inbound.channel,
                    member_name=member.name,
                    history=history,
                ),
            )

    async def _finish(self, turn: _Turn, result: TurnResult | None) -> None:
        async with self._sessions.begin() as session:
            done = await session.execute(
                update(Inbound)
                .where(Inbound.id == turn.inbound_id, Inbound.status == "pending")
                .values(status="done", processed_at=utcnow())
            )
            if done.rowcount == 0:  # type: ignore[attr-defined]
                return  # another worker finished it first (a lease ran out); its replies stand
            if result is None:
                return
            for index, text in enumerate(result.replies):
                await self._reply(session, turn, f"reply:{turn.inbound_id}:{index}", text)
            if result.escalation is not None:
                conversation = await session.get(Conversation, turn.conversation_id)
                if conversation is not None:
                    await handoffs.request(
                        session, conversation, result.escalation.reason, result.escalation.trigger
                    )

    async def _reply(self, session: AsyncSession, turn: _Turn, key: str, text: str) -> None:
        message = Message(
            conversation_id=turn.conversation_id,
            direction="out",
            author="agent",
            author_name=turn.agent,
            text=text,
            status="pending",
        )
        session.add(message)
        await session.flush()
        await outbox.enqueue(
            session,
            Outbox(
                key=key,
                message_id=message.id,
                channel=turn.channel,
                inbox=turn.inbox,
                to_address=turn.to,
                payload={"text": text, "author": "agent", "name": turn.agent},
                status="pending",
                attempts=0,
                next_attempt_at=utcnow(),
            ),
        )

    async def pending_keys(self, older_than: timedelta | None = None) -> list[str]:
        """Keys with unprocessed messages (received before ``now - older_than``)."""
        stmt = select(Inbound.queue_key).where(Inbound.status == "pending").distinct()
        if older_than is not None:
            stmt = stmt.where(Inbound.received_at < utcnow() - older_than)
        async with self._sessions() as session:
            return list((await session.execute(stmt)).scalars())
