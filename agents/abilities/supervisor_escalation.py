"""``supervisor_escalation``: the model asks for a person, with a reason.

The hand-off itself belongs to the escalation layer: this ability only returns the request,
which the pipeline turns into a handoff in the same transaction as the reply. There is at
most one open handoff per conversation (``escalation.handoffs.request``), so asking twice
changes nothing.
"""

from __future__ import annotations

from typing import ClassVar, cast

from pydantic import BaseModel, ConfigDict, Field

from agents.abilities import AbilityContext, AbilityResult
from agents.base import EscalationRequest
from people.roles import Need


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message: str = Field(
        default="I've asked a person to take over; they'll reply here.",
        description="What the model is told to tell the member.",
    )


class Arguments(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=500, description="Why a person is needed.")


class SupervisorEscalation:
    name: ClassVar[str] = "supervisor_escalation"
    description: ClassVar[str] = (
        "Hand this conversation to a human team member. Use it when the member asks for a "
        "person, or when you cannot help. Give the reason."
    )
    settings_model: ClassVar[type[BaseModel]] = Settings
    arguments: ClassVar[type[BaseModel]] = Arguments
    need: ClassVar[Need] = Need()  # anyone may ask for a person

    async def run(self, context: AbilityContext, arguments: BaseModel) -> AbilityResult:
        reason = cast(Arguments, arguments).reason
        settings = Settings.model_validate(context.abilities.get(self.name, {}))
        return AbilityResult(
            settings.message,
            escalation=EscalationRequest(reason=reason, trigger="ability"),
        )


ABILITY = SupervisorEscalation()
