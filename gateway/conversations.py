"""Conversations: one open conversation per member and inbox, and its messages."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from agents.base import Author, Utterance
from gateway.settings import Settings
from store import outbox
from store.engine import insert_rows
from store.models import Conversation, Inbound, Member, Message, Outbox, utcnow
from store.payloads import InboundExtras, OutboxPayload

log = logging.getLogger(__name__)

NOTE = "note"  # a message's direction when it is internal: never sent, never shown to agents


async def open_for(
    session: AsyncSession, member_id: int, channel: str, inbox: str, agent: str
) -> Conversation:
    """The member's open conversation on this channel and inbox, or a new one."""
    found = (
        await session.execute(
            select(Conversation)
            .where(
                Conversation.member_id == member_id,
                Conversation.channel == channel,
                Conversation.inbox == inbox,
                Conversation.status != "closed",
            )
            .order_by(Conversation.id.desc())
            .limit(1)
        )
    ).scalar_one_or_none()
    if found is not None:
        return found
    conversation = Conversation(
        member_id=member_id, channel=channel, inbox=inbox, status="bot", agent=agent, data={}
    )
    session.add(conversation)
    await session.flush()
    return conversation


async def record_inbound(
    session: AsyncSession, conversation: Conversation, inbound: Inbound
) -> Message:
    """The conversation's message for ``inbound``; recording it twice returns the first."""
    existing = (
        await session.execute(select(Message).where(Message.inbound_id == inbound.id))
    ).scalar_one_or_none()
    if existing is not None:
        return existing
    message = Message(
        conversation_id=conversation.id,
        inbound_id=inbound.id,
        direction="in",
        author="member",
        text=inbound.text,
        status="received",
        provider_id=inbound.external_id,
        created_at=inbound.received_at,
    )
    session.add(message)
    conversation.updated_at = utcnow()
    await session.flush()
    return message


async def history(
    session: AsyncSession, conversation_id: int, before_id: int, limit: int
) -> tuple[Utterance, ...]:
    """Up to ``limit`` messages before ``before_id``, oldest first."""
    if limit == 0:
        return ()
    rows = (
        await session.execute(
            select(Message.author, Message.text)
            .where(Message.conversation_id == conversation_id, Message.id < before_id)
            .where(Message.direction != NOTE)
            .order_by(Message.id.desc())
            .limit(limit)
        )
    ).all()
    return tuple(Utterance(author=_author(a), text=t) for a, t in reversed(rows))


def _author(value: str) -> Author:
    if value in ("member", "agent", "operator", "system"):
        return value  # type: ignore[return-value]
    return "system"


async def messages(session: AsyncSession, conversation_id: int, limit: int) -> list[Message]:
    """The last ``limit`` messages the customer sees (no internal notes), oldest first."""
    rows = await session.execute(
        select(Message)
        .where(Message.conversation_id == conversation_id, Message.direction != NOTE)
        .order_by(Message.id.desc())
        .limit(limit)
    )
    return list(reversed(rows.scalars().all()))


ConversationKey = tuple[int, str, str]  # (member id, channel, inbox)


@dataclass(frozen=True)
class Opened:
    """The open conversation for a key, as the pipeline needs it."""

    id: int
    status: str
    agent: str | None
    data: dict[str, Any] = field(default_factory=dict)


async def open_many(
    session: AsyncSession, wanted: Mapping[ConversationKey, str]
) -> dict[ConversationKey, Opened]:
    """``open_for`` for many keys (key -> agent for new ones) in two statements."""
    member_ids = {key[0] for key in wanted}
    rows = await session.execute(
        select(
            Conversation.id,
            Conversation.member_id,
            Conversation.channel,
            Conversation.inbox,
            Conversation.status,
            Conversation.agent,
            Conversation.data,
        )
        .where(Conversation.member_id.in_(member_ids), Conversation.status != "closed")
        .order_by(Conversation.id)
    )
    found: dict[ConversationKey, Opened] = {}
    for cid, member_id, channel, inbox, status, agent, data in rows:
        if (member_id, channel, inbox) in wanted:
            found[(member_id, channel, inbox)] = Opened(cid, status, agent, data or {})  # newest
    missing = [key for key in wanted if key not in found]
    if missing:
        now = utcnow()
        ids = await insert_rows(
            session,
            Conversation,
            [
                {
                    "member_id": m,
                    "channel": c,
                    "inbox": i,
                    "status": "bot",
                    "agent": wanted[(m, c, i)],
                    "data": {},
                    "created_at": now,
                    "updated_at": now,
                }
                for m, c, i in missing
            ],
        )
        for key, cid in zip(missing, ids, strict=True):
            found[key] = Opened(cid, "bot", wanted[key])
    return found


async def record_many(
    session: AsyncSession, items: Sequence[tuple[int, Inbound]]
) -> dict[int, int]:
    """``record_inbound`` for many (conversation id, inbound) pairs: inbound id -> message id."""
    inbound_ids = [inbound.id for _, inbound in items]
    found = await session.execute(
        select(Message.inbound_id, Message.id).where(Message.inbound_id.in_(inbound_ids))
    )
    existing: dict[int | None, int] = {row.inbound_id: row.id for row in found}
    new = [(cid, inbound) for cid, inbound in items if inbound.id not in existing]
    if new:
        ids = await insert_rows(
            session,
            Message,
            [
                {
                    "conversation_id": cid,
                    "inbound_id": inbound.id,
                    "direction": "in",
                    "author": "member",
                    "text": inbound.text,
                    "status": "received",
                    "provider_id": inbound.external_id,
                    "created_at": inbound.received_at,
                }
                for cid, inbound in new
            ],
        )
        existing.update(zip([inbound.id for _, inbound in new], ids, strict=True))
    return {k: v for k, v in existing.items() if k is not None}


async def histories(
    session: AsyncSession, before: Mapping[int, int], limit: int
) -> dict[int, tuple[Utterance, ...]]:
    """For each conversation id -> message id, up to ``limit`` earlier messages, oldest first."""
    if limit == 0 or not before:
        return dict.fromkeys(before, ())
    numbered = (
        select(
            Message.conversation_id,
            Message.id,
            Message.author,
            Message.text,
            func.row_number()
            .over(partition_by=Message.conversation_id, order_by=Message.id.desc())
            .label("n"),
        )
        .where(Message.conversation_id.in_(list(before)), Message.direction != NOTE)
        .subquery()
    )
    rows = await session.execute(
        select(numbered.c.conversation_id, numbered.c.id, numbered.c.author, numbered.c.text)
        .where(numbered.c.n <= limit + 1)
        .order_by(numbered.c.conversation_id, numbered.c.id)
    )
    out: dict[int, list[Utterance]] = {cid: [] for cid in before}
    for cid, mid, author, text in rows:
        if mid < before[cid]:
            out[cid].append(Utterance(author=_author(author), text=text))
    return {cid: tuple(items[-limit:]) for cid, items in out.items()}


async def last_inbound(session: AsyncSession, conversation: Conversation) -> Inbound | None:
    """The customer's latest message in ``conversation`` (None: they never wrote)."""
    return (
        await session.execute(
            select(Inbound)
            .join(Message, Message.inbound_id == Inbound.id)
            .where(Message.conversation_id == conversation.id, Message.direction == "in")
            .order_by(Message.id.desc())
            .limit(1)
        )
    ).scalar_one_or_none()


async def say_as_operator(
    session: AsyncSession,
    conversation: Conversation,
    last: Inbound,
    name: str,
    text: str,
    key: str,
    via: str | None = None,
) -> int:
    """A team member's reply to the customer: the message and its outbox row (``key`` makes
    a retry send nothing twice), to the address and thread of ``last``, the customer's last
    message -- on the conversation's own channel, or on ``via`` from the same inbox (an SMS
    from the number a caller called). The message id."""
    now = utcnow()
    [message_id] = await insert_rows(
        session,
        Message,
        [
            {
                "conversation_id": conversation.id,
                "direction": "out",
                "author": "operator",
                "author_name": name,
                "text": text,
                "status": "pending",
                "created_at": now,
            }
        ],
    )
    context = InboundExtras.model_validate(last.payload or {}).reply_context if via is None else {}
    reply = OutboxPayload(text=text, author="operator", name=name, context=context)
    row = outbox.row(
        key,
        channel=via or conversation.channel,
        inbox=conversation.inbox,
        to=last.sender,
        payload=reply,
        message_id=message_id,
        now=now,
    )
    await outbox.enqueue_many(session, [row])
    conversation.updated_at = now
    return message_id


async def customer_name(session: AsyncSession, conversation: Conversation) -> str:
    """How a notification names the customer: their name, else the address they wrote from."""
    name = (
        await session.execute(select(Member.name).where(Member.id == conversation.member_id))
    ).scalar_one_or_none()
    if name:
        return name
    last = await session.execute(
        select(Inbound.sender)
        .join(Message, Message.inbound_id == Inbound.id)
        .where(Message.conversation_id == conversation.id)
        .order_by(Message.id.desc())
        .limit(1)
    )
    return last.scalar_one_or_none() or f"member {conversation.member_id}"


async def over_reply_cap(
    session: AsyncSession, settings: Settings, batch: Sequence[Inbound]
) -> set[int]:
    """Inbound ids whose sender had the channel's ``max_auto_replies_per_hour`` already
    (a mail loop's other side, say): those are recorded and not answered."""
    capped: set[int] = set()
    since = utcnow() - timedelta(hours=1)
    for i in batch:
        cap = settings.channel(i.channel).hourly_reply_cap()
        if cap is None:
            continue
        sent = await session.execute(
            select(func.count())
            .select_from(Outbox)
            .where(
                Outbox.channel == i.channel,
                Outbox.to_address == i.sender,
                Outbox.created_at >= since,
                Outbox.key.like("reply:%:0"),
            )
        )
        if int(sent.scalar_one()) >= cap:
            log.warning("%s: %s had %s replies this hour; not answering", i.channel, i.sender, cap)
            capped.add(i.id)
    return capped
