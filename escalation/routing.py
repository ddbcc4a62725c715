"""Live routing: which live operator a handed-off conversation is offered to.

``seats`` lists the live operators who may take a conversation -- in a group that
handles its workflow and inbox, with a role that may answer it there -- with their load
(open handoffs offered to or taken by them). ``offer`` gives the handoff to the
least-loaded one under capacity (ties: who went live first, then the lower id).

The offer is one conditional UPDATE (``WHERE operator_id IS NULL``), so when several
gateway processes route the same handoff at the same moment exactly one operator gets
it. On PostgreSQL the chosen operator's member row is locked and their load recounted
first, so two processes routing *different* handoffs cannot both fill the last seat.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from escalation.operators import OperatorSettings, Seat, may_take
from people.filters import compile_filter
from people.roles import RoleBook
from store.models import Conversation, Handoff, Member, utcnow


async def loads(session: AsyncSession, operators: list[int]) -> dict[int, int]:
    """Open handoffs held (offered or taken) per operator."""
    if not operators:
        return {}
    rows = await session.execute(
        select(Handoff.operator_id, func.count())
        .where(Handoff.status == "open", Handoff.operator_id.in_(operators))
        .group_by(Handoff.operator_id)
    )
    counted: dict[int, int] = {int(m): int(n) for m, n in rows.all() if m is not None}
    return {m: counted.get(m, 0) for m in operators}


async def seats(
    session: AsyncSession,
    settings: OperatorSettings,
    book: RoleBook,
    live: Mapping[int, float],
    conversation: Conversation,
) -> list[Seat]:
    """The live operators who may take ``conversation``, one seat each (their first group
    that handles it), with their load."""
    if not live:
        return []
    dialect = session.get_bind().dialect.name
    found: dict[int, Seat] = {}
    held: dict[int, int] | None = None
    for group in settings.groups:
        if not group.handles(conversation):
            continue
        candidates = await session.execute(
            select(Member)
            .where(compile_filter(group.condition(), dialect).condition)
            .where(Member.id.in_(list(live)), Member.id != conversation.member_id)
        )
        eligible = [
            m for m in candidates.scalars() if m.id not in found and may_take(book, m, conversation)
        ]
        if not eligible:
            continue
        if held is None:
            held = await loads(session, list(live))
        for member in eligible:
            found[member.id] = Seat(
                member.id, group.name, held.get(member.id, 0), group.capacity, live[member.id]
            )
    return list(found.values())


def best(candidates: list[Seat]) -> list[Seat]:
    """Free seats, least loaded first (then who went live first, then the lower id)."""
    return sorted((s for s in candidates if s.free), key=lambda s: (s.load, s.since, s.member_id))


async def offer(session: AsyncSession, handoff_id: int, candidates: list[Seat]) -> Seat | None:
    """Offer the handoff to the best free seat; None when there is none, or when another
    process offered it first."""
    postgres = session.get_bind().dialect.name == "postgresql"
    for seat in best(candidates):
        if postgres:
            # Serialise offers to one operator across processes, then recount.
            await session.execute(
                select(Member.id).where(Member.id == seat.member_id).with_for_update()
            )
            now_held = (await loads(session, [seat.member_id]))[seat.member_id]
            if now_held >= seat.capacity:
                continue
        offered = await session.execute(
            update(Handoff)
            .where(
                Handoff.id == handoff_id,
                Handoff.status == "open",
                Handoff.operator_id.is_(None),
            )
            .values(operator_id=seat.member_id, operator_group=seat.group, offered_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        return seat if offered.rowcount == 1 else None  # type: ignore[attr-defined]
    return None
