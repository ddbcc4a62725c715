"""What an operator's console shows: who is live, the queue they may take from, their own
conversations (``GET /api/console`` and every ``/console/ws`` update)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from escalation.operators import refusal
from escalation.routing import loads
from gateway.live import ROUTE_BATCH, Live
from people.roles import RoleBook
from store.models import Conversation, Handoff, Identity, Member, Message


async def board(
    session: AsyncSession, live: Live, member: Member, book: RoleBook
) -> dict[str, Any]:
    """The operator's view: who is live, the queue they may take from, their own."""
    now_live = await live.live()
    rows = await session.execute(
        select(Handoff, Conversation, Member)
        .join(Conversation, Conversation.id == Handoff.conversation_id)
        .join(Member, Member.id == Conversation.member_id)
        .where(Handoff.status == "open", Handoff.operator_id.is_(None))
        .order_by(Handoff.id)
        .limit(ROUTE_BATCH)
    )
    theirs = await session.execute(  # however long the queue is
        select(Handoff, Conversation, Member)
        .join(Conversation, Conversation.id == Handoff.conversation_id)
        .join(Member, Member.id == Conversation.member_id)
        .where(Handoff.status == "open", Handoff.operator_id == member.id)
        .order_by(Handoff.id)
    )
    found = [(h, c, m) for h, c, m in (*theirs.all(), *rows.all())]
    latest = dict((await session.execute(
        select(Message.conversation_id, func.max(Message.id))
        .where(Message.conversation_id.in_([c.id for _, c, _ in found]))
        .group_by(Message.conversation_id)
    )).all())  # fmt: skip
    addresses = dict((await session.execute(
        select(Identity.member_id, Identity.address)
        .where(Identity.member_id.in_([m.id for _, _, m in found if not m.name]))
        .where(Identity.kind.in_(("phone", "email")))
    )).all())  # fmt: skip
    queue: list[dict[str, Any]] = []
    mine: list[dict[str, Any]] = []
    holders = await live.holders(session) if found else {}
    for handoff, conversation, customer in found:
        if refusal(book, member, conversation, holders.get(conversation.workflow or "")):
            continue
        item = {
            "handoff": str(handoff.id),
            "conversation": str(conversation.id),
            "customer": customer.name
            or addresses.get(customer.id)
            or f"{conversation.channel} visitor {customer.id}",
            "channel": conversation.channel,
            "inbox": conversation.inbox,
            "workflow": conversation.workflow,
            "reason": handoff.reason,
            "trigger": handoff.trigger,
            "status": conversation.status,
            "since": handoff.created_at.isoformat(),
            "taken": handoff.taken_at is not None,
            "last_message": str(latest.get(conversation.id, 0)),
        }
        (mine if handoff.operator_id == member.id else queue).append(item)
    names = await session.execute(select(Member.id, Member.name, Member.email).where(
        Member.id.in_(list(now_live))))  # fmt: skip
    held = await loads(session, list(now_live))
    operators = [
        {"id": str(i), "name": name or email or f"member {i}", "load": held.get(i, 0)}
        for i, name, email in names.all()
    ]
    return {
        "type": "board",
        "me": {"id": str(member.id), "name": member.name or member.email,
               "live": member.id in now_live},
        "operators": sorted(operators, key=lambda o: o["name"]),
        "queue": queue,
        "mine": mine,
    }  # fmt: skip
