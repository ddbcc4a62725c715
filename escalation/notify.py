"""Notification rules: whom to tell of a new handoff, on which channels -- and why not.

A rule (``escalation.notify``) picks handoffs by trigger, inbox and business hours (in,
out or any), names its recipients by a role or a member filter (DESIGN §6; archived
members are never included), and lists the channels to use (``sms``, ``email``). For each
recipient and channel one decision is recorded (``notifications``, readable at ``GET
/api/handoffs/{id}/notifications``):

- ``sent`` -- queued in the outbox, from the workspace's first SMS number or email inbox;
- ``suppressed`` with the reason: the workspace has no such channel, the member's own
  preference for it is off (``notify.sms``...), or the member has no address on it.

A message is sent only where the rule's channel AND the member's preference are on. Each
notification's outbox key names the handoff, rule, member and channel, so it is sent once.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.errors import ValidationFailed
from people.filters import compile_filter
from store import outbox
from store.models import Conversation, Handoff, Member, Notification, Outbox, utcnow

NotifyChannel = Literal["sms", "email"]
MAX_RECIPIENTS = 200


class NotifyRule(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    triggers: list[str] = Field(default_factory=list, description="Empty: every trigger.")
    inboxes: list[str] = Field(default_factory=list, description="Empty: every inbox.")
    hours: Literal["any", "in", "out"] = "any"
    role: str | None = Field(default=None, description="Everyone with this role...")
    filter: dict[str, Any] | None = Field(default=None, description="...or a member filter.")
    channels: list[NotifyChannel] = Field(default=["sms"], min_length=1)
    message: str = "Handoff: {member} on {channel} needs a person ({reason})."

    @model_validator(mode="after")
    def _recipients(self) -> NotifyRule:
        if (self.role is None) == (self.filter is None):
            raise ValueError("give exactly one of role or filter")
        try:
            compile_filter(self.condition(), "sqlite")
        except ValidationFailed as exc:
            where = "; ".join(f"{d.path}: {d.message}" for d in exc.details)
            raise ValueError(f"filter: {where or exc.message}") from None
        return self

    def condition(self) -> dict[str, Any]:
        if self.role is not None:
            return {"field": "role", "op": "eq", "value": self.role}
        return self.filter or {}

    def applies(self, handoff: Handoff, inbox: str, in_hours: bool | None) -> bool:
        if self.triggers and handoff.trigger not in self.triggers:
            return False
        if self.inboxes and inbox not in self.inboxes:
            return False
        return self.hours == "any" or in_hours is None or (self.hours == "in") == in_hours


def _decide(member: Member, channel: str, senders: dict[str, str]) -> tuple[str | None, str]:
    """(the address to send to, or None) and the reason when there is none."""
    if channel not in senders:
        return None, f"the workspace has no {channel} channel"
    if not getattr(member, f"notify_{channel}"):
        return None, f"the member's {channel} notifications are off"
    address = member.phone if channel == "sms" else member.email
    if not address:
        return None, f"the member has no {'phone' if channel == 'sms' else 'email'} address"
    return address, ""


async def notify(
    session: AsyncSession,
    rules: list[NotifyRule],
    handoff: Handoff,
    conversation: Conversation,
    senders: dict[str, str],
    in_hours: bool | None,
    who: str,
) -> list[Notification]:
    """Apply ``rules`` to a new handoff; ``senders`` maps a channel to the inbox it sends
    from (a channel missing from it is not configured)."""
    dialect = session.get_bind().dialect.name
    decided: list[Notification] = []
    now = utcnow()
    for rule in rules:
        if not rule.applies(handoff, conversation.inbox, in_hours):
            continue
        found = await session.execute(
            select(Member)
            .where(compile_filter(rule.condition(), dialect).condition)
            .where(Member.id != conversation.member_id)
            .order_by(Member.id)
            .limit(MAX_RECIPIENTS)
        )
        text = rule.message
        for key, value in (("member", who), ("channel", conversation.channel),
                           ("reason", handoff.reason), ("inbox", conversation.inbox)):  # fmt: skip
            text = text.replace("{" + key + "}", value)
        for member in found.scalars():
            for channel in rule.channels:
                address, why = _decide(member, channel, senders)
                if address is not None:
                    await outbox.enqueue_many(session, [Outbox(
                        key=f"notify:{handoff.id}:{rule.name}:{member.id}:{channel}",
                        message_id=None, channel=channel, inbox=senders[channel],
                        to_address=address, status="pending", attempts=0, next_attempt_at=now,
                        created_at=now, payload={"text": text, "author": "system",
                                                 "name": "frontdesk"},
                    )])  # fmt: skip
                decided.append(Notification(
                    handoff_id=handoff.id, rule=rule.name, member_id=member.id, channel=channel,
                    status="sent" if address else "suppressed", reason=why, created_at=now,
                ))  # fmt: skip
    session.add_all(decided)
    return decided
