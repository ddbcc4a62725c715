"""``phone_controls``: transfer, hang up, send DTMF, hold -- on a voice call only.

A transfer goes only to a destination the admin listed (``destinations``: a name -> an
E.164 number); the model may name the destination or give its number, and any other
number -- an international one it was talked into dialling, say -- is refused. The
controls run when the call's reply is said (``channels.voice`` turns them into TwiML).
"""

from __future__ import annotations

import re
from typing import ClassVar, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, field_validator

from agents.abilities import AbilityContext, AbilityResult
from people.identities import to_e164
from people.roles import Need
from store.errors import ValidationFailed
from store.payloads import Dtmf, Hangup, Hold, Transfer

_DIGITS = re.compile(r"^[0-9*#wW]{1,32}$")


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    destinations: dict[str, str] = Field(
        default_factory=dict, description="Where calls may be transferred: name -> E.164."
    )
    hold_music: str | None = Field(default=None, description="An audio URL played on hold.")

    @field_validator("destinations")
    @classmethod
    def _numbers(cls, destinations: dict[str, str]) -> dict[str, str]:
        return {name: to_e164(number, "ZZ") for name, number in destinations.items()}


class Arguments(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["transfer", "hangup", "dtmf", "hold"]
    to: str | None = Field(default=None, max_length=64, description="A destination's name.")
    digits: str | None = Field(default=None, max_length=32, description="For dtmf.")


class PhoneControls:
    name: ClassVar[str] = "phone_controls"
    description: ClassVar[str] = (
        "Control the phone call: action=transfer with to=<destination name>, action=hangup, "
        "action=dtmf with digits, action=hold."
    )
    settings_model: ClassVar[type[BaseModel]] = Settings
    arguments: ClassVar[type[BaseModel]] = Arguments
    need: ClassVar[Need] = Need()

    async def run(self, context: AbilityContext, arguments: BaseModel) -> AbilityResult:
        args = cast(Arguments, arguments)
        if context.channel != "voice":
            return AbilityResult("Phone controls only work on a phone call.", refused=True)
        settings = Settings.model_validate(context.abilities.get(self.name, {}))
        if args.action == "hangup":
            return AbilityResult("Goodbye.", actions=(Hangup(),))
        if args.action == "hold":
            return AbilityResult("Please hold.", actions=(Hold(music=settings.hold_music or None),))
        if args.action == "dtmf":
            if not args.digits or not _DIGITS.match(args.digits):
                return AbilityResult("DTMF digits are 0-9, * and # (w waits).", refused=True)
            return AbilityResult("Sending the tones.", actions=(Dtmf(digits=args.digits),))
        number = _destination(settings, args.to or "")
        if number is None:
            names = ", ".join(settings.destinations) or "none"
            return AbilityResult(f"I can only transfer to: {names}.", refused=True)
        return AbilityResult("Transferring you now.", actions=(Transfer(to=number),))


def _destination(settings: Settings, wanted: str) -> str | None:
    if wanted in settings.destinations:
        return settings.destinations[wanted]
    try:
        number = to_e164(wanted, "ZZ")
    except ValidationFailed:
        return None
    return number if number in settings.destinations.values() else None


ABILITY = PhoneControls()
