"""The outbox: every reply is a row here before it is sent.

A row is claimed with a lease (so two processes never send it at once, and a crashed
sender's row is picked up when its lease runs out), then marked sent, rescheduled or
failed. ``key`` is unique: re-running the turn that produced a reply inserts nothing.

A claim whose row still held a lease means the last attempt ended unrecorded (its
process died while sending): that attempt may have reached the provider, so the row
comes back ``unsure_since`` that attempt, and the deliverer asks the provider before
sending again. A retry after a timeout keeps the same doubt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from pydantic import ValidationError
from sqlalchemy import and_, bindparam, case, func, or_, select, type_coerce, update
from sqlalchemy.ext.asyncio import AsyncSession

from store.engine import insert
from store.models import Message, Outbox, UtcDateTime, table_of, utcnow
from store.payloads import OutboxPayload

# Core tables for the hot statements: ORM-enabled UPDATEs cost several times more to build.
_OUTBOX = table_of(Outbox)


@dataclass(frozen=True)
class Due:
    """A claimed delivery, detached from the session."""

    id: int
    key: str
    message_id: int | None
    channel: str
    inbox: str
    to_address: str
    payload: OutboxPayload
    attempts: int
    unsure_since: datetime | None = None  # an earlier attempt may have gone out unrecorded


def row(
    key: str,
    *,
    channel: str,
    inbox: str,
    to: str,
    payload: OutboxPayload,
    message_id: int | None = None,
    status: Literal["pending", "held"] = "pending",
    now: datetime | None = None,
) -> Outbox:
    """A new delivery of ``payload`` from ``inbox`` to ``to``, due ``now``. ``key`` names it
    (a re-run enqueues nothing); ``message_id`` is the conversation message it delivers;
    ``held``: a reply its channel says inline (a call's TwiML), not sent from here."""
    at = now or utcnow()
    return Outbox(
        key=key,
        message_id=message_id,
        channel=channel,
        inbox=inbox,
        to_address=to,
        payload=payload.to_json(),
        status=status,
        attempts=0,
        next_attempt_at=at,
        created_at=at,
    )


async def enqueue(session: AsyncSession, row: Outbox) -> bool:
    """Add ``row`` unless its key is already there; True when it was added."""
    values = {c.key: getattr(row, c.key) for c in table_of(Outbox).columns if c.key != "id"}
    values = {k: v for k, v in values.items() if v is not None}
    stmt = (
        insert(session, Outbox)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["key"])
        .returning(Outbox.id)
    )
    return (await session.execute(stmt)).scalar_one_or_none() is not None


async def state_of(session: AsyncSession, key: str) -> tuple[str, str | None] | None:
    """The row ``key``'s status and what the provider called it once sent (a Slack
    message's ts); None if there is no such row."""
    found = await session.execute(
        select(Outbox.status, Outbox.provider_id).where(Outbox.key == key)
    )
    row = found.first()
    return None if row is None else (str(row[0]), row[1])


async def enqueue_many(session: AsyncSession, rows: Sequence[Outbox]) -> None:
    """Add every row whose key is not there yet, in one statement."""
    if not rows:
        return
    columns = [c.key for c in table_of(Outbox).columns if c.key != "id"]
    values = [{c: getattr(row, c) for c in columns} for row in rows]
    await session.execute(
        insert(session, Outbox).on_conflict_do_nothing(index_elements=["key"]), values
    )


async def claim_due(
    session: AsyncSession, now: datetime, lease: timedelta, limit: int
) -> list[Due]:
    """Lease up to ``limit`` due rows; the caller commits. Rows others hold are skipped."""
    t = _OUTBOX.c
    claimable = or_(t.lease_until.is_(None), t.lease_until < now)
    due = (
        select(t.id)
        .where(t.status == "pending", t.next_attempt_at <= now, claimable)
        .order_by(t.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    # SET reads the row as it was: a lease still there is an attempt never recorded.
    unsure = case(
        (t.lease_until.is_not(None), func.coalesce(t.unsure_since, t.attempted_at)),
        else_=t.unsure_since,
    )
    stmt = (
        update(_OUTBOX)
        .where(t.id.in_(due.scalar_subquery()), t.status == "pending", claimable)
        .values(
            lease_until=now + lease,
            attempts=t.attempts + 1,
            attempted_at=now,
            unsure_since=unsure,
        )
        .returning(
            t.id,
            t.key,
            t.message_id,
            t.channel,
            t.inbox,
            t.to_address,
            t.payload,
            t.attempts,
            t.unsure_since,
        )
    )
    claimed = []
    for r in (await session.execute(stmt)).all():
        try:
            payload = OutboxPayload.model_validate(r.payload)
        except ValidationError as exc:
            # One unreadable row fails alone, saying why; it never holds up the others.
            error = f"unreadable payload: {exc.errors()[0]['msg']}"[:500]
            await session.execute(
                update(Outbox)
                .where(Outbox.id == r.id)
                .values(status="failed", lease_until=None, last_error=error)
            )
            continue
        claimed.append(
            Due(
                id=r.id,
                key=r.key,
                message_id=r.message_id,
                channel=r.channel,
                inbox=r.inbox,
                to_address=r.to_address,
                payload=payload,
                attempts=r.attempts,
                unsure_since=r.unsure_since,
            )
        )
    return sorted(claimed, key=lambda d: d.id)


@dataclass(frozen=True)
class Sent:
    """A delivery the provider took."""

    due: Due
    provider_id: str | None
    status: str


async def mark_sent(session: AsyncSession, sent: Sequence[Sent], now: datetime) -> None:
    """Record many successful deliveries in two statements."""
    if not sent:
        return
    await session.execute(
        update(_OUTBOX)
        .where(_OUTBOX.c.id == bindparam("oid"))
        .values(
            status="sent",
            sent_at=now,
            lease_until=None,
            last_error=None,
            unsure_since=None,
            provider_id=bindparam("pid"),
        ),
        [{"oid": s.due.id, "pid": s.provider_id} for s in sent],
    )
    messages = [s for s in sent if s.due.message_id is not None]
    if messages:
        table = table_of(Message)  # Core, not ORM: an executemany UPDATE keyed by bind params
        await session.execute(
            update(table)
            .where(table.c.id == bindparam("mid"), table.c.status == "pending")
            .values(status=bindparam("new_status"), provider_id=bindparam("pid")),
            [
                {"mid": s.due.message_id, "new_status": s.status, "pid": s.provider_id}
                for s in messages
            ],
        )


async def reschedule(
    session: AsyncSession, due: Due, at: datetime, error: str, *, unsure: bool = False
) -> None:
    """Try again at ``at``. ``unsure``: this attempt may have reached the provider (it timed
    out, or the provider could not be asked about an earlier one), so the doubt is kept;
    otherwise the provider's answer settled it."""
    doubt = func.coalesce(Outbox.unsure_since, Outbox.attempted_at) if unsure else None
    await session.execute(
        update(Outbox)
        .where(Outbox.id == due.id)
        .values(next_attempt_at=at, lease_until=None, last_error=error, unsure_since=doubt)
    )


async def known_provider_ids(session: AsyncSession, ids: Sequence[str]) -> set[str]:
    """Which of the provider's ids other rows already recorded as theirs."""
    if not ids:
        return set()
    found = await session.execute(
        select(Outbox.provider_id).where(Outbox.provider_id.in_(list(ids)))
    )
    return {str(i) for i in found.scalars()}


async def wait(session: AsyncSession, due: Due, at: datetime, why: str) -> None:
    """Not sent, not failed: try again at ``at`` without using up an attempt."""
    await session.execute(
        update(Outbox)
        .where(Outbox.id == due.id)
        .values(next_attempt_at=at, lease_until=None, last_error=why, attempts=Outbox.attempts - 1)
    )


async def mark_failed(session: AsyncSession, due: Due, error: str) -> None:
    await session.execute(
        update(Outbox)
        .where(Outbox.id == due.id)
        .values(status="failed", lease_until=None, last_error=error, unsure_since=None)
    )
    if due.message_id is not None:
        await session.execute(
            update(Message).where(Message.id == due.message_id).values(status="failed", error=error)
        )


async def next_due_at(session: AsyncSession) -> datetime | None:
    """When the earliest pending row can next be claimed (due, and its lease run out)."""
    claimable = case(
        (
            and_(Outbox.lease_until.is_not(None), Outbox.lease_until > Outbox.next_attempt_at),
            Outbox.lease_until,
        ),
        else_=Outbox.next_attempt_at,
    )
    row = await session.execute(
        select(func.min(type_coerce(claimable, UtcDateTime))).where(Outbox.status == "pending")
    )
    value: datetime | None = row.scalar_one()
    return value


async def pending_count(session: AsyncSession) -> int:
    return int(
        (await session.execute(select(func.count()).where(Outbox.status == "pending"))).scalar_one()
    )
