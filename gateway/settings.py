"""Settings: one frozen pydantic tree, loaded from YAML and validated before the port is bound.

Each package owns the model of its own section (``store.settings``, ``agents.settings``,
each channel module's ``settings_model``); this module composes them. Loading:

1. YAML is parsed (a syntax error names its line and column).
2. ``${VAR}`` in any string is replaced by the environment variable; ``${VAR:-default}``
   falls back to ``default``. An unset variable without a default is an error naming it.
3. ``FRONTDESK_DATABASE_URL`` and ``FRONTDESK_REDIS_URL`` override ``storage``.
4. Each section is validated; every error carries its YAML path
   (``agents[1].model: unknown provider 'foo'``) and all of them are reported at once.
"""

from __future__ import annotations

import contextlib
import os
import re
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import phonenumbers
import yaml
from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, ValidationError, field_validator

import channels
from agents.settings import AgentSettings, check_model
from agents.workflows import UseAbility, WorkflowSettings
from channels.base import ChannelSettings
from escalation.settings import EscalationSettings
from people.qualifications import QualificationSettings, language_models, unknown_workflows
from people.roles import BUILTIN_ROLES, Role
from people.settings import PeopleSettings
from store.errors import ConfigError, ErrorDetail, own_errors, repeats
from store.settings import StorageSettings

M = TypeVar("M", bound=BaseModel)

DEFAULT_CONFIG = "config/frontdesk.yaml"
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class WorkspaceSettings(BaseModel):
    """``workspace``: who this is and how outsiders reach it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    public_url: str | None = Field(
        default=None, description="The URL providers call (and sign); the request URL if unset."
    )
    default_region: str = Field(default="US", description="Region for numbers without a +code.")
    timezone: str = "UTC"

    @field_validator("public_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/\s]+(/\S*)?$", value):
            raise ValueError(f"'{value}' is not an http(s) URL")
        return value.rstrip("/") if value else value

    @field_validator("default_region")
    @classmethod
    def _region(cls, value: str) -> str:
        if value.upper() not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"'{value}' is not a region code (like US, GB, DE)")
        return value.upper()

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone '{value}'") from None
        return value


class GatewaySettings(BaseModel):
    """``gateway``: how this process works. The defaults suit one process."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    workers: int = Field(
        default=32,
        ge=0,
        le=256,
        description="Agent turns and deliveries run at once; 0 makes an accept-only process.",
    )
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024, description="Webhook body limit.")
    sweep_seconds: float = Field(
        default=10.0, gt=0, description="How often unfinished work left by others is picked up."
    )
    outbox_max_attempts: int = Field(default=8, ge=1)
    outbox_backoff_seconds: float = Field(default=1.0, gt=0, description="First retry delay.")
    outbox_lease_seconds: float = Field(default=60.0, gt=0)
    history_turns: int = Field(default=20, ge=0, description="Earlier messages an agent sees.")


class Settings(BaseModel):
    """The whole workspace configuration."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    workspace: WorkspaceSettings
    storage: StorageSettings = StorageSettings()
    gateway: GatewaySettings = GatewaySettings()
    channels: dict[str, SerializeAsAny[ChannelSettings]] = Field(default_factory=dict)
    agents: tuple[AgentSettings, ...] = ()
    workflows: tuple[WorkflowSettings, ...] = ()
    escalation: EscalationSettings = EscalationSettings()
    people: PeopleSettings = PeopleSettings()
    qualifications: tuple[QualificationSettings, ...] = ()
    roles: dict[str, Role] = Field(
        default_factory=dict, description="Roles by name; these replace built-ins of that name."
    )

    def all_roles(self) -> dict[str, Role]:
        """The built-in roles with the workspace's own roles laid over them."""
        return {**BUILTIN_ROLES, **self.roles}

    def role(self, name: str) -> Role:
        """The role called ``name``; an unknown name grants nothing."""
        return self.all_roles().get(name, Role())

    def channel(self, name: str) -> ChannelSettings:
        try:
            return self.channels[name]
        except KeyError:
            raise ConfigError(f"channel '{name}' is not configured") from None


def _path(loc: tuple[int | str, ...], prefix: str = "") -> str:
    out = prefix
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _details(exc: ValidationError, prefix: str = "") -> list[ErrorDetail]:
    details = []
    for error in own_errors(exc):
        message = error["msg"].removeprefix("Value error, ")
        details.append(ErrorDetail(_path(tuple(error["loc"]), prefix), message))
    return details


def substitute_env(
    node: Any, env: Mapping[str, str], path: str = "", errors: list[ErrorDetail] | None = None
) -> Any:
    """``node`` with ``${VAR}`` references replaced; unset ones are added to ``errors``."""
    errors = errors if errors is not None else []
    if isinstance(node, dict):
        return {k: substitute_env(v, env, _path((str(k),), path), errors) for k, v in node.items()}
    if isinstance(node, list):
        return [substitute_env(v, env, f"{path}[{i}]", errors) for i, v in enumerate(node)]
    if not isinstance(node, str):
        return node

    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        errors.append(ErrorDetail(path, f"environment variable {name} is not set"))
        return ""

    return _ENV_REF.sub(replace, node)


def _validate_channels(raw: Any, errors: list[ErrorDetail]) -> dict[str, ChannelSettings]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        errors.append(ErrorDetail("channels", "must be a mapping of channel name to settings"))
        return {}
    validated: dict[str, ChannelSettings] = {}
    for name, section in raw.items():
        try:
            cls = channels.load(str(name))
        except ConfigError as exc:
            errors.append(ErrorDetail(f"channels.{name}", exc.message))
            continue
        section = dict(section or {})
        if name == "voice" and isinstance(raw.get("sms"), dict):
            for key in ("account_sid", "auth_token", "api_base_url"):  # SMS's account
                if key in raw["sms"]:
                    section.setdefault(key, raw["sms"][key])
        try:
            validated[name] = cls.settings_model.model_validate(section)
        except ValidationError as exc:
            errors.extend(_details(exc, f"channels.{name}"))
    return validated


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
class _Parts:
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
    def of(cls, settings: Settings) -> _Parts:
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
    def salvage(cls, raw: Mapping[str, Any], channels: Mapping[str, ChannelSettings]) -> _Parts:
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


def _cross_check(parts: _Parts) -> list[ErrorDetail]:
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


def _check_qualifications(parts: _Parts) -> list[ErrorDetail]:
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


def _check_workflows(parts: _Parts, agents: set[str], known: str) -> list[ErrorDetail]:
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


def from_mapping(raw: Any, env: Mapping[str, str] | None = None) -> Settings:
    """Validate a parsed YAML document; ``ConfigError.details`` lists every problem."""
    return _validate(raw, os.environ if env is None else env, [])


def _validate(raw: Any, env: Mapping[str, str], errors: list[ErrorDetail]) -> Settings:
    """``raw`` as settings, or a ``ConfigError`` with ``errors`` and every problem found:
    the fields' and, as far as the parts that are valid allow, the cross-references'."""
    if not isinstance(raw, dict):
        errors.append(ErrorDetail("", "the file must be a mapping"))
        raise ConfigError(_invalid(errors), errors)
    raw = substitute_env(raw, env, "", errors)
    storage = dict(raw.get("storage") or {})
    if env.get("FRONTDESK_DATABASE_URL"):
        storage["database_url"] = env["FRONTDESK_DATABASE_URL"]
    if env.get("FRONTDESK_REDIS_URL"):
        storage["redis_url"] = env["FRONTDESK_REDIS_URL"]
    channels_ = _validate_channels(raw.get("channels"), errors)
    document = {**raw, "storage": storage, "channels": channels_}
    settings = None
    try:
        settings = Settings.model_validate(document)
    except ValidationError as exc:
        errors.extend(_details(exc))
    parts = _Parts.of(settings) if settings is not None else _Parts.salvage(raw, channels_)
    errors.extend(_cross_check(parts))
    if errors or settings is None:
        raise ConfigError(_invalid(errors), errors)
    return settings


def _invalid(errors: list[ErrorDetail]) -> str:
    return f"invalid configuration ({len(errors)} error{'' if len(errors) == 1 else 's'})"


def load(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the YAML at ``path`` (``FRONTDESK_CONFIG``, else the demo config)."""
    env = os.environ if env is None else env
    path = Path(path or env.get("FRONTDESK_CONFIG") or DEFAULT_CONFIG)
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        duplicates = duplicate_keys(yaml.compose(text, Loader=yaml.SafeLoader))
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = exc.problem_mark if isinstance(exc, yaml.MarkedYAMLError) else None
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        raise ConfigError(f"{path} is not valid YAML ({where}): {exc}") from exc
    return _validate(raw, env, duplicates)


def duplicate_keys(node: yaml.Node | None, path: str = "") -> list[ErrorDetail]:
    """A key given twice in one mapping, with the lines of both: YAML parsers keep the last
    silently, so a setting someone thinks they made would not be the one that counts."""
    errors: list[tuple[int, ErrorDetail]] = []  # by the line of the repeat
    stack: list[tuple[yaml.Node | None, str]] = [(node, path)]
    seen_nodes: set[int] = set()  # an alias may point back at its own ancestor
    while stack:
        current, where = stack.pop()
        if current is None or id(current) in seen_nodes:
            continue
        seen_nodes.add(id(current))
        if isinstance(current, yaml.SequenceNode):
            stack.extend((item, f"{where}[{i}]") for i, item in enumerate(current.value))
        elif isinstance(current, yaml.MappingNode):
            first_line: dict[str, int] = {}
            for key, value in current.value:
                name = str(key.value)
                line = key.start_mark.line + 1
                if name in first_line and name != "<<":
                    errors.append((line, ErrorDetail(
                        _path((name,), where),
                        f"duplicate key '{name}' (line {first_line[name]} and line {line}; "
                        "only the last would count)",
                    )))  # fmt: skip
                first_line.setdefault(name, line)
                stack.append((value, _path((name,), where)))
    return [detail for _, detail in sorted(errors, key=lambda e: e[0])]
