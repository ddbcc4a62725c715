"""``escalation:`` as a whole: triggers, business hours (workspace, per inbox, per operator
group), notification rules and live operators -- and ``BusinessHoursTable``, which picks
the business hours that apply to a conversation."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from escalation.hours import BusinessHours, BusinessHoursSettings
from escalation.notify import NotifyRule
from escalation.operators import OperatorSettings, Routed
from escalation.triggers import TriggerSettings
from store.errors import repeats


class EscalationSettings(BaseModel):
    """``escalation:``: business hours (for the workspace and per inbox), triggers,
    notification rules and live operators."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    triggers: TriggerSettings = TriggerSettings()
    notify: list[NotifyRule] = Field(
        default_factory=list, description="Whom to tell of a new handoff (escalation.notify)."
    )

    business_hours: BusinessHoursSettings | None = Field(
        default=None, description="None: no hours message is added to a handoff."
    )
    inboxes: dict[str, BusinessHoursSettings] = Field(
        default_factory=dict, description="Per inbox address: hours of their own."
    )
    operators: OperatorSettings = Field(
        default_factory=OperatorSettings, description="The live operator mode (off by default)."
    )

    @model_validator(mode="after")
    def _groups_named(self) -> EscalationSettings:
        known = {g.name for g in self.operators.groups}
        for i in repeats([rule.name for rule in self.notify]):
            raise ValueError(f"notify[{i}].name: '{self.notify[i].name}' is used twice")
        for i, rule in enumerate(self.notify):
            if rule.group is not None and rule.group not in known:
                listed = ", ".join(sorted(known)) or "none defined"
                raise ValueError(f"notify[{i}].group: no operator group '{rule.group}' ({listed})")
        return self

    def group_filters(self) -> dict[str, dict[str, Any]]:
        """Each operator group's members as a member filter (for notification rules)."""
        return {g.name: g.condition() for g in self.operators.groups}


class BusinessHoursTable:
    """Which business hours apply to a conversation: its inbox's own, else those of the
    first operator group that handles it and has hours of its own, else the workspace's."""

    def __init__(self, settings: EscalationSettings, default_zone: str) -> None:
        self._default = (
            BusinessHours(settings.business_hours, default_zone)
            if settings.business_hours
            else None
        )
        self._inboxes = {k: BusinessHours(v, default_zone) for k, v in settings.inboxes.items()}
        self._groups = [
            (group, BusinessHours(group.hours, default_zone))
            for group in settings.operators.groups
            if group.hours is not None
        ]

    def for_conversation(self, conversation: Routed) -> BusinessHours | None:
        if conversation.inbox in self._inboxes:
            return self._inboxes[conversation.inbox]
        for group, hours in self._groups:
            if group.handles(conversation):
                return hours
        return self._default

    def handoff_message(self, conversation: Routed, at: datetime | None = None) -> str | None:
        hours = self.for_conversation(conversation)
        return hours.message(at or datetime.now(UTC)) if hours is not None else None
