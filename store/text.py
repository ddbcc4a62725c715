"""What text the store can hold."""

from __future__ import annotations


def find_nul(value: object, path: str = "") -> str | None:
    """The path of the first string (or key) in parsed JSON holding a NUL character.

    PostgreSQL cannot store NUL in text or jsonb, so it is refused at the door.
    """
    if isinstance(value, str):
        return path or "body" if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if "\x00" in str(key):
                return where
            found = find_nul(item, where)
            if found:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = find_nul(item, f"{path}[{index}]")
            if found:
                return found
    return None
