"""The outbox's leases: a row is handed to one sender at a time, and again once its lease
has run out (the sender crashed)."""

from __future__ import annotations

from datetime import timedelta

from store import outbox
from store.engine import create_engine, session_factory
from store.models import Outbox, utcnow
from store.payloads import OutboxPayload


def _row(key: str) -> Outbox:
    return outbox.row(key, channel="sms", inbox="+1", to="+2", payload=OutboxPayload(text=key))


async def test_rows_are_leased_once_and_reclaimed_after_the_lease(database_url: str) -> None:
    engine = create_engine(database_url)
    sessions = session_factory(engine)
    try:
        async with sessions.begin() as session:
            assert await outbox.enqueue(session, _row("a")) is True
            assert await outbox.enqueue(session, _row("a")) is False  # same key: nothing added
            assert await outbox.enqueue(session, _row("b")) is True
        now = utcnow()
        lease = timedelta(seconds=30)
        async with sessions.begin() as session:
            first = await outbox.claim_due(session, now, lease, 10)
        async with sessions.begin() as session:
            second = await outbox.claim_due(session, now, lease, 10)
        async with sessions.begin() as session:
            after_lease = await outbox.claim_due(session, now + lease * 2, lease, 10)
        async with sessions() as session:
            due_at = await outbox.next_due_at(session)

        assert [d.key for d in first] == ["a", "b"]
        assert second == []
        assert [(d.key, d.attempts) for d in after_lease] == [("a", 2), ("b", 2)]
        assert due_at is not None
        assert due_at >= now + lease * 2
    finally:
        await engine.dispose()


async def test_sent_and_failed_rows_are_never_handed_out_again(database_url: str) -> None:
    engine = create_engine(database_url)
    sessions = session_factory(engine)
    try:
        async with sessions.begin() as session:
            await outbox.enqueue(session, _row("sent"))
            await outbox.enqueue(session, _row("failed"))
        async with sessions.begin() as session:
            sent, failed = await outbox.claim_due(session, utcnow(), timedelta(seconds=1), 10)
            await outbox.mark_sent(session, [outbox.Sent(sent, "SM1", "queued")], utcnow())
            await outbox.mark_failed(session, failed, "21211 invalid number")
        later = utcnow() + timedelta(hours=1)
        async with sessions.begin() as session:
            assert await outbox.claim_due(session, later, timedelta(seconds=1), 10) == []
            assert await outbox.pending_count(session) == 0
            assert await outbox.next_due_at(session) is None
    finally:
        await engine.dispose()
