"""``calendar_booking``: find free slots, book one, cancel the member's own bookings.

Availability comes from the ability's settings -- weekly opening hours, slot length, a
buffer between slots, public holidays (the ``holidays`` package, by country and
subdivision), extra closed dates, how far ahead and how soon one may book -- in the
calendar's time zone, minus what is already booked in the store. Two conversations that
book the same slot at once cannot both have it: a unique index on (calendar, start) of
booked rows decides. A conversation may hold at most ``max_per_conversation`` bookings,
and a member cancels only their own.

One tool with an ``action``: ``find`` (a day: its free start times), ``book`` (a day and
a time), ``cancel`` (a booking id, or the member's next booking), ``list`` (the member's
upcoming bookings). Times are read as the member writes them (``10``, ``10am``,
``2:30 pm``, ``14:30``).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import ClassVar, Literal, cast
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field

from agents.abilities import AbilityContext, AbilityResult
from agents.answer_types import parse_clock
from people.roles import Need
from people.schedules import WEEKDAYS, OpeningHours, Schedule, Weekday, spoken_clock
from store import bookings


class Settings(Schedule):
    """The schedule (``hours`` per weekday, ``holidays``, ``closed``, ``timezone``) and how
    appointments are cut from it."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    weekly: dict[Weekday, list[str]] = Field(
        default_factory=lambda: {d: ["09:00-17:00"] for d in WEEKDAYS[:5]},
        alias="hours", description="Opening hours per weekday, as HH:MM-HH:MM ranges.",
    )  # fmt: skip
    calendar: str = Field(default="default", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    slot_minutes: int = Field(default=30, ge=5, le=480)
    buffer_minutes: int = Field(default=0, ge=0, le=240)
    horizon_days: int = Field(default=60, ge=1, le=730)
    lead_minutes: int = Field(default=60, ge=0, description="No booking sooner than this.")
    max_per_conversation: int = Field(default=2, ge=1, le=50)
    max_listed: int = Field(default=8, ge=1, le=50, description="Free times shown at once.")


class Arguments(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["find", "book", "cancel", "list"]
    day: str | None = Field(default=None, description="YYYY-MM-DD (find, book).")
    time: str | None = Field(default=None, description="Start time, e.g. 10:30 or 2pm (book).")
    booking_id: int | None = Field(default=None, description="Which booking (cancel).")


class Slots(OpeningHours):
    """The start times a ``Settings`` opens on a day (before subtracting bookings)."""

    settings: Settings

    def __init__(self, settings: Settings, default_zone: str) -> None:
        super().__init__(settings, default_zone)
        self.settings = settings

    def slots(self, day: date) -> list[datetime]:
        step = timedelta(minutes=self.settings.slot_minutes + self.settings.buffer_minutes)
        length = timedelta(minutes=self.settings.slot_minutes)
        out = []
        for opens, closes in self.intervals(day):
            start = datetime.combine(day, opens, self.zone)
            end = datetime.combine(day, closes, self.zone)
            while start + length <= end:
                out.append(start)
                start += step
        return out


class CalendarBooking:
    name: ClassVar[str] = "calendar_booking"
    description: ClassVar[str] = (
        "Appointments. action=find with day (YYYY-MM-DD) lists free start times; action=book "
        "with day and time books one for this member; action=list shows their bookings; "
        "action=cancel with booking_id cancels one of theirs."
    )
    settings_model: ClassVar[type[BaseModel]] = Settings
    arguments: ClassVar[type[BaseModel]] = Arguments
    need: ClassVar[Need] = Need()  # for the member's own appointments: no feature needed

    async def run(self, context: AbilityContext, arguments: BaseModel) -> AbilityResult:
        args = cast(Arguments, arguments)
        settings = Settings.model_validate(context.abilities.get(self.name, {}))
        if context.sessions is None or context.member is None:
            return AbilityResult("Booking isn't available in this conversation.", refused=True)
        calendar = Slots(settings, context.timezone)
        zone = calendar.zone
        if args.action == "list":
            return await self._list(context, settings, zone)
        if args.action == "cancel":
            return await self._cancel(context, args, zone)
        day = _day(args.day)
        if day is None:
            return AbilityResult(f"'{args.day}' is not a day (use YYYY-MM-DD).", refused=True)
        problem = self._bookable_day(calendar, day, zone)
        if problem:
            return AbilityResult(f"Sorry, {problem}. Please pick another day.", refused=True)
        free = await self._free(context, calendar, day)
        if args.action == "find":
            if not free:
                return AbilityResult(f"Sorry, {_spoken_day(day)} is fully booked.", refused=True)
            shown = _listed(free, settings)
            return AbilityResult(f"Free times on {_spoken_day(day)}: {shown}.")
        return await self._book(context, settings, calendar, day, args.time or "", free)

    def _bookable_day(self, calendar: Slots, day: date, zone: ZoneInfo) -> str | None:
        today = datetime.now(zone).date()
        if day < today:
            return "that day has passed"
        if day > today + timedelta(days=calendar.settings.horizon_days):
            return f"we book at most {calendar.settings.horizon_days} days ahead"
        return calendar.why_closed(day)

    async def _free(self, context: AbilityContext, calendar: Slots, day: date) -> list[datetime]:
        sessions = context.sessions
        if sessions is None:
            return []
        slots = calendar.slots(day)
        if not slots:
            return []
        length = timedelta(minutes=calendar.settings.slot_minutes)
        soonest = datetime.now(UTC) + timedelta(minutes=calendar.settings.lead_minutes)
        async with sessions() as session:
            held = await bookings.taken(
                session,
                calendar.settings.calendar,
                slots[0].astimezone(UTC),
                slots[-1].astimezone(UTC) + length,
            )
        busy = [(b.starts_at, b.ends_at) for b in held]
        return [
            s
            for s in slots
            if s >= soonest and not any(b0 < s + length and b1 > s for b0, b1 in busy)
        ]

    async def _book(
        self,
        context: AbilityContext,
        settings: Settings,
        calendar: Slots,
        day: date,
        raw_time: str,
        free: list[datetime],
    ) -> AbilityResult:
        wanted = parse_clock(raw_time)
        if wanted is None:
            return AbilityResult(f"'{raw_time}' is not a time (try 10:30 or 2pm).", refused=True)
        start = datetime.combine(day, wanted, calendar.zone)
        member = context.member
        sessions = context.sessions
        if member is None or sessions is None:
            return AbilityResult("Booking isn't available in this conversation.", refused=True)
        async with sessions.begin() as session:
            if start not in calendar.slots(day):
                return AbilityResult(
                    _offer(f"{spoken_clock(start)} isn't a start time we offer", free, settings),
                    refused=True,
                )
            if context.conversation_id is not None:
                held = await bookings.count_booked(session, conversation_id=context.conversation_id)
                if held >= settings.max_per_conversation:
                    return AbilityResult(
                        f"This conversation already has {held} booking(s), the most allowed. "
                        "A person can help with more.",
                        refused=True,
                    )
            if start not in free:
                mine = [
                    b
                    for b in await bookings.of_member(
                        session, member.id, start - timedelta(seconds=1)
                    )
                    if b.starts_at == start.astimezone(UTC)
                ]
                if mine:  # the same turn run again after a crash: it is booked already
                    return AbilityResult(_confirmation(mine[0].id, start))
                return AbilityResult(
                    _offer(f"{spoken_clock(start)} is taken", free, settings), refused=True
                )
            end = start + timedelta(minutes=settings.slot_minutes)
            booking = await bookings.book(
                session,
                settings.calendar,
                member.id,
                context.conversation_id,
                start.astimezone(UTC),
                end.astimezone(UTC),
            )
            if booking is None:
                return AbilityResult(
                    _offer(f"{spoken_clock(start)} was just taken", free, settings), refused=True
                )
        return AbilityResult(_confirmation(booking.id, start))

    async def _list(
        self, context: AbilityContext, settings: Settings, zone: ZoneInfo
    ) -> AbilityResult:
        member, sessions = context.member, context.sessions
        if member is None or sessions is None:
            return AbilityResult("Booking isn't available in this conversation.", refused=True)
        async with sessions() as session:
            upcoming = await bookings.of_member(session, member.id, datetime.now(UTC))
        if not upcoming:
            return AbilityResult("You have no upcoming appointments.")
        return AbilityResult(
            "Your appointments: "
            + "; ".join(
                f"#{b.id} {_spoken_day(b.starts_at.astimezone(zone).date())} at "
                f"{spoken_clock(b.starts_at.astimezone(zone))}"
                for b in upcoming
            )
            + "."
        )

    async def _cancel(
        self, context: AbilityContext, args: Arguments, zone: ZoneInfo
    ) -> AbilityResult:
        member, sessions = context.member, context.sessions
        if member is None or sessions is None:
            return AbilityResult("Booking isn't available in this conversation.", refused=True)
        async with sessions.begin() as session:
            booking_id = args.booking_id
            if booking_id is None:
                upcoming = await bookings.of_member(session, member.id, datetime.now(UTC))
                if not upcoming:
                    return AbilityResult("You have no upcoming appointments.", refused=True)
                booking_id = upcoming[0].id
            cancelled = await bookings.cancel(session, booking_id, member.id)
        if cancelled is None:
            return AbilityResult(f"You have no booking #{booking_id}.", refused=True)
        when = cancelled.starts_at.astimezone(zone)
        return AbilityResult(
            f"Cancelled #{cancelled.id}, {_spoken_day(when.date())} at {spoken_clock(when)}."
        )


def _day(text: str | None) -> date | None:
    try:
        return date.fromisoformat((text or "").strip())
    except ValueError:
        return None


def _spoken_day(day: date) -> str:
    return day.strftime("%A %B ") + str(day.day)


def _offer(problem: str, free: list[datetime], settings: Settings) -> str:
    if not free:
        return f"Sorry, {problem}, and nothing else is free that day."
    return f"Sorry, {problem}. Free: {_listed(free, settings)}."


def _listed(free: list[datetime], settings: Settings) -> str:
    return ", ".join(spoken_clock(s) for s in free[: settings.max_listed])


def _confirmation(booking_id: int, start: datetime) -> str:
    return f"Booked: {_spoken_day(start.date())} at {spoken_clock(start)} (booking #{booking_id})."


ABILITY = CalendarBooking()
