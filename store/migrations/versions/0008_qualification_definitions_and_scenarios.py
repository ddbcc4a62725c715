"""qualification definitions and scenarios

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 01:13:46.919251
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "qualification_definitions",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column(
            "body",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "updated_by", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["updated_by"],
            ["members.id"],
            name=op.f("fk_qualification_definitions_updated_by_members"),
        ),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_qualification_definitions")),
    )
    with op.batch_alter_table("qualification_progress", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "drafts",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                nullable=False,
                server_default=sa.text("'{}'"),
            )
        )

    with op.batch_alter_table("qualification_submissions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("graded_at", sa.DateTime(timezone=True), nullable=True))
    # Submissions before this revision were graded as they were made.
    op.execute("UPDATE qualification_submissions SET graded_at = created_at")


def downgrade() -> None:
    with op.batch_alter_table("qualification_submissions", schema=None) as batch_op:
        batch_op.drop_column("graded_at")

    with op.batch_alter_table("qualification_progress", schema=None) as batch_op:
        batch_op.drop_column("drafts")

    op.drop_table("qualification_definitions")
