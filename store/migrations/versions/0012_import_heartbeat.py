"""imports.heartbeat_at: a running import's last sign of life

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 06:40:00

The process running an import writes ``heartbeat_at`` every few seconds; an import still
``queued`` or ``running`` whose heartbeat stopped belonged to a process that died, and is
marked failed with what it had done (``gateway.api.imports.give_up_stale``).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("imports") as batch:
        batch.add_column(sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("imports") as batch:
        batch.drop_column("heartbeat_at")
