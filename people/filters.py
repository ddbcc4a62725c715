"""Member filters (DESIGN §6): JSON in, a SQL condition with bound parameters out.

    {"all": [{"label": "vip"},
             {"any": [{"field": "data.plan", "op": "eq", "value": "gold"},
                      {"field": "last_active", "op": "within", "value": "7d"}]},
             {"not": {"field": "notify.sms", "op": "eq", "value": false}}]}

Only the fields and operators below reach SQL; values are always bound parameters; a
filter is compiled, never evaluated in Python, so no member list is loaded. A bad filter
raises ``ValidationFailed`` whose details name where (``all[1].any[0].op``).

Semantics we chose where DESIGN is silent:
- ``within`` takes a duration (``30m``, ``12h``, ``7d``, ``2w``) and means "in the last";
  ``before``/``after`` take an ISO 8601 time or a duration ago.
- ``in`` takes a list.
- ``exists`` takes true/false: the field (or ``data`` key) is set / not set (a ``data``
  key holding JSON ``null`` is not set).
- ``data.<path>`` compares by the type of the filter's value: numbers numerically with
  stored numbers, booleans with booleans, ISO dates and times as dates, other strings as
  strings; a stored value of another type never matches. ``before``/``after``/``within``
  apply to stored dates too. The same on SQLite and PostgreSQL (see ``_data_values``).
- ``contains`` and ``startswith`` fold ASCII letters' case only, on both back ends.
- Archived and merged-away members are excluded unless the filter itself mentions
  ``archived`` (merged-away ones always are).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    and_,
    exists,
    false,
    not_,
    or_,
    select,
    true,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import JSONB

from people._data_values import COMPARE as _COMPARE
from people._data_values import DataField, fold, fold_value, to_moment
from store.errors import ErrorDetail, ValidationFailed
from store.models import Label, Member
from store.text import NUL, find_unstorable

OPS = ("eq", "ne", "lt", "le", "gt", "ge", "in", "contains", "startswith", "exists", "within",
       "before", "after")  # fmt: skip
FIELDS: dict[str, Any] = {
    "name": Member.name,
    "email": Member.email,
    "phone": Member.phone,
    "kind": Member.kind,
    "role": Member.role,
    "created": Member.created_at,
    "last_active": Member.last_active_at,
    "archived": Member.archived,
    "notify.sms": Member.notify_sms,
    "notify.email": Member.notify_email,
    "notify.voice": Member.notify_voice,
}
TIME_FIELDS = ("created", "last_active")
BOOL_FIELDS = ("archived", "notify.sms", "notify.email", "notify.voice")
MAX_DEPTH = 8
MAX_NODES = 200
_DURATION = re.compile(r"^(\d{1,6})([mhdw])$")
_DATA_KEY = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


@dataclass
class _Compiler:
    dialect: str
    now: datetime
    errors: list[ErrorDetail] = field(default_factory=list)
    mentions_archived: bool = False
    nodes: int = 0

    def fail(self, path: str, message: str) -> ColumnElement[bool]:
        self.errors.append(ErrorDetail(path or "filter", message))
        return true()

    def node(self, raw: Any, path: str, depth: int) -> ColumnElement[bool]:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            return self.fail(path, f"a filter may have at most {MAX_NODES} conditions")
        if depth > MAX_DEPTH:
            return self.fail(path, f"a filter may nest at most {MAX_DEPTH} levels")
        if not isinstance(raw, dict) or len(raw) == 0:
            return self.fail(path, "expected an object with all, any, not, label or field")
        if "all" in raw or "any" in raw:
            return self.group(raw, path, depth)
        if "not" in raw:
            if len(raw) != 1:
                return self.fail(path, "'not' takes one condition and nothing beside it")
            return not_(self.node(raw["not"], _join(path, "not"), depth + 1))
        if "label" in raw:
            return self.label(raw, path)
        if "field" in raw:
            return self.condition(raw, path)
        return self.fail(path, f"unknown keys {sorted(raw)} (expected all, any, not, label, field)")

    def group(self, raw: dict[str, Any], path: str, depth: int) -> ColumnElement[bool]:
        key = "all" if "all" in raw else "any"
        if len(raw) != 1:
            return self.fail(path, f"'{key}' takes a list of conditions and nothing beside it")
        items = raw[key]
        if not isinstance(items, list) or not items:
            return self.fail(_join(path, key), "expected a non-empty list of conditions")
        parts = [
            self.node(item, f"{_join(path, key)}[{i}]", depth + 1) for i, item in enumerate(items)
        ]
        return and_(*parts) if key == "all" else or_(*parts)

    def label(self, raw: dict[str, Any], path: str) -> ColumnElement[bool]:
        value = raw["label"]
        if len(raw) != 1 or not isinstance(value, str) or not value:
            return self.fail(_join(path, "label"), 'expected {"label": "<name>"}')
        return exists().where(Label.member_id == Member.id, Label.label == value)

    def condition(self, raw: dict[str, Any], path: str) -> ColumnElement[bool]:
        unknown = set(raw) - {"field", "op", "value"}
        if unknown:
            return self.fail(path, f"unknown keys {sorted(unknown)} beside field, op, value")
        name, op = raw.get("field"), raw.get("op")
        if op not in OPS:
            return self.fail(_join(path, "op"), f"unknown op {op!r} (valid: {', '.join(OPS)})")
        if "value" not in raw:
            return self.fail(_join(path, "value"), f"'{op}' needs a value")
        value = raw["value"]
        found = find_unstorable(value)
        if found is not None:
            why = "text may not contain NUL characters" if found[1] == NUL else f"holds {found[1]}"
            return self.fail(_join(path, "value"), why)
        if isinstance(name, str) and name.startswith("data."):
            return self.data(name, str(op), value, _join(path, "value"), _join(path, "field"))
        if name not in FIELDS:
            valid = ", ".join([*FIELDS, "data.<path>"])
            return self.fail(_join(path, "field"), f"unknown field {name!r} (valid: {valid})")
        self.mentions_archived |= name == "archived"
        return self.column(str(name), str(op), value, _join(path, "value"))

    def column(self, name: str, op: str, value: Any, path: str) -> ColumnElement[bool]:
        col = FIELDS[name]
        if op == "exists":
            return self.exists(col.is_not(None), value, path)
        if name in TIME_FIELDS:
            return self.time(col, op, value, path)
        if name in BOOL_FIELDS:
            if op not in ("eq", "ne") or not isinstance(value, bool):
                return self.fail(path, f"{name} takes eq/ne with true or false")
            return _COMPARE[op](col, value)
        return self.text(col, op, value, path)

    def exists(self, present: ColumnElement[bool], value: Any, path: str) -> ColumnElement[bool]:
        if not isinstance(value, bool):
            return self.fail(path, "exists takes true or false")
        return present if value else not_(present)

    def time(self, col: Any, op: str, value: Any, path: str) -> ColumnElement[bool]:
        if op == "within":
            ago = self.duration(value, path)
            return col >= self.now - ago if ago is not None else true()
        if op in ("before", "after", "lt", "le", "gt", "ge", "eq", "ne"):
            moment = self.moment(value, path)
            if moment is None:
                return true()
            return _COMPARE[{"before": "lt", "after": "gt"}.get(op, op)](col, moment)
        return self.fail(path, f"'{op}' does not apply to a time (use within, before, after)")

    def text(self, col: Any, op: str, value: Any, path: str) -> ColumnElement[bool]:
        if op == "in":
            if (
                not isinstance(value, list)
                or not value
                or not all(isinstance(v, str) for v in value)
            ):
                return self.fail(path, "'in' takes a non-empty list of strings")
            matches: ColumnElement[bool] = col.in_(value)
            return matches
        if not isinstance(value, str):
            return self.fail(path, f"'{op}' takes a string here")
        if op == "contains":
            return fold(col, self.dialect).contains(fold_value(value), autoescape=True)
        if op == "startswith":
            return fold(col, self.dialect).startswith(fold_value(value), autoescape=True)
        if op in _COMPARE:
            return _COMPARE[op](col, value)
        return self.fail(path, f"'{op}' does not apply to text")

    def data(
        self, name: str, op: str, value: Any, path: str, field_path: str
    ) -> ColumnElement[bool]:
        """``data.<path>``: the filter value's type decides how it compares (_data_values)."""
        keys = name.split(".")[1:]
        if not keys or not all(_DATA_KEY.match(k) for k in keys):
            return self.fail(
                field_path, "data paths are data.<key>[.<key>...] of letters, digits, _ and -"
            )
        stored = DataField(self.dialect, keys)
        if op == "exists":
            return self.exists(stored.is_kind("present"), value, path)
        if op in ("contains", "startswith"):
            if not isinstance(value, str):
                return self.fail(path, f"'{op}' takes a string")
            text = fold(stored.text(), self.dialect)
            match = text.contains if op == "contains" else text.startswith
            return stored.is_kind("string") & match(fold_value(value), autoescape=True)
        if op in ("within", "before", "after"):
            moment = self.duration_ago(value, path) if op == "within" else self.moment(value, path)
            if moment is None:
                return true()
            return stored.compare({"before": "lt", "after": "gt"}.get(op, "ge"), moment.isoformat())
        values = value if op == "in" else [value]
        if op == "in" and (not isinstance(value, list) or not value):
            return self.fail(path, "'in' takes a non-empty list of strings, numbers or booleans")
        if not all(_is_json_scalar(v) for v in values):
            return self.fail(path, f"'{op}' takes a string, number or boolean")
        if op not in ("eq", "ne", "in") and any(isinstance(v, bool) for v in values):
            return self.fail(path, f"'{op}' does not compare booleans (use eq or ne)")
        if op == "in":
            return or_(*(self.data_eq(stored, keys, v) for v in values))
        if op == "eq":
            return self.data_eq(stored, keys, value)
        return stored.compare(op, value)

    def data_eq(self, stored: DataField, keys: list[str], value: Any) -> ColumnElement[bool]:
        if self.dialect == "postgresql" and to_moment(value) is None:
            # data @> {...}: served by the GIN index on members.data; a JSON value contains
            # only an equal value of its own type, as the typed rule wants.
            return type_coerce(Member.data, JSONB).contains(_nest(keys, value))
        return stored.compare("eq", value)

    def duration_ago(self, value: Any, path: str) -> datetime | None:
        ago = self.duration(value, path)
        return self.now - ago if ago is not None else None

    def duration(self, value: Any, path: str) -> timedelta | None:
        match = _DURATION.match(value) if isinstance(value, str) else None
        if match is None:
            self.fail(path, "expected a duration like 30m, 12h, 7d or 2w")
            return None
        return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})

    def moment(self, value: Any, path: str) -> datetime | None:
        if isinstance(value, str) and _DURATION.match(value):
            ago = self.duration(value, path)
            return self.now - ago if ago is not None else None
        try:
            moment = datetime.fromisoformat(str(value))
        except ValueError:
            self.fail(path, "expected an ISO 8601 time (2026-01-31T09:00:00Z) or a duration ago")
            return None
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _is_json_scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool)) and value is not None


def _nest(keys: list[str], value: Any) -> dict[str, Any]:
    nested: Any = value
    for key in reversed(keys):
        nested = {key: nested}
    return dict(nested)


@dataclass(frozen=True)
class Compiled:
    """A filter ready to use in ``select(Member).where(condition)``."""

    condition: ColumnElement[bool]


def compile_filter(raw: Any, dialect: str, now: datetime | None = None) -> Compiled:
    """``raw`` (parsed JSON, or None for everyone) as a SQL condition for ``dialect``."""
    compiler = _Compiler(dialect=dialect, now=now or datetime.now(UTC))
    condition = true() if raw is None or raw == {} else compiler.node(raw, "", 0)
    if compiler.errors:
        raise ValidationFailed("the filter is not valid", compiler.errors)
    visible: ColumnElement[bool] = Member.merged_into.is_(None)
    if not compiler.mentions_archived:
        visible = and_(visible, Member.archived == false())
    return Compiled(condition=and_(visible, condition))


def members_matching(raw: Any, dialect: str, now: datetime | None = None) -> Any:
    """``SELECT members.*`` for the filter (callers add order, limit and paging)."""
    return select(Member).where(compile_filter(raw, dialect, now).condition)
