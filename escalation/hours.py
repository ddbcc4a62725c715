"""Business hours: when people are in, and what a customer is told when they are not.

One name, three parts: ``BusinessHoursSettings`` (the YAML: a ``people.schedules.Schedule``
-- weekly intervals, holidays, closed dates -- plus the two messages), ``BusinessHours``
(those settings read at a moment) and ``escalation.settings.BusinessHoursTable`` (which
business hours apply to a conversation: its inbox's, its group's or the workspace's).
``message(at)`` is what a customer is told when a conversation is handed to people: the
``open_message`` in hours, else the ``closed_message`` with ``{back}`` filled from the next
opening ("at 1 PM today", "tomorrow at 8 AM", "on Monday at 9 AM", "on December 28 at 9
AM"), computed, never hard-coded.
"""

from __future__ import annotations

import re
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from people.schedules import OpeningHours, Schedule


class BusinessHoursSettings(Schedule):
    """``escalation.business_hours`` (and per-inbox overrides)."""

    open_message: str = "A person from our team will reply here shortly."
    closed_message: str = "We're closed right now; a person will reply {back}."


class BusinessHours(OpeningHours):
    """Opening hours with the messages a handed-off customer is told."""

    settings: BusinessHoursSettings

    def __init__(self, settings: BusinessHoursSettings, default_zone: str) -> None:
        super().__init__(settings, default_zone)
        self.settings = settings

    def message(self, at: datetime) -> str:
        if self.is_open(at):
            return self.settings.open_message
        return self.settings.closed_message.replace("{back}", self.back(at))


class TriggerSettings(BaseModel):
    """``escalation.triggers``: hand over on words, or when the agent keeps not helping."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    keywords: list[str] = Field(
        default_factory=list,
        description="Regular expressions (case-insensitive); a member message matching one "
        "opens a handoff.",
    )
    turns_without_progress: int | None = Field(
        default=None, ge=1, le=50,
        description="Hand over after this many agent answers in a row that did not help.",
    )  # fmt: skip

    @field_validator("keywords")
    @classmethod
    def _patterns(cls, keywords: list[str]) -> list[str]:
        for i, pattern in enumerate(keywords):
            if len(pattern) > 200:
                raise ValueError(f"[{i}]: longer than 200 characters")
            try:
                re.compile(pattern, re.IGNORECASE)
            except re.error as exc:
                raise ValueError(f"[{i}]: not a regular expression ({exc})") from None
        return keywords

    def matching(self, text: str) -> str | None:
        """The first keyword pattern ``text`` matches."""
        return next((p for p in self.keywords if re.search(p, text, re.IGNORECASE)), None)
