"""The schema. Changed only through Alembic migrations (``store/migrations``).

Ids are integers; the ordering of inbound work, messages and the outbox follows them.
Timestamps are timezone-aware UTC (stored naive-UTC on SQLite, ``timestamptz`` on
PostgreSQL, via ``UtcDateTime``).

The tables live in one module per area (``base`` for what they share); importing this
package registers them all.
"""

from store.models.base import NAMING, Base, Id, Json, UtcDateTime, table_of, utcnow
from store.models.conversations import Booking, Conversation, Inbound, Message, Outbox
from store.models.handoffs import Handoff, Notification
from store.models.members import (
    ApiToken,
    Consent,
    Identity,
    Import,
    ImportRowError,
    Label,
    Member,
    MemberMerge,
    StoredRole,
)
from store.models.qualifications import (
    QualificationDefinition,
    QualificationEvent,
    QualificationProgress,
    QualificationSubmission,
)

__all__ = [
    "NAMING",
    "ApiToken",
    "Base",
    "Booking",
    "Consent",
    "Conversation",
    "Handoff",
    "Id",
    "Identity",
    "Import",
    "ImportRowError",
    "Inbound",
    "Json",
    "Label",
    "Member",
    "MemberMerge",
    "Message",
    "Notification",
    "Outbox",
    "QualificationDefinition",
    "QualificationEvent",
    "QualificationProgress",
    "QualificationSubmission",
    "StoredRole",
    "UtcDateTime",
    "table_of",
    "utcnow",
]
