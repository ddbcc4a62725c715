"""Consent records: a member's word on being messaged over a channel (SMS ``STOP``).

Every opt-out and opt-in is a row, never an update: the latest row of a (channel,
address) is in force, and the history says who said what, when. Sending checks it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import Consent

Address = tuple[str, str]  # (channel, address)


async def record(
    session: AsyncSession,
    *,
    member_id: int | None,
    channel: str,
    address: str,
    opted_in: bool,
    text: str,
    inbound_id: int | None,
    at: datetime,
) -> Consent:
    """Add a consent record; the caller commits."""
    consent = Consent(
        member_id=member_id, channel=channel, address=address,
        choice="in" if opted_in else "out", text=text, inbound_id=inbound_id, created_at=at,
    )  # fmt: skip
    session.add(consent)
    await session.flush()
    return consent


async def opted_out(session: AsyncSession, addresses: Iterable[Address]) -> dict[Address, Consent]:
    """The addresses among ``addresses`` whose latest record is an opt-out, with it."""
    wanted = set(addresses)
    if not wanted:
        return {}
    rows = await session.execute(
        select(Consent)
        .where(
            Consent.channel.in_({c for c, _ in wanted}),
            Consent.address.in_({a for _, a in wanted}),
        )
        .order_by(Consent.id)
    )
    latest = {(c.channel, c.address): c for c in rows.scalars()}
    return {k: c for k, c in latest.items() if k in wanted and c.choice == "out"}


async def history(session: AsyncSession, channel: str, address: str) -> list[Consent]:
    """Every record of ``address`` on ``channel``, oldest first."""
    rows = await session.execute(
        select(Consent)
        .where(Consent.channel == channel, Consent.address == address)
        .order_by(Consent.id)
    )
    return list(rows.scalars())
