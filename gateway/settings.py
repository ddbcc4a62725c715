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

import os
import re
import zoneinfo
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import phonenumbers
import yaml
from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, ValidationError, field_validator

import channels
from agents.settings import AgentSettings
from agents.workflows import UseAbility, WorkflowSettings
from channels.base import ChannelSettings
from escalation.settings import EscalationSettings
from gateway.errors import ConfigError, ErrorDetail, repeats
from people.qualifications import QualificationSettings, unknown_workflows
from people.roles import BUILTIN_ROLES, Role
from people.settings import PeopleSettings
from store.settings import StorageSettings

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
    for error in exc.errors(include_url=False):
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


def _cross_check(settings: Settings) -> list[ErrorDetail]:
    agents = {a.name for a in settings.agents}
    errors = []
    for i, agent in enumerate(settings.agents):
        if [a.name for a in settings.agents].index(agent.name) != i:
            errors.append(ErrorDetail(f"agents[{i}].name", f"duplicate agent name '{agent.name}'"))
    known = ", ".join(sorted(agents)) or "none defined"
    deployed = {a.name: a.channels for a in settings.agents if a.channels}
    for name, section in settings.channels.items():
        for agent_name in sorted(section.agents() - agents):
            errors.append(
                ErrorDetail(f"channels.{name}.agent", f"no agent named '{agent_name}' ({known})")
            )
        agent_name = section.agent
        if agent_name in deployed and name not in deployed[agent_name]:
            listed = ", ".join(deployed[agent_name])
            errors.append(ErrorDetail(
                f"channels.{name}.agent",
                f"agent '{agent_name}' is not deployed to {name} (its channels: {listed})",
            ))  # fmt: skip
    errors.extend(_check_workflows(settings, agents, known))
    errors.extend(_check_qualifications(settings))
    return errors


def _check_qualifications(settings: Settings) -> list[ErrorDetail]:
    errors = []
    workflows = {w.name for w in settings.workflows}
    for i in repeats([q.name for q in settings.qualifications]):
        name = settings.qualifications[i].name
        errors.append(ErrorDetail(f"qualifications[{i}].name", f"duplicate qualification '{name}'"))
    for i, qualification in enumerate(settings.qualifications):
        for error in unknown_workflows(qualification, workflows):
            errors.append(ErrorDetail(f"qualifications[{i}].{error.path}", error.message))
    return errors


def _check_workflows(settings: Settings, agents: set[str], known: str) -> list[ErrorDetail]:
    errors = []
    names = [w.name for w in settings.workflows]
    for i, workflow in enumerate(settings.workflows):
        where = f"workflows[{i}]"
        if names.index(workflow.name) != i:
            errors.append(ErrorDetail(f"{where}.name", f"duplicate workflow '{workflow.name}'"))
        if workflow.agent is not None and workflow.agent not in agents:
            errors.append(
                ErrorDetail(f"{where}.agent", f"no agent named '{workflow.agent}' ({known})")
            )
        for j, step in enumerate(workflow.steps):
            if step.agent is not None and step.agent not in agents:
                errors.append(
                    ErrorDetail(
                        f"{where}.steps[{j}].agent", f"no agent named '{step.agent}' ({known})"
                    )
                )
            if isinstance(step, UseAbility):
                runners = {step.agent or workflow.agent} - {None} or {
                    a.name for a in settings.agents if workflow.name in a.workflows
                }
                lacking = sorted(
                    a.name
                    for a in settings.agents
                    if a.name in runners and step.ability not in a.abilities
                )
                if lacking:
                    errors.append(ErrorDetail(
                        f"{where}.steps[{j}].ability",
                        f"'{step.ability}' is not among the abilities of {', '.join(lacking)}",
                    ))  # fmt: skip
    for i, agent in enumerate(settings.agents):
        for j, name in enumerate(agent.workflows):
            if name not in names:
                listed = ", ".join(sorted(names)) or "none defined"
                errors.append(
                    ErrorDetail(
                        f"agents[{i}].workflows[{j}]", f"no workflow named '{name}' ({listed})"
                    )
                )
        for j, channel in enumerate(agent.channels):
            if channel not in settings.channels:
                errors.append(
                    ErrorDetail(
                        f"agents[{i}].channels[{j}]", f"channel '{channel}' is not configured"
                    )
                )
    return errors


def from_mapping(raw: Any, env: Mapping[str, str] | None = None) -> Settings:
    """Validate a parsed YAML document; ``ConfigError.details`` lists every problem."""
    env = os.environ if env is None else env
    if not isinstance(raw, dict):
        raise ConfigError("invalid configuration", [ErrorDetail("", "the file must be a mapping")])
    errors: list[ErrorDetail] = []
    raw = substitute_env(raw, env, "", errors)
    storage = dict(raw.get("storage") or {})
    if env.get("FRONTDESK_DATABASE_URL"):
        storage["database_url"] = env["FRONTDESK_DATABASE_URL"]
    if env.get("FRONTDESK_REDIS_URL"):
        storage["redis_url"] = env["FRONTDESK_REDIS_URL"]
    document = {
        **raw,
        "storage": storage,
        "channels": _validate_channels(raw.get("channels"), errors),
    }
    settings = None
    try:
        settings = Settings.model_validate(document)
    except ValidationError as exc:
        errors.extend(_details(exc))
    if settings is not None:
        errors.extend(_cross_check(settings))
    if errors or settings is None:
        raise ConfigError(f"invalid configuration ({len(errors)} errors)", errors)
    return settings


def load(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the YAML at ``path`` (``FRONTDESK_CONFIG``, else the demo config)."""
    env = os.environ if env is None else env
    path = Path(path or env.get("FRONTDESK_CONFIG") or DEFAULT_CONFIG)
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = exc.problem_mark if isinstance(exc, yaml.MarkedYAMLError) else None
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        raise ConfigError(f"{path} is not valid YAML ({where}): {exc}") from exc
    return from_mapping(raw, env)
