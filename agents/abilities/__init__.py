"""Abilities (DESIGN §8): what an agent can do beyond talking. One module each; a registry.

An ability module defines a class with ``name``, ``description`` (for the model),
``settings_model`` (its YAML settings under ``agents[].abilities.<name>``), ``arguments``
(a pydantic model: the tool's JSON schema, and what every call is validated against) and
``async run(context, arguments) -> AbilityResult``. Adding one is that module plus one line
in ``REGISTRY``.

Every call goes through ``call``, which checks, inside the ability and not only by hiding
the tool from the model, that the agent has the ability and that the conversation's role
permits it; it logs the call and counts it in metrics. An ability never runs with more
than the conversation grants: a customer's conversation grants what the customer's role
grants (for a contact, nothing beyond itself).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agents.base import EscalationRequest, MemberFacts
from people.roles import Need, Role, allows
from store.errors import own_errors
from store.payloads import CallAction
from store.text import text_problem

log = logging.getLogger(__name__)

REGISTRY: dict[str, str] = {
    "supervisor_escalation": "agents.abilities.supervisor_escalation",
    "calendar_booking": "agents.abilities.calendar_booking",
    "data_query": "agents.abilities.data_query",
    "file_access": "agents.abilities.file_access",
    "web_search": "agents.abilities.web_search",
    "custom_tool": "agents.abilities.custom_tool",
    "phone_controls": "agents.abilities.phone_controls",
}
# Named by DESIGN §8; each arrives with its own module.
PLANNED: tuple[str, ...] = ()


@dataclass(frozen=True)
class AbilityContext:
    """Who an ability acts for: the conversation, its member and the role it grants."""

    agent: str
    channel: str
    conversation_id: int | None
    member: MemberFacts | None
    role: Role
    abilities: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # granted -> settings
    sessions: async_sessionmaker[AsyncSession] | None = None  # the store, where there is one
    timezone: str = "UTC"  # the workspace's


@dataclass(frozen=True)
class AbilityResult:
    """What the model (or the workflow) gets back, and any hand-off it asked for."""

    text: str
    escalation: EscalationRequest | None = None
    refused: bool = False
    actions: tuple[CallAction, ...] = ()  # for the channel (phone controls)


class Ability(Protocol):
    name: ClassVar[str]
    description: ClassVar[str]
    settings_model: ClassVar[type[BaseModel]]
    arguments: ClassVar[type[BaseModel]]
    need: ClassVar[Need]  # what the conversation's role must allow (Need() for nothing)

    async def run(self, context: AbilityContext, arguments: BaseModel) -> AbilityResult: ...


def load(name: str) -> Ability:
    module = importlib.import_module(REGISTRY[name])
    ability: Ability = module.ABILITY
    return ability


def check_abilities(raw: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Validate ``agents[].abilities``: known names, each with valid settings."""
    problems = []
    checked: dict[str, dict[str, Any]] = {}
    for name, settings in raw.items():
        if name in PLANNED:
            problems.append(f"ability '{name}' is not available in this version yet")
            continue
        if name not in REGISTRY:
            known = ", ".join(sorted(REGISTRY))
            problems.append(f"unknown ability '{name}' (known: {known})")
            continue
        try:
            model = load(name).settings_model.model_validate(settings)
        except ValidationError as exc:
            for error in own_errors(exc):
                where = ".".join(str(p) for p in (name, *error["loc"]))
                problems.append(f"{where}: {error['msg'].removeprefix('Value error, ')}")
            continue
        checked[name] = model.model_dump()
    if problems:
        raise ValueError("; ".join(problems))
    return checked


Count = Callable[[str, str], None]  # (ability, outcome) -> count it


def _no_count(name: str, outcome: str) -> None:
    return None


async def call(
    context: AbilityContext, name: str, raw_arguments: Any, count: Count = _no_count
) -> AbilityResult:
    """Run ability ``name`` for ``context`` -- if the agent has it and the role allows it.

    Never raises for the ability's own faults: an exception of any type inside the ability
    is answered as a refusal (``refused=True``) naming the exception's type, and counted as
    outcome ``failed``. Cancellation (the turn's deadline) still propagates.
    """
    if name not in context.abilities or name not in REGISTRY:
        log.warning("agent %s asked for ability %s it does not have", context.agent, name)
        count(name if name in REGISTRY else "unknown", "refused")
        return AbilityResult(f"'{name}' is not something I can do here.", refused=True)
    ability = load(name)
    if not allows(context.role, ability.need):
        log.warning("ability %s refused: the conversation's role does not allow it", name)
        count(name, "refused")
        return AbilityResult(f"I'm not allowed to use {name} in this conversation.", refused=True)
    try:
        arguments = ability.arguments.model_validate(raw_arguments or {})
    except ValidationError as exc:
        count(name, "invalid")
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}"
            for e in own_errors(exc)
        )
        return AbilityResult(f"Invalid arguments for {name}: {problems}", refused=True)
    try:
        result = await ability.run(context, arguments)
    except Exception as exc:
        # An ability is the boundary of its own faults: whatever it raised is its refusal,
        # which the model (or the workflow's on_failure) can work with; the turn goes on.
        # Only the exception's type reaches the model: its message may carry a tool's URL.
        log.exception("ability %s failed for conversation %s", name, context.conversation_id)
        count(name, "failed")
        return AbilityResult(f"{name} failed ({type(exc).__name__}).", refused=True)
    problem = text_problem(result.text)
    if problem is not None:
        # A tool answered something the store cannot hold: said to the customer or kept in
        # the transcript it would fail the turn on PostgreSQL (and be cut on SQLite).
        log.warning("ability %s answered with %s; refused", name, problem)
        count(name, "failed")
        return AbilityResult(f"{name} failed (its answer holds {problem}).", refused=True)
    count(name, "refused" if result.refused else "ok")
    log.info("ability %s ran for conversation %s%s", name, context.conversation_id,
             " (refused)" if result.refused else "")  # fmt: skip
    return result
