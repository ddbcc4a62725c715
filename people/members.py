"""Members and their identities: finding who wrote, creating who is new.

``resolve`` is how every inbound message finds its member: by identity, following
merges, or by creating an anonymous member that owns the identity.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, delete, select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from people.identities import normalise
from people.roles import Role, RoleBook, kind_refusal
from store.engine import insert as dialect_insert
from store.engine import insert_rows
from store.errors import Conflict, ValidationFailed
from store.models import Identity, Label, Member, table_of, utcnow

KINDS = ("team", "contact", "anonymous")
MAX_MERGE_CHAIN = 32


@dataclass(frozen=True)
class NewMember:
    """What ``add`` needs; addresses are normalised there."""

    kind: str
    role: str
    email: str | None = None
    phone: str | None = None
    name: str | None = None


async def follow_merges(session: AsyncSession, member: Member) -> Member:
    """The member ``member`` was merged into (transitively), or ``member`` itself."""
    for _ in range(MAX_MERGE_CHAIN):
        if member.merged_into is None:
            return member
        parent = await session.get(Member, member.merged_into)
        if parent is None:
            return member
        member = parent
    return member


async def by_identity(session: AsyncSession, kind: str, address: str) -> Member | None:
    """The (post-merge) member owning identity ``kind``/``address``, if any."""
    member = (
        await session.execute(
            select(Member)
            .join(Identity, Identity.member_id == Member.id)
            .where(Identity.kind == kind, Identity.address == address)
        )
    ).scalar_one_or_none()
    return None if member is None else await follow_merges(session, member)


async def resolve(
    session: AsyncSession, kind: str, address: str, *, seen_at: datetime | None = None
) -> Member:
    """The member owning this (already normalised) identity; new ones are anonymous contacts.

    Safe under concurrency: when two transactions create the same identity at once, the
    loser rolls back to its savepoint and finds the winner's member.
    """
    member = await by_identity(session, kind, address)
    if member is None:
        try:
            async with session.begin_nested():
                member = Member(kind="anonymous", role="contact", data={})
                if kind == "phone":
                    member.phone = address
                elif kind == "email":
                    member.email = address
                session.add(member)
                await session.flush()
                session.add(Identity(member_id=member.id, kind=kind, address=address))
                await session.flush()
        except IntegrityError:
            member = await by_identity(session, kind, address)
            if member is None:
                raise
    if seen_at is not None:
        member.last_active_at = seen_at
    return member


Address = tuple[str, str]  # (kind, normalised address)


async def owners(session: AsyncSession, addresses: Sequence[Address]) -> dict[Address, int]:
    """The (post-merge) member id owning each address that has one; one query."""
    if not addresses:
        return {}
    rows = await session.execute(
        select(Identity.kind, Identity.address, Member.id, Member.merged_into)
        .join(Member, Member.id == Identity.member_id)
        .where(tuple_(Identity.kind, Identity.address).in_(list(addresses)))
    )
    found: dict[Address, int] = {}
    for kind, address, member_id, merged_into in rows:
        if merged_into is not None:
            member = await session.get(Member, member_id)
            member_id = (await follow_merges(session, member)).id if member else member_id
        found[(kind, address)] = member_id
    return found


async def resolve_many(
    session: AsyncSession, addresses: Sequence[Address], seen_at: datetime
) -> dict[Address, int]:
    """``resolve`` for many addresses in a few bulk statements; returns member ids.

    Unknown addresses become anonymous members. When another transaction creates the
    same identity first, its member wins and the one made here is removed.
    """
    wanted = list(dict.fromkeys(addresses))
    found = await owners(session, wanted)
    missing = [a for a in wanted if a not in found]
    if missing:
        created = await insert_rows(
            session, Member, [_anonymous(kind, address) for kind, address in missing]
        )
        columns = table_of(Identity).c
        claimed = await session.execute(
            dialect_insert(session, Identity)
            .on_conflict_do_nothing(index_elements=["kind", "address"])
            .returning(columns.kind, columns.address, columns.member_id),
            [
                {"member_id": m, "kind": k, "address": a, "created_at": seen_at}
                for (k, a), m in zip(missing, created, strict=True)
            ],
        )
        mine = {(k, a): m for k, a, m in claimed}
        found.update(mine)
        orphans = [m for a, m in zip(missing, created, strict=True) if a not in mine]
        if orphans:
            await session.execute(delete(Member).where(Member.id.in_(orphans)))
            found.update(await owners(session, [a for a in missing if a not in mine]))
    if found:
        members = table_of(Member)
        await session.execute(
            update(members)
            .where(members.c.id == bindparam("member"))
            .values(last_active_at=bindparam("seen")),
            [{"member": member_id, "seen": seen_at} for member_id in set(found.values())],
        )
    return found


def _anonymous(kind: str, address: str) -> dict[str, object]:
    return {
        "kind": "anonymous",
        "role": "contact",
        "data": {},
        "phone": address if kind == "phone" else None,
        "email": address if kind == "email" else None,
        "notify_sms": True,
        "notify_email": True,
        "notify_voice": True,
        "archived": False,
        "created_at": utcnow(),
    }


async def add(
    session: AsyncSession, new: NewMember, region: str, roles: RoleBook | Mapping[str, Role]
) -> Member:
    """Create a team member or contact with its email/phone identities; the caller commits.
    Only a team member may hold a role with ``admin_access`` (``people.roles.kind_refusal``)."""
    book = roles if isinstance(roles, RoleBook) else RoleBook(roles, {})
    if new.kind not in KINDS:
        raise ValidationFailed(f"unknown kind '{new.kind}' (valid: {', '.join(KINDS)})")
    if new.role not in book:
        raise ValidationFailed(f"unknown role '{new.role}' (valid: {', '.join(book.names())})")
    why = kind_refusal(new.kind, new.role, book.get(new.role))
    if why is not None:
        raise ValidationFailed(why)
    if not new.email and not new.phone:
        raise ValidationFailed("a member needs an email or a phone")
    email = normalise("email", new.email, region) if new.email else None
    phone = normalise("phone", new.phone, region) if new.phone else None
    for kind, address in (("email", email), ("phone", phone)):
        if address and await by_identity(session, kind, address) is not None:
            raise Conflict(f"{kind} {address} already belongs to a member")
    member = Member(kind=new.kind, role=new.role, name=new.name, email=email, phone=phone, data={})
    session.add(member)
    await session.flush()
    for kind, address in (("email", email), ("phone", phone)):
        if address:
            session.add(Identity(member_id=member.id, kind=kind, address=address))
    await session.flush()
    return member


async def by_email(session: AsyncSession, email: str) -> Member | None:
    return await by_identity(session, "email", normalise("email", email, "US"))


async def identities(session: AsyncSession, member_id: int) -> list[Identity]:
    rows = await session.execute(
        select(Identity).where(Identity.member_id == member_id).order_by(Identity.id)
    )
    return list(rows.scalars())


async def labels(session: AsyncSession, member_id: int) -> list[str]:
    rows = await session.execute(
        select(Label.label).where(Label.member_id == member_id).order_by(Label.label)
    )
    return list(rows.scalars())
