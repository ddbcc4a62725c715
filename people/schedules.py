"""Weekly schedules: when someone is in, in a time zone, minus holidays and closed dates.

A schedule is weekly opening intervals in a time zone -- several a day for split shifts --
minus public holidays (the ``holidays`` package, by country and subdivision) and extra
closed dates. Times are wall-clock times in that zone, so a Monday 08:00 opening is 08:00
whether or not daylight saving changed on Sunday; a day is judged by its local date.
Everything takes the moment as an argument: tests, and a clock, decide what "now" is.

Shared downward by business hours (``escalation.hours``) and the ``calendar_booking``
ability (``agents``), so it lives below both.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo

import holidays
from pydantic import BaseModel, ConfigDict, Field, field_validator

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_RANGE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")
LOOKAHEAD_DAYS = 400


class Schedule(BaseModel):
    """Weekly opening intervals in a zone, minus holidays and closed dates (shared by
    business hours and the ``calendar_booking`` ability)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    timezone: str | None = Field(default=None, description="Default: the workspace's.")
    weekly: dict[Weekday, list[str]] = Field(
        default_factory=lambda: {d: ["09:00-17:00"] for d in WEEKDAYS[:5]},
        description="Opening intervals per weekday (HH:MM-HH:MM), several for split shifts.",
    )
    holidays: str | None = Field(default=None, description="Country code, e.g. US.")
    subdivision: str | None = None
    closed: list[date] = Field(default_factory=list, description="Extra closed dates.")

    @field_validator("weekly")
    @classmethod
    def _ranges(cls, weekly: dict[Weekday, list[str]]) -> dict[Weekday, list[str]]:
        for day, ranges in weekly.items():
            for text in ranges:
                match = _RANGE.match(text)
                if not match or match.group(3) + match.group(4) <= match.group(1) + match.group(2):
                    raise ValueError(f"{day}: '{text}' is not a range like 09:00-17:00")
        return weekly

    @field_validator("timezone")
    @classmethod
    def _zone(cls, zone: str | None) -> str | None:
        if zone is not None:
            try:
                ZoneInfo(zone)
            except (KeyError, ValueError):
                raise ValueError(f"unknown time zone '{zone}'") from None
        return zone

    @field_validator("holidays")
    @classmethod
    def _country(cls, country: str | None) -> str | None:
        if country is not None and country.upper() not in holidays.list_supported_countries():
            raise ValueError(f"the holidays package does not know country '{country}'")
        return country.upper() if country else None


@lru_cache(maxsize=64)
def _holidays(country: str, subdivision: str | None, year: int) -> holidays.HolidayBase:
    return holidays.country_holidays(country, subdiv=subdivision, years=year)


def _clock(text: str) -> time:
    return time.max if text == "24:00" else time.fromisoformat(text)


def spoken_clock(moment: datetime) -> str:
    """``8 AM``, ``1:30 PM``: a time as a customer reads it."""
    return moment.strftime("%I:%M %p").lstrip("0").replace(":00 ", " ")


class OpeningHours:
    """A ``Schedule`` read at given days and moments, in its zone."""

    def __init__(self, settings: Schedule, default_zone: str) -> None:
        self.settings = settings
        self.zone = ZoneInfo(settings.timezone or default_zone)
        self._weekly = {
            day: sorted((_clock(a), _clock(b)) for a, b in (r.split("-") for r in ranges))
            for day, ranges in settings.weekly.items()
        }

    def why_closed(self, day: date) -> str | None:
        """Why nobody is in on ``day`` at all (a closed date, a holiday, the weekday)."""
        s = self.settings
        if day in s.closed:
            return "we're closed that day"
        if s.holidays and day in _holidays(s.holidays, s.subdivision, day.year):
            return f"that's a holiday ({_holidays(s.holidays, s.subdivision, day.year)[day]})"
        if not self._weekly.get(WEEKDAYS[day.weekday()]):
            return f"we're closed on {day.strftime('%A')}s"
        return None

    def intervals(self, day: date) -> list[tuple[time, time]]:
        """``day``'s opening intervals, local wall-clock times (none on a closed day)."""
        return [] if self.why_closed(day) else self._weekly.get(WEEKDAYS[day.weekday()], [])

    def is_open(self, at: datetime) -> bool:
        local = at.astimezone(self.zone)
        now = local.time().replace(tzinfo=None)
        return any(start <= now < end for start, end in self.intervals(local.date()))

    def next_open(self, at: datetime) -> datetime | None:
        """The next opening after ``at`` (``at`` itself if it is open); None if never."""
        if self.is_open(at):
            return at
        local = at.astimezone(self.zone)
        for offset in range(LOOKAHEAD_DAYS):
            day = local.date() + timedelta(days=offset)
            for start, _ in self.intervals(day):
                opening = datetime.combine(day, start, self.zone)
                if opening > at:
                    return opening
        return None

    def back(self, at: datetime) -> str:
        """When people are back, in words relative to ``at``'s local day."""
        opening = self.next_open(at)
        if opening is None:
            return "as soon as we can"
        local, today = opening.astimezone(self.zone), at.astimezone(self.zone).date()
        clock = spoken_clock(local)
        if local.date() == today:
            return f"at {clock} today"
        if local.date() == today + timedelta(days=1):
            return f"tomorrow at {clock}"
        if local.date() < today + timedelta(days=7):
            return f"on {local.strftime('%A')} at {clock}"
        return f"on {local.strftime('%B')} {local.day} at {clock}"
