"""The agent contract: what a turn gets, what it gives back, and the model seam."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from people.roles import Role
from store.payloads import CallAction

if TYPE_CHECKING:
    from agents.workflows import WorkflowState

Author = Literal["member", "agent", "operator", "system"]


@dataclass(frozen=True)
class Utterance:
    """One earlier message of the conversation, oldest first."""

    author: Author
    text: str


@dataclass(frozen=True)
class MemberFacts:
    """What the agent knows of the member it is talking to (and may put in its prompt)."""

    id: int
    kind: str
    role: str
    name: str | None = None
    email: str | None = None
    phone: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TurnInput:
    """Everything a model may use to answer one member message."""

    text: str
    channel: str
    member_name: str | None = None
    history: tuple[Utterance, ...] = ()
    member: MemberFacts | None = None
    conversation_id: int | None = None
    workflow: WorkflowState | None = None  # where the conversation is in a workflow
    role: Role = field(default_factory=Role)  # what the conversation grants its abilities


@dataclass(frozen=True)
class EscalationRequest:
    """The agent wants a person on this conversation, and says why."""

    reason: str
    trigger: str
    workflow: str | None = None  # the workflow that asked (a step, or its failure)


@dataclass(frozen=True)
class WorkflowUpdate:
    """A turn moved the conversation's workflow: its new position (None: it ended)."""

    state: WorkflowState | None


@dataclass(frozen=True)
class TurnResult:
    """The replies to send, in order, and whether to hand the conversation to a person.

    ``collected`` holds workflow answers accepted this turn (field -> value), with their
    types in ``field_types``; they are saved on the member with the replies, atomically.
    """

    replies: tuple[str, ...]
    escalation: EscalationRequest | None = None
    meta: dict[str, str] = field(default_factory=dict)
    workflow: WorkflowUpdate | None = None  # None: unchanged
    collected: dict[str, Any] = field(default_factory=dict)
    field_types: dict[str, str] = field(default_factory=dict)
    actions: tuple[CallAction, ...] = ()  # call controls for a voice channel
