"""Qualifications over the API, members' progress, submissions and every transition."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from store.models.base import Base, Id, Json, UtcDateTime, utcnow


class QualificationProgress(Base):
    """Where a member stands with one qualification (``people.qualifications``)."""

    __tablename__ = "qualification_progress"
    __table_args__ = (
        UniqueConstraint("member_id", "qualification", name="uq_qualification_progress_member"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    qualification: Mapped[str] = mapped_column(String(64))
    # enrolled | submitted | provisional | qualified | failed | revoked
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_submitted_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # Simulated chats in progress: requirement id -> {"transcript": [...], "done": bool}.
    drafts: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class QualificationSubmission(Base):
    """One attempt's answers and how each requirement graded."""

    __tablename__ = "qualification_submissions"
    __table_args__ = (Index("ix_qualification_submissions_progress", "progress_id", "id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    progress_id: Mapped[int] = mapped_column(ForeignKey("qualification_progress.id"))
    attempt: Mapped[int] = mapped_column(Integer)
    answers: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    results: Mapped[list[Any]] = mapped_column(Json, default=list)
    passed: Mapped[bool] = mapped_column(Boolean, default=False)
    graded_at: Mapped[datetime | None] = mapped_column(UtcDateTime)  # None: not graded yet
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class QualificationDefinition(Base):
    """A qualification defined or changed over the API; it replaces the YAML one of its name."""

    __tablename__ = "qualification_definitions"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    body: Mapped[dict[str, Any]] = mapped_column(Json)
    updated_by: Mapped[int | None] = mapped_column(ForeignKey("members.id"))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class QualificationEvent(Base):
    """A transition: from which status to which, who did it (None: the grader), why."""

    __tablename__ = "qualification_events"
    __table_args__ = (Index("ix_qualification_events_progress", "progress_id", "id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    progress_id: Mapped[int] = mapped_column(ForeignKey("qualification_progress.id"))
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"))
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
