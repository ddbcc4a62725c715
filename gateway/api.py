"""The admin HTTP API (``/api/...``): JSON, bearer tokens, one policy function.

Every handler states what it needs as a ``Need`` and asks ``people.roles.allows``. A
caller who may not see a resource gets the same 404 as for one that does not exist.
Lists are ``{"items": [...], "next": cursor}``; the cursor is the last id seen.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.errors import NotFound, Unauthenticated, ValidationFailed
from gateway.state import Services, services
from people import credentials, members
from people.roles import Need, Role, allows
from store.models import Conversation, Member, Message

MAX_PAGE = 200


@dataclass(frozen=True)
class Actor:
    """Who is calling, and what their role lets them do."""

    member_id: int
    role: Role

    def may(self, need: Need) -> bool:
        return allows(self.role, need)


def add(app: web.Application) -> None:
    app.router.add_get("/api/members/{id}", get_member)
    app.router.add_get("/api/conversations", list_conversations)
    app.router.add_get("/api/conversations/{id}/messages", list_messages)


async def actor(request: web.Request, s: Services, session: AsyncSession) -> Actor:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("send Authorization: Bearer <token>")
    member = await credentials.authenticate(session, token.strip())
    if member is None:
        raise Unauthenticated("the token is unknown or revoked")
    return Actor(member_id=member.id, role=s.settings.role(member.role))


def _id(raw: str, what: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise NotFound(f"no such {what}") from None
    if not 0 < value < 2**63:
        raise NotFound(f"no such {what}")
    return value


def _page(request: web.Request) -> tuple[int, int]:
    try:
        limit = int(request.query.get("limit", "50"))
        cursor = int(request.query.get("cursor", "0") or "0")
    except ValueError:
        raise ValidationFailed("limit and cursor must be integers") from None
    if not 0 < limit <= MAX_PAGE:
        raise ValidationFailed(f"limit must be 1 to {MAX_PAGE}")
    return limit, max(cursor, 0)


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


async def member_json(session: AsyncSession, member: Member) -> dict[str, Any]:
    return {
        "id": str(member.id),
        "kind": member.kind,
        "name": member.name,
        "email": member.email,
        "phone": member.phone,
        "role": member.role,
        "labels": await members.labels(session, member.id),
        "data": member.data,
        "notify": {
            "sms": member.notify_sms,
            "email": member.notify_email,
            "voice": member.notify_voice,
        },
        "identities": [
            {"kind": i.kind, "address": i.address}
            for i in await members.identities(session, member.id)
        ],
        "archived": member.archived,
        "merged_into": str(member.merged_into) if member.merged_into else None,
        "created_at": _time(member.created_at),
        "last_active_at": _time(member.last_active_at),
    }


def _may_see_member(who: Actor, member_id: int) -> bool:
    return who.member_id == member_id or who.may(Need(feature="members"))


def _may_see_conversation(who: Actor, conversation: Conversation) -> bool:
    if who.member_id == conversation.member_id:
        return True
    return who.may(Need(feature="chats")) and who.may(Need(inbox=conversation.inbox))


async def get_member(request: web.Request) -> web.Response:
    s = services(request)
    member_id = _id(request.match_info["id"], "member")
    async with s.sessions() as session:
        who = await actor(request, s, session)
        member = await session.get(Member, member_id)
        if member is None or not _may_see_member(who, member_id):
            raise NotFound("no such member")
        return web.json_response(await member_json(session, member))


def _conversation_json(c: Conversation) -> dict[str, Any]:
    return {
        "id": str(c.id),
        "member": str(c.member_id),
        "channel": c.channel,
        "inbox": c.inbox,
        "status": c.status,
        "workflow": c.workflow,
        "data": c.data,
        "created_at": _time(c.created_at),
    }


async def list_conversations(request: web.Request) -> web.Response:
    s = services(request)
    limit, cursor = _page(request)
    if "member" not in request.query:
        raise ValidationFailed("give ?member=<id>")
    member_id = _id(request.query["member"], "member")
    async with s.sessions() as session:
        who = await actor(request, s, session)
        if await session.get(Member, member_id) is None or not _may_see_member(who, member_id):
            raise NotFound("no such member")
        rows = await session.execute(
            select(Conversation)
            .where(Conversation.member_id == member_id, Conversation.id > cursor)
            .order_by(Conversation.id)
            .limit(limit + 1)
        )
        found = [c for c in rows.scalars() if _may_see_conversation(who, c)]
    return _list([_conversation_json(c) for c in found[:limit]], found, limit)


def _list(items: list[dict[str, Any]], found: list[Any], limit: int) -> web.Response:
    more = len(found) > limit
    return web.json_response({"items": items, "next": items[-1]["id"] if more and items else None})


async def list_messages(request: web.Request) -> web.Response:
    s = services(request)
    limit, cursor = _page(request)
    conversation_id = _id(request.match_info["id"], "conversation")
    async with s.sessions() as session:
        who = await actor(request, s, session)
        conversation = await session.get(Conversation, conversation_id)
        if conversation is None or not _may_see_conversation(who, conversation):
            raise NotFound("no such conversation")
        rows = await session.execute(
            select(Message)
            .where(Message.conversation_id == conversation_id, Message.id > cursor)
            .order_by(Message.id)
            .limit(limit + 1)
        )
        found = list(rows.scalars())
    items = [
        {
            "id": str(m.id),
            "direction": m.direction,
            "author": m.author,
            "text": m.text,
            "status": m.status,
            "created_at": _time(m.created_at),
        }
        for m in found[:limit]
    ]
    return _list(items, found, limit)
