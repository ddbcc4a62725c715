"""The channel contract: neutral message types and the small Protocols adapters implement.

A channel module verifies and parses what its provider sends into an ``InboundMessage``
and delivers an ``OutboundMessage``. It never touches the database and never knows about
agents; the gateway hands it a ``RawRequest`` (converted once from aiohttp) and a
``ChannelContext`` with the few shared things it may use.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import aiohttp
from multidict import CIMultiDictProxy, MultiDictProxy
from pydantic import BaseModel, Field

from store.errors import ValidationFailed
from store.payloads import CallAction, InboundKind
from store.text import NUL, find_unstorable

IdentityKind = Literal["phone", "email", "slack", "webchat"]
# What a whole message means as a carrier keyword: stop messaging me, start again, help.
ConsentKeyword = Literal["opt_out", "opt_in", "help"]
Publisher = Callable[[str, Mapping[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class RawRequest:
    """An inbound HTTP request, provider-neutral and already read.

    ``url`` is the URL the provider called (``workspace.public_url`` + path and query,
    or the request URL when no public URL is set): it is what providers sign.
    ``form`` keeps repeated and empty fields exactly as sent.
    """

    method: str
    url: str
    path: str
    headers: CIMultiDictProxy[str]
    form: MultiDictProxy[str]
    body: bytes


def refuse_nul(value: object, where: str) -> None:
    """Raise ``ValidationFailed`` unless ``value`` (text, bytes, or parsed JSON) is free of
    NUL characters; the error names ``where`` and the path inside it.

    Every door calls this before anything is stored (README: NUL is refused at every
    door): PostgreSQL cannot store NUL in text or jsonb, and SQLite, mail parsers and
    terminals cut text at one without a word.
    """
    # SECURITY: one check for every door, so that no channel accepts what another refuses.
    if isinstance(value, bytes | bytearray):
        found = (where, NUL) if b"\x00" in value else None
    else:
        found = find_unstorable(value, where)
    if found is None:
        return
    path, why = found
    if why == NUL:
        raise ValidationFailed(f"{path} contains a NUL character, which is not accepted")
    raise ValidationFailed(f"{path} holds {why}, which is not accepted")


@dataclass(frozen=True)
class Attachment:
    url: str
    content_type: str


@dataclass(frozen=True)
class InboundMessage:
    """A message from a member, normalised by its channel.

    ``sender`` is the identity address: E.164 for phones, lower-cased email, Slack user
    id, web chat visitor id. ``external_id`` is the provider's own id for the message;
    with ``channel`` it is the dedupe key. ``raw`` is the provider payload, JSON-able.
    """

    channel: str
    inbox: str
    sender_kind: IdentityKind
    sender: str
    text: str
    external_id: str
    received_at: datetime
    attachments: tuple[Attachment, ...] = ()
    thread_key: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)
    reply_context: Mapping[str, str] = field(default_factory=dict)  # comes back on replies
    answer: bool = True  # False: store it, never reply (automatic mail, say)
    verified: bool = True  # False: the sender may be forged; the turn gets contact rights
    kind: InboundKind = InboundKind.MESSAGE  # a member's message, or a team member's reply

    def __post_init__(self) -> None:
        # The backstop behind each door's own check: no message holding a NUL is ever made.
        refuse_nul(
            {
                "text": self.text,
                "sender": self.sender,
                "inbox": self.inbox,
                "external_id": self.external_id,
                "thread_key": self.thread_key or "",
                "attachments": [a.url + a.content_type for a in self.attachments],
                "raw": dict(self.raw),
                "reply_context": dict(self.reply_context),
            },
            "message",
        )


@dataclass(frozen=True)
class OutboundMessage:
    """A reply to deliver: ``inbox`` is what it is sent from, ``to`` the member's address."""

    channel: str
    inbox: str
    to: str
    text: str
    key: str
    thread_key: str | None = None
    message_id: str = ""
    author: str = "agent"
    author_name: str = ""
    context: Mapping[str, str] = field(default_factory=dict)  # the answered message's


@dataclass(frozen=True)
class Delivery:
    """What the provider said when it took the message."""

    provider_id: str | None
    status: str = "sent"


@dataclass(frozen=True)
class StatusUpdate:
    """A provider's delivery status callback for a message we sent."""

    provider_id: str
    status: str
    error_code: str | None = None


class ChannelSettings(BaseModel):
    """Base of every ``channels.<name>`` section: which agent answers, per inbox."""

    agent: str = Field(description="The agent that answers this channel.")

    def agent_for(self, inbox: str) -> str:
        """The agent answering ``inbox``; channels with per-inbox agents override this."""
        return self.agent

    def agents(self) -> set[str]:
        """Every agent this channel names."""
        return {self.agent}

    def sends_from(self) -> str | None:
        """The address notifications go out from (an SMS number, an email inbox), if any."""
        return None

    def hourly_reply_cap(self) -> int | None:
        """At most this many agent replies to one sender per hour (None: no cap)."""
        return None

    def joins_replies(self) -> bool:
        """Whether one turn's replies go out as one message (an email) rather than several."""
        return False

    def replies_inline(self) -> bool:
        """Whether replies go back in the provider's webhook response (a voice call)
        rather than through ``send``: the outbox holds them for ``ChannelContext.pickup``."""
        return False

    def sends_replies(self) -> bool:
        """Whether a reply written later -- a team member's, not the agent's turn -- can reach
        the customer through ``send`` (a call's cannot: it is said during the call or not at
        all; an email channel without an SMTP relay has no way out)."""
        return not self.replies_inline()

    def receives_on(self, inbox: str) -> bool:
        """Whether ``inbox`` (a number, an address) is one this channel receives on."""
        return False

    def takes_voicemail(self) -> bool:
        """Whether a conversation handed to people here ends by recording a message for
        them (a call): the reply that opened the handoff carries a ``voicemail`` action."""
        return False

    def consent_keyword(self, text: str) -> ConsentKeyword | None:
        """What ``text`` says as a whole, if it is an opt-out, opt-in or help keyword on
        this channel (SMS's ``STOP``): such a message is recorded, never answered by an
        agent. None where the channel has no such keywords."""
        return None

    def help_reply(self) -> str:
        """The answer to a ``help`` keyword."""
        return ""


@dataclass(frozen=True)
class ChannelContext:
    """What a channel may use besides its own settings.

    ``http`` is the app's one shared client session; ``publish`` fans a payload out to
    every gateway process (web chat sockets, consoles) by topic.
    """

    public_url: str | None
    default_region: str
    http: aiohttp.ClientSession
    publish: Publisher
    submit: Callable[[InboundMessage], Awaitable[Any]] | None = None  # store one, durably
    pickup: Callable[[str, str, float], Awaitable[PickedUp | None]] | None = None
    end: Callable[[str, str, str], Awaitable[None]] | None = None  # (channel, inbox, sender)
    # A team member answering a notification takes the handoff: (handoff id, their
    # address) -> what to tell them.
    take: Callable[[int, str], Awaitable[str]] | None = None
    # A team member's command (Slack's /frontdesk): (channel, their address, text) -> answer.
    command: Callable[[str, str, str], Awaitable[str]] | None = None


@dataclass(frozen=True)
class PickedUp:
    """The replies to a stored message, taken for saying in a webhook response.

    ``actions`` are what the agent asked the call to do (transfer, hang up, tones, hold,
    voicemail); ``voice`` and ``language`` are the answering agent's.
    """

    texts: tuple[str, ...]
    actions: tuple[CallAction, ...] = ()
    voice: str = "Polly.Joanna"
    language: str = "en-US"


@runtime_checkable
class Channel(Protocol):
    """A way to reach members. Constructed from its settings model and a context."""

    name: ClassVar[str]
    settings_model: ClassVar[type[ChannelSettings]]

    def __init__(self, settings: Any, context: ChannelContext) -> None: ...

    async def send(self, message: OutboundMessage) -> Delivery:
        """Deliver once. Raise ``DeliveryFailed(retryable=...)`` when the provider refuses."""
        ...

    async def close(self) -> None:
        """Release what the channel holds (clients, listeners)."""
        ...


@runtime_checkable
class Conversational(Protocol):
    """A channel whose provider waits on our answer (a call's next step, a Slack command's
    reply, Slack's 200 that must mean stored): it serves its own POST ``paths`` and answers
    each request itself, storing through ``ChannelContext``."""

    paths: ClassVar[tuple[str, ...]]

    async def handle(self, request: RawRequest) -> WebhookReply: ...


@runtime_checkable
class Listener(Protocol):
    """A channel that listens itself (an SMTP server), started once the app can store."""

    async def start(self) -> bool:
        """Bind and say True; False when configured not to listen. Raises when it cannot
        bind (the process then does not start)."""
        ...

    async def serve(self) -> None:
        """Serve until cancelled; bind again first if the listener is not serving. Returns
        or raises only if it stops by itself, and is then called again (the supervisor
        keeps it)."""
        ...


@dataclass(frozen=True)
class WebhookReply:
    """What to answer the provider once the message is stored."""

    body: str
    content_type: str = "text/plain"


@runtime_checkable
class WebhookReceiver(Protocol):
    """A channel whose provider calls us over HTTP at ``webhook_path``."""

    webhook_path: ClassVar[str]

    async def parse(self, request: RawRequest) -> InboundMessage:
        """Verify the request (``SignatureInvalid``) and normalise it (``ValidationFailed``)."""
        ...

    def acknowledge(self, message: InboundMessage) -> WebhookReply:
        """The 2xx body for a stored (or duplicate) message."""
        ...


@runtime_checkable
class SupportsStatusCallbacks(Protocol):
    """A channel whose provider reports delivery progress at ``status_path``."""

    status_path: ClassVar[str]

    async def parse_status(self, request: RawRequest) -> StatusUpdate:
        """Verify and read a status callback."""
        ...


@runtime_checkable
class SupportsSentLookup(Protocol):
    """A channel whose provider can say what it already sent (Twilio's message list).

    Asked before sending again a message whose earlier attempt may have gone out
    unrecorded (the process died, or the request timed out, while sending).
    """

    async def sent_since(self, message: OutboundMessage, since: datetime) -> list[Delivery]:
        """What the provider took from ``message.inbox`` to ``message.to`` with this text at
        or after ``since``, newest first. Raise ``DeliveryFailed`` when it cannot be asked."""
        ...


STATUS_ORDER: Mapping[str, int] = {
    "pending": 0,
    "accepted": 1,
    "queued": 1,
    "sending": 2,
    "sent": 3,
    "delivered": 4,
    "undelivered": 4,
    "failed": 4,
    "read": 5,
}


def is_forward(current: str, new: str) -> bool:
    """Delivery statuses only move forward: a late ``sent`` never undoes ``delivered``."""
    return STATUS_ORDER.get(new, -1) > STATUS_ORDER.get(current, -1)


def webhook_paths(cls: type) -> tuple[str | None, str | None]:
    """The message and status-callback paths a channel class declares, where it has them.

    Routes are added before any channel is constructed, so this reads the class.
    """
    message, status = vars(cls).get("webhook_path"), vars(cls).get("status_path")
    return (
        message if isinstance(message, str) else None,
        status if isinstance(status, str) else None,
    )
