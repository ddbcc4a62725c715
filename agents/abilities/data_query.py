"""``data_query``: read-only questions about members, never free SQL from the model.

``query: "me"`` reads the member's own record (the ``own_fields``) -- always allowed, since
it is theirs. Any other query must be one the admin declared under ``queries``: a member
filter (DESIGN §6) with ``{param}`` placeholders for whole values, the parameters the model
may fill (each with a type), the fields that come back and a row limit. Running a declared
query needs ``data`` at the query's level (``use`` by default) in the role the
conversation grants: a customer's conversation (role ``contact``) can read nothing but
itself.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from agents.abilities import AbilityContext, AbilityResult
from people import queries
from people.filters import compile_filter
from people.roles import Level, Need, allows
from store.errors import ValidationFailed

ParamType = Literal["string", "number", "boolean"]
_TYPES: dict[str, tuple[type, ...]] = {"string": (str,), "number": (int, float), "boolean": (bool,)}
MAX_RESULT_CHARS = 4000


def _fields(fields: list[str]) -> list[str]:
    for name in fields:
        if name not in queries.FIELDS and not (name.startswith("data.") and len(name) > 5):
            raise ValueError(
                f"unknown field '{name}' (valid: {', '.join(queries.FIELDS)}, data.<x>)"
            )
    return fields


class Query(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str = ""
    filter: dict[str, Any]
    params: dict[str, ParamType] = Field(default_factory=dict)
    fields: list[str] = Field(default_factory=lambda: ["id", "name"])
    limit: int = Field(default=20, ge=1, le=100)
    level: Level = Field(default="use", description="The 'data' level a role needs to run it.")

    @field_validator("fields")
    @classmethod
    def _known_fields(cls, fields: list[str]) -> list[str]:
        return _fields(fields)

    @model_validator(mode="after")
    def _filter_compiles(self) -> Query:
        try:
            compile_filter(
                queries.fill_params(self.filter, dict.fromkeys(self.params, "x")), "sqlite"
            )
        except ValidationFailed as exc:
            where = "; ".join(f"{d.path}: {d.message}" for d in exc.details)
            raise ValueError(f"filter: {where or exc.message}") from None
        return self


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    queries: dict[str, Query] = Field(default_factory=dict)
    own_fields: list[str] = Field(default_factory=lambda: ["name", "email", "phone", "labels"])

    @field_validator("own_fields")
    @classmethod
    def _known_fields(cls, fields: list[str]) -> list[str]:
        return _fields(fields)

    @field_validator("queries")
    @classmethod
    def _names(cls, found: dict[str, Query]) -> dict[str, Query]:
        if "me" in found:
            raise ValueError("'me' is the member's own record; name the query otherwise")
        return found


class Arguments(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=64, description="'me' or a declared query.")
    params: dict[str, str | int | float | bool] = Field(default_factory=dict)


class DataQuery:
    name: ClassVar[str] = "data_query"
    description: ClassVar[str] = (
        "Read data. query='me' returns what we hold about the member you are talking to; "
        "other queries are declared by the admin (name them exactly, with their params)."
    )
    settings_model: ClassVar[type[BaseModel]] = Settings
    arguments: ClassVar[type[BaseModel]] = Arguments
    need: ClassVar[Need] = Need()  # the member's own record; declared queries check more

    async def run(self, context: AbilityContext, arguments: BaseModel) -> AbilityResult:
        args = cast(Arguments, arguments)
        settings = Settings.model_validate(context.abilities.get(self.name, {}))
        if context.sessions is None or context.member is None:
            return AbilityResult("There is no member record in this conversation.", refused=True)
        if args.query == "me":
            async with context.sessions() as session:
                record = await queries.own(session, context.member.id, settings.own_fields)
            return AbilityResult(_json(record or {}))
        query = settings.queries.get(args.query)
        if query is None:
            known = ", ".join(["me", *settings.queries])
            return AbilityResult(
                f"There is no query '{args.query}' (known: {known}).", refused=True
            )
        if not allows(context.role, Need(feature="data", level=query.level)):
            return AbilityResult(
                f"This conversation may not run '{args.query}'; it can only read its own record.",
                refused=True,
            )
        problem = _params_problem(query, args.params)
        if problem:
            return AbilityResult(problem, refused=True)
        async with context.sessions() as session:
            rows = await queries.run(
                session, queries.fill_params(query.filter, args.params), query.fields, query.limit
            )
        return AbilityResult(_json(rows))


def _params_problem(query: Query, params: dict[str, Any]) -> str | None:
    unknown = set(params) - set(query.params)
    if unknown:
        return f"Unknown parameter(s): {', '.join(sorted(unknown))}."
    for name, kind in query.params.items():
        if name not in params:
            return f"Missing parameter: {name}."
        value = params[name]
        if not isinstance(value, _TYPES[kind]) or (kind == "number" and isinstance(value, bool)):
            return f"Parameter {name} must be a {kind}."
    return None


def _json(value: Any) -> str:
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= MAX_RESULT_CHARS else text[:MAX_RESULT_CHARS] + " ...(truncated)"


ABILITY = DataQuery()
