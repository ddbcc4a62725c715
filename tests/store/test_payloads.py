"""The typed payloads beside the engine's rows: what is stored is what is read back, and
rows written before the models existed read the same."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from store import outbox
from store.engine import create_engine, session_factory
from store.models import Outbox, utcnow
from store.payloads import (
    Dtmf,
    Hangup,
    Hold,
    InboundExtras,
    InboundKind,
    OutboxPayload,
    Transfer,
    Voicemail,
)


def test_a_team_reply_stored_before_its_kind_had_a_key_is_still_a_team_reply() -> None:
    old = {
        "raw": {"event_id": "Ev1", "thread_ts": "1.2", "kind": "team_reply"},
        "attachments": [],
        "thread_key": "1.2",
        "reply_context": {},
        "answer": False,
        "verified": True,
    }

    extras = InboundExtras.model_validate(old)

    assert extras.kind is InboundKind.TEAM_REPLY
    assert extras.thread_key == "1.2"
    assert extras.answer is False


def test_a_member_message_stored_before_reads_with_its_reply_context() -> None:
    old = {
        "raw": {"From": "+15550001"},
        "attachments": [{"url": "https://x/1.png", "content_type": "image/png"}],
        "thread_key": None,
        "reply_context": {"subject": "Re: hi"},
        "answer": True,
        "verified": False,
    }

    extras = InboundExtras.model_validate(old)

    assert extras.kind is InboundKind.MESSAGE
    assert extras.thread_key is None
    assert extras.reply_context == {"subject": "Re: hi"}
    assert extras.verified is False
    assert extras.attachments[0].content_type == "image/png"


def test_inbound_extras_are_stored_under_the_keys_rows_always_had() -> None:
    extras = InboundExtras(kind=InboundKind.TEAM_REPLY, raw={"ts": "1"}, thread_key="1.2")

    stored = extras.to_json()

    assert set(stored) == {
        "kind",
        "raw",
        "attachments",
        "thread_key",
        "reply_context",
        "answer",
        "verified",
    }
    assert InboundExtras.model_validate(stored) == extras


def test_an_outbox_payload_keeps_its_keys_and_reads_older_rows() -> None:
    reply = OutboxPayload(text="hi", name="Ada", context={"channel": "C1"}, thread_of="k")

    stored = reply.to_json()
    older = OutboxPayload.model_validate(
        {"text": "hi", "context": {"handoff": 7}, "actions": None, "unknown": 1}
    )

    assert stored == {
        "text": "hi",
        "author": "agent",
        "name": "Ada",
        "context": {"channel": "C1"},
        "thread_of": "k",
        "actions": [],
    }
    assert older.context == {"handoff": "7"}  # a channel reads strings
    assert (older.author, older.name, older.actions, older.kind) == ("agent", "", [], None)


async def test_a_row_made_by_the_factory_is_claimed_with_its_typed_payload(
    database_url: str,
) -> None:
    engine = create_engine(database_url)
    sessions = session_factory(engine)
    payload = OutboxPayload(text="hi", author="system", kind="help", context={"k": "v"})
    try:
        async with sessions.begin() as session:
            await outbox.enqueue(
                session, outbox.row("new", channel="sms", inbox="+1", to="+2", payload=payload)
            )
            await outbox.enqueue(
                session, outbox.row("old", channel="sms", inbox="+1", to="+2", payload=payload)
            )
            # A row as the engine wrote it before the payload had a model.
            await session.execute(
                update(Outbox)
                .where(Outbox.key == "old")
                .values(payload={"text": "hi", "context": {"n": 1}, "thread_of": None})
            )
        async with sessions.begin() as session:
            new, old = await outbox.claim_due(session, utcnow(), timedelta(seconds=30), 10)

        assert new.payload == payload
        assert (old.payload.text, old.payload.context, old.payload.thread_of) == (
            "hi",
            {"n": "1"},
            None,
        )
        assert (new.to_address, new.attempts, new.message_id) == ("+2", 1, None)
    finally:
        await engine.dispose()


def test_call_actions_are_stored_as_the_dicts_they_always_were() -> None:
    old = [
        {"action": "transfer", "to": "+15550002"},
        {"action": "hangup"},
        {"action": "dtmf", "digits": "12#"},
        {"action": "hold"},
        {"action": "hold", "music": "https://x/hold.mp3"},
        {"action": "voicemail"},
    ]

    payload = OutboxPayload.model_validate({"text": "", "actions": old})

    assert [type(a) for a in payload.actions] == [Transfer, Hangup, Dtmf, Hold, Hold, Voicemail]
    assert payload.to_json()["actions"] == old


async def test_a_row_whose_payload_cannot_be_read_fails_alone_saying_why(
    database_url: str,
) -> None:
    engine = create_engine(database_url)
    sessions = session_factory(engine)
    payload = OutboxPayload(text="hi")
    try:
        async with sessions.begin() as session:
            for key in ("before", "broken", "after"):
                await outbox.enqueue(
                    session, outbox.row(key, channel="sms", inbox="+1", to="+2", payload=payload)
                )
            await session.execute(
                update(Outbox).where(Outbox.key == "broken").values(payload={"text": ["not", 1]})
            )
        async with sessions.begin() as session:
            claimed = await outbox.claim_due(session, utcnow(), timedelta(seconds=30), 10)
        async with sessions() as session:
            broken = (
                await session.execute(select(Outbox).where(Outbox.key == "broken"))
            ).scalar_one()
    finally:
        await engine.dispose()

    assert [d.key for d in claimed] == ["before", "after"]
    assert broken.status == "failed"
    assert broken.last_error.startswith("unreadable payload:")
