"""Handoffs: a conversation that needs a person. At most one open per conversation.

While nobody takes it, the conversation is ``queued`` and the agent keeps answering.
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import Conversation, Handoff

log = logging.getLogger(__name__)


async def open_for(session: AsyncSession, conversation_id: int) -> Handoff | None:
    """The conversation's open handoff, if any."""
    found = await session.execute(
        select(Handoff).where(Handoff.conversation_id == conversation_id, Handoff.status == "open")
    )
    return found.scalar_one_or_none()


async def request(
    session: AsyncSession, conversation: Conversation, reason: str, trigger: str
) -> tuple[Handoff, bool]:
    """Open a handoff for ``conversation`` (or return the one already open); whether it
    is new."""
    existing = await open_for(session, conversation.id)
    if existing is not None:
        return existing, False
    handoff = Handoff(conversation_id=conversation.id, reason=reason, trigger=trigger)
    session.add(handoff)
    if conversation.status == "bot":
        conversation.status = "queued"
    await session.flush()
    log.info("handoff opened on conversation %s (%s: %s)", conversation.id, trigger, reason)
    return handoff, True
