"""What text (and JSON) the store can hold.

PostgreSQL cannot store a NUL character in text or jsonb, nor a lone UTF-16 surrogate
(``"\\ud800"`` in JSON decodes to one: it is not UTF-8 text), nor NaN or Infinity in
jsonb; SQLite stores them and gives them back as something that is not JSON. Every door
refuses them, so both back ends hold the same data.
"""

from __future__ import annotations

import json
import math
from typing import Any

NUL = "NUL"
SURROGATE = "a lone surrogate (not UTF-8 text)"
NOT_FINITE = "not a finite number"


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be stored (``NUL``, ``SURROGATE``), or None."""
    if "\x00" in text:
        return NUL
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return SURROGATE
    return None


def find_unstorable(value: object, path: str = "") -> tuple[str, str] | None:
    """The path of the first string (or key) or number in parsed JSON that the store
    cannot hold, and why (``NUL``, ``SURROGATE``, ``NOT_FINITE``); None when all is well."""
    if isinstance(value, str):
        why = text_problem(value)
        return (path or "body", why) if why else None
    if isinstance(value, float) and not math.isfinite(value):
        return (path or "body", NOT_FINITE)
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            why = text_problem(str(key))
            if why:
                return (where, why)
            found = find_unstorable(item, where)
            if found:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = find_unstorable(item, f"{path}[{index}]")
            if found:
                return found
    return None


def storable(text: str) -> str:
    """``text`` without what the store cannot hold (NUL characters dropped, lone surrogates
    replaced): for what we produce ourselves, such as a model's reply, never for input."""
    return text.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")


def refuse_constant(name: str) -> Any:
    """For ``json.loads(parse_constant=...)``: NaN and Infinity are not JSON."""
    raise ValueError(f"{name} is not JSON")


MAX_DEPTH = 64  # deeper JSON is refused: nothing we take nests so deep, and code that
# walks it (filters, validation) would run out of stack


def loads_json(text: str | bytes) -> Any:
    """Strict JSON as every door reads it: ``ValueError`` (a sentence) for what is not
    JSON -- NaN and Infinity included -- or nests deeper than ``MAX_DEPTH``."""
    try:
        value = json.loads(text, parse_constant=refuse_constant)
    except RecursionError:
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels") from None
    if _depth(value) > MAX_DEPTH:
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
    return value


def _depth(value: Any) -> int:
    deepest, level = 0, [(value, 1)]
    while level:
        item, depth = level.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            if depth <= MAX_DEPTH:
                level.extend(
                    (v, depth + 1) for v in (item.values() if isinstance(item, dict) else item)
                )
    return deepest
