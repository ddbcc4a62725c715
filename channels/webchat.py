"""Web chat: the WebSocket protocol of DESIGN §5 (the widget page is ``gateway.web.widget``).

The gateway owns the socket; this module owns the protocol. Client frames are parsed
into ``Hello`` and ``ChatText`` (or a ``ValidationFailed`` the gateway turns into an
error frame); server frames are built here. Replies reach a socket through the app's
publisher, so a reply produced on any gateway process reaches the process holding it.

Beside DESIGN's frames the server sends ``{"type": "history", "messages": [...]}``
right after ``welcome`` (so a reloaded page shows the conversation so far) and
``{"type": "error", "code": ..., "message": ...}`` for a frame it cannot take; the
socket stays open after an error frame.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

from pydantic import ConfigDict, Field

from channels.base import (
    ChannelContext,
    ChannelSettings,
    Delivery,
    InboundMessage,
    OutboundMessage,
    refuse_nul,
)
from people.identities import is_visitor_id
from store.errors import ValidationFailed
from store.text import loads_json

TOPIC = "webchat"
INBOX = "webchat"
MAX_CLIENT_ID = 100


class WebChatSettings(ChannelSettings):
    """``channels.webchat``: the widget at ``/webchat`` and its socket."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    title: str = Field(default="Chat with us", description="Heading of the widget page.")
    max_text_chars: int = Field(default=4000, gt=0, le=100_000, description="Longest message.")
    max_frame_bytes: int = Field(
        default=256 * 1024, gt=0, description="Larger frames close the socket (1009)."
    )


@dataclass(frozen=True)
class Hello:
    visitor: str | None


@dataclass(frozen=True)
class ChatText:
    text: str
    client_id: str


def new_visitor_id() -> str:
    """A fresh, unguessable visitor id (it is the visitor's only credential)."""
    return "v_" + secrets.token_urlsafe(18)


def parse_frame(data: str, max_text_chars: int) -> Hello | ChatText:
    """One client frame; ``ValidationFailed`` says what is wrong with it."""
    try:
        frame = loads_json(data)
    except json.JSONDecodeError as exc:
        raise ValidationFailed(f"frame is not JSON: {exc.msg} at {exc.pos}") from exc
    except ValueError as exc:
        raise ValidationFailed(f"frame is not JSON: {exc}") from exc
    if not isinstance(frame, dict):
        raise ValidationFailed("frame must be a JSON object")
    refuse_nul(frame, "frame")

    kind = frame.get("type")
    if kind == "hello":
        visitor = frame.get("visitor")
        if visitor is not None and not (isinstance(visitor, str) and is_visitor_id(visitor)):
            raise ValidationFailed("visitor is not a visitor id issued by this chat")
        return Hello(visitor=visitor)
    if kind == "message":
        return _chat_text(frame, max_text_chars)
    raise ValidationFailed(f"unknown frame type {kind!r} (valid: hello, message)")


def _chat_text(frame: dict[str, Any], max_text_chars: int) -> ChatText:
    text, client_id = frame.get("text"), frame.get("client_id")
    if not isinstance(text, str) or not text.strip():
        raise ValidationFailed("message needs a non-empty text")
    if len(text) > max_text_chars:
        raise ValidationFailed(f"message is longer than {max_text_chars} characters")
    if not isinstance(client_id, str) or not 0 < len(client_id) <= MAX_CLIENT_ID:
        raise ValidationFailed(f"message needs a client_id of 1 to {MAX_CLIENT_ID} characters")
    return ChatText(text=text, client_id=client_id)


def to_inbound(visitor: str, frame: ChatText) -> InboundMessage:
    """A visitor's message as the pipeline takes it; the client id makes resends dedupe."""
    return InboundMessage(
        channel="webchat",
        inbox=INBOX,
        sender_kind="webchat",
        sender=visitor,
        text=frame.text,
        external_id=f"{visitor}:{frame.client_id}",
        received_at=datetime.now(UTC),
        raw={"text": frame.text, "client_id": frame.client_id},
    )


def welcome(visitor: str, conversation: str) -> dict[str, Any]:
    return {"type": "welcome", "visitor": visitor, "conversation": conversation}


def ack(client_id: str) -> dict[str, Any]:
    return {"type": "ack", "client_id": client_id}


def error(code: str, message: str) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message}


def reply(author: str, name: str, text: str, message_id: str) -> dict[str, Any]:
    return {"type": "message", "author": author, "name": name, "text": text, "id": message_id}


def history(messages: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "history", "messages": messages}


class WebChatChannel:
    """Delivers replies to whichever gateway process holds the visitor's socket."""

    name: ClassVar[str] = "webchat"
    settings_model: ClassVar[type[ChannelSettings]] = WebChatSettings

    def __init__(self, settings: WebChatSettings, context: ChannelContext) -> None:
        self.settings = settings
        self._context = context

    async def send(self, message: OutboundMessage) -> Delivery:
        frame = reply(message.author, message.author_name, message.text, message.message_id)
        await self._context.publish(TOPIC, {"visitor": message.to, "frame": frame})
        return Delivery(provider_id=None, status="sent")

    async def close(self) -> None:
        """Sockets belong to the gateway; nothing to release here."""
