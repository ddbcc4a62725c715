"""qualifications

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29 23:59:32.357844
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "qualification_progress",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "member_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("qualification", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_submitted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_qualification_progress_member_id_members")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_qualification_progress")),
        sa.UniqueConstraint("member_id", "qualification", name="uq_qualification_progress_member"),
    )
    op.create_table(
        "qualification_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "progress_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("from_status", sa.String(length=16), nullable=True),
        sa.Column("to_status", sa.String(length=16), nullable=False),
        sa.Column("actor_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["actor_id"], ["members.id"], name=op.f("fk_qualification_events_actor_id_members")
        ),
        sa.ForeignKeyConstraint(
            ["progress_id"],
            ["qualification_progress.id"],
            name=op.f("fk_qualification_events_progress_id_qualification_progress"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_qualification_events")),
    )
    with op.batch_alter_table("qualification_events", schema=None) as batch_op:
        batch_op.create_index(
            "ix_qualification_events_progress", ["progress_id", "id"], unique=False
        )

    op.create_table(
        "qualification_submissions",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "progress_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column(
            "answers",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "results",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["progress_id"],
            ["qualification_progress.id"],
            name=op.f("fk_qualification_submissions_progress_id_qualification_progress"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_qualification_submissions")),
    )
    with op.batch_alter_table("qualification_submissions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_qualification_submissions_progress", ["progress_id", "id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("qualification_submissions", schema=None) as batch_op:
        batch_op.drop_index("ix_qualification_submissions_progress")

    op.drop_table("qualification_submissions")
    with op.batch_alter_table("qualification_events", schema=None) as batch_op:
        batch_op.drop_index("ix_qualification_events_progress")

    op.drop_table("qualification_events")
    op.drop_table("qualification_progress")
