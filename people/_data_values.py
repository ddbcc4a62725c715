"""How a filter compares ``data.<path>`` values, identically on SQLite and PostgreSQL.

The type of the filter's value decides how it compares, and a stored value of another
type never matches (for every operator, ``ne`` included):

- a number compares numerically with stored JSON numbers (``5 < 10``, ``5 == 5.0``);
- ``true``/``false`` compare (``eq``/``ne`` only) with stored JSON booleans;
- a string that is an ISO 8601 date (``2026-01-31``) compares by day, and one that is a
  date and time (``2026-01-31T09:00:00Z``, converted to UTC) to the second, with stored
  strings of the same shapes (``YYYY-MM-DD``, or ``YYYY-MM-DD[T ]HH:MM:SS`` followed by
  anything: a fraction, ``Z``, an offset, which is not applied: stored times are taken
  as UTC, as this API writes them);
- any other string compares with stored JSON strings, by code point (``COLLATE "C"`` on
  PostgreSQL, SQLite's binary order); ``contains`` and ``startswith`` match stored
  strings only, folding ASCII letters' case (both back ends fold exactly those).

A path walks objects only (``data.a.0`` is never the first item of an array). ``exists``
means the key holds a value other than JSON ``null``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import ColumnElement, Text, case, func, literal, type_coerce
from sqlalchemy.dialects.postgresql import JSONB

from store.models import Member

UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_ISO_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$", re.ASCII)
_ISO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}", re.ASCII)
# The stored shapes that are dates, as SQLite GLOB patterns and PostgreSQL regexes.
_DIGITS = {"day": "[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]",
           "time": "[0-9][0-9]:[0-9][0-9]:[0-9][0-9]"}  # fmt: skip
_PG_DAY = "^[0-9]{4}-[0-9]{2}-[0-9]{2}"
_PG_TIME = "[T ][0-9]{2}:[0-9]{2}:[0-9]{2}"
# SQLite's own types, by the kinds a filter value can have
_SQLITE_KINDS = {
    "number": ("integer", "real"),
    "boolean": ("true", "false"),
    "string": ("text",),
    "present": ("integer", "real", "true", "false", "text", "array", "object"),
}
_PG_KINDS = {
    "number": ("number",),
    "boolean": ("boolean",),
    "string": ("string",),
    "present": ("number", "boolean", "string", "array", "object"),
}

COMPARE: dict[str, Callable[[Any, Any], ColumnElement[bool]]] = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
}


def fold(text: Any, dialect: str) -> ColumnElement[Any]:
    """``text`` with ASCII letters in lower case (what SQLite's ``lower`` does; PostgreSQL's
    would also fold other letters, by locale)."""
    if dialect == "postgresql":
        folded: ColumnElement[Any] = func.translate(text, UPPER, UPPER.lower())
        return folded
    lowered: ColumnElement[Any] = func.lower(text)
    return lowered


def fold_value(value: str) -> str:
    return "".join(c.lower() if c in UPPER else c for c in value)


def to_moment(value: Any) -> date | datetime | None:
    """The date (``YYYY-MM-DD``) or UTC datetime a filter string spells, if it spells one."""
    if not isinstance(value, str):
        return None
    try:
        if _ISO_DAY.match(value):
            return date.fromisoformat(value)
        if _ISO_TIME.match(value):
            moment = datetime.fromisoformat(value)
            return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)
    except ValueError:
        return None
    return None


@dataclass(frozen=True)
class DataField:
    """One ``data.<path>`` of the members table, as SQL for ``dialect``."""

    dialect: str
    keys: list[str]

    @property
    def _postgres(self) -> bool:
        return self.dialect == "postgresql"

    def _json(self) -> Any:
        value: Any = type_coerce(Member.data, JSONB)
        for key in self.keys:
            value = value[key]  # ->: a text key, never an array index
        return value

    def _path(self) -> str:
        return "$." + ".".join(f'"{k}"' for k in self.keys)

    def text(self) -> ColumnElement[Any]:
        """The stored value as SQL text (meaningful where ``is_kind("string")``)."""
        if self._postgres:
            as_text: ColumnElement[Any] = self._json().astext.collate("C")
            return as_text
        extracted: ColumnElement[Any] = func.json_extract(Member.data, self._path(), type_=Text)
        return extracted

    def is_kind(self, kind: str) -> ColumnElement[bool]:
        """Whether the stored value is a ``number``, ``boolean``, ``string``, or ``present``."""
        if self._postgres:
            typed: ColumnElement[bool] = func.coalesce(func.jsonb_typeof(self._json()), "none").in_(
                _PG_KINDS[kind]
            )
            return typed
        # coalesce: never NULL, so that not_(...) of a missing key is true
        sqlite: ColumnElement[bool] = func.coalesce(
            func.json_type(Member.data, self._path()), "none"
        ).in_(_SQLITE_KINDS[kind])
        return sqlite

    def compare(self, op: str, value: Any) -> ColumnElement[bool]:
        """``op`` (eq ne lt le gt ge) against a JSON scalar, by the rules above."""
        if isinstance(value, bool):
            return self._boolean(value if op == "eq" else not value)
        moment = to_moment(value)
        if moment is not None:
            return self._date(op, moment)
        if isinstance(value, str):
            return self.is_kind("string") & COMPARE[op](self.text(), value)
        if self._postgres:
            target = func.cast(literal(json.dumps(value)), JSONB)
            return self.is_kind("number") & COMPARE[op](self._json(), target)
        if isinstance(value, int) and not -(2**63) <= value < 2**63:
            value = float(value)  # beyond SQLite's integers (and its driver's)
        number = func.json_extract(Member.data, self._path())
        return self.is_kind("number") & COMPARE[op](number, value)

    def _boolean(self, value: bool) -> ColumnElement[bool]:
        if self._postgres:
            target = func.cast(literal(json.dumps(value)), JSONB)
            same: ColumnElement[bool] = self._json() == target
            return self.is_kind("boolean") & same
        named: ColumnElement[bool] = func.json_type(Member.data, self._path()) == (
            "true" if value else "false"
        )
        return named

    def _date(self, op: str, moment: date | datetime) -> ColumnElement[bool]:
        if isinstance(moment, datetime):
            return COMPARE[op](self._date_key(), moment.strftime("%Y-%m-%dT%H:%M:%S"))
        return COMPARE[op](func.substr(self._date_key(), 1, 10), moment.isoformat())

    def _date_key(self) -> ColumnElement[Any]:
        """``YYYY-MM-DDTHH:MM:SS`` for a stored date or date and time, else NULL."""
        text, string = self.text(), self.is_kind("string")
        if self._postgres:
            day = string & text.regexp_match(_PG_DAY + "$")
            moment = string & text.regexp_match(_PG_DAY + _PG_TIME)
        else:
            day = string & text.op("GLOB")(_DIGITS["day"])
            moment = string & text.op("GLOB")(f"{_DIGITS['day']}[T ]{_DIGITS['time']}*")
        date_part, time_part = func.substr(text, 1, 10, type_=Text), func.substr(text, 12, 8)
        key: ColumnElement[Any] = case(
            (day, text.concat("T00:00:00")),
            (moment, date_part.concat("T").concat(time_part)),
            else_=None,
        )
        return key.collate("C") if self._postgres else key
