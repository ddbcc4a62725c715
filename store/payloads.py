"""The typed JSON the engine keeps beside a row's columns: an inbound row's extras
(``Inbound.payload``) and an outbox row's payload (``Outbox.payload``).

Writers build the model and store ``to_json()``; readers ``model_validate`` the stored
JSON. The stored keys are the ones rows have always had, so rows written before these
models read back the same; a key a model does not know is ignored.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator


class InboundKind(StrEnum):
    """What an inbound message is to the engine."""

    MESSAGE = "message"  # from a member, to the agent or an operator: a turn
    TEAM_REPLY = "team_reply"  # a team member's reply in a Slack handoff thread


def _strings(value: object) -> object:
    """A context's values as the channels read them: strings (older rows held a few
    numbers)."""
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    return value


Context = Annotated[dict[str, str], BeforeValidator(_strings)]


class _Payload(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    @model_validator(mode="before")
    @classmethod
    def _nulls_are_unset(cls, data: Any) -> Any:
        # Older rows wrote ``None`` for a key they had no value for (``thread_key``).
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v is not None}
        return data

    def to_json(self) -> dict[str, Any]:
        """The JSON to store: unset optional keys are left out."""
        return self.model_dump(mode="json", exclude_none=True)


class StoredAttachment(_Payload):
    url: str
    content_type: str


class InboundExtras(_Payload):
    """``Inbound.payload``: what a message carried besides its text and addresses."""

    kind: InboundKind = InboundKind.MESSAGE
    raw: dict[str, Any] = {}  # the provider's own payload
    attachments: list[StoredAttachment] = []
    thread_key: str | None = None
    reply_context: Context = {}  # comes back on the replies (a mail's subject, a DM's channel)
    answer: bool = True  # False: stored, never replied to (automatic mail, a voicemail)
    verified: bool = True  # False: the sender may be forged; the turn gets contact rights

    @model_validator(mode="before")
    @classmethod
    def _legacy_kind(cls, data: Any) -> Any:
        # Rows written before the kind had its own key marked team replies in ``raw``.
        if isinstance(data, dict) and "kind" not in data:
            raw = data.get("raw")
            if isinstance(raw, dict) and raw.get("kind") == InboundKind.TEAM_REPLY:
                return {**data, "kind": InboundKind.TEAM_REPLY}
        return data


class Transfer(_Payload):
    """Put the caller through to ``to`` (a phone number); the call leaves us."""

    action: Literal["transfer"] = "transfer"
    to: str


class Hangup(_Payload):
    """End the call."""

    action: Literal["hangup"] = "hangup"


class Dtmf(_Payload):
    """Play touch tones (``0-9 * #``, ``w`` waits) into the call."""

    action: Literal["dtmf"] = "dtmf"
    digits: str


class Hold(_Payload):
    """Hold the caller (``music`` if there is any, else silence), then listen again."""

    action: Literal["hold"] = "hold"
    music: str | None = None


class Voicemail(_Payload):
    """Take a message: the caller is recorded, and the call ends."""

    action: Literal["voicemail"] = "voicemail"


# What an agent's turn asks a call to do, said after the turn's replies. Stored as the
# dicts it always was (``{"action": "transfer", "to": ...}``); ``action`` tells them apart.
CallAction = Annotated[Transfer | Hangup | Dtmf | Hold | Voicemail, Field(discriminator="action")]


class OutboxPayload(_Payload):
    """``Outbox.payload``: what to send, and how the channel shows it."""

    text: str = ""
    author: str = "agent"  # agent | operator | system
    name: str = ""  # the author's name, where the channel shows one
    kind: str | None = None  # "help": answered even to a number that opted out
    context: Context = {}  # the answered message's reply context (thread, subject, channel)
    # The key of the outbox row whose post opens the thread this one goes in: it waits
    # until that one is posted, and fails with it.
    thread_of: str | None = None
    conversation: int | None = None  # a handoff's Slack post: the conversation it is about
    actions: list[CallAction] = []  # call controls, with the reply a voice call says
