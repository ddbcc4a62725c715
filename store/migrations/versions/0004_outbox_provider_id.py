"""outbox provider id

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 21:15:54.449449
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("provider_id", sa.String(length=255), nullable=True))
        batch_op.create_index(batch_op.f("ix_outbox_provider_id"), ["provider_id"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_outbox_provider_id"))
        batch_op.drop_column("provider_id")
