"""``custom_tool``: HTTP tools the admin declares in YAML.

Each tool has a ``url`` (``{arg}`` placeholders are filled from the arguments, URL-encoded),
a ``method``, a JSON Schema for its ``parameters``, ``headers`` (secrets come in through
``${ENV}`` in the YAML, and never reach the model or the logs), a timeout and a response
size cap. The model calls ``custom_tool`` with ``tool`` and ``arguments``; the arguments
are validated against the schema before any request is made. GET sends the remaining
arguments as the query string, other methods as a JSON body. Requests follow the address
rules of ``agents.abilities._http`` unless the tool's host is in ``allow_hosts``.
Running a tool needs the tool's ``level`` of ``data`` in the conversation's role, unless
the tool says ``public: true`` (say, an order-status lookup for customers).
"""

from __future__ import annotations

import json
import re
from typing import Any, ClassVar, Literal, cast
from urllib.parse import quote, urlencode, urlsplit

import aiohttp
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from pydantic import BaseModel, ConfigDict, Field, field_validator

from agents.abilities import AbilityContext, AbilityResult
from agents.abilities._http import AddressRefused, fetch
from people.roles import Level, Need, allows

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


class Tool(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str = Field(min_length=1)
    url: str
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    parameters: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object", "properties": {}},
        description="JSON Schema of the arguments.",
    )
    headers: dict[str, str] = Field(default_factory=dict, repr=False)
    timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    max_response_bytes: int = Field(default=64 * 1024, ge=1, le=4 * 1024 * 1024)
    public: bool = Field(default=False, description="Customers' conversations may use it.")
    level: Level = Field(default="use", description="The 'data' level a role needs otherwise.")

    @field_validator("parameters")
    @classmethod
    def _schema(cls, schema: dict[str, Any]) -> dict[str, Any]:
        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as exc:
            raise ValueError(f"not a valid JSON Schema: {exc.message}") from None
        if schema.get("type") != "object":
            raise ValueError('the schema must be {"type": "object", ...}')
        return schema

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        if urlsplit(url).scheme not in ("http", "https"):
            raise ValueError("only http(s) URLs")
        return url


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tools: dict[str, Tool] = Field(default_factory=dict)
    allow_hosts: list[str] = Field(default_factory=list, description="Private hosts allowed.")


class Arguments(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tool: str = Field(min_length=1, max_length=64)
    arguments: dict[str, Any] = Field(default_factory=dict)


class CustomTool:
    name: ClassVar[str] = "custom_tool"
    description: ClassVar[str] = (
        "Call one of the workspace's HTTP tools by name with its arguments (see each tool's "
        "parameters)."
    )
    settings_model: ClassVar[type[BaseModel]] = Settings
    arguments: ClassVar[type[BaseModel]] = Arguments
    need: ClassVar[Need] = Need()  # each tool checks its own

    async def run(self, context: AbilityContext, arguments: BaseModel) -> AbilityResult:
        args = cast(Arguments, arguments)
        settings = Settings.model_validate(context.abilities.get(self.name, {}))
        tool = settings.tools.get(args.tool)
        if tool is None:
            known = ", ".join(settings.tools) or "none"
            return AbilityResult(f"There is no tool '{args.tool}' (known: {known}).", refused=True)
        if not tool.public and not allows(context.role, Need(feature="data", level=tool.level)):
            return AbilityResult(f"This conversation may not use '{args.tool}'.", refused=True)
        errors = sorted(Draft202012Validator(tool.parameters).iter_errors(args.arguments),
                        key=lambda e: list(e.path))  # fmt: skip
        if errors:
            where = "; ".join(f"{'.'.join(map(str, e.path)) or 'arguments'}: {e.message}"
                              for e in errors[:5])  # fmt: skip
            return AbilityResult(f"Invalid arguments for {args.tool}: {where}", refused=True)
        url, rest = _fill(tool.url, args.arguments)
        options: dict[str, Any] = {"headers": tool.headers}
        if tool.method == "GET" and rest:
            url += ("&" if "?" in url else "?") + urlencode(rest)
        elif tool.method != "GET":
            options["json"] = rest
        try:
            fetched = await fetch(
                tool.method, url, allow_hosts=frozenset(h.lower() for h in settings.allow_hosts),
                timeout_seconds=tool.timeout_seconds, max_bytes=tool.max_response_bytes,
                **options,
            )  # fmt: skip
        except AddressRefused as exc:
            return AbilityResult(f"{args.tool} may not be called: {exc}.", refused=True)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return AbilityResult(f"{args.tool} failed ({type(exc).__name__}).", refused=True)
        if fetched.status >= 400:
            return AbilityResult(f"{args.tool} answered {fetched.status}.", refused=True)
        return AbilityResult(fetched.text + (" ...(truncated)" if fetched.truncated else ""))


def _fill(url: str, arguments: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The URL with ``{arg}`` filled (each value URL-encoded), and the arguments left over."""
    used = set(_PLACEHOLDER.findall(url))
    filled = _PLACEHOLDER.sub(lambda m: quote(_text(arguments.get(m.group(1), "")), safe=""), url)
    return filled, {k: v for k, v in arguments.items() if k not in used}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


ABILITY = CustomTool()
