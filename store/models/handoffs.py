"""Handoffs to people and the notifications sent about them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from store.models.base import Base, Id, UtcDateTime, utcnow


class Handoff(Base):
    """A request for a person on a conversation; at most one open per conversation."""

    __tablename__ = "handoffs"
    __table_args__ = (
        Index(
            "uq_handoffs_open",
            "conversation_id",
            unique=True,
            sqlite_where=text("status = 'open'"),
            postgresql_where=text("status = 'open'"),
        ),
        # An operator's load: their open handoffs.
        Index(
            "ix_handoffs_operator_open",
            "operator_id",
            sqlite_where=text("status = 'open'"),
            postgresql_where=text("status = 'open'"),
        ),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id"))
    reason: Mapped[str] = mapped_column(Text)
    trigger: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="open")  # open | closed
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # Live operators: offered to (``operator_id``, ``offered_at``), then taken
    # (``taken_at``); ``notified_at`` once the notification rules ran for it.
    operator_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"))
    operator_group: Mapped[str | None] = mapped_column(String(64))
    offered_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_offered_to: Mapped[int | None] = mapped_column(Id)  # whose offer ran out last
    taken_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    notified_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    closed_by: Mapped[int | None] = mapped_column(ForeignKey("members.id"))


class Notification(Base):
    """One decision about telling a team member of a handoff: sent, or why not."""

    __tablename__ = "notifications"
    __table_args__ = (
        Index("ix_notifications_handoff", "handoff_id", "id"),
        # One decision per step of a rule's ladder, member and channel, however many
        # processes get there.
        Index(
            "uq_notifications_decision",
            "handoff_id", "rule", "step", "member_id", "channel",
            unique=True,
        ),
    )  # fmt: skip

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    handoff_id: Mapped[int] = mapped_column(ForeignKey("handoffs.id"))
    rule: Mapped[str] = mapped_column(String(64))
    step: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # ladder step
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    channel: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))  # sent | suppressed
    reason: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
