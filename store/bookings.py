"""Bookings as rows: what is taken, taking a slot, letting one go. The rules (opening hours,
slot length, caps, who may cancel what) are the ``calendar_booking`` ability's."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import Booking, utcnow


async def taken(
    session: AsyncSession, calendar: str, start: datetime, end: datetime
) -> list[Booking]:
    """Booked appointments of ``calendar`` overlapping [start, end)."""
    rows = await session.execute(
        select(Booking).where(
            Booking.calendar == calendar,
            Booking.status == "booked",
            Booking.starts_at < end,
            Booking.ends_at > start,
        )
    )
    return list(rows.scalars())


async def count_booked(session: AsyncSession, *, conversation_id: int) -> int:
    found = await session.execute(
        select(func.count())
        .select_from(Booking)
        .where(Booking.conversation_id == conversation_id, Booking.status == "booked")
    )
    return int(found.scalar_one())


async def of_member(session: AsyncSession, member_id: int, after: datetime) -> Sequence[Booking]:
    rows = await session.execute(
        select(Booking)
        .where(
            Booking.member_id == member_id, Booking.status == "booked", Booking.starts_at > after
        )
        .order_by(Booking.starts_at)
    )
    return list(rows.scalars())


async def book(
    session: AsyncSession,
    calendar: str,
    member_id: int,
    conversation_id: int | None,
    start: datetime,
    end: datetime,
) -> Booking | None:
    """Take the slot; None if someone holds it (the unique index decides, not a read)."""
    booking = Booking(
        calendar=calendar,
        member_id=member_id,
        conversation_id=conversation_id,
        starts_at=start,
        ends_at=end,
        status="booked",
        created_at=utcnow(),
    )
    try:
        async with session.begin_nested():
            session.add(booking)
            await session.flush()
    except IntegrityError:
        return None
    return booking


async def cancel(session: AsyncSession, booking_id: int, member_id: int) -> Booking | None:
    """Cancel the member's own booking; None if there is no such booking of theirs."""
    done = await session.execute(
        update(Booking)
        .where(Booking.id == booking_id, Booking.member_id == member_id, Booking.status == "booked")
        .values(status="cancelled", cancelled_at=utcnow())
        .returning(Booking.id)
    )
    if done.scalar_one_or_none() is None:
        return None
    return await session.get(Booking, booking_id)
