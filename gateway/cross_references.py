"""The references between sections of the configuration, checked in the same run as the
fields: a channel's agent, an agent's workflows, a workflow's agent and abilities, a
qualification's workflows and models. What validated is checked even when something else
did not (``Parts.salvage``), so every error is listed in one run."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ValidationError

from agents.settings import AgentSettings, check_model
from agents.workflow_steps import UseAbility, WorkflowSettings
from channels.base import ChannelSettings
from people.qualifications import QualificationSettings, language_models, unknown_workflows
from store.errors import ErrorDetail, repeats

if TYPE_CHECKING:
    from gateway.settings import Settings

M = TypeVar("M", bound=BaseModel)


def _channel_agents(raw: Any, valid: Mapping[str, ChannelSettings]) -> dict[str, set[str]]:
    """The agents each channel names: a valid one's own answer; for one that did not validate,
    the ``agent`` fields it has (its own, and its items', like email's inboxes)."""
    named = {name: section.agents() for name, section in valid.items()}
    for name, section in (raw if isinstance(raw, dict) else {}).items():
        if name in named or not isinstance(section, dict):
            continue
        found = {section.get("agent")}
        for value in section.values():
            if isinstance(value, list):
                found |= {item.get("agent") for item in value if isinstance(item, dict)}
        named[str(name)] = {a for a in found if isinstance(a, str)}
    return named


@dataclass(frozen=True)
class Parts:
    """What validated, for the cross-references even when something else did not: items by
    their index in the YAML, and the names every item declares (valid or not), so that an
    agent with a bad field is reported for that field, not also as unknown. A section that
    is not a list at all has names ``None``: references to it are not checked."""

    channels: Mapping[str, ChannelSettings]
    channel_agents: dict[str, set[str]]  # every configured channel, valid or not
    agents: dict[int, AgentSettings]
    workflows: dict[int, WorkflowSettings]
    qualifications: dict[int, QualificationSettings]
    agent_names: list[str | None] | None
    workflow_names: list[str | None] | None
    qualification_names: list[str | None] | None

    @classmethod
    def of(cls, settings: Settings) -> Parts:
        return cls(
            settings.channels,
            {name: section.agents() for name, section in settings.channels.items()},
            dict(enumerate(settings.agents)),
            dict(enumerate(settings.workflows)),
            dict(enumerate(settings.qualifications)),
            [a.name for a in settings.agents],
            [w.name for w in settings.workflows],
            [q.name for q in settings.qualifications],
        )

    @classmethod
    def salvage(cls, raw: Mapping[str, Any], channels: Mapping[str, ChannelSettings]) -> Parts:
        """The parts of a document that did not validate as a whole."""
        agents, agent_names = _items(raw.get("agents"), AgentSettings)
        workflows, workflow_names = _items(raw.get("workflows"), WorkflowSettings)
        qualifications, names = _items(raw.get("qualifications"), QualificationSettings)
        return cls(
            channels, _channel_agents(raw.get("channels"), channels), agents, workflows,
            qualifications, agent_names, workflow_names, names,
        )  # fmt: skip


def _items(raw: Any, model: type[M]) -> tuple[dict[int, M], list[str | None] | None]:
    """Each item of a list section that validates on its own, and every item's name."""
    if raw is None:
        return {}, []
    if not isinstance(raw, list):
        return {}, None
    valid: dict[int, M] = {}
    for i, item in enumerate(raw):
        # An invalid item was reported already, by the validation of the whole document.
        with contextlib.suppress(ValidationError):
            valid[i] = model.model_validate(item)
    names = [_name(item) for item in raw]
    return valid, names


def _name(item: Any) -> str | None:
    name = item.get("name") if isinstance(item, dict) else None
    return name if isinstance(name, str) else None


def cross_check(parts: Parts) -> list[ErrorDetail]:
    errors = []
    for i in repeats([n or "" for n in parts.agent_names or []]):
        name = (parts.agent_names or [])[i]
        if name:
            errors.append(ErrorDetail(f"agents[{i}].name", f"duplicate agent name '{name}'"))
    agents = {n for n in parts.agent_names or [] if n}
    known = ", ".join(sorted(agents)) or "none defined"
    deployed = {a.name: a.channels for a in parts.agents.values() if a.channels}
    for name, named in parts.channel_agents.items():
        for agent_name in sorted(named - agents if parts.agent_names is not None else ()):
            errors.append(
                ErrorDetail(f"channels.{name}.agent", f"no agent named '{agent_name}' ({known})")
            )
    for name, section in parts.channels.items():
        agent_name = section.agent
        if agent_name in deployed and name not in deployed[agent_name]:
            listed = ", ".join(deployed[agent_name])
            errors.append(ErrorDetail(
                f"channels.{name}.agent",
                f"agent '{agent_name}' is not deployed to {name} (its channels: {listed})",
            ))  # fmt: skip
    errors.extend(_check_workflows(parts, agents, known))
    errors.extend(_check_qualifications(parts))
    return errors


def unstartable_models(qualification: QualificationSettings) -> list[ErrorDetail]:
    """The models ``qualification`` names that LangChain cannot start here (an unknown
    provider, or its package missing), at their paths."""
    errors = []
    for path, model in language_models(qualification):
        try:
            check_model(model.model)
        except ValueError as exc:
            errors.append(ErrorDetail(f"{path}.model", str(exc)))
    return errors


def _check_qualifications(parts: Parts) -> list[ErrorDetail]:
    errors = []
    for i, qualification in parts.qualifications.items():
        for error in unstartable_models(qualification):
            errors.append(ErrorDetail(f"qualifications[{i}].{error.path}", error.message))
    names = parts.qualification_names or []
    for i in repeats([n or "" for n in names]):
        if names[i]:
            errors.append(
                ErrorDetail(f"qualifications[{i}].name", f"duplicate qualification '{names[i]}'")
            )
    if parts.workflow_names is None:
        return errors
    workflows = {n for n in parts.workflow_names if n}
    for i, qualification in parts.qualifications.items():
        for error in unknown_workflows(qualification, workflows):
            errors.append(ErrorDetail(f"qualifications[{i}].{error.path}", error.message))
    return errors


def _check_workflows(parts: Parts, agents: set[str], known: str) -> list[ErrorDetail]:
    errors = []
    names = parts.workflow_names or []
    checks_agents = parts.agent_names is not None
    for i in repeats([n or "" for n in names]):
        if names[i]:
            errors.append(ErrorDetail(f"workflows[{i}].name", f"duplicate workflow '{names[i]}'"))
    for i, workflow in parts.workflows.items():
        where = f"workflows[{i}]"
        if checks_agents and workflow.agent is not None and workflow.agent not in agents:
            errors.append(
                ErrorDetail(f"{where}.agent", f"no agent named '{workflow.agent}' ({known})")
            )
        for j, step in enumerate(workflow.steps):
            if checks_agents and step.agent is not None and step.agent not in agents:
                errors.append(
                    ErrorDetail(
                        f"{where}.steps[{j}].agent", f"no agent named '{step.agent}' ({known})"
                    )
                )
            if isinstance(step, UseAbility):
                runners = {step.agent or workflow.agent} - {None} or {
                    a.name for a in parts.agents.values() if workflow.name in a.workflows
                }
                lacking = sorted(
                    a.name
                    for a in parts.agents.values()
                    if a.name in runners and step.ability not in a.abilities
                )
                if lacking:
                    errors.append(ErrorDetail(
                        f"{where}.steps[{j}].ability",
                        f"'{step.ability}' is not among the abilities of {', '.join(lacking)}",
                    ))  # fmt: skip
    for i, agent in parts.agents.items():
        for j, name in enumerate(agent.workflows):
            if parts.workflow_names is not None and name not in names:
                listed = ", ".join(sorted(n for n in names if n)) or "none defined"
                errors.append(
                    ErrorDetail(
                        f"agents[{i}].workflows[{j}]", f"no workflow named '{name}' ({listed})"
                    )
                )
        for j, channel in enumerate(agent.channels):
            if channel not in parts.channels:
                errors.append(
                    ErrorDetail(
                        f"agents[{i}].channels[{j}]", f"channel '{channel}' is not configured"
                    )
                )
    return errors
