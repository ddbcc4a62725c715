"""The agent contract: what a turn gets, what it gives back, and the model seam."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

Author = Literal["member", "agent", "operator", "system"]


@dataclass(frozen=True)
class Utterance:
    """One earlier message of the conversation, oldest first."""

    author: Author
    text: str


@dataclass(frozen=True)
class TurnInput:
    """Everything a model may use to answer one member message."""

    text: str
    channel: str
    member_name: str | None = None
    history: tuple[Utterance, ...] = ()


@dataclass(frozen=True)
class EscalationRequest:
    """The agent wants a person on this conversation, and says why."""

    reason: str
    trigger: str


@dataclass(frozen=True)
class TurnResult:
    """The replies to send, in order, and whether to hand the conversation to a person."""

    replies: tuple[str, ...]
    escalation: EscalationRequest | None = None
    meta: dict[str, str] = field(default_factory=dict)


class Model(Protocol):
    """Something that answers a turn: the embedded model, or a LangChain chat model."""

    async def respond(self, turn: TurnInput) -> TurnResult:
        """Answer one member message. May raise; the runtime turns failures into a holding reply."""
        ...
