"""Live operators over the API: presence, the console's board, and acting on a conversation.

``/api/operators/live`` (POST: go live, DELETE: leave), ``/api/operators/heartbeat``,
``/api/operators`` (who is live, with their load), ``/api/operators/{id}/offline`` (an
admin forces someone offline), ``/api/console`` (the operator's board), and per
conversation ``take``, ``reply``, ``notes``, ``handback`` and ``close``.

Acting on a conversation needs ``chats: edit``, and the operator's role must ``send`` on
the conversation's inbox and, for a workflow's conversation, have ``workflows: use`` and
take part in that workflow (``escalation.operators.refusal``, whose reason the 403
names). Taking and replying also need a qualification the workflow requires, as routing
does; handing back and closing do not (a supervisor may end what they could not answer).
Checked again on every reply: a member who no longer passes is refused with 403 and the
conversation goes back to the queue -- that hand-back is committed, the reply is not sent.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from escalation.operators import may_read_workflow, refusal
from escalation.presence import PresenceUnavailable
from gateway.api.board import board as live_board
from gateway.api.conversations import conversation_json, may_see_inbox
from gateway.api.core import Call, Endpoint, admin
from gateway.http import error_response
from gateway.live import Live, Refused
from people.filters import compile_filter
from people.roles import Need
from store.errors import Conflict, NotFound, PermissionDenied, Unavailable, ValidationFailed
from store.models import Conversation, Member

OPERATORS_USE = admin(Need(feature="operators", level="use"))
OPERATORS_ADMIN = admin(Need(feature="operators", level="admin"))
CHATS_EDIT = admin(Need(feature="chats", level="edit"))
MAX_TEXT = 4000


class TextBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=MAX_TEXT)


def _live(call: Call) -> Live:
    live = call.services.pipeline.live
    if not live.enabled:
        raise Conflict("the live operator mode is off (escalation.operators.enabled)")
    return live


async def go_live(call: Call) -> dict[str, Any]:
    live = _live(call)
    dialect = call.session.get_bind().dialect.name
    for group in live.operators.groups:
        found = await call.session.execute(
            select(Member.id).where(
                compile_filter(group.condition(), dialect).condition,
                Member.id == call.actor.id,
            )
        )
        if found.first() is not None:
            break
    else:
        raise Conflict("you are in no operator group (escalation.operators.groups)")
    try:
        await live.go_live(call.actor.id)
    except PresenceUnavailable as exc:
        raise Unavailable(str(exc)) from exc
    return {"live": True}


async def leave(call: Call) -> None:
    try:
        await _live(call).leave(call.actor.id)
    except PresenceUnavailable as exc:
        raise Unavailable(str(exc)) from exc


async def heartbeat(call: Call) -> dict[str, Any]:
    try:
        return {"live": await _live(call).presence.beat(call.actor.id)}
    except PresenceUnavailable as exc:
        raise Unavailable(str(exc)) from exc


async def list_operators(call: Call) -> dict[str, Any]:
    board = await live_board(call.session, _live(call), call.actor.member, call.roles)
    return {"items": board["operators"], "next": None}


async def force_offline(call: Call) -> None:
    member = await call.session.get(Member, call.path_id(what="member"))
    if member is None or member.kind != "team":
        raise NotFound("no such member")
    try:
        await _live(call).leave(member.id)
    except PresenceUnavailable as exc:
        raise Unavailable(str(exc)) from exc


async def console(call: Call) -> dict[str, Any]:
    return await live_board(call.session, _live(call), call.actor.member, call.roles)


async def _conversation(call: Call) -> Conversation:
    """The conversation to act on: a 404 unless the caller may read its inbox; a 403
    naming the workflow when only the conversation's workflow is closed to them (acting
    is refused for the real reason, not as if the inbox were the problem)."""
    conversation = await call.session.get(Conversation, call.path_id(what="conversation"))
    if conversation is None or not may_see_inbox(call, conversation):
        raise NotFound("no such conversation")
    why = may_read_workflow(call.actor.role, conversation.workflow)
    if why is not None and conversation.member_id != call.actor.id:
        raise PermissionDenied(why)
    return conversation


def _refusal(refused: Refused) -> web.Response:
    """A refusal as a response (not an exception: what it changed, if anything, commits)."""
    error = PermissionDenied(refused.reason) if refused.forbidden else Conflict(refused.reason)
    return error_response(error)


async def take(call: Call) -> web.StreamResponse | dict[str, Any]:
    conversation = await _conversation(call)
    try:
        await call.services.pipeline.live.take(
            call.session, conversation, call.actor.member, call.roles
        )
    except Refused as refused:
        return _refusal(refused)
    call.after_commit.append(call.services.pipeline.live.changed)  # consoles see it committed
    return conversation_json(conversation)


async def reply(call: Call) -> web.StreamResponse | dict[str, Any]:
    conversation = await _conversation(call)
    body = await call.body(TextBody)
    given = call.request.headers.get("Idempotency-Key")
    if given is not None and not re.fullmatch(r"[A-Za-z0-9_.:-]{1,100}", given):
        raise ValidationFailed("Idempotency-Key: 1 to 100 letters, digits or _ . : -")
    key = f"operator:{call.actor.id}:{given or secrets.token_hex(16)}"
    result = await call.services.pipeline.live.reply(
        call.session, conversation, call.actor.member, body.text, key
    )
    call.after_commit.append(call.services.pipeline.live.route_soon)
    if isinstance(result, Refused):
        return _refusal(result)
    answer = {"conversation": str(conversation.id), "status": conversation.status,
              "channel": result.channel}  # fmt: skip
    return answer | ({"notice": result.notice} if result.notice else {})


async def add_note(call: Call) -> web.Response:
    conversation = await _conversation(call)
    body = await call.body(TextBody)
    message_id = await call.services.pipeline.live.note(
        call.session, conversation, call.actor.member, body.text
    )
    call.after_commit.append(call.services.pipeline.live.changed)
    return web.json_response({"id": str(message_id)}, status=201)


async def _finish(call: Call, close: bool) -> web.StreamResponse | None:
    conversation = await _conversation(call)
    why = refusal(call.roles, call.actor.member, conversation)  # a qualification aside
    if why is not None:
        raise PermissionDenied(why)
    try:
        await call.services.pipeline.live.finish(
            call.session, conversation, call.actor.member, close
        )
    except Refused as refused:
        return _refusal(refused)
    call.after_commit.append(call.services.pipeline.live.route_soon)  # room for the next one
    return None


async def hand_back(call: Call) -> web.StreamResponse | None:
    return await _finish(call, close=False)


async def close(call: Call) -> web.StreamResponse | None:
    return await _finish(call, close=True)


ENDPOINTS = [
    Endpoint("POST", "/api/operators/live", go_live, "Go live as an operator", OPERATORS_USE,
             tag="operators"),
    Endpoint("DELETE", "/api/operators/live", leave, "Stop being live (what you held goes back "
             "to the queue)", OPERATORS_USE, status=204, tag="operators"),
    Endpoint("POST", "/api/operators/heartbeat", heartbeat, "Stay live (send within the TTL)",
             OPERATORS_USE, tag="operators"),
    Endpoint("GET", "/api/operators", list_operators, "Who is live, and how many conversations "
             "each holds", OPERATORS_USE, tag="operators"),
    Endpoint("POST", "/api/operators/{id}/offline", force_offline, "Force an operator offline",
             OPERATORS_ADMIN, status=204, tag="operators"),
    Endpoint("GET", "/api/console", console, "Your board: who is live, the queue, your "
             "conversations", OPERATORS_USE, tag="operators"),
    Endpoint("POST", "/api/conversations/{id}/take", take, "Take a conversation (the AI stops "
             "answering it)", CHATS_EDIT, tag="operators"),
    Endpoint("POST", "/api/conversations/{id}/reply", reply, "Reply to the customer (takes the "
             "conversation if it is free)", CHATS_EDIT, body=TextBody, tag="operators"),
    Endpoint("POST", "/api/conversations/{id}/notes", add_note, "An internal note (never sent)",
             CHATS_EDIT, body=TextBody, status=201, tag="operators"),
    Endpoint("POST", "/api/conversations/{id}/handback", hand_back, "Hand the conversation back "
             "to the AI", CHATS_EDIT, status=204, tag="operators"),
    Endpoint("POST", "/api/conversations/{id}/close", close, "Close the conversation",
             CHATS_EDIT, status=204, tag="operators"),
]  # fmt: skip
