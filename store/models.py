"""The schema. Changed only through Alembic migrations (``store/migrations``).

Ids are integers; the ordering of inbound work, messages and the outbox follows them.
Timestamps are timezone-aware UTC (stored naive-UTC on SQLite, ``timestamptz`` on
PostgreSQL, via ``UtcDateTime``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

Id = BigInteger().with_variant(Integer(), "sqlite")
Json = JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on every back end."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def table_of(model: type[Base]) -> Table:
    """The Core table behind ``model``, for bulk statements that skip the ORM (an ORM
    bulk INSERT or UPDATE costs several times more to build than the Core one)."""
    table = model.__table__
    if not isinstance(table, Table):
        raise TypeError(f"{model.__name__} is not mapped to a table")
    return table


class Member(Base):
    __tablename__ = "members"
    __table_args__ = (
        Index("ix_members_created_at", "created_at"),
        Index("ix_members_last_active_at", "last_active_at"),
        # PostgreSQL also has ix_members_data, a GIN (jsonb_path_ops) index on data that
        # serves `data.x eq v` filters; it is created in migration 0002 for PostgreSQL only.
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))  # team | contact | anonymous
    name: Mapped[str | None] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320), index=True)
    phone: Mapped[str | None] = mapped_column(String(32), index=True)
    role: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    notify_sms: Mapped[bool] = mapped_column(Boolean, default=True)
    notify_email: Mapped[bool] = mapped_column(Boolean, default=True)
    notify_voice: Mapped[bool] = mapped_column(Boolean, default=True)
    archived: Mapped[bool] = mapped_column(Boolean, default=False)
    merged_into: Mapped[int | None] = mapped_column(ForeignKey("members.id"))
    password_hash: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    last_active_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class Identity(Base):
    __tablename__ = "identities"
    __table_args__ = (UniqueConstraint("kind", "address", name="uq_identities_kind_address"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    address: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class Label(Base):
    __tablename__ = "member_labels"
    __table_args__ = (Index("ix_member_labels_label_member", "label", "member_id"),)

    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), primary_key=True)
    label: Mapped[str] = mapped_column(String(100), primary_key=True)


class MemberMerge(Base):
    """Who merged which duplicate into which member, when, why, and what moved."""

    __tablename__ = "member_merges"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    primary_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    duplicate_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"))
    reason: Mapped[str] = mapped_column(Text)
    moved: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class StoredRole(Base):
    """A role defined or changed through the API; it overrides YAML and built-ins."""

    __tablename__ = "roles"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    definition: Mapped[dict[str, Any]] = mapped_column(Json)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class Import(Base):
    """A CSV import and its progress."""

    __tablename__ = "imports"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"))
    status: Mapped[str] = mapped_column(String(16), default="queued")  # queued|running|done|failed
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    total: Mapped[int] = mapped_column(Integer, default=0)
    processed: Mapped[int] = mapped_column(Integer, default=0)
    created: Mapped[int] = mapped_column(Integer, default=0)
    updated: Mapped[int] = mapped_column(Integer, default=0)
    unchanged: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # Written by the process running it, every people.import_heartbeat_seconds.
    heartbeat_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class ImportRowError(Base):
    """One row an import could not take: row as a spreadsheet numbers it, column, why."""

    __tablename__ = "import_errors"
    __table_args__ = (Index("ix_import_errors_import", "import_id", "row"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    import_id: Mapped[int] = mapped_column(ForeignKey("imports.id"))
    row: Mapped[int] = mapped_column(Integer)
    column: Mapped[str] = mapped_column(String(200))
    message: Mapped[str] = mapped_column(Text)


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class Conversation(Base):
    __tablename__ = "conversations"
    __table_args__ = (Index("ix_conversations_open", "member_id", "channel", "inbox", "status"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    channel: Mapped[str] = mapped_column(String(32))
    inbox: Mapped[str] = mapped_column(String(320))
    status: Mapped[str] = mapped_column(String(16), default="bot")  # bot|queued|operator|closed
    agent: Mapped[str | None] = mapped_column(String(64))
    workflow: Mapped[str | None] = mapped_column(String(64))
    data: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class Inbound(Base):
    """Every accepted inbound delivery: the dedupe receipt and the durable work item."""

    __tablename__ = "inbound"
    __table_args__ = (
        UniqueConstraint("channel", "external_id", name="uq_inbound_channel_external_id"),
        Index("ix_inbound_pending", "status", "queue_key", "id"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(32))
    external_id: Mapped[str] = mapped_column(String(255))
    inbox: Mapped[str] = mapped_column(String(320))
    sender_kind: Mapped[str] = mapped_column(String(16))
    sender: Mapped[str] = mapped_column(String(320))
    queue_key: Mapped[str] = mapped_column(String(700))
    text: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending|done|failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (Index("ix_messages_conversation", "conversation_id", "id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id"))
    inbound_id: Mapped[int | None] = mapped_column(ForeignKey("inbound.id"), unique=True)
    direction: Mapped[str] = mapped_column(String(8))  # in | out | note (internal, never sent)
    author: Mapped[str] = mapped_column(String(16))  # member | agent | operator | system
    author_name: Mapped[str | None] = mapped_column(String(200))
    text: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    provider_id: Mapped[str | None] = mapped_column(String(255), index=True)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class Outbox(Base):
    """One delivery to make. ``key`` makes a re-run of the same turn a no-op."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(255), unique=True)
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"))
    channel: Mapped[str] = mapped_column(String(32))
    inbox: Mapped[str] = mapped_column(String(320))
    to_address: Mapped[str] = mapped_column(String(320))
    payload: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending|sent|failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    lease_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    provider_id: Mapped[str | None] = mapped_column(String(255), index=True)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # When the latest attempt began, and the earliest attempt since the last recorded
    # outcome that may have reached the provider unrecorded (a crash or a timeout while
    # sending): before sending again, the provider is asked whether it went out.
    attempted_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    unsure_since: Mapped[datetime | None] = mapped_column(UtcDateTime)


class Consent(Base):
    """A member's word on being messaged over a channel (SMS ``STOP`` / ``START``): who,
    which address, in or out, when, and the message that said it. The latest record of
    an address is in force."""

    __tablename__ = "consents"
    __table_args__ = (Index("ix_consents_address", "channel", "address", "id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    member_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"))
    channel: Mapped[str] = mapped_column(String(32))
    address: Mapped[str] = mapped_column(String(320))
    choice: Mapped[str] = mapped_column(String(8))  # in | out
    text: Mapped[str] = mapped_column(Text)
    inbound_id: Mapped[int | None] = mapped_column(ForeignKey("inbound.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


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


class Booking(Base):
    """An appointment a member booked through an agent (``calendar_booking``).

    At most one booked appointment per calendar and start time: the partial unique index
    is what stops two conversations taking the same slot at once.
    """

    __tablename__ = "bookings"
    __table_args__ = (
        Index(
            "uq_bookings_slot",
            "calendar",
            "starts_at",
            unique=True,
            sqlite_where=text("status = 'booked'"),
            postgresql_where=text("status = 'booked'"),
        ),
        Index("ix_bookings_member", "member_id", "status"),
        Index("ix_bookings_conversation", "conversation_id", "status"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    calendar: Mapped[str] = mapped_column(String(64))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    conversation_id: Mapped[int | None] = mapped_column(ForeignKey("conversations.id"))
    starts_at: Mapped[datetime] = mapped_column(UtcDateTime)
    ends_at: Mapped[datetime] = mapped_column(UtcDateTime)
    status: Mapped[str] = mapped_column(String(16), default="booked")  # booked | cancelled
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    cancelled_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


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
