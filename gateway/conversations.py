"""Conversations: one open conversation per member and inbox, and its messages."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from agents.base import Author, Utterance
from store.models import Conversation, Inbound, Message, utcnow


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
    """The last ``limit`` messages, oldest first."""
    rows = await session.execute(
        select(Message)
        .where(Message.conversation_id == conversation_id)
        .order_by(Message.id.desc())
        .limit(limit)
    )
    return list(reversed(rows.scalars().all()))
