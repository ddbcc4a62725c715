"""Triggers: when a conversation the agent is handling is handed to people.

Besides the agent's own request (a person asked for, an ability or a workflow step that
escalates), ``escalation.triggers`` adds two: a member message matching a keyword
pattern, and ``turns_without_progress`` agent answers in a row that did not help. The
pipeline asks these functions after each turn; what a handoff then does is
``escalation``'s rules and routing.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from agents.base import EscalationRequest


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


def keyword_escalation(triggers: TriggerSettings, text: str) -> EscalationRequest | None:
    """A handoff for a member message that matches a keyword pattern."""
    matched = triggers.matching(text)
    if matched is None:
        return None
    return EscalationRequest(f"the message matched '{matched}'", "keyword")


def count_unhelped(
    triggers: TriggerSettings, data: dict[str, Any], unanswered: bool
) -> EscalationRequest | None:
    """Count, in a conversation's ``data``, the agent's answers in a row that did not help
    (``unanswered``: the embedded model says so); a handoff once they reach the limit."""
    stalled = triggers.turns_without_progress
    if stalled is None:
        return None
    data["unhelped"] = int(data.get("unhelped", 0)) + 1 if unanswered else 0
    if data["unhelped"] < stalled:
        return None
    return EscalationRequest(f"{data['unhelped']} answers in a row did not help", "no_progress")
