"""The inbound pipeline (DESIGN §2).

``accept`` is the webhook's whole job: one row that is both the dedupe receipt and the
durable work item, committed before the 2xx. Everything else runs later through the
work queue, one message per sender key at a time, in arrival order: ``prepare`` resolves
members, opens conversations and records the messages; the agent runs; ``finish`` writes
the replies to the outbox in the same transaction that marks the message done. A crash
before that commit leaves the message pending and it is processed again; the outbox key
makes the re-run send nothing twice. What a finished turn writes (effects and replies) is
``gateway.turns``.

Every step works on batches (``gateway.batcher``): concurrent webhooks share one
insert, concurrent turns share one finishing transaction, and a batch of keys is
prepared with a handful of bulk statements. Under no load a batch is one item.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agents.base import MemberFacts, TurnInput, TurnResult
from agents.workflows import WorkflowState
from channels.base import InboundMessage, Publisher
from escalation.presence import MemoryPresence, Presence
from escalation.settings import BusinessHoursTable
from escalation.triggers import keyword_escalation
from gateway import conversations, opt_outs
from gateway.batcher import Batcher
from gateway.bus import WorkQueue
from gateway.calls import Calls
from gateway.live import Live
from gateway.metrics import Metrics
from gateway.settings import Settings
from gateway.teamwork import Teamwork
from gateway.turns import Turn, apply_effects, write_replies
from people import members
from people.roles import load_book
from store.engine import insert
from store.models import (
    Conversation,
    Inbound,
    Member,
    table_of,
    utcnow,
)
from store.payloads import InboundExtras, InboundKind, StoredAttachment

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
MAX_BATCH = 256
# Background work defers to webhooks waiting to be stored, for at most this long, so a
# burst of webhooks is acknowledged quickly without starving the agents behind it.
MAX_DEFER_SECONDS = 0.05


@dataclass(frozen=True)
class Accepted:
    """The outcome of ``accept``: the stored row, or that it was a retry of one."""

    inbound_id: int | None
    duplicate: bool


async def _oldest_pending(session: AsyncSession, keys: Sequence[str]) -> list[Inbound]:
    """The oldest unprocessed message of each key (keys without one are left out)."""
    rows = await session.execute(
        select(Inbound)
        .where(Inbound.queue_key.in_(list(keys)), Inbound.status == "pending")
        .order_by(Inbound.id)
    )
    oldest: dict[str, Inbound] = {}
    for inbound in rows.scalars():
        oldest.setdefault(inbound.queue_key, inbound)
    return list(oldest.values())


def _facts(member: Member) -> MemberFacts:
    return MemberFacts(
        id=member.id, kind=member.kind, role=member.role, name=member.name,
        email=member.email, phone=member.phone, data=dict(member.data or {}),
    )  # fmt: skip


def queue_key(message: InboundMessage) -> str:
    """Messages with the same key are processed one at a time, in arrival order."""
    return f"{message.channel}|{message.inbox}|{message.sender}"


class Pipeline:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        queue: WorkQueue,
        settings: Settings,
        metrics: Metrics,
        on_outbox: Callable[[], None],
        now: Callable[[], datetime] = utcnow,
        presence: Presence | None = None,
        publish: Publisher | None = None,
    ) -> None:
        """``now`` is the clock business hours are judged by (tests set the time);
        ``presence`` says which operators are live (in process when not given);
        ``publish`` tells every process a call's turn is done (``gateway.calls``)."""
        self._sessions = sessions
        self._queue = queue
        self._settings = settings
        self._metrics = metrics
        self._on_outbox = on_outbox
        hours = BusinessHoursTable(settings.escalation, settings.workspace.timezone)
        self._team = Teamwork(settings, hours, now, on_outbox)
        ttl = settings.escalation.operators.heartbeat_ttl_seconds
        self.live = Live(
            sessions, settings, presence or MemoryPresence(ttl), self._team.notify, on_outbox, now
        )
        self._team.live = self.live
        self.live.on_offer = self._team.offered
        self.calls = Calls(sessions, settings, publish)
        self._accepts = Batcher(self._store, MAX_BATCH, "accept")
        self._finishes = Batcher(self._finish_many, MAX_BATCH, "finish", self.defer_to_accepts)
        self._checks = Batcher(self._pending_among, MAX_BATCH, "pending", self.defer_to_accepts)

    async def defer_to_accepts(self) -> None:
        """Wait (briefly) while webhooks are waiting for their messages to be stored."""
        if not self._accepts.idle.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._accepts.idle.wait(), MAX_DEFER_SECONDS)

    async def accept(self, message: InboundMessage) -> Accepted:
        """Store ``message`` durably unless it is a retry; return only after the commit."""
        inbound_id = await self._accepts.submit(message)
        if inbound_id is None:
            self._metrics.duplicates.labels(message.channel).inc()
            return Accepted(inbound_id=None, duplicate=True)
        self._metrics.inbound.labels(message.channel).inc()
        await self.enqueue(queue_key(message))
        return Accepted(inbound_id=inbound_id, duplicate=False)

    async def _store(self, messages: Sequence[InboundMessage]) -> list[int | None]:
        rows = [
            {
                "channel": m.channel,
                "external_id": m.external_id,
                "inbox": m.inbox,
                "sender_kind": m.sender_kind,
                "sender": m.sender,
                "queue_key": queue_key(m),
                "text": m.text,
                "payload": InboundExtras(
                    kind=m.kind,
                    raw=dict(m.raw),
                    attachments=[
                        StoredAttachment(url=a.url, content_type=a.content_type)
                        for a in m.attachments
                    ],
                    thread_key=m.thread_key,
                    reply_context=dict(m.reply_context),
                    answer=m.answer,
                    verified=m.verified,
                ).to_json(),
                "status": "pending",
                "attempts": 0,
                "received_at": m.received_at,
            }
            for m in messages
        ]
        async with self._sessions.begin() as session:
            table = table_of(Inbound).c
            stored = await session.execute(
                insert(session, Inbound)
                .on_conflict_do_nothing(index_elements=["channel", "external_id"])
                .returning(table.id, table.channel, table.external_id),
                rows,
            )
            ids = {(channel, external): i for i, channel, external in stored}
        # A retry that arrives in the same batch as its original is a duplicate too.
        return [ids.pop((m.channel, m.external_id), None) for m in messages]

    async def enqueue(self, key: str) -> None:
        try:
            await self._queue.push(key)
        except Exception as exc:
            # The message is committed; the sweeper re-queues it when the queue is back.
            log.warning("could not queue %s (%r); the sweeper will pick it up", key, exc)

    async def has_work(self, key: str) -> bool:
        return await self._checks.submit(key)

    async def _pending_among(self, keys: Sequence[str]) -> list[bool]:
        async with self._sessions() as session:
            rows = await session.execute(
                select(Inbound.queue_key)
                .where(Inbound.queue_key.in_(set(keys)), Inbound.status == "pending")
                .distinct()
            )
            pending = set(rows.scalars())
        return [k in pending for k in keys]

    async def prepare(self, keys: Sequence[str]) -> list[Turn]:
        """The oldest pending message of each key, with member, conversation and history."""
        await self.defer_to_accepts()
        async with self._sessions.begin() as session:
            oldest = await _oldest_pending(session, keys)
            kinds = {i.id: InboundExtras.model_validate(i.payload or {}).kind for i in oldest}
            team = [i for i in oldest if kinds[i.id] == InboundKind.TEAM_REPLY]
            if team:
                await self._team.team_replies(session, team)
                oldest = [i for i in oldest if i not in team]
            keywords = opt_outs.keyworded(self._settings, oldest)  # STOP, START, HELP
            replied = bool(keywords) and await opt_outs.record(session, self._settings, keywords)
            oldest = [i for i in oldest if i not in keywords]
            turns = await self._prepare(session, oldest) if oldest else []
        if replied:
            self._on_outbox()
        for inbound in (*team, *keywords):
            await self.enqueue(inbound.queue_key)  # its next message, if any
        return turns

    async def _prepare(self, session: AsyncSession, batch: list[Inbound]) -> list[Turn]:
        seen_at = max(i.received_at for i in batch)
        owners = await members.resolve_many(
            session, [(i.sender_kind, i.sender) for i in batch], seen_at
        )
        agent_of = {i.id: self._settings.channel(i.channel).agent_for(i.inbox) for i in batch}
        keys = {i.id: (owners[(i.sender_kind, i.sender)], i.channel, i.inbox) for i in batch}
        opened = await conversations.open_many(session, {keys[i.id]: agent_of[i.id] for i in batch})
        recorded = await conversations.record_many(
            session, [(opened[keys[i.id]].id, i) for i in batch]
        )
        past = await conversations.histories(
            session,
            {opened[keys[i.id]].id: recorded[i.id] for i in batch},
            self._settings.gateway.history_turns,
        )
        found = await session.execute(select(Member).where(Member.id.in_(set(owners.values()))))
        facts = {m.id: _facts(m) for m in found.scalars()}
        book = await load_book(session, self._settings.roles)
        capped = await conversations.over_reply_cap(session, self._settings, batch)
        turns = []
        for i in batch:
            extras = InboundExtras.model_validate(i.payload or {})
            conversation = opened[keys[i.id]]
            member = facts[keys[i.id][0]]
            turns.append(
                Turn(
                    inbound_id=i.id,
                    key=i.queue_key,
                    conversation_id=conversation.id,
                    member_id=member.id,
                    channel=i.channel,
                    inbox=i.inbox,
                    to=i.sender,
                    agent=conversation.agent or agent_of[i.id],
                    status=conversation.status,
                    answer=extras.answer and i.id not in capped,
                    reply_context=dict(extras.reply_context),
                    input=TurnInput(
                        text=i.text,
                        channel=i.channel,
                        member_name=member.name,
                        history=past[conversation.id],
                        member=member,
                        conversation_id=conversation.id,
                        workflow=WorkflowState.from_json((conversation.data or {}).get("workflow")),
                        # A sender that may be forged (unauthenticated mail) gets what
                        # any contact gets: nothing beyond itself.
                        role=book.get(member.role) if extras.verified else book.get("contact"),
                    ),
                )
            )
        return turns

    async def finish(self, turn: Turn, result: TurnResult | None) -> None:
        """Mark the message done and put its replies in the outbox, atomically."""
        await self._finishes.submit((turn, result))
        if result is not None and result.replies:
            self._on_outbox()
        await self.calls.finished(turn.channel, turn.inbound_id)

    async def _finish_many(self, items: Sequence[tuple[Turn, TurnResult | None]]) -> list[None]:
        now = utcnow()
        async with self._sessions.begin() as session:
            inbound = table_of(Inbound)
            marked = await session.execute(
                update(inbound)
                .where(
                    inbound.c.id.in_([turn.inbound_id for turn, _ in items]),
                    inbound.c.status == "pending",
                )
                .values(status="done", processed_at=now)
                .returning(inbound.c.id)
            )
            done = set(marked.scalars())
            await self._team.mirror_to_threads(
                session, [t for t, _ in items if t.inbound_id in done]
            )
            # A message finished elsewhere (its lease ran out) keeps that run's replies.
            finished = [(t, r) for t, r in items if t.inbound_id in done and r is not None]
            finished = await self._still_ours(session, finished)
            if any(t.status != "bot" for t, _ in items):
                self.live.changed()  # a customer wrote in a handed-off conversation
            told = []
            routed: list[int] = []
            triggers = self._settings.escalation.triggers
            for turn, result in finished:
                if result is not None and result.escalation is None and turn.answer:
                    escalation = keyword_escalation(triggers, turn.input.text)
                    if escalation is not None:
                        result = replace(result, escalation=escalation)
                handoff = await apply_effects(session, turn, result, triggers) if result else None
                if result is not None and handoff is not None:
                    result = await self._team.handed_off(session, turn, result, handoff)
                    if self.live.enabled:
                        routed.append(handoff.id)  # offered to an operator, or notified
                told.append((turn, result))
            await write_replies(session, self._settings, told)
        self.live.route_soon(routed)
        return [None] * len(items)

    async def _still_ours(
        self, session: AsyncSession, finished: list[tuple[Turn, TurnResult]]
    ) -> list[tuple[Turn, TurnResult]]:
        """Drop the replies of turns whose conversation a person took (or closed) while the
        agent was thinking. Read under a row lock on PostgreSQL, so a take either commits
        before this (and the reply is dropped) or waits for it (and sees the reply)."""
        ids = sorted({t.conversation_id for t, _ in finished})
        if not ids:
            return finished
        stmt = select(Conversation.id, Conversation.status).where(Conversation.id.in_(ids))
        if session.get_bind().dialect.name == "postgresql":
            stmt = stmt.order_by(Conversation.id).with_for_update()
        status = dict((await session.execute(stmt)).all())
        kept = [(t, r) for t, r in finished if status.get(t.conversation_id) in ("bot", "queued")]
        if len(kept) < len(finished):
            log.info("%s agent replies dropped: a person took the conversation",
                     len(finished) - len(kept))  # fmt: skip
        return kept

    async def climb(self) -> None:
        """Run the notification ladders' steps that are due."""
        await self._team.climb(self._sessions)

    async def note_failure(self, keys: Sequence[str]) -> None:
        """Count a failed attempt on each key's oldest pending message; give up at the cap."""
        async with self._sessions.begin() as session:
            for inbound in await _oldest_pending(session, keys):
                inbound.attempts += 1
                if inbound.attempts >= MAX_ATTEMPTS:
                    inbound.status = "failed"
                    log.error("inbound %s failed %s times; giving up", inbound.id, inbound.attempts)

    async def pending_keys(self, older_than: timedelta | None = None) -> list[str]:
        """Keys with unprocessed messages (received before ``now - older_than``)."""
        stmt = select(Inbound.queue_key).where(Inbound.status == "pending").distinct()
        if older_than is not None:
            stmt = stmt.where(Inbound.received_at < utcnow() - older_than)
        async with self._sessions() as session:
            return list((await session.execute(stmt)).scalars())

    async def close(self) -> None:
        for batcher in (self._accepts, self._finishes, self._checks):
            await batcher.close()
