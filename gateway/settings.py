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
from agents.workflow_steps import WorkflowSettings
from channels.base import ChannelSettings
from escalation.settings import EscalationSettings
from gateway.cross_references import Parts, cross_check
from people.qualifications import QualificationSettings
from people.roles import BUILTIN_ROLES, Role
from people.settings import PeopleSettings
from store.errors import ConfigError, ErrorDetail, own_errors
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
    parts = Parts.of(settings) if settings is not None else Parts.salvage(raw, channels_)
    errors.extend(cross_check(parts))
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
