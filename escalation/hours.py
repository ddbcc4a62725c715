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

from datetime import datetime

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
