"""Escalation triggers from YAML: keyword rules and answers that keep not helping."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from gateway.settings import from_mapping
from store.errors import ConfigError
from store.models import Handoff
from tests.fakes.twilio_api import FakeTwilio
from tests.helpers import Gateway, make_config


def _raw(database_url: str, base: str, **triggers: Any) -> dict[str, Any]:
    raw = make_config(database_url, twilio_base=base)
    raw["escalation"] = {"triggers": triggers}
    return raw


async def _texts(gw: Gateway, *texts: str) -> None:
    for text in texts:
        before = len(gw.twilio.sent)
        await gw.sms(text)
        await gw.twilio.wait_sent(before + 1)


async def test_a_keyword_rule_opens_a_handoff(
    database_url: str, twilio: tuple[FakeTwilio, str]
) -> None:
    fake, base = twilio
    settings = from_mapping(_raw(database_url, base, keywords=[r"\blawyer\b", "refund"]), env={})
    async with Gateway.running(settings, fake) as gw:
        await _texts(gw, "Where are you located?", "I want a REFUND for my crown")
        [handoff] = await gw.all(select(Handoff))
    assert (handoff.trigger, handoff.reason) == ("keyword", "the message matched 'refund'")


async def test_answers_that_keep_not_helping_hand_over(
    sqlite_url: str, twilio: tuple[FakeTwilio, str]
) -> None:
    fake, base = twilio
    settings = from_mapping(_raw(sqlite_url, base, turns_without_progress=2), env={})
    async with Gateway.running(settings, fake) as gw:
        await _texts(gw, "Do you sell bicycles?", "Where are you located?",
                     "Can you fix my car?")  # fmt: skip
        assert await gw.all(select(Handoff)) == []  # a helpful answer reset the count
        await _texts(gw, "What about lawnmowers?")
        [handoff] = await gw.all(select(Handoff))
    assert (handoff.trigger, handoff.reason) == ("no_progress", "2 answers in a row did not help")


def test_a_bad_keyword_pattern_is_refused_with_its_path(sqlite_url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        from_mapping(
            _raw(sqlite_url, "http://127.0.0.1:9", keywords=["refund", "(unclosed"]), env={}
        )
    [detail] = caught.value.details
    assert detail.path == "escalation.triggers.keywords"
    assert detail.message.startswith("[1]: not a regular expression")
