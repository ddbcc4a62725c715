"""Roles and the one policy function that decides every request (DESIGN §7).

A role has ``admin_access``, ``workspace_management``, a level per feature
(``none < use < edit < create < admin``), the workflows it may take part in, and per-inbox
``read``/``send``. ``allows(role, need)`` is the only place a permission is decided.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Level = Literal["none", "use", "edit", "create", "admin"]
Feature = Literal[
    "chats", "workflows", "data", "files", "members", "agents", "operators", "qualifications"
]
LEVELS: tuple[Level, ...] = ("none", "use", "edit", "create", "admin")
FEATURES: tuple[Feature, ...] = (
    "chats",
    "workflows",
    "data",
    "files",
    "members",
    "agents",
    "operators",
    "qualifications",
)
ALL_INBOXES = "*"


class InboxAccess(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    read: bool = False
    send: bool = False


class Role(BaseModel):
    """What a member holding this role may do. Features not listed are ``none``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    admin_access: bool = False
    workspace_management: bool = False
    features: dict[Feature, Level] = Field(default_factory=dict)
    workflows: tuple[str, ...] = Field(default=(), description="Workflow names, or ['*'].")
    inboxes: dict[str, InboxAccess] = Field(
        default_factory=dict, description="Per inbox address (or '*' for all): read/send."
    )

    def level(self, feature: Feature) -> Level:
        return self.features.get(feature, "none")

    def inbox(self, inbox: str) -> InboxAccess:
        return self.inboxes.get(inbox) or self.inboxes.get(ALL_INBOXES) or InboxAccess()


_ALL_ADMIN: dict[Feature, Level] = dict.fromkeys(FEATURES, "admin")
_EVERY_INBOX = {ALL_INBOXES: InboxAccess(read=True, send=True)}

BUILTIN_ROLES: dict[str, Role] = {
    "owner": Role(
        admin_access=True,
        workspace_management=True,
        features=_ALL_ADMIN,
        workflows=("*",),
        inboxes=_EVERY_INBOX,
    ),
    "admin": Role(
        admin_access=True,
        workspace_management=True,
        features=_ALL_ADMIN,
        workflows=("*",),
        inboxes=_EVERY_INBOX,
    ),
    "operator": Role(
        admin_access=True,
        features={
            "chats": "edit",
            "members": "use",
            "data": "use",
            "files": "use",
            "workflows": "use",
            "operators": "use",
            "qualifications": "use",
            "agents": "none",
        },
        workflows=("*",),
        inboxes=_EVERY_INBOX,
    ),
    "contact": Role(),
}


@dataclass(frozen=True)
class Need:
    """What an action requires. Unset parts are not required."""

    feature: Feature | None = None
    level: Level = "use"
    admin_access: bool = False
    workspace_management: bool = False
    workflow: str | None = None
    inbox: str | None = None
    inbox_right: Literal["read", "send"] = "read"


def at_least(have: Level, need: Level) -> bool:
    return LEVELS.index(have) >= LEVELS.index(need)


def allows(role: Role, need: Need) -> bool:
    """Whether ``role`` satisfies every part of ``need``."""
    if need.admin_access and not role.admin_access:
        return False
    if need.workspace_management and not role.workspace_management:
        return False
    if need.feature is not None and not at_least(role.level(need.feature), need.level):
        return False
    if need.workflow is not None and not ({"*", need.workflow} & set(role.workflows)):
        return False
    if need.inbox is not None:
        access = role.inbox(need.inbox)
        return access.send if need.inbox_right == "send" else (access.read or access.send)
    return True
