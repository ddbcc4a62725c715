"""The inbound pipeline (DESIGN §2).

``accept`` is the webhook's whole job: one row that is both the dedupe receipt and the
durable work item, committed before the 2xx. Everything else runs later through the
work queue, one message per sender key at a time, in arrival order: ``prepare`` resolves
members, opens conversations and records the messages; the agent runs; ``finish`` writes
the replies to the outbox in the same transaction that marks the message done. A crash
before that commit leaves the message pending and it is processed again; the outbox key
makes the re-run send nothing twice.

Every step works on batches (``gateway.batcher``): concurrent webhooks share one
insert, concurrent turns share one finishing transaction, and a batch of keys is
prepared with a handful of bulk statements. Under no load a batch is one item.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agents.base import EscalationRequest, MemberFacts, TurnInput, TurnResult
from agents.workflows import WorkflowState
from channels.base import InboundMessage, PickedUp
from escalation import handoffs
from escalation.hours import Hours, TriggerSettings
from escalation.notify import notify
from gateway import conversations
from gateway.batcher import Batcher
from gateway.bus import WorkQueue
from gateway.metrics import Metrics
from gateway.settings import Settings
from people import answers, members
from people.roles import Need, allows, load_book
from store import outbox
from store.engine import insert, insert_rows
from store.models import (
    Conversation,
    Handoff,
    Inbound,
    Member,
    Message,
    Outbox,
    table_of,
    utcnow,
)

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
MAX_BATCH = 256
# Background work defers to webhooks waiting to be stored, for at most this long, so a
# burst of webhooks is acknowledged quickly without starving the agents behind it.
MAX_DEFER_SECONDS = 0.05
PICKUP_POLL_SECONDS = 0.05


@dataclass(frozen=True)
class Accepted:
    """The outcome of ``accept``: the stored row, or that it was a retry of one."""

    inbound_id: int | None
    duplicate: bool


@dataclass(frozen=True)
class Turn:
    """One stored message, ready for its agent turn."""

    inbound_id: int
    key: str
    conversation_id: int
    member_id: int
    channel: str
    inbox: str
    to: str
    agent: str
    status: str
    input: TurnInput
    answer: bool = True  # False: record the message, send no agent reply
    reply_context: dict[str, str] = field(default_factory=dict)


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


async def _apply_effects(
    session: AsyncSession, turn: Turn, result: TurnResult, triggers: TriggerSettings
) -> Handoff | None:
    """What a turn did besides replying: answers, workflow position, a handoff; the handoff
    if this turn opened one (not one already open)."""
    if result.collected:
        await answers.record(session, turn.member_id, result.collected, result.field_types)
    stalled = triggers.turns_without_progress
    if result.workflow is None and result.escalation is None and stalled is None:
        return None
    conversation = await session.get(Conversation, turn.conversation_id)
    if conversation is None:
        return None
    if stalled is not None and result.escalation is None:
        # Answers that did not help, in a row (the embedded model says so in meta).
        data = dict(conversation.data or {})
        data["unhelped"] = int(data.get("unhelped", 0)) + 1 if result.meta.get("unanswered") else 0
        conversation.data = data
        if data["unhelped"] >= stalled:
            reason = f"{data['unhelped']} answers in a row did not help"
            result = replace(result, escalation=EscalationRequest(reason, "no_progress"))
    if result.workflow is not None:
        state = result.workflow.state
        data = {k: v for k, v in (conversation.data or {}).items() if k != "workflow"}
        if state is not None:
            data["workflow"] = state.to_json()
        conversation.data = data
        conversation.workflow = state.workflow if state is not None else None
    if result.escalation is not None:
        handoff, opened = await handoffs.request(
            session, conversation, result.escalation.reason, result.escalation.trigger
        )
        return handoff if opened else None
    return None


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
    ) -> None:
        """``now`` is the clock business hours are judged by (tests set the time)."""
        self._sessions = sessions
        self._queue = queue
        self._settings = settings
        self._metrics = metrics
        self._on_outbox = on_outbox
        self._hours = Hours(settings.escalation, settings.workspace.timezone)
        self._now = now
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
                "payload": {
                    "raw": dict(m.raw),
                    "attachments": [vars(a) for a in m.attachments],
                    "thread_key": m.thread_key,
                    "reply_context": dict(m.reply_context),
                    "answer": m.answer,
                    "verified": m.verified,
                },
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
            team = [
                i
                for i in oldest
                if ((i.payload or {}).get("raw") or {}).get("kind") == "team_reply"
            ]
            if team:
                await self._team_replies(session, team)
                oldest = [i for i in oldest if i not in team]
            turns = await self._prepare(session, oldest) if oldest else []
        for inbound in team:
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
        capped = await self._over_reply_cap(session, batch)
        turns = []
        for i in batch:
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
                    answer=bool((i.payload or {}).get("answer", True)) and i.id not in capped,
                    reply_context=dict((i.payload or {}).get("reply_context") or {}),
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
                        role=book.get(member.role)
                        if (i.payload or {}).get("verified", True)
                        else book.get("contact"),
                    ),
                )
            )
        return turns

    async def _over_reply_cap(self, session: AsyncSession, batch: Sequence[Inbound]) -> set[int]:
        """Inbound ids whose sender had the channel's ``max_auto_replies_per_hour`` already
        (a mail loop's other side, say): those are recorded and not answered."""
        capped: set[int] = set()
        since = utcnow() - timedelta(hours=1)
        for i in batch:
            cap = getattr(self._settings.channel(i.channel), "max_auto_replies_per_hour", None)
            if cap is None:
                continue
            sent = await session.execute(
                select(func.count()).select_from(Outbox).where(
                    Outbox.channel == i.channel, Outbox.to_address == i.sender,
                    Outbox.created_at >= since, Outbox.key.like("reply:%:0"),
                )
            )  # fmt: skip
            if int(sent.scalar_one()) >= cap:
                log.warning("%s: %s had %s replies this hour; not answering", i.channel,
                            i.sender, cap)  # fmt: skip
                capped.add(i.id)
        return capped

    async def finish(self, turn: Turn, result: TurnResult | None) -> None:
        """Mark the message done and put its replies in the outbox, atomically."""
        await self._finishes.submit((turn, result))
        if result is not None and result.replies:
            self._on_outbox()

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
            await self._mirror_to_threads(session, [t for t, _ in items if t.inbound_id in done])
            # A message finished elsewhere (its lease ran out) keeps that run's replies.
            finished = [(t, r) for t, r in items if t.inbound_id in done and r is not None]
            told = []
            triggers = self._settings.escalation.triggers
            for turn, result in finished:
                if result is not None and result.escalation is None and turn.answer:
                    matched = triggers.matching(turn.input.text)
                    if matched is not None:
                        reason = f"the message matched '{matched}'"
                        result = replace(result, escalation=EscalationRequest(reason, "keyword"))
                handoff = await _apply_effects(session, turn, result, triggers) if result else None
                if result is not None and handoff is not None:
                    await self._post_handoff(session, turn, result, handoff)
                    await self._notify(session, turn, handoff)
                    # A new handoff: say when a person will be there (business hours).
                    message = self._hours.handoff_message(turn.inbox, self._now())
                    result = (
                        replace(result, replies=(*result.replies, message)) if message else result
                    )
                told.append((turn, result))
            await self._write_replies(session, told)
        return [None] * len(items)

    async def _post_handoff(
        self, session: AsyncSession, turn: Turn, result: TurnResult, handoff: Handoff
    ) -> None:
        """Open the handoff's thread in Slack's handoff channel, if Slack is configured."""
        slack = self._settings.channels.get("slack")
        if slack is None:
            return
        channel = str(getattr(slack, "handoff_channel", ""))
        said = [f"> {u.author}: {u.text}" for u in turn.input.history[-4:]]
        said += [f"> member: {turn.input.text}", *(f"> agent: {r}" for r in result.replies)]
        who = turn.input.member_name or f"member {turn.member_id}"
        text = (
            f"{who} ({turn.channel} {turn.to}) needs a person: {handoff.reason}\n"
            + "\n".join(said)
            + "\nReply in this thread to answer them; start with note: to keep it internal."
        )
        now = utcnow()
        await outbox.enqueue_many(session, [Outbox(
            key=f"handoff:{handoff.id}:slack", message_id=None, channel="slack", inbox=channel,
            to_address=channel, status="pending", attempts=0, next_attempt_at=now, created_at=now,
            payload={"text": text, "author": "system", "name": "frontdesk",
                     "context": {"channel": channel}, "conversation": turn.conversation_id},
        )])  # fmt: skip

    async def _notify(self, session: AsyncSession, turn: Turn, handoff: Handoff) -> None:
        """The team members the notification rules name, where they allow it."""
        rules = self._settings.escalation.notify
        conversation = await session.get(Conversation, turn.conversation_id) if rules else None
        if conversation is None:
            return
        senders: dict[str, str] = {}
        numbers = getattr(self._settings.channels.get("sms"), "numbers", None)
        if numbers:
            senders["sms"] = str(numbers[0])
        inboxes = getattr(self._settings.channels.get("email"), "inboxes", None)
        if inboxes:
            senders["email"] = str(inboxes[0].address)
        hours = self._hours.for_inbox(turn.inbox)
        in_hours = hours.is_open(self._now()) if hours is not None else None
        who = turn.input.member_name or turn.to
        decided = await notify(session, list(rules), handoff, conversation, senders, in_hours, who)
        if any(d.status == "sent" for d in decided):
            self._on_outbox()

    async def _mirror_to_threads(self, session: AsyncSession, turns: Sequence[Turn]) -> None:
        """Customer messages in conversations with an open handoff thread in Slack go into
        that thread too, so the team sees them where they answer."""
        slack = self._settings.channels.get("slack")
        if slack is None or not turns:
            return
        open_handoffs = await session.execute(
            select(Handoff.id, Handoff.conversation_id).where(
                Handoff.status == "open",
                Handoff.conversation_id.in_({t.conversation_id for t in turns}),
            )
        )
        key_of = {conversation: f"handoff:{hid}:slack" for hid, conversation in open_handoffs}
        if not key_of:
            return
        found = await session.execute(
            select(Outbox.key, Outbox.provider_id).where(
                Outbox.key.in_(list(key_of.values())), Outbox.provider_id.is_not(None)
            )
        )
        threads: dict[str, str] = dict(found.all())  # type: ignore[arg-type]
        channel = str(getattr(slack, "handoff_channel", ""))
        now = utcnow()
        rows = [
            Outbox(key=f"mirror:{t.inbound_id}:slack", message_id=None, channel="slack",
                   inbox=channel, to_address=channel, status="pending", attempts=0,
                   next_attempt_at=now, created_at=now,
                   payload={"text": f"{t.input.member_name or 'member'}: {t.input.text}",
                            "context": {"channel": channel,
                                        "thread_ts": threads[key_of[t.conversation_id]]}})
            for t in turns
            if t.channel != "slack" and threads.get(key_of.get(t.conversation_id, ""))
        ]  # fmt: skip
        await outbox.enqueue_many(session, rows)

    async def _team_replies(self, session: AsyncSession, rows: Sequence[Inbound]) -> None:
        """Replies by team members in Slack handoff threads: to the customer, or refused."""
        book = await load_book(session, self._settings.roles)
        now = utcnow()
        for inbound in rows:
            raw = (inbound.payload or {}).get("raw") or {}
            thread = str(raw.get("thread_ts") or "")
            post = (await session.execute(
                select(Outbox).where(Outbox.channel == "slack", Outbox.provider_id == thread,
                                     Outbox.key.like("handoff:%"))
            )).scalars().first()  # fmt: skip
            conversation = (
                await session.get(Conversation, int(post.payload.get("conversation", 0)))
                if post is not None else None
            )  # fmt: skip
            member = await members.by_identity(session, "slack", inbound.sender)
            why = None
            if conversation is None:
                why = "this thread is not a conversation I know"
            elif member is None or member.kind != "team":
                why = "no team member has your Slack identity"
            elif not allows(book.get(member.role), Need(feature="chats", inbox=conversation.inbox,
                                                         inbox_right="send")):  # fmt: skip
                why = f"your role may not send on {conversation.inbox}"
            inbound.status, inbound.processed_at = "done", now
            if inbound.text.strip().lower().startswith("note:") and why is None:
                continue  # internal: stays in Slack
            if why is not None or conversation is None or member is None:
                await outbox.enqueue_many(session, [self._thread_note(inbound, thread, why, now)])
                continue
            await self._to_customer(session, inbound, conversation, member, now)

    def _thread_note(self, inbound: Inbound, thread: str, why: str | None, now: datetime) -> Outbox:
        return Outbox(
            key=f"team:{inbound.id}", message_id=None, channel="slack", inbox=inbound.inbox,
            to_address=inbound.inbox, status="pending", attempts=0, next_attempt_at=now,
            created_at=now, payload={"text": f"Not sent to the customer: {why}.",
                                     "context": {"channel": inbound.inbox, "thread_ts": thread}},
        )  # fmt: skip

    async def _to_customer(
        self, session: AsyncSession, inbound: Inbound, conversation: Conversation,
        member: Member, now: datetime,
    ) -> None:  # fmt: skip
        last = (await session.execute(
            select(Inbound).join(Message, Message.inbound_id == Inbound.id)
            .where(Message.conversation_id == conversation.id, Message.direction == "in")
            .order_by(Message.id.desc()).limit(1)
        )).scalars().first()  # fmt: skip
        if last is None:
            return
        [message_id] = await insert_rows(session, Message, [{
            "conversation_id": conversation.id, "direction": "out", "author": "operator",
            "author_name": member.name or member.email, "text": inbound.text,
            "status": "pending", "created_at": now,
        }])  # fmt: skip
        await outbox.enqueue_many(session, [Outbox(
            key=f"team:{inbound.id}", message_id=message_id, channel=conversation.channel,
            inbox=conversation.inbox, to_address=last.sender, status="pending", attempts=0,
            next_attempt_at=now, created_at=now,
            payload={"text": inbound.text, "author": "operator", "name": member.name or "",
                     "context": dict((last.payload or {}).get("reply_context") or {})},
        )])  # fmt: skip
        conversation.status = "operator"  # a person has it: the agent stops answering
        self._on_outbox()

    async def _write_replies(
        self, session: AsyncSession, finished: Sequence[tuple[Turn, TurnResult | None]]
    ) -> None:
        replies = []
        for turn, result in finished:
            if result is None:
                continue
            texts = list(result.replies) or ([""] if result.actions else [])
            if len(texts) > 1 and self._settings.channel(turn.channel).joins_replies():
                texts = ["\n\n".join(texts)]
            for index, text in enumerate(texts):
                # Call controls travel with the last row (one with no text when nothing is said).
                replies.append(
                    (turn, index, text, result.actions if index == len(texts) - 1 else ())
                )
        if not replies:
            return
        now = utcnow()
        ids = await insert_rows(
            session,
            Message,
            [
                {
                    "conversation_id": turn.conversation_id,
                    "direction": "out",
                    "author": "agent",
                    "author_name": turn.agent,
                    "text": text,
                    "status": "pending",
                    "created_at": now,
                }
                for turn, _, text, _ in replies
            ],
        )
        inline = {
            t.channel: self._settings.channel(t.channel).replies_inline() for t, *_ in replies
        }
        await outbox.enqueue_many(
            session,
            [
                Outbox(
                    key=f"reply:{turn.inbound_id}:{index}",
                    message_id=message_id,
                    channel=turn.channel,
                    inbox=turn.inbox,
                    to_address=turn.to,
                    payload={
                        "text": text,
                        "author": "agent",
                        "name": turn.agent,
                        "context": turn.reply_context,
                        "actions": list(actions),
                    },
                    status="held" if inline[turn.channel] else "pending",
                    attempts=0,
                    next_attempt_at=now,
                    created_at=now,
                )
                for (turn, index, text, actions), message_id in zip(replies, ids, strict=True)
            ],
        )

    async def pickup(self, channel: str, external_id: str, wait: float) -> PickedUp | None:
        """The replies to a stored message once its turn is done (waiting up to ``wait``
        seconds), marked sent: for channels that answer in the webhook response. None
        while the turn is still running (or if there is no such message)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            async with self._sessions.begin() as session:
                row = (await session.execute(
                    select(Inbound.id, Inbound.status)
                    .where(Inbound.channel == channel, Inbound.external_id == external_id)
                )).first()  # fmt: skip
                if row is not None and row.status != "pending":
                    return await self._take_held(session, row.id, channel, external_id)
            if row is None or loop.time() >= deadline:
                return None
            await asyncio.sleep(PICKUP_POLL_SECONDS)

    async def _take_held(
        self, session: AsyncSession, inbound_id: int, channel: str, external_id: str
    ) -> PickedUp:
        outbox = table_of(Outbox)
        # Replies of earlier turns of the same call still held (a turn that outlasted its
        # fillers) are said first, once; this turn's are taken again for a retried webhook.
        thread = external_id.rpartition(":")[0]
        earlier = await session.execute(
            select(Inbound.id).where(
                Inbound.channel == channel, Inbound.external_id.like(f"{thread}:%"),
                Inbound.id < inbound_id,
            )
        ) if thread else None  # fmt: skip
        earlier_ids = list(earlier.scalars()) if earlier is not None else []
        mine = outbox.c.key.like(f"reply:{inbound_id}:%") & outbox.c.status.in_(("held", "sent"))
        wanted: ColumnElement[bool] = mine
        if earlier_ids:
            stuck = or_(*[outbox.c.key.like(f"reply:{i}:%") for i in earlier_ids])
            wanted = or_(mine, stuck & (outbox.c.status == "held"))
        taken = await session.execute(
            update(outbox)
            .where(wanted)
            .values(status="sent", sent_at=utcnow())
            .returning(outbox.c.id, outbox.c.key, outbox.c.payload, outbox.c.message_id)
        )
        rows = sorted(taken, key=lambda r: r.id)
        message_ids = [r.message_id for r in rows if r.message_id is not None]
        if message_ids:
            await session.execute(
                update(Message).where(Message.id.in_(message_ids)).values(status="sent")
            )
        agent = next((str(r.payload.get("name")) for r in rows), "")
        voice = next((a.voice for a in self._settings.agents if a.name == agent), None)
        return PickedUp(
            texts=tuple(str(r.payload.get("text", "")) for r in rows if r.payload.get("text")),
            actions=tuple(a for r in rows for a in r.payload.get("actions") or ()),
            **({"voice": voice.voice, "language": voice.language} if voice else {}),
        )

    async def end(self, channel: str, inbox: str, sender: str) -> None:
        """The member left (a call ended): close their open conversation on ``inbox``."""
        kind = "phone" if channel == "voice" else channel
        async with self._sessions.begin() as session:
            member = await members.by_identity(session, kind, sender)
            if member is None:
                return
            await session.execute(
                update(Conversation)
                .where(Conversation.member_id == member.id, Conversation.channel == channel,
                       Conversation.inbox == inbox, Conversation.status != "closed")
                .values(status="closed", updated_at=utcnow())
            )  # fmt: skip

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
