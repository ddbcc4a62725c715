"""Live routing: which live operator a handed-off conversation is offered to.

``seats`` lists the live operators who may take a conversation -- in a group that
handles its workflow and inbox, with a role that may answer it there -- with their load
(open handoffs offered to or taken by them). The groups' rosters come from ``rosters``
(the caller may keep them for a moment: they change when members or roles do).
``offer`` gives the handoff to the least-loaded one under capacity (ties: who went live
first, then the lower id).

The offer is one conditional UPDATE (``WHERE operator_id IS NULL``), so when several
gateway processes route the same handoff at the same moment exactly one operator gets
it. On PostgreSQL the chosen operator's member row is locked and their load recounted
first, so two processes routing *different* handoffs cannot both fill the last seat --
all in one round trip, the ``frontdesk_offer`` function (migration 0009).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import BigInteger, Integer, String, any_, bindparam, func, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from escalation.operators import OperatorSettings, Routed, Seat, may_take
from people.filters import compile_filter
from people.roles import RoleBook
from store.models import Handoff, Member, UtcDateTime, utcnow

MAX_GROUP = 5000


async def loads(session: AsyncSession, operators: list[int]) -> dict[int, int]:
    """Open handoffs held (offered or taken) per operator."""
    if not operators:
        return {}
    if session.get_bind().dialect.name == "postgresql":  # one array parameter, not N
        among = Handoff.operator_id == any_(bindparam("ids", operators, type_=ARRAY(BigInteger)))
    else:
        among = Handoff.operator_id.in_(operators)
    rows = await session.execute(
        select(Handoff.operator_id, func.count())
        .where(Handoff.status == "open", among)
        .group_by(Handoff.operator_id)
    )
    counted: dict[int, int] = {int(m): int(n) for m, n in rows.all() if m is not None}
    return {m: counted.get(m, 0) for m in operators}


@dataclass(frozen=True)
class Rostered:
    """A group member as routing needs them."""

    id: int
    kind: str
    archived: bool
    role: str


async def rosters(session: AsyncSession, settings: OperatorSettings) -> dict[str, list[Rostered]]:
    """Each group's members (by its email list, role or filter)."""
    dialect = session.get_bind().dialect.name
    out: dict[str, list[Rostered]] = {}
    for group in settings.groups:
        found = await session.execute(
            select(Member.id, Member.kind, Member.archived, Member.role)
            .where(compile_filter(group.condition(), dialect).condition)
            .order_by(Member.id)
            .limit(MAX_GROUP)
        )
        out[group.name] = [Rostered(i, k, a, r) for i, k, a, r in found.all()]
    return out


async def seats(
    session: AsyncSession,
    settings: OperatorSettings,
    book: RoleBook,
    groups: Mapping[str, list[Rostered]],
    live: Mapping[int, float],
    conversation: Routed,
    qualified: Mapping[str, set[int]] | None = None,
) -> list[Seat]:
    """The live operators who may take ``conversation``, one seat each (their first group
    that handles it), with their load (one query). ``qualified``: for each workflow that
    requires a qualification, who holds one (people.qualifications)."""
    if not live:
        return []
    required = (qualified or {}).get(conversation.workflow or "")
    chosen: dict[int, tuple[str, int]] = {}
    decided: dict[tuple[str, str, bool], bool] = {}  # a role decides it, once per call
    for group in settings.groups:
        if not group.handles(conversation):
            continue
        for member in groups.get(group.name, ()):
            if member.id not in live or member.id in chosen or member.id == conversation.member_id:
                continue
            if required is not None and member.id not in required:
                continue  # not qualified for this workflow
            key = (member.role, member.kind, member.archived)
            if key not in decided:
                decided[key] = may_take(book, member, conversation)
            if decided[key]:
                chosen[member.id] = (group.name, group.capacity)
    held = await loads(session, list(chosen))
    return [
        Seat(member_id, group, held[member_id], capacity, live[member_id])
        for member_id, (group, capacity) in chosen.items()
    ]


def best(candidates: list[Seat]) -> list[Seat]:
    """Free seats, least loaded first (then who went live first, then the lower id)."""
    return sorted((s for s in candidates if s.free), key=lambda s: (s.load, s.since, s.member_id))


async def offer(session: AsyncSession, handoff_id: int, candidates: list[Seat]) -> Seat | None:
    """Offer the handoff to the best free seat; None when there is none, or when another
    process offered it first."""
    ranked = best(candidates)
    if not ranked:
        return None
    if session.get_bind().dialect.name == "postgresql":
        # One round trip: migration 0009's frontdesk_offer does what the loop below does.
        chosen = await session.scalar(
            select(func.frontdesk_offer(
                handoff_id,
                bindparam("members", [s.member_id for s in ranked], type_=ARRAY(BigInteger)),
                bindparam("capacities", [s.capacity for s in ranked], type_=ARRAY(Integer)),
                bindparam("groups", [s.group for s in ranked], type_=ARRAY(String)),
                bindparam("now", utcnow(), type_=UtcDateTime()),
            ))
        )  # fmt: skip
        return next((s for s in ranked if s.member_id == chosen), None)
    for seat in ranked:  # SQLite: one writer at a time, no lock needed
        held = (
            select(func.count())
            .select_from(Handoff)
            .where(Handoff.operator_id == seat.member_id, Handoff.status == "open")
            .scalar_subquery()
        )
        offered = await session.execute(
            update(Handoff)
            .where(
                Handoff.id == handoff_id,
                Handoff.status == "open",
                Handoff.operator_id.is_(None),
                held < seat.capacity,
            )
            .values(operator_id=seat.member_id, operator_group=seat.group, offered_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        if offered.rowcount == 1:  # type: ignore[attr-defined]
            return seat
        still = await session.execute(
            select(Handoff.id).where(
                Handoff.id == handoff_id, Handoff.status == "open", Handoff.operator_id.is_(None)
            )
        )
        if still.first() is None:
            return None  # offered elsewhere, or closed, meanwhile
        # That seat filled up meanwhile: the next one.
    return None
