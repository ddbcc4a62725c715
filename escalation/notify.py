"""Notification rules: whom to tell of a new handoff, on which channels -- and why not.

A rule (``escalation.notify``) picks handoffs by trigger, inbox and business hours (in,
out or any), names its recipients by a role or a member filter (DESIGN §6; archived
members are never included), lists the channels to use at once (``sms``, ``email``,
``voice``), and optionally a ladder of later steps (more channels after N seconds, run
only while nobody has taken the conversation) and quiet hours. For each step, recipient
and channel one decision is recorded (``notifications``, readable at ``GET
/api/handoffs/{id}/notifications``):

- ``sent`` -- queued in the outbox, from the workspace's first SMS number, email inbox or
  voice number (a voice notification is a call that lets the member press 1 to take it);
- ``suppressed`` with the reason: the workspace has no such channel, the member's own
  preference for it is off (``notify.sms``...), the member has no address on it, or the
  rule's quiet hours.

A message is sent only where the rule's channel AND the member's preference are on. Each
notification's outbox key names the handoff, rule, step, member and channel, so it is sent
once; the decisions are unique on the same, so two processes record one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from people.filters import compile_filter
from store import outbox
from store.engine import insert
from store.errors import ValidationFailed
from store.models import Conversation, Handoff, Member, Notification, table_of, utcnow
from store.payloads import OutboxPayload

NotifyChannel = Literal["sms", "email", "voice"]
MAX_RECIPIENTS = 200
_QUIET = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")
ADDRESS = {"sms": "phone", "voice": "phone", "email": "email"}
NOBODY = {"field": "kind", "op": "eq", "value": "nobody"}  # matches no member


class LadderStep(BaseModel):
    """A later step: more channels, if nobody has taken the conversation by then."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    after_seconds: float = Field(gt=0, le=86_400, description="After the first notification.")
    channels: list[NotifyChannel] = Field(min_length=1)


class NotifyRule(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    triggers: list[str] = Field(default_factory=list, description="Empty: every trigger.")
    inboxes: list[str] = Field(default_factory=list, description="Empty: every inbox.")
    workflows: list[str] = Field(default_factory=list, description="Empty: any (or no) workflow.")
    hours: Literal["any", "in", "out"] = "any"
    group: str | None = Field(default=None, description="An operator group's members...")
    role: str | None = Field(default=None, description="...or everyone with this role...")
    filter: dict[str, Any] | None = Field(default=None, description="...or a member filter.")
    channels: list[NotifyChannel] = Field(default=["sms"], min_length=1)
    message: str = "Handoff: {member} on {channel} needs a person ({reason})."
    ladder: list[LadderStep] = Field(
        default_factory=list, description="Later steps while nobody has taken it."
    )
    quiet_hours: str | None = Field(
        default=None,
        description="HH:MM-HH:MM in the workspace's time zone (may cross midnight): this "
        "rule notifies nobody then (each decision is recorded as suppressed).",
    )

    @field_validator("quiet_hours")
    @classmethod
    def _quiet(cls, value: str | None) -> str | None:
        if value is not None and not _QUIET.match(value):
            raise ValueError(f"'{value}' is not a range like 22:00-07:00")
        return value

    @field_validator("channels")
    @classmethod
    def _once_each(cls, channels: list[NotifyChannel]) -> list[NotifyChannel]:
        return list(dict.fromkeys(channels))

    @field_validator("ladder")
    @classmethod
    def _rising(cls, ladder: list[LadderStep]) -> list[LadderStep]:
        waits = [step.after_seconds for step in ladder]
        if waits != sorted(set(waits)):
            raise ValueError("steps must wait longer and longer (after_seconds increasing)")
        return ladder

    def is_quiet(self, at: datetime, zone: str) -> bool:
        if self.quiet_hours is None:
            return False
        start, end = (time.fromisoformat(t) for t in self.quiet_hours.split("-"))
        now = at.astimezone(ZoneInfo(zone)).time()
        return start <= now < end if start <= end else (now >= start or now < end)

    def channels_at(self, step: int) -> list[NotifyChannel]:
        """Step 0 is ``channels``, at once; step N is ``ladder[N-1]``."""
        if step == 0:
            return self.channels
        return self.ladder[step - 1].channels if step <= len(self.ladder) else []

    @model_validator(mode="after")
    def _recipients(self) -> NotifyRule:
        if [self.role, self.filter, self.group].count(None) != 2:
            raise ValueError("give exactly one of group, role or filter")
        try:
            compile_filter(self.condition({}), "sqlite")
        except ValidationFailed as exc:
            where = "; ".join(f"{d.path}: {d.message}" for d in exc.details)
            raise ValueError(f"filter: {where or exc.message}") from None
        return self

    def condition(self, groups: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
        """The recipients as a member filter (``groups``: operator group -> its filter)."""
        if self.group is not None:
            return dict(groups.get(self.group, NOBODY))
        if self.role is not None:
            return {"field": "role", "op": "eq", "value": self.role}
        return self.filter or {}

    def applies(self, handoff: Handoff, conversation: Conversation, in_hours: bool | None) -> bool:
        if self.triggers and handoff.trigger not in self.triggers:
            return False
        if self.inboxes and conversation.inbox not in self.inboxes:
            return False
        if self.workflows and conversation.workflow not in self.workflows:
            return False
        return self.hours == "any" or in_hours is None or (self.hours == "in") == in_hours


def _decide(member: Member, channel: str, senders: dict[str, str]) -> tuple[str | None, str]:
    """(the address to send to, or None) and the reason when there is none."""
    if channel not in senders:
        return None, f"the workspace has no {channel} channel"
    if not getattr(member, f"notify_{channel}"):
        return None, f"the member's {channel} notifications are off"
    address = member.phone if ADDRESS[channel] == "phone" else member.email
    if not address:
        return None, f"the member has no {ADDRESS[channel]} address"
    return address, ""


@dataclass(frozen=True)
class Moment:
    """When a notification step is decided, and how to read the clock then."""

    at: datetime
    zone: str
    in_hours: bool | None
    step: int = 0


async def notify(
    session: AsyncSession,
    rules: list[NotifyRule],
    handoff: Handoff,
    conversation: Conversation,
    senders: dict[str, str],
    moment: Moment,
    who: str,
    groups: Mapping[str, dict[str, Any]] | None = None,
) -> list[Notification]:
    """Apply ``rules`` (their step ``moment.step``) to a handoff; ``senders`` maps a channel
    to the inbox it sends from (a channel missing from it is not configured)."""
    dialect = session.get_bind().dialect.name
    decided: list[Notification] = []
    now = utcnow()
    for rule in rules:
        channels = rule.channels_at(moment.step)
        if not channels or not rule.applies(handoff, conversation, moment.in_hours):
            continue
        found = await session.execute(
            select(Member)
            .where(compile_filter(rule.condition(groups or {}), dialect).condition)
            .where(Member.id != conversation.member_id)
            .order_by(Member.id)
            .limit(MAX_RECIPIENTS)
        )
        text = rule.message
        for key, value in (
            ("member", who),
            ("channel", conversation.channel),
            ("reason", handoff.reason),
            ("inbox", conversation.inbox),
        ):
            text = text.replace("{" + key + "}", value)
        quiet = rule.is_quiet(moment.at, moment.zone)
        payload = OutboxPayload(
            text=text, author="system", name="frontdesk", context={"handoff": str(handoff.id)}
        )
        for member in found.scalars():
            for channel in channels:
                address, why = (None, "quiet hours") if quiet else _decide(member, channel, senders)
                if address is not None:
                    key = f"notify:{handoff.id}:{rule.name}:{moment.step}:{member.id}:{channel}"
                    row = outbox.row(
                        key,
                        channel=channel,
                        inbox=senders[channel],
                        to=address,
                        payload=payload,
                        now=now,
                    )
                    await outbox.enqueue_many(session, [row])
                decided.append(
                    Notification(
                        handoff_id=handoff.id,
                        rule=rule.name,
                        step=moment.step,
                        member_id=member.id,
                        channel=channel,
                        status="sent" if address else "suppressed",
                        reason=why,
                        created_at=now,
                    )
                )
    if decided:
        table = table_of(Notification)
        columns = [c.key for c in table.columns if c.key != "id"]
        await session.execute(
            insert(session, Notification).on_conflict_do_nothing(
                index_elements=["handoff_id", "rule", "step", "member_id", "channel"]
            ),
            [{c: getattr(n, c) for c in columns} for n in decided],
        )
    return decided
