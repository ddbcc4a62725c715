"""People: merges, API-managed roles, imports, passwords and filter indexes

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 05:06:56.742537
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "roles",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column(
            "definition",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_roles")),
    )
    op.create_table(
        "imports",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("actor_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("processed", sa.Integer(), nullable=False),
        sa.Column("created", sa.Integer(), nullable=False),
        sa.Column("updated", sa.Integer(), nullable=False),
        sa.Column("unchanged", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["actor_id"], ["members.id"], name=op.f("fk_imports_actor_id_members")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_imports")),
    )
    op.create_table(
        "member_merges",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "primary_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "duplicate_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("actor_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column(
            "moved",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["actor_id"], ["members.id"], name=op.f("fk_member_merges_actor_id_members")
        ),
        sa.ForeignKeyConstraint(
            ["duplicate_id"], ["members.id"], name=op.f("fk_member_merges_duplicate_id_members")
        ),
        sa.ForeignKeyConstraint(
            ["primary_id"], ["members.id"], name=op.f("fk_member_merges_primary_id_members")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_member_merges")),
    )
    with op.batch_alter_table("member_merges", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_member_merges_duplicate_id"), ["duplicate_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_member_merges_primary_id"), ["primary_id"], unique=False
        )

    op.create_table(
        "import_errors",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "import_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("row", sa.Integer(), nullable=False),
        sa.Column("column", sa.String(length=200), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["import_id"], ["imports.id"], name=op.f("fk_import_errors_import_id_imports")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_import_errors")),
    )
    with op.batch_alter_table("import_errors", schema=None) as batch_op:
        batch_op.create_index("ix_import_errors_import", ["import_id", "row"], unique=False)

    with op.batch_alter_table("member_labels", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_member_labels_label"))
        batch_op.create_index("ix_member_labels_label_member", ["label", "member_id"], unique=False)

    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.add_column(sa.Column("password_hash", sa.String(length=200), nullable=True))
        batch_op.create_index("ix_members_created_at", ["created_at"], unique=False)
        batch_op.create_index("ix_members_last_active_at", ["last_active_at"], unique=False)

    if op.get_bind().dialect.name == "postgresql":
        # `data.x eq v` filters compile to `data @> {"x": v}`, which this index serves.
        op.create_index(
            "ix_members_data",
            "members",
            ["data"],
            postgresql_using="gin",
            postgresql_ops={"data": "jsonb_path_ops"},
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_members_data", table_name="members")
    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.drop_index("ix_members_last_active_at")
        batch_op.drop_index("ix_members_created_at")
        batch_op.drop_column("password_hash")

    with op.batch_alter_table("member_labels", schema=None) as batch_op:
        batch_op.drop_index("ix_member_labels_label_member")
        batch_op.create_index(batch_op.f("ix_member_labels_label"), ["label"], unique=False)

    with op.batch_alter_table("import_errors", schema=None) as batch_op:
        batch_op.drop_index("ix_import_errors_import")

    op.drop_table("import_errors")
    with op.batch_alter_table("member_merges", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_member_merges_primary_id"))
        batch_op.drop_index(batch_op.f("ix_member_merges_duplicate_id"))

    op.drop_table("member_merges")
    op.drop_table("imports")
    op.drop_table("roles")
