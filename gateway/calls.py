"""Replies said in a provider's webhook response (a voice call) rather than sent: taken from
the outbox once the turn is done, and the conversation closed when the call ends."""

from __future__ import annotations

import asyncio

from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from channels.base import PickedUp
from gateway.settings import Settings
from people import members
from store.models import Conversation, Handoff, Inbound, Message, Outbox, table_of, utcnow
from store.payloads import OutboxPayload

PICKUP_POLL_SECONDS = 0.05


class Calls:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: Settings) -> None:
        self._sessions = sessions
        self._settings = settings

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
        replies = [OutboxPayload.model_validate(r.payload) for r in rows]
        message_ids = [r.message_id for r in rows if r.message_id is not None]
        if message_ids:
            await session.execute(
                update(Message).where(Message.id.in_(message_ids)).values(status="sent")
            )
        agent = next((r.name for r in replies), "")
        voice = next((a.voice for a in self._settings.agents if a.name == agent), None)
        return PickedUp(
            texts=tuple(r.text for r in replies if r.text),
            actions=tuple(a for r in replies for a in r.actions),
            **({"voice": voice.voice, "language": voice.language} if voice else {}),
        )

    async def end(self, channel: str, inbox: str, sender: str) -> None:
        """The member left (a call ended): close their open conversation on ``inbox``.
        Where calls take voicemail, a conversation handed to people stays open instead:
        someone is to call back, and the voicemail (its callback can come after the call
        ended) belongs in it."""
        kind = "phone" if channel == "voice" else channel
        async with self._sessions.begin() as session:
            member = await members.by_identity(session, kind, sender)
            if member is None:
                return
            ending = update(Conversation).where(
                Conversation.member_id == member.id, Conversation.channel == channel,
                Conversation.inbox == inbox, Conversation.status != "closed",
            )  # fmt: skip
            if self._settings.channel(channel).takes_voicemail():
                handed = select(Handoff.conversation_id).where(Handoff.status == "open")
                ending = ending.where(Conversation.id.not_in(handed))
            ended = await session.execute(
                ending.values(status="closed", updated_at=utcnow()).returning(Conversation.id)
            )
            # Nobody can answer a call that ended: its handoff is over too.
            await session.execute(
                update(Handoff)
                .where(Handoff.conversation_id.in_(list(ended.scalars())),
                       Handoff.status == "open")
                .values(status="closed", closed_at=utcnow())
            )  # fmt: skip
