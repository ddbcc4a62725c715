"""merged members keep no email or phone

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 06:45:00

A merge moves the duplicate's identities to the primary; since this release it also
clears the duplicate's own ``email`` and ``phone`` (people.merges), so a merged member
shows no address it no longer has and a filter on an address finds only its holder. This
clears them on members merged before. Data only: nothing to undo (the merge record keeps
what moved).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("UPDATE members SET email = NULL, phone = NULL WHERE merged_into IS NOT NULL")


def downgrade() -> None:
    pass  # the addresses live on in member_merges.moved; nothing is restored
