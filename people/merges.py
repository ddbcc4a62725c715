"""Merging duplicates, and resolving anonymous members to real identities.

A merge is one transaction: the duplicate's identities, labels, data (the primary wins
on conflict; the duplicate's value is kept in the merge record), conversations (and so
their messages) move to the primary -- keeping one open conversation per channel and
inbox: where both had one open, the duplicate's messages move into the primary's and its
own closes; the duplicate's tokens are revoked; the duplicate is kept, marked
``merged_into``, with no email or phone of its own (they went with its identities), and
every lookup that reaches it follows to the primary.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from people.directory import add_labels
from people.members import by_identity
from store.errors import Conflict
from store.models import (
    ApiToken,
    Conversation,
    Handoff,
    Identity,
    Label,
    Member,
    MemberMerge,
    Message,
    utcnow,
)

# Which kinds may be merged into which: a duplicate team member only into a team member;
# a contact into a contact or a team member; an anonymous member into anyone.
_ALLOWED = {
    "team": {"team"},
    "contact": {"contact", "team"},
    "anonymous": {"anonymous", "contact", "team"},
}


def refusal(primary: Member, duplicate: Member) -> str | None:
    """Why these two cannot be merged this way round (None when they can)."""
    if primary.id == duplicate.id:
        return "a member cannot be merged into itself"
    if primary.merged_into is not None:
        return f"member {primary.id} was itself merged into member {primary.merged_into}"
    if duplicate.merged_into is not None:
        return f"member {duplicate.id} is already merged into member {duplicate.merged_into}"
    if primary.archived:
        return f"member {primary.id} is archived; unarchive it first"
    if primary.kind not in _ALLOWED[duplicate.kind]:
        return f"a {duplicate.kind} member cannot be merged into a {primary.kind} member"
    return None


async def merge(
    session: AsyncSession, primary: Member, duplicate: Member, actor_id: int | None, reason: str
) -> MemberMerge:
    """Merge ``duplicate`` into ``primary`` (flushed; the caller's transaction commits)."""
    why = refusal(primary, duplicate)
    if why is not None:
        raise Conflict(why)
    moved: dict[str, Any] = {}
    identities = (
        await session.execute(
            select(Identity.kind, Identity.address).where(Identity.member_id == duplicate.id)
        )
    ).all()
    await session.execute(
        update(Identity).where(Identity.member_id == duplicate.id).values(member_id=primary.id)
    )
    moved["identities"] = [{"kind": k, "address": a} for k, a in identities]
    labels = list(
        (
            await session.execute(select(Label.label).where(Label.member_id == duplicate.id))
        ).scalars()
    )
    await session.execute(delete(Label).where(Label.member_id == duplicate.id))
    await add_labels(session, primary.id, labels)
    moved["labels"] = labels
    moved.update(_merge_data(primary, duplicate))
    moved["folded"] = await _fold_open_conversations(session, primary.id, duplicate.id)
    conversations = list(
        (
            await session.execute(
                update(Conversation)
                .where(Conversation.member_id == duplicate.id)
                .values(member_id=primary.id)
                .returning(Conversation.id)
            )
        ).scalars()
    )
    moved["conversations"] = conversations
    await session.execute(
        update(ApiToken)
        .where(ApiToken.member_id == duplicate.id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    primary.email = primary.email or duplicate.email
    primary.phone = primary.phone or duplicate.phone
    primary.name = primary.name or duplicate.name
    # Its addresses went with its identities: it shows none it no longer has.
    duplicate.email = duplicate.phone = None
    if duplicate.last_active_at and (
        primary.last_active_at is None or duplicate.last_active_at > primary.last_active_at
    ):
        primary.last_active_at = duplicate.last_active_at
    duplicate.merged_into = primary.id
    record = MemberMerge(
        primary_id=primary.id,
        duplicate_id=duplicate.id,
        actor_id=actor_id,
        reason=reason,
        moved=moved,
        created_at=utcnow(),
    )
    session.add(record)
    await session.flush()
    return record


async def _fold_open_conversations(
    session: AsyncSession, primary_id: int, duplicate_id: int
) -> dict[str, int]:
    """Keep one open conversation per member, channel and inbox: each of the duplicate's
    open conversations where the primary has one too gives it its messages (and its open
    handoff, when the primary's has none; else that handoff closes) and is closed. Returns
    ``{folded conversation id: the one it went into}`` for the merge record."""
    open_ = Conversation.status != "closed"
    theirs = (
        await session.execute(
            select(Conversation).where(Conversation.member_id == primary_id, open_)
            .order_by(Conversation.id)
        )
    ).scalars()  # fmt: skip
    keep: dict[tuple[str, str], Conversation] = {}
    for conversation in theirs:
        keep.setdefault((conversation.channel, conversation.inbox), conversation)
    mine = (
        await session.execute(
            select(Conversation).where(Conversation.member_id == duplicate_id, open_)
            .order_by(Conversation.id)
        )
    ).scalars()  # fmt: skip
    folded: dict[str, int] = {}
    now = utcnow()
    for conversation in mine:
        into = keep.get((conversation.channel, conversation.inbox))
        if into is None:
            continue
        await session.execute(
            update(Message).where(Message.conversation_id == conversation.id)
            .values(conversation_id=into.id)
        )  # fmt: skip
        handoff = await _open_handoff(session, conversation.id)
        if handoff is not None:
            if await _open_handoff(session, into.id) is None:
                handoff.conversation_id = into.id  # the person asked for is still wanted
                if into.status == "bot":
                    into.status = conversation.status
            else:
                handoff.status, handoff.closed_at = "closed", now
            await session.flush()
        into.data = {**(conversation.data or {}), **(into.data or {})}
        into.workflow = into.workflow or conversation.workflow
        into.updated_at = now
        conversation.status, conversation.updated_at = "closed", now
        folded[str(conversation.id)] = into.id
    await session.flush()
    return folded


async def _open_handoff(session: AsyncSession, conversation_id: int) -> Handoff | None:
    found = await session.execute(
        select(Handoff).where(Handoff.conversation_id == conversation_id, Handoff.status == "open")
    )
    return found.scalar_one_or_none()


def _merge_data(primary: Member, duplicate: Member) -> dict[str, Any]:
    data = dict(primary.data or {})
    conflicts = {}
    taken = []
    for key, value in (duplicate.data or {}).items():
        if key not in data:
            data[key] = value
            taken.append(key)
        elif data[key] != value:
            conflicts[key] = value
    primary.data = data
    return {"data_taken": taken, "data_conflicts": conflicts}


async def attach_identity(
    session: AsyncSession, member: Member, kind: str, address: str, actor_id: int | None
) -> Member:
    """Give ``member`` an identity (already normalised); returns the member it ends up on.

    If someone else holds it, the two are merged, the non-anonymous one being primary
    (two known members are not merged implicitly: that is a ``Conflict``). An anonymous
    member that gains an identity of its own becomes a contact.
    """
    owner = await by_identity(session, kind, address)
    if owner is not None and owner.id == member.id:
        return member
    if owner is not None:
        if member.kind == "anonymous":
            await merge(session, owner, member, actor_id, f"resolved by {kind} {address}")
            return owner
        if owner.kind == "anonymous":
            await merge(session, member, owner, actor_id, f"resolved by {kind} {address}")
            return member
        raise Conflict(f"{kind} {address} belongs to member {owner.id}; merge the two explicitly")
    session.add(Identity(member_id=member.id, kind=kind, address=address))
    if kind == "email":
        member.email = member.email or address
    if kind == "phone":
        member.phone = member.phone or address
    if member.kind == "anonymous" and kind in ("email", "phone"):
        member.kind = "contact"
    await session.flush()
    return member
