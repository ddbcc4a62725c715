"""Roles and the one policy function that decides every request (DESIGN §7).

A role has ``admin_access``, ``workspace_management``, a level per feature
(``none < use < edit < create < admin``), the workflows it may take part in, and per-inbox
``read``/``send``. ``allows(role, need)`` is the only place a permission is decided.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import StoredRole, utcnow

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
Name = Annotated[str, StringConstraints(pattern=r"^(\*|[A-Za-z0-9_.-]{1,64})$")]
InboxName = Annotated[str, StringConstraints(pattern=r"^[^\x00-\x1f]{1,320}$")]


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
    workflows: tuple[Name, ...] = Field(default=(), description="Workflow names, or ['*'].")
    inboxes: dict[InboxName, InboxAccess] = Field(
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


def _inboxes_within(candidate: Role, actor: Role) -> bool:
    for inbox, access in candidate.inboxes.items():
        mine = actor.inbox(inbox) if inbox != ALL_INBOXES else actor.inboxes.get(ALL_INBOXES)
        if mine is None:
            mine = InboxAccess()
        if (access.read and not (mine.read or mine.send)) or (access.send and not mine.send):
            return False
    return True


def at_most(candidate: Role, actor: Role) -> bool:
    """Whether ``candidate`` grants nothing ``actor`` lacks (the rule for granting roles)."""
    if candidate.admin_access and not actor.admin_access:
        return False
    if candidate.workspace_management and not actor.workspace_management:
        return False
    if any(not at_least(actor.level(f), candidate.level(f)) for f in FEATURES):
        return False
    if "*" not in actor.workflows and not set(candidate.workflows) <= set(actor.workflows):
        return False
    return _inboxes_within(candidate, actor)


OWNER = "owner"
CONTACT = "contact"  # the role new contacts and anonymous members get
ADMIN_KINDS = ("team",)  # the only kind of member that may hold a role with admin_access


def at_least_as_strong(actor: Role, target: Role) -> bool:
    """Whether ``actor`` is at least as strong as ``target`` (see docs/permissions.md).

    It is when ``target`` grants nothing ``actor`` lacks: ``admin_access`` and
    ``workspace_management`` where ``target`` has them; every feature at ``target``'s level
    or above; every workflow ``target`` takes part in (``*`` covers all); and on every inbox
    ``target`` reads or sends on, the same right (``send`` implies ``read``; ``*`` covers
    every inbox). Equal roles are each at least as strong as the other.
    """
    return at_most(target, actor)


def may_grant(actor_role_name: str, actor: Role, target_role_name: str, target: Role) -> str | None:
    """Why ``actor`` may not hand out ``target`` (None when it may).

    Nobody grants a role above their own; only owners make owners (``admin`` has the same
    permissions as ``owner`` but "cannot change owners", DESIGN §7).
    """
    if target_role_name == OWNER and actor_role_name != OWNER:
        return "only an owner may grant the owner role"
    if not at_least_as_strong(actor, target):
        return f"role '{target_role_name}' grants more than your role '{actor_role_name}'"
    return None


def may_manage(
    actor_role_name: str, actor: Role, target_role_name: str, target: Role
) -> str | None:
    """Why ``actor`` may not act on a member holding ``target`` (None when it may).

    Changing a member -- editing, archiving, merging it or into it, attaching an identity
    that moves it, setting its password, revoking its tokens -- needs a role at least as
    strong as the member's own (``at_least_as_strong``); only owners act on owners.
    """
    if target_role_name == OWNER and actor_role_name != OWNER:
        return "only an owner may change an owner"
    if not at_least_as_strong(actor, target):
        return (
            f"the member's role '{target_role_name}' is stronger than your role '{actor_role_name}'"
        )
    return None


def kind_refusal(kind: str, role_name: str, role: Role) -> str | None:
    """Why a member of ``kind`` may not hold ``role`` (None when it may): only team members
    hold a role with ``admin_access`` -- a contact or an anonymous caller never signs in."""
    if role.admin_access and kind not in ADMIN_KINDS:
        return (
            f"a {kind} member cannot hold role '{role_name}': it has admin_access, "
            "which only team members may hold"
        )
    return None


class RoleBook:
    """Roles as this workspace has them: built-ins, then YAML, then those set through the API."""

    def __init__(self, configured: Mapping[str, Role], stored: Mapping[str, Role]) -> None:
        self._roles = {**BUILTIN_ROLES, **configured, **stored}
        self._stored = set(stored)
        self._configured = set(BUILTIN_ROLES) | set(configured)

    def get(self, name: str) -> Role:
        """The role called ``name``; an unknown name grants nothing."""
        return self._roles.get(name, Role())

    def __contains__(self, name: object) -> bool:
        return name in self._roles

    def names(self) -> list[str]:
        return sorted(self._roles)

    def source(self, name: str) -> str:
        """Where the role comes from: ``api`` (stored), ``config`` (YAML or built-in)."""
        return "api" if name in self._stored else "config"

    def items(self) -> list[tuple[str, Role]]:
        return sorted(self._roles.items())


async def load_book(session: AsyncSession, configured: Mapping[str, Role]) -> RoleBook:
    rows = await session.execute(select(StoredRole.name, StoredRole.definition))
    stored = {name: Role.model_validate(definition) for name, definition in rows}
    return RoleBook(configured, stored)


async def save(session: AsyncSession, name: str, role: Role) -> None:
    existing = await session.get(StoredRole, name)
    definition = role.model_dump(mode="json")
    if existing is None:
        session.add(StoredRole(name=name, definition=definition, updated_at=utcnow()))
    else:
        existing.definition = definition
        existing.updated_at = utcnow()
    await session.flush()


async def delete(session: AsyncSession, name: str) -> bool:
    """Remove an API-defined role; False when there was none."""
    existing = await session.get(StoredRole, name)
    if existing is None:
        return False
    await session.delete(existing)
    await session.flush()
    return True
