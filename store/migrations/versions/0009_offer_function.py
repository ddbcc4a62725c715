"""routing's offer in one round trip (PostgreSQL)

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 02:35:00

``frontdesk_offer(handoff, members[], capacities[], groups[], now)`` tries the seats in
the order given: it locks the operator's member row, counts what they hold afresh (in
READ COMMITTED each statement of a volatile function takes a new snapshot, so the count
sees every offer committed by whoever held the lock before), and offers the handoff with
a conditional UPDATE if they have room. It returns the operator offered it, or NULL when
every seat is full or the handoff was offered elsewhere or closed meanwhile. What
``escalation.routing.offer`` does in Python, in one statement instead of two or more.
SQLite has no functions of this kind: routing there keeps the Python path.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OFFER = """
CREATE OR REPLACE FUNCTION frontdesk_offer(
    p_handoff bigint, p_members bigint[], p_capacities integer[], p_groups text[],
    p_now timestamptz
) RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    i integer;
    held integer;
    offered integer;
BEGIN
    FOR i IN 1 .. coalesce(array_length(p_members, 1), 0) LOOP
        PERFORM 1 FROM members WHERE id = p_members[i] FOR UPDATE;
        SELECT count(*) INTO held FROM handoffs
            WHERE operator_id = p_members[i] AND status = 'open';
        IF held < p_capacities[i] THEN
            UPDATE handoffs
                SET operator_id = p_members[i], operator_group = p_groups[i], offered_at = p_now
                WHERE id = p_handoff AND status = 'open' AND operator_id IS NULL;
            GET DIAGNOSTICS offered = ROW_COUNT;
            IF offered = 1 THEN
                RETURN p_members[i];
            END IF;
            RETURN NULL;  -- offered elsewhere, or closed, meanwhile
        END IF;
    END LOOP;
    RETURN NULL;  -- every seat filled up meanwhile
END
$$;
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(OFFER)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "DROP FUNCTION IF EXISTS frontdesk_offer(bigint, bigint[], integer[], text[], "
            "timestamptz)"
        )
