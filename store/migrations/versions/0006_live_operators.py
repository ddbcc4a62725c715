"""live operators

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 22:31:35.372039
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Decisions become unique; earlier versions could record one twice (a channel listed
    # twice in a rule): keep the first of each.
    op.execute(
        "DELETE FROM notifications WHERE id NOT IN (SELECT MIN(id) FROM notifications "
        "GROUP BY handoff_id, rule, member_id, channel)"
    )
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.add_column(sa.Column("step", sa.Integer(), server_default="0", nullable=False))
        batch_op.create_index(
            "uq_notifications_decision",
            ["handoff_id", "rule", "step", "member_id", "channel"],
            unique=True,
        )
    with op.batch_alter_table("handoffs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "operator_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
            )
        )
        batch_op.add_column(sa.Column("operator_group", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("offered_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column(
                "last_offered_to",
                sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                nullable=True,
            )
        )
        batch_op.add_column(sa.Column("taken_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("notified_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column(
                "closed_by", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
            )
        )
        batch_op.create_index(
            "ix_handoffs_operator_open",
            ["operator_id"],
            unique=False,
            sqlite_where=sa.text("status = 'open'"),
            postgresql_where=sa.text("status = 'open'"),
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_handoffs_closed_by_members"), "members", ["closed_by"], ["id"]
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_handoffs_operator_id_members"), "members", ["operator_id"], ["id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_index("uq_notifications_decision")
        batch_op.drop_column("step")
    with op.batch_alter_table("handoffs", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_handoffs_operator_id_members"), type_="foreignkey")
        batch_op.drop_constraint(batch_op.f("fk_handoffs_closed_by_members"), type_="foreignkey")
        batch_op.drop_index("ix_handoffs_operator_open")
        batch_op.drop_column("closed_by")
        batch_op.drop_column("notified_at")
        batch_op.drop_column("taken_at")
        batch_op.drop_column("last_offered_to")
        batch_op.drop_column("offered_at")
        batch_op.drop_column("operator_group")
        batch_op.drop_column("operator_id")
