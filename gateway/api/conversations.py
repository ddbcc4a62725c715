"""``/api/conversations``: a member's conversations and a conversation's messages."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from escalation.operators import may_read_workflow
from gateway.api.core import Call, Endpoint, iso, listing, page, parse_id
from gateway.api.members import MEMBERS_USE
from gateway.conversations import NOTE
from people.roles import Need
from store.errors import NotFound, ValidationFailed
from store.models import Conversation, Handoff, Member, Message, Notification

CHATS_USE = Need(feature="chats", level="use", admin_access=True)


def may_see_inbox(call: Call, conversation: Conversation) -> bool:
    """A member sees its own; others need ``chats: use`` and ``read`` on the inbox."""
    if conversation.member_id == call.actor.id:
        return True
    return call.actor.may(CHATS_USE) and call.actor.may(Need(inbox=conversation.inbox))


def may_see(call: Call, conversation: Conversation) -> bool:
    """``may_see_inbox``, and for someone else's conversation in a workflow,
    ``workflows: use`` and that workflow in their role."""
    if not may_see_inbox(call, conversation):
        return False
    return (
        conversation.member_id == call.actor.id
        or may_read_workflow(call.actor.role, conversation.workflow) is None
    )


def conversation_json(c: Conversation) -> dict[str, Any]:
    return {
        "id": str(c.id),
        "member": str(c.member_id),
        "channel": c.channel,
        "inbox": c.inbox,
        "status": c.status,
        "workflow": c.workflow,
        "data": c.data or {},
        "created_at": iso(c.created_at),
    }


async def list_conversations(call: Call) -> dict[str, Any]:
    limit, cursor = page(call.request)
    if "member" not in call.request.query:
        raise ValidationFailed("give ?member=<id>")
    member_id = parse_id(call.request.query["member"], "member")
    member = await call.session.get(Member, member_id)
    if member is None or not (member_id == call.actor.id or call.actor.may(MEMBERS_USE)):
        raise NotFound("no such member")
    rows = await call.session.execute(
        select(Conversation)
        .where(Conversation.member_id == member_id, Conversation.id > cursor)
        .order_by(Conversation.id)
        .limit(limit + 1)
    )
    found = [c for c in rows.scalars() if may_see(call, c)]
    return listing([conversation_json(c) for c in found[:limit]], len(found) > limit)


async def list_messages(call: Call) -> dict[str, Any]:
    limit, cursor = page(call.request)
    conversation = await call.session.get(Conversation, call.path_id(what="conversation"))
    if conversation is None or not may_see(call, conversation):
        raise NotFound("no such conversation")
    stmt = select(Message).where(Message.conversation_id == conversation.id, Message.id > cursor)
    if not call.actor.may(CHATS_USE):  # the customer: internal notes are not theirs to see
        stmt = stmt.where(Message.direction != NOTE)
    rows = await call.session.execute(stmt.order_by(Message.id).limit(limit + 1))
    found = list(rows.scalars())
    items = [
        {
            "id": str(m.id),
            "direction": m.direction,
            "author": m.author,
            "name": m.author_name,
            "text": m.text,
            "status": m.status,
            "created_at": iso(m.created_at),
        }
        for m in found[:limit]
    ]
    return listing(items, len(found) > limit)


async def list_notifications(call: Call) -> dict[str, Any]:
    handoff = await call.session.get(Handoff, call.path_id(what="handoff"))
    conversation = (
        await call.session.get(Conversation, handoff.conversation_id) if handoff else None
    )
    if handoff is None or conversation is None or not may_see(call, conversation):
        raise NotFound("no such handoff")
    if conversation.member_id == call.actor.id and not call.actor.may(CHATS_USE):
        raise NotFound("no such handoff")  # a customer does not see whom we told
    rows = await call.session.execute(
        select(Notification).where(Notification.handoff_id == handoff.id).order_by(Notification.id)
    )
    items = [
        {"id": str(n.id), "rule": n.rule, "member": str(n.member_id), "channel": n.channel,
         "status": n.status, "reason": n.reason, "created_at": iso(n.created_at)}
        for n in rows.scalars()
    ]  # fmt: skip
    return {"items": items, "next": None}


ENDPOINTS = [
    Endpoint(
        "GET",
        "/api/conversations",
        list_conversations,
        "A member's conversations",
        tag="conversations",
        query={"member": "the member's id", "limit": "1 to 200", "cursor": "the last id seen"},
    ),
    Endpoint(
        "GET",
        "/api/conversations/{id}/messages",
        list_messages,
        "A conversation's messages, oldest first",
        tag="conversations",
        query={"limit": "1 to 200", "cursor": "the last id seen"},
    ),
    Endpoint(
        "GET",
        "/api/handoffs/{id}/notifications",
        list_notifications,
        "Whom a handoff's notification rules told, on which channels, or why not",
        CHATS_USE,
        tag="conversations",
    ),
]
