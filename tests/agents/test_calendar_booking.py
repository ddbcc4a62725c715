"""calendar_booking on SQLite and PostgreSQL: availability, booking under concurrency, caps,
cancelling only one's own, and a booking workflow end to end over SMS."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from datetime import date, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agents import abilities
from agents.abilities import AbilityContext, AbilityResult
from agents.base import MemberFacts
from gateway.settings import from_mapping
from people.roles import Role
from store.engine import create_engine, session_factory
from store.migrate import upgrade
from store.models import Booking, Conversation, Inbound, Member, Outbox, utcnow
from tests.fakes.twilio_api import FakeTwilio
from tests.helpers import Gateway, eventually, make_config

HOURS = {day: ["09:00-12:00"] for day in ("mon", "tue", "wed", "thu", "fri")}
SETTINGS: dict[str, Any] = {"hours": HOURS, "slot_minutes": 60, "lead_minutes": 0,
                            "timezone": "America/New_York", "max_per_conversation": 2}  # fmt: skip


def _weekday_ahead(days: int = 2) -> date:
    day = date.today() + timedelta(days=days)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return day


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    await upgrade(database_url)
    engine = create_engine(database_url)
    yield session_factory(engine)
    await engine.dispose()


async def _member(sessions: async_sessionmaker[AsyncSession], name: str) -> MemberFacts:
    async with sessions.begin() as session:
        member = Member(kind="contact", role="contact", name=name, data={}, created_at=utcnow())
        session.add(member)
        await session.flush()
        return MemberFacts(id=member.id, kind="contact", role="contact", name=name)


def _context(
    sessions: async_sessionmaker[AsyncSession],
    member: MemberFacts,
    conversation: int | None = None,
    **settings: Any,
) -> AbilityContext:
    return AbilityContext(
        agent="receptionist", channel="sms", conversation_id=conversation, member=member,
        role=Role(), abilities={"calendar_booking": {**SETTINGS, **settings}},
        sessions=sessions, timezone="America/New_York",
    )  # fmt: skip


async def _use(context: AbilityContext, **args: Any) -> AbilityResult:
    return await abilities.call(context, "calendar_booking", args)


async def test_free_times_booking_and_cancelling(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    ann = _context(sessions, await _member(sessions, "Ann"))
    day = _weekday_ahead()
    spoken = day.strftime("%A %B ") + str(day.day)

    assert (await _use(ann, action="find", day=day.isoformat())).text == (
        f"Free times on {spoken}: 9 AM, 10 AM, 11 AM."
    )
    booked = await _use(ann, action="book", day=day.isoformat(), time="10am")
    assert booked.text.startswith(f"Booked: {spoken} at 10 AM (booking #")
    assert (await _use(ann, action="find", day=day.isoformat())).text.endswith("9 AM, 11 AM.")
    odd = await _use(ann, action="book", day=day.isoformat(), time="9:15")
    assert odd.refused
    assert odd.text == "Sorry, 9:15 AM isn't a start time we offer. Free: 9 AM, 11 AM."
    assert (await _use(ann, action="list")).text.startswith("Your appointments: #")
    cancelled = await _use(ann, action="cancel")
    assert cancelled.text.startswith("Cancelled #")
    assert (await _use(ann, action="find", day=day.isoformat())).text.endswith(
        "9 AM, 10 AM, 11 AM."
    )


async def test_closed_days_and_holidays_are_not_offered(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    every_day = {d: ["09:00-12:00"] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
    ann = _context(
        sessions, await _member(sessions, "Ann"), holidays="US", horizon_days=400, hours=every_day
    )
    today = date.today()
    christmas = date(today.year + (today > date(today.year, 12, 24)), 12, 25)
    refused = await _use(ann, action="find", day=christmas.isoformat())
    assert refused.refused
    assert refused.text == "Sorry, that's a holiday (Christmas Day). Please pick another day."

    weekdays_only = _context(sessions, await _member(sessions, "Bo"))
    sunday = date.today() + timedelta(days=(6 - date.today().weekday()) % 7 or 7)
    closed = await _use(weekdays_only, action="find", day=sunday.isoformat())
    assert closed.text == "Sorry, we're closed on Sundays. Please pick another day."
    past = await _use(weekdays_only, action="find", day="2020-01-06")
    assert past.text == "Sorry, that day has passed. Please pick another day."


async def test_two_conversations_booking_one_slot_at_once_get_it_once(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    day = _weekday_ahead(3).isoformat()
    people = [_context(sessions, await _member(sessions, f"M{i}"), conversation=None)
              for i in range(6)]  # fmt: skip

    results = await asyncio.gather(*(_use(c, action="book", day=day, time="11:00") for c in people))

    assert sum(not r.refused for r in results) == 1
    assert all(r.text.startswith("Sorry, 11 AM") for r in results if r.refused)
    async with sessions() as session:
        rows = list((await session.execute(select(Booking))).scalars())
    assert [b.status for b in rows] == ["booked"]


async def test_a_member_cannot_cancel_anothers_booking_or_book_fifty(
    sessions: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    """A prompt-injected model asks for other people's bookings and for fifty slots."""
    ann = _context(sessions, await _member(sessions, "Ann"))
    bo = _context(sessions, await _member(sessions, "Bo"))
    day = _weekday_ahead(4).isoformat()
    anns = await _use(ann, action="book", day=day, time="9")
    booking_id = int(anns.text.rsplit("#", 1)[1].rstrip(")."))

    stolen = await _use(bo, action="cancel", booking_id=booking_id)
    assert stolen.refused
    assert stolen.text == f"You have no booking #{booking_id}."
    assert (await _use(bo, action="list")).text == "You have no upcoming appointments."

    async with sessions.begin() as session:
        member = await session.get(Member, bo.member.id if bo.member else 0)
        assert member is not None
    async with sessions.begin() as session:
        conversation = Conversation(member_id=member.id, channel="sms", inbox="+1", status="bot",
                                    data={}, created_at=utcnow(), updated_at=utcnow())  # fmt: skip
        session.add(conversation)
        await session.flush()
        conversation_id = conversation.id
    greedy = _context(sessions, bo.member, conversation=conversation_id)  # type: ignore[arg-type]
    outcomes = []
    # Every weekday from five days out (a weekend rolls over to Monday: each day once).
    for target in sorted({_weekday_ahead(offset) for offset in range(5, 55)}):
        outcomes.append(await _use(greedy, action="book", day=target.isoformat(), time="10"))
    assert sum(not o.refused for o in outcomes) == 2  # max_per_conversation
    assert outcomes[2].text.startswith("This conversation already has 2 booking(s)")
    assert all(o.refused for o in outcomes[2:])


async def test_arguments_are_checked_before_anything_runs(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    ann = _context(sessions, await _member(sessions, "Ann"))
    bad = await _use(ann, action="drop_table", day="x")
    assert bad.refused
    assert bad.text.startswith("Invalid arguments for calendar_booking: action:")
    assert (await _use(ann, action="find", day="next week")).text == (
        "'next week' is not a day (use YYYY-MM-DD)."
    )


BOOKING_FLOW: dict[str, Any] = {
    "name": "visit",
    "start_when": ["book an appointment"],
    "steps": [
        {"ask": "name", "prompt": "Your name?"},
        {"id": "pick_day", "ask": "day", "prompt": "Which day?", "type": "date"},
        {"ability": "calendar_booking", "args": {"action": "find", "day": "{day}"},
         "on_failure": "pick_day"},
        {"id": "pick_time", "ask": "time", "prompt": "Which time?", "type": "time"},
        {"ability": "calendar_booking",
         "args": {"action": "book", "day": "{day}", "time": "{time}"}, "on_failure": "pick_time"},
        {"done": "See you then, {name}!"},
    ],
}  # fmt: skip


async def test_a_booking_workflow_over_sms(
    database_url: str, twilio: tuple[FakeTwilio, str]
) -> None:
    fake, base = twilio
    raw = make_config(database_url, twilio_base=base)
    abilities_ = {"calendar_booking": copy.deepcopy(SETTINGS)}
    raw["agents"][0].update({"workflows": ["visit"], "abilities": abilities_})
    raw["workflows"] = [copy.deepcopy(BOOKING_FLOW)]
    day = _weekday_ahead(2)
    sunday = day + timedelta(days=6 - day.weekday())
    async with Gateway.running(from_mapping(raw, env={}), fake) as gw:
        for text in ("I'd like to book an appointment", "Ann", sunday.isoformat(),
                     day.isoformat(), "10:30", "10am"):  # fmt: skip
            before = len(fake.sent)
            await gw.sms(text)
            await fake.wait_sent(before + 1)
            await eventually(lambda: _settled(gw))
        bodies = [s.body for s in fake.sent]
        async with gw.services.sessions() as session:
            [booking] = list((await session.execute(select(Booking))).scalars())
    assert "Sorry, we're closed on Sundays. Please pick another day." in bodies
    assert "Which day?" in bodies
    assert any(b.startswith("Sorry, 10:30 AM isn't a start time we offer.") for b in bodies)
    assert any(b.startswith("Booked: ") for b in bodies)
    assert bodies[-1] == "See you then, Ann!"
    assert booking.status == "booked"


async def _settled(gw: Gateway) -> bool:
    """Every message answered and every reply sent (a turn may send several)."""
    busy = await gw.count(Inbound, Inbound.status == "pending")
    return busy + await gw.count(Outbox, Outbox.status == "pending") == 0
