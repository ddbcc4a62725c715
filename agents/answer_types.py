"""What an answer to a workflow's ``ask`` step means, by the field's type: text, email,
phone (E.164 in the workspace's region), number, date (ISO, common written forms, today,
tomorrow, weekday names), time (``10``, ``2:30 pm``, ``14:30``) or one of the choices.
A refusal is a ``ValidationFailed`` whose message is a sentence the customer is told."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta
from typing import Any, Literal

from people.identities import to_e164, to_email
from store.errors import ValidationFailed

FieldType = Literal["text", "email", "phone", "number", "date", "time", "choice"]
MAX_ANSWER = 1000
MAX_NUMBER = 1e15  # JSON, and both databases, hold these exactly
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_CLOCK = re.compile(r"^\s*(\d{1,2})(?:[:.h](\d{2}))?\s*(am|pm|a\.m\.|p\.m\.)?\s*$", re.IGNORECASE)
_DATE_FORMATS = ("%Y-%m-%d", "%m/%d/%Y", "%m/%d/%y", "%d %b %Y", "%d %B %Y", "%b %d %Y",
                 "%B %d %Y", "%b %d, %Y", "%B %d, %Y")  # fmt: skip


def typed(
    kind: FieldType, choices: Sequence[str], raw: str, region: str, today: date | None = None
) -> Any:
    """The answer as a field of type ``kind``; ``ValidationFailed`` (a sentence) if it is
    not one."""
    text = raw.strip()
    if not text:
        raise ValidationFailed("I didn't catch an answer.")
    if len(text) > MAX_ANSWER:
        raise ValidationFailed(f"That's longer than {MAX_ANSWER} characters.")
    if kind == "email":
        return to_email(text)
    if kind == "phone":
        return to_e164(text, region)
    if kind == "number":
        try:
            number = float(text.replace(",", ""))
        except ValueError:
            raise ValidationFailed(f"'{text}' is not a number.") from None
        if not math.isfinite(number) or abs(number) > MAX_NUMBER:
            raise ValidationFailed(f"'{text}' is not a number I can use.")
        return int(number) if number.is_integer() else number
    if kind == "date":
        return _date(text, today or date.today()).isoformat()
    if kind == "time":
        clock = parse_clock(text)
        if clock is None:
            raise ValidationFailed(f"'{text}' is not a time I understand (try 10:30 or 2pm).")
        return clock.strftime("%H:%M")
    if kind == "choice":
        return _choice(choices, text)
    return text


def _date(text: str, today: date) -> date:
    """ISO and common written dates; also today, tomorrow and weekday names (the next one)."""
    words = text.lower().strip(" .!").removeprefix("on ").removeprefix("next ").strip()
    relative = {"today": 0, "tomorrow": 1, "the day after tomorrow": 2}
    if words in relative:
        return today + timedelta(days=relative[words])
    for number, name in enumerate(_WEEKDAYS):
        if words in (name, name[:3]):
            return today + timedelta(days=(number - today.weekday() - 1) % 7 + 1)
    cleaned = re.sub(r"(\d)(st|nd|rd|th)\b", r"\1", text.replace(",", ", ")).strip()
    cleaned = re.sub(r"\s+", " ", cleaned)
    for form in _DATE_FORMATS:
        try:
            return datetime.strptime(cleaned, form).date()
        except ValueError:
            continue
    raise ValidationFailed(f"'{text}' is not a date I understand (try 2026-12-03).")


def parse_clock(text: str) -> time | None:
    """``10``, ``10am``, ``2:30 pm``, ``14:30`` -> a time; None if it is not one."""
    match = _CLOCK.match(text)
    if not match:
        return None
    hour, minute = int(match.group(1)), int(match.group(2) or 0)
    half = (match.group(3) or "").lower().replace(".", "")
    if half == "pm" and hour < 12:
        hour += 12
    elif half == "am" and hour == 12:
        hour = 0
    return time(hour, minute) if hour < 24 and minute < 60 else None


def _choice(choices: Sequence[str], text: str) -> str:
    lowered = text.lower().strip(" .!")
    if lowered.isdigit() and 1 <= int(lowered) <= len(choices):
        return choices[int(lowered) - 1]
    exact = [c for c in choices if c.lower() == lowered]
    near = exact or [c for c in choices if c.lower().startswith(lowered) or lowered in c.lower()]
    if len(near) == 1:
        return near[0]
    raise ValidationFailed(f"Please choose one of: {', '.join(choices)}.")
