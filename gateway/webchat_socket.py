"""The web chat WebSocket: the gateway side of DESIGN §5's protocol.

A bad frame gets an error frame and the socket stays usable; a frame over the size
limit closes the socket with 1009 (aiohttp's own check). Replies arrive through
pub/sub (``TOPIC``) and are written to every socket this process holds for the visitor.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import WSMsgType, web

from channels import webchat
from channels.webchat import TOPIC, ChatText, WebChatSettings
from gateway import conversations
from gateway.state import Services, services
from people import members
from store.errors import NotFound, ValidationFailed

log = logging.getLogger(__name__)

HISTORY_LIMIT = 50
HEARTBEAT_SECONDS = 30.0

__all__ = ["TOPIC", "handle"]


async def _hello(s: Services, visitor: str | None) -> tuple[str, int, list[dict[str, Any]]]:
    """The visitor (a new one when unknown), its open conversation, and that conversation's
    recent messages."""
    agent = s.settings.channel("webchat").agent_for(webchat.INBOX)
    async with s.sessions.begin() as session:
        member = await members.by_identity(session, "webchat", visitor) if visitor else None
        if member is None or visitor is None:
            visitor = webchat.new_visitor_id()
            member = await members.resolve(session, "webchat", visitor)
        conversation = await conversations.open_for(
            session, member.id, "webchat", webchat.INBOX, agent
        )
        past = await conversations.messages(session, conversation.id, HISTORY_LIMIT)
    shown = [
        {"author": m.author, "name": m.author_name or "", "text": m.text, "id": str(m.id)}
        for m in past
    ]
    return visitor, conversation.id, shown


async def handle(request: web.Request) -> web.WebSocketResponse:
    s = services(request)
    settings = s.settings.channel("webchat")
    if not isinstance(settings, WebChatSettings):
        raise NotFound("no web chat here")
    ws = web.WebSocketResponse(max_msg_size=settings.max_frame_bytes, heartbeat=HEARTBEAT_SECONDS)
    await ws.prepare(request)
    visitor: str | None = None
    try:
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                await ws.send_json(webchat.error("bad_frame", "frames must be JSON text"))
                continue
            try:
                frame = webchat.parse_frame(msg.data, settings.max_text_chars)
            except ValidationFailed as exc:
                await ws.send_json(webchat.error("bad_frame", exc.message))
                continue
            if isinstance(frame, ChatText):
                await _message(s, ws, visitor, frame)
                continue
            if visitor is not None:
                s.sockets.remove(visitor, ws)
            visitor, conversation_id, past = await _hello(s, frame.visitor)
            s.sockets.add(visitor, ws)
            await ws.send_json(webchat.welcome(visitor, str(conversation_id)))
            await ws.send_json(webchat.history(past))
    finally:
        if visitor is not None:
            s.sockets.remove(visitor, ws)
    return ws


async def _message(
    s: Services, ws: web.WebSocketResponse, visitor: str | None, frame: ChatText
) -> None:
    if visitor is None:
        await ws.send_json(webchat.error("no_hello", "send a hello frame first"))
        return
    try:
        await s.pipeline.accept(webchat.to_inbound(visitor, frame))
    except ValidationFailed as exc:  # nothing stored: the visitor may fix it and resend
        await ws.send_json(webchat.error("bad_frame", exc.message))
        return
    except Exception:
        log.exception("could not store a web chat message")
        await ws.send_json(webchat.error("unavailable", "message not stored; please resend"))
        return
    await ws.send_json(webchat.ack(frame.client_id))
