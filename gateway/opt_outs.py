"""Carrier keywords on inbound texts: ``STOP`` and its kin opt a number out, ``START``
opts it back in, ``HELP`` is answered with the channel's help text.

Such a message is the member's word, not a question: it is never given to an agent. An
opt-out or opt-in is a consent record (``store.consents``) and sets the member's
``notify.sms``; from then on nothing is sent to the number (the deliverer checks the
latest record) until it opts in again. Matching is the channel's (whole message,
trimmed, any case, as carriers do; ``channels.sms`` settings hold the keywords).

Other channels: voice has no keywords (a caller who asks to stop being called is heard
by the agent and a person); WhatsApp, when it comes, gets its own keywords and records
under its own channel name, as its opt-in is separate from SMS's.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Final

from sqlalchemy.ext.asyncio import AsyncSession

from gateway.settings import Settings
from people import members
from store import consents, outbox
from store.models import Inbound, Member, Outbox, utcnow
from store.payloads import InboundExtras, OutboxPayload

log = logging.getLogger(__name__)

HELP_KIND: Final = "help"  # an outbox payload's ``kind``: answered even to a number that opted out


def keyworded(settings: Settings, rows: Sequence[Inbound]) -> list[Inbound]:
    """The messages among ``rows`` that are carrier keywords on their channel."""
    return [i for i in rows if settings.channel(i.channel).consent_keyword(i.text) is not None]


async def record(session: AsyncSession, settings: Settings, rows: Sequence[Inbound]) -> bool:
    """Act on each keyword message and mark it done; True if a reply was queued."""
    now = utcnow()
    owners = await members.resolve_many(session, [(i.sender_kind, i.sender) for i in rows], now)
    replied = False
    for inbound in rows:
        channel = settings.channel(inbound.channel)
        keyword = channel.consent_keyword(inbound.text)
        member_id = owners[(inbound.sender_kind, inbound.sender)]
        inbound.status, inbound.processed_at = "done", now
        if keyword == "help":
            replied = True
            await outbox.enqueue(session, _help(inbound, channel.help_reply(), now))
            continue
        opted_in = keyword == "opt_in"
        member = await session.get(Member, member_id)
        if member is not None:
            member.notify_sms = opted_in
        await consents.record(
            session,
            member_id=member_id,
            channel=inbound.channel,
            address=inbound.sender,
            opted_in=opted_in,
            text=inbound.text,
            inbound_id=inbound.id,
            at=now,
        )
        log.info("%s opted %s on %s", inbound.sender, "in" if opted_in else "out", inbound.channel)
    return replied


def _help(inbound: Inbound, text: str, now: datetime) -> Outbox:
    extras = InboundExtras.model_validate(inbound.payload or {})
    answer = OutboxPayload(text=text, author="system", kind=HELP_KIND, context=extras.reply_context)
    return outbox.row(
        f"help:{inbound.id}",
        channel=inbound.channel,
        inbox=inbound.inbox,
        to=inbound.sender,
        payload=answer,
        now=now,
    )
