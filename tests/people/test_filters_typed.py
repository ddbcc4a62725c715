"""``data.*`` filters compare by the filter value's type, with the same results on SQLite
and PostgreSQL: one table of stored values x operators x filter values, run on both back
ends and checked against the rule written out in Python (people/_data_values.py)."""

from __future__ import annotations

import itertools
import re
from datetime import UTC, date, datetime
from typing import Any

import pytest
from sqlalchemy import select

from people.filters import compile_filter
from store.engine import create_engine, session_factory
from store.models import Member

MISSING = object()
STORED: list[Any] = [
    MISSING, None, 5, 10, 10.0, 12, -3, 2.5, 12345678901234567890, 0, True, False,
    "5", "10", "12", "9", "abc", "Abc", "abd", "zoë", "ZOË", "", "a%b_c", "1e5",
    "2026-01-31", "2026-01-30", "2026-01-31T09:00:00Z", "2026-01-31 23:59:59.5",
    "2026-02-01T00:00:00+02:00", "2026-02-30", "2026-01-31T09:00", "banana-01-01",
    [10], ["abc"], {"v": 10}, {"x": "abc"},
]  # fmt: skip
VALUES: list[Any] = [
    10, 5, 2.5, 0, -3, 10.0, 99999999999999999999, True, False, "10", "5", "abc", "ABC",
    "", "2026-01-31", "2026-02-01", "2026-01-31T09:00:00Z", "2026-01-31T10:00:00+01:00",
    "2026-01-31T09:00:01", "zo", "ZOË", "%", "b_", "a",
]  # fmt: skip
COMPARISONS = ("eq", "ne", "lt", "le", "gt", "ge")
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$", re.ASCII)
_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}", re.ASCII)
_STORED_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}", re.ASCII)


def _compare(op: str, a: Any, b: Any) -> bool:
    return bool(
        {"eq": a == b, "ne": a != b, "lt": a < b, "le": a <= b, "gt": a > b, "ge": a >= b}[op]
    )


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return "string" if isinstance(value, str) else "other"


def _moment(value: Any) -> date | datetime | None:
    if not isinstance(value, str):
        return None
    if _DAY.match(value):
        return date.fromisoformat(value)
    if _TIME.match(value):
        moment = datetime.fromisoformat(value)
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)
    return None


def _date_key(stored: Any) -> str | None:
    if not isinstance(stored, str):
        return None
    if _DAY.match(stored):
        return stored + "T00:00:00"
    if _STORED_TIME.match(stored):
        return stored[:10] + "T" + stored[11:19]
    return None


def _fold(text: str) -> str:
    return "".join(c.lower() if "A" <= c <= "Z" else c for c in text)


def expected(stored: Any, op: str, value: Any) -> bool:
    """The rule, in Python."""
    if op == "exists":
        return (stored is not MISSING and stored is not None) is value
    if stored is MISSING or stored is None:
        return False
    if op in ("contains", "startswith"):
        if not isinstance(stored, str):
            return False
        if op == "contains":
            return _fold(value) in _fold(stored)
        return _fold(stored).startswith(_fold(value))
    if op == "in":
        return any(expected(stored, "eq", v) for v in value)
    moment = _moment(value)
    if moment is not None:
        key = _date_key(stored)
        if key is None:
            return False
        if isinstance(moment, datetime):
            return _compare(op, key, moment.strftime("%Y-%m-%dT%H:%M:%S"))
        return _compare(op, key[:10], moment.isoformat())
    if _kind(stored) != _kind(value):
        return False
    return _compare(op, stored, value)


def _conditions() -> list[dict[str, Any]]:
    conditions: list[dict[str, Any]] = []
    for op, value in itertools.product(COMPARISONS, VALUES):
        if isinstance(value, bool) and op not in ("eq", "ne"):
            continue
        conditions.append({"op": op, "value": value})
    for value in ("abc", "ZO", "%", "b_", "", "2026"):
        conditions += [{"op": "contains", "value": value}, {"op": "startswith", "value": value}]
    conditions += [{"op": "exists", "value": True}, {"op": "exists", "value": False}]
    conditions += [{"op": "in", "value": [10, "abc", True]}, {"op": "in", "value": ["2026-01-31"]}]
    return conditions


async def _results(url: str) -> dict[tuple[str, str], set[int]]:
    """For each (path, condition): the indexes in STORED of the members it selects."""
    engine = create_engine(url)
    found: dict[tuple[str, str], set[int]] = {}
    try:
        async with session_factory(engine).begin() as session:
            for i, stored in enumerate(STORED):
                data = {} if stored is MISSING else {"v": stored, "n": {"v": stored}}
                session.add(Member(kind="contact", role="contact", email=f"m{i}@x", data=data))
        async with session_factory(engine)() as session:
            for path, condition in itertools.product(("data.v", "data.n.v"), _conditions()):
                where = compile_filter({"field": path, **condition}, engine.dialect.name)
                emails = await session.scalars(select(Member.email).where(where.condition))
                found[(path, repr(condition))] = {int(e[1:].split("@")[0]) for e in emails}
    finally:
        await engine.dispose()
    return found


@pytest.mark.postgres
async def test_the_same_data_filters_select_the_same_members_on_both_back_ends(
    sqlite_url: str, postgres_url: str
) -> None:
    on_sqlite, on_postgres = await _results(sqlite_url), await _results(postgres_url)
    wrong = []
    for (path, text), selected in sorted(on_sqlite.items()):
        condition = next(c for c in _conditions() if repr(c) == text)
        want = {i for i, s in enumerate(STORED) if expected(s, condition["op"], condition["value"])}
        if not selected == on_postgres[(path, text)] == want:
            show = {"sqlite": selected, "postgres": on_postgres[(path, text)], "rule": want}
            wrong.append(
                f"{path} {text}: " + ", ".join(f"{k} {sorted(v)}" for k, v in show.items())
            )
    assert not wrong, f"{len(wrong)} of {len(on_sqlite)} differ:\n" + "\n".join(wrong[:40])


@pytest.mark.parametrize(
    ("stored", "condition", "matches"),
    [
        (5, {"op": "gt", "value": 10}, False),
        (12, {"op": "gt", "value": 10}, True),
        ("12", {"op": "gt", "value": 10}, False),
        ("2026-01-31", {"op": "after", "value": "2026-01-30T12:00:00Z"}, True),
        ("2026-01-31", {"op": "before", "value": "2026-01-30"}, False),
    ],
)
def test_the_rule_in_words(stored: Any, condition: dict[str, Any], matches: bool) -> None:
    op = {"after": "gt", "before": "lt"}.get(condition["op"], condition["op"])
    assert expected(stored, op, condition["value"]) is matches
