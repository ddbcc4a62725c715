"""Business hours at given moments (split shifts, holidays, DST), and the handoff message."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from escalation.hours import BusinessHours, BusinessHoursSettings
from gateway.settings import from_mapping
from tests.fakes.twilio_api import FakeTwilio
from tests.helpers import SMS_NUMBER, Gateway, make_config

NY = "America/New_York"
SPLIT = {d: ["08:00-12:00", "13:00-18:00"] for d in ("mon", "tue", "wed", "thu", "fri")}


def _hours(**settings: Any) -> BusinessHours:
    return BusinessHours(BusinessHoursSettings(**{"weekly": SPLIT, **settings}), NY)


def _at(text: str) -> datetime:
    """A UTC moment, written as ISO with an offset (the local time it is, for reading)."""
    return datetime.fromisoformat(text).astimezone(UTC)


@pytest.mark.parametrize(
    ("moment", "is_open", "back"),
    [
        ("2026-12-07T09:00-05:00", True, None),            # Monday morning
        ("2026-12-07T12:30-05:00", False, "at 1 PM today"),  # the lunch gap of a split shift
        ("2026-12-07T19:00-05:00", False, "tomorrow at 8 AM"),
        ("2026-12-11T19:00-05:00", False, "on Monday at 8 AM"),  # Friday evening
        ("2026-11-25T19:00-05:00", False, "on Friday at 8 AM"),  # Thanksgiving is Thursday
        ("2026-11-26T10:00-05:00", False, "tomorrow at 8 AM"),
    ],
)  # fmt: skip
def test_open_or_closed_and_when_people_are_back(
    moment: str, is_open: bool, back: str | None
) -> None:
    hours = _hours(holidays="US")
    assert hours.is_open(_at(moment)) is is_open
    if back is not None:
        assert hours.back(_at(moment)) == back


def test_a_long_closure_names_the_date() -> None:
    closed = [date(2026, 12, d) for d in range(21, 26)]
    hours = _hours(closed=closed)
    assert hours.back(_at("2026-12-18T19:00-05:00")) == "on December 28 at 8 AM"
    assert _hours(weekly={}).back(_at("2026-12-18T19:00-05:00")) == "as soon as we can"


def test_wall_clock_hours_hold_across_daylight_saving_changes() -> None:
    night = BusinessHours(BusinessHoursSettings(weekly={"sun": ["01:00-04:00"]}), NY)
    # 2026-03-08: clocks in New York jump from 02:00 EST to 03:00 EDT.
    assert night.is_open(_at("2026-03-08T01:30-05:00"))
    assert night.is_open(_at("2026-03-08T03:30-04:00"))
    assert not night.is_open(_at("2026-03-08T04:30-04:00"))
    weekdays = _hours()
    # The Monday 08:00 opening is 12:00 UTC in summer time and 13:00 UTC after 1 November.
    assert weekdays.next_open(_at("2026-10-25T20:00-04:00")) == _at("2026-10-26T08:00-04:00")
    assert weekdays.next_open(_at("2026-11-01T20:00-05:00")) == datetime(
        2026, 11, 2, 13, 0, tzinfo=UTC
    )


def test_bad_hours_are_refused_with_their_path(sqlite_url: str) -> None:
    raw = make_config(sqlite_url)
    raw["escalation"] = {"business_hours": {"weekly": {"mon": ["18:00-08:00"]}, "holidays": "XX"}}
    from store.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        from_mapping(raw, env={})
    paths = {d.path for d in caught.value.details}
    assert {"escalation.business_hours.weekly", "escalation.business_hours.holidays"} <= paths


@pytest.mark.parametrize(
    ("weekly", "told"),
    [({d: ["00:00-24:00"] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")},
      "A person from our team will reply here shortly."),
     ({}, "We're closed right now; a person will reply as soon as we can.")],
    ids=["in-hours", "never-open"],
)  # fmt: skip
async def test_a_handoff_tells_the_customer_when_a_person_will_reply(
    sqlite_url: str, twilio: tuple[FakeTwilio, str], weekly: dict[str, list[str]], told: str
) -> None:
    fake, base = twilio
    raw = make_config(sqlite_url, twilio_base=base)
    raw["escalation"] = {"business_hours": {"weekly": weekly}}
    async with Gateway.running(from_mapping(raw, env={}), fake) as gw:
        await gw.sms("Can I talk to a person?")
        await fake.wait_sent(2)
        await gw.sms("Hello? I'd like to speak to a human")
        await fake.wait_sent(3)
    bodies = [s.body for s in fake.sent]
    assert bodies[1] == told
    assert told not in bodies[2:]  # said when the handoff opens, not again


async def test_an_operator_group_with_hours_of_its_own_speaks_for_its_inboxes(
    sqlite_url: str, twilio: tuple[FakeTwilio, str]
) -> None:
    fake, base = twilio
    always = {d: ["00:00-24:00"] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
    raw = make_config(sqlite_url, twilio_base=base)
    raw["escalation"] = {
        "business_hours": {"weekly": {}},  # the workspace: never open
        "operators": {"groups": [
            {"name": "elsewhere", "role": "operator", "inboxes": ["+14155550199"],
             "hours": {"weekly": {}}},
            {"name": "sms-desk", "role": "operator", "inboxes": [SMS_NUMBER],
             "hours": {"weekly": always, "open_message": "The SMS desk will reply shortly."}},
        ]},
    }  # fmt: skip
    async with Gateway.running(from_mapping(raw, env={}), fake) as gw:
        await gw.sms("Can I talk to a person?")
        await fake.wait_sent(2)
    assert fake.sent[1].body == "The SMS desk will reply shortly."
