"""Operator groups: who may take which handed-off conversations live (``escalation.operators``).

The live operator mode is off unless ``escalation.operators.enabled`` is true (the
``operators`` feature flag). A group names its members (team members by email, by role,
or by a member filter), the workflows and inboxes it handles (``*``: all), how many
conversations each of its operators holds at once, and how long a handoff waits in its
queue before the notification rules are used.

Who is *qualified* for a conversation is decided here (``refusal``), from the group and
the operator's role together: the role must reach ``chats: edit``, ``send`` on its
inbox, and for a workflow's conversation have ``workflows: use`` and take part in that
workflow; a workflow a qualification unlocks also needs the member to hold it. A role
changed through the API applies at once.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from escalation.hours import BusinessHoursSettings
from people.filters import compile_filter
from people.roles import Need, Role, RoleBook, allows
from store.errors import ValidationFailed, repeats

ALL = "*"


class OperatorGroup(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    members: list[str] = Field(default_factory=list, description="Team members' email addresses.")
    role: str | None = Field(default=None, description="...or everyone with this role...")
    filter: dict[str, Any] | None = Field(default=None, description="...or a member filter.")
    workflows: list[str] = Field(default=[ALL], description="Workflows handled; '*': any.")
    inboxes: list[str] = Field(default=[ALL], description="Inbox addresses handled; '*': any.")
    capacity: int = Field(default=3, ge=1, le=100, description="Conversations per operator.")
    hours: BusinessHoursSettings | None = Field(
        default=None, description="Business hours of its own (else the workspace's)."
    )
    offer_timeout_seconds: float = Field(
        default=60, gt=0, le=3600,
        description="An offer not taken by then goes back to the queue.",
    )  # fmt: skip
    queue_timeout_seconds: float = Field(
        default=120, gt=0, le=86_400,
        description="A queued handoff nobody took by then goes to the notification rules.",
    )  # fmt: skip

    @field_validator("members")
    @classmethod
    def _emails(cls, emails: list[str]) -> list[str]:
        return [e.strip().lower() for e in emails]

    @model_validator(mode="after")
    def _someone(self) -> OperatorGroup:
        given = [bool(self.members), self.role is not None, self.filter is not None]
        if sum(given) != 1:
            raise ValueError("give exactly one of members, role or filter")
        try:
            compile_filter(self.condition(), "sqlite")
        except ValidationFailed as exc:
            where = "; ".join(f"{d.path}: {d.message}" for d in exc.details)
            raise ValueError(f"filter: {where or exc.message}") from None
        return self

    def condition(self) -> dict[str, Any]:
        """The group's members as a member filter (DESIGN §6)."""
        if self.members:
            return {"field": "email", "op": "in", "value": self.members}
        if self.role is not None:
            return {"field": "role", "op": "eq", "value": self.role}
        return self.filter or {}

    def handles(self, conversation: Routed) -> bool:
        workflow = conversation.workflow
        return (ALL in self.inboxes or conversation.inbox in self.inboxes) and (
            ALL in self.workflows or workflow is None or workflow in self.workflows
        )


class OperatorSettings(BaseModel):
    """``escalation.operators``: the live operator mode."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = Field(default=False, description="The `operators` feature flag.")
    heartbeat_ttl_seconds: float = Field(
        default=30, ge=2, le=600,
        description="An operator whose console stops beating for this long goes offline.",
    )  # fmt: skip
    groups: list[OperatorGroup] = Field(default_factory=list)
    slack_live_hours: float = Field(
        default=8, gt=0, le=24,
        description="How long `/frontdesk live` in Slack lasts (Slack sends no heartbeats).",
    )  # fmt: skip

    @field_validator("groups")
    @classmethod
    def _unique(cls, groups: list[OperatorGroup]) -> list[OperatorGroup]:
        for i in repeats([g.name for g in groups]):
            raise ValueError(f"[{i}].name: '{groups[i].name}' is used twice")
        return groups


class Routed(Protocol):
    """What routing needs of a conversation (a ``Conversation``, or a row of its columns)."""

    @property
    def member_id(self) -> int: ...

    @property
    def inbox(self) -> str: ...

    @property
    def workflow(self) -> str | None: ...


class Someone(Protocol):
    """What deciding needs of a member (a ``Member``, or a row with these columns)."""

    @property
    def id(self) -> int: ...

    @property
    def kind(self) -> str: ...

    @property
    def archived(self) -> bool: ...

    @property
    def role(self) -> str: ...


def may_read_workflow(role: Role, workflow: str | None) -> str | None:
    """Why ``role`` may not see a conversation of ``workflow`` (None when it may, or when
    the conversation follows no workflow): it needs ``workflows: use`` and the workflow in
    its list (``*``: all)."""
    if workflow is None:
        return None
    if not allows(role, Need(feature="workflows", level="use")):
        return f"your role has no access to workflows (workflow '{workflow}')"
    if not allows(role, Need(workflow=workflow)):
        return f"your role does not take part in workflow '{workflow}'"
    return None


def refusal(
    book: RoleBook,
    member: Someone,
    conversation: Routed,
    qualified: Collection[int] | None = None,
) -> str | None:
    """Why ``member`` may not answer ``conversation`` as an operator (None when they may).

    The one gate for routing, taking, replying (console, API, Slack thread, notification
    call) and the board: an active team member whose role has ``chats: edit`` and
    ``send`` on the inbox and, for a workflow's conversation, ``workflows: use`` and that
    workflow in its list; ``qualified`` (who holds a qualification the workflow requires,
    None when it requires none) must include them. The reason names the first unmet one.
    """
    if member.kind != "team" or member.archived:
        return "only active team members answer customers"
    role = book.get(member.role)
    if not allows(role, Need(feature="chats", level="edit")):
        return "your role may not answer chats (it needs chats: edit)"
    if not allows(role, Need(inbox=conversation.inbox, inbox_right="send")):
        return f"your role may not send on {conversation.inbox}"
    why = may_read_workflow(role, conversation.workflow)
    if why is not None:
        return why
    if qualified is not None and member.id not in qualified:
        return f"you are not qualified for workflow '{conversation.workflow}'"
    return None


def may_take(book: RoleBook, member: Someone, conversation: Routed) -> bool:
    """Whether ``member``'s role lets them answer ``conversation`` as an operator
    (qualifications aside: routing checks those in bulk)."""
    return refusal(book, member, conversation) is None


@dataclass(frozen=True)
class Seat:
    """A live operator as routing sees them: in which group, how loaded."""

    member_id: int
    group: str
    load: int
    capacity: int
    since: float  # when they went live (earlier wins a tie)

    @property
    def free(self) -> bool:
        return self.load < self.capacity
