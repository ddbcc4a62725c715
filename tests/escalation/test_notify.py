"""Notification rules: who is told of a handoff, on which channel, and why not — every
decision recorded and readable through the API."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from gateway.settings import from_mapping
from store.errors import ConfigError
from store.models import Handoff, Member, Notification
from tests.fakes.twilio_api import FakeTwilio
from tests.helpers import Api, Gateway, add_member, eventually, make_config

RULE: dict[str, Any] = {
    "name": "on-call", "role": "operator", "channels": ["sms", "email"],
    "message": "Handoff: {member} on {channel} needs a person ({reason}).",
}  # fmt: skip


def _raw(database_url: str, base: str, *rules: dict[str, Any]) -> dict[str, Any]:
    raw = make_config(database_url, twilio_base=base)
    raw["escalation"] = {"notify": list(rules)}
    return raw


async def _team(gw: Gateway) -> dict[str, int]:
    """Operators in every combination a notification can meet, and one admin."""
    people = {
        "reachable": ("+14155550201", {"sms": True}),
        "sms_off": ("+14155550202", {"sms": False}),
        "no_phone": (None, {"sms": True}),
    }
    ids = {}
    for name, (phone, notify) in people.items():
        fields: dict[str, Any] = {"name": name, "notify": notify}
        if phone:
            fields["phone"] = phone
        ids[name], _ = await add_member(gw, f"{name}@example.com", kind="team", role="operator",
                                       token=False, **fields)  # fmt: skip
    ids["archived"], _ = await add_member(gw, "gone@example.com", kind="team", role="operator",
                                          phone="+14155550204", token=False)  # fmt: skip
    async with gw.services.sessions.begin() as session:
        gone = await session.get(Member, ids["archived"])
        assert gone is not None
        gone.archived = True
    ids["admin"], _ = await add_member(gw, "admin@example.com", kind="team", role="admin",
                                       phone="+14155550205", token=False)  # fmt: skip
    return ids


async def test_each_recipient_and_channel_gets_a_recorded_decision(
    database_url: str, twilio: tuple[FakeTwilio, str]
) -> None:
    fake, base = twilio
    settings = from_mapping(_raw(database_url, base, RULE), env={})
    async with Gateway.running(settings, fake) as gw:
        ids = await _team(gw)
        owner_id, token = await add_member(gw, "owner@example.com", kind="team", role="owner")
        await gw.sms("Can I talk to a person?")
        await fake.wait_sent(2)  # the customer's reply, and the one notification
        [handoff] = await gw.all(select(Handoff))
        status, body = await Api(gw, token).get(f"/api/handoffs/{handoff.id}/notifications")
    assert status == 200
    decisions = {(int(n["member"]), n["channel"]): (n["status"], n["reason"])
                 for n in body["items"]}  # fmt: skip
    assert decisions == {
        (ids["reachable"], "sms"): ("sent", ""),
        (ids["reachable"], "email"): ("suppressed", "the workspace has no email channel"),
        (ids["sms_off"], "sms"): ("suppressed", "the member's sms notifications are off"),
        (ids["sms_off"], "email"): ("suppressed", "the workspace has no email channel"),
        (ids["no_phone"], "sms"): ("suppressed", "the member has no phone address"),
        (ids["no_phone"], "email"): ("suppressed", "the workspace has no email channel"),
    }  # the archived operator and the admin are not recipients at all
    texts = {s.to: s.body for s in fake.sent}
    assert texts["+14155550201"] == (
        "Handoff: +14155551234 on sms needs a person (asked for a person)."
    )
    assert set(texts) == {"+14155551234", "+14155550201"}
    assert owner_id not in {int(n["member"]) for n in body["items"]}


async def test_a_rule_for_other_triggers_or_hours_stays_quiet(
    sqlite_url: str, twilio: tuple[FakeTwilio, str]
) -> None:
    fake, base = twilio
    never_open = {"weekly": {}}
    rules = [{**RULE, "name": "keywords-only", "triggers": ["keyword"]},
             {**RULE, "name": "in-hours-only", "hours": "in"}]  # fmt: skip
    raw = _raw(sqlite_url, base, *rules)
    raw["escalation"]["business_hours"] = never_open
    async with Gateway.running(from_mapping(raw, env={}), fake) as gw:
        await _team(gw)
        await gw.sms("I want to talk to a human")
        await fake.wait_sent(2)  # the reply and the after-hours message, nothing else
        await eventually(lambda: _no_pending(gw))
        assert await gw.count(Notification) == 0
    assert len(fake.sent) == 2


def test_a_rule_needs_one_way_to_name_recipients(sqlite_url: str) -> None:
    bad = {**RULE, "filter": {"field": "shoe", "op": "eq", "value": 1}}
    with pytest.raises(ConfigError) as caught:
        from_mapping(_raw(sqlite_url, "http://127.0.0.1:9", bad), env={})
    [detail] = caught.value.details
    assert detail.path == "escalation.notify[0]"
    assert "give exactly one of group, role or filter" in detail.message


async def _no_pending(gw: Gateway) -> bool:
    from store.models import Inbound, Outbox

    busy = await gw.count(Inbound, Inbound.status == "pending")
    return busy + await gw.count(Outbox, Outbox.status == "pending") == 0


async def test_a_rule_can_name_an_operator_group_and_pick_handoffs_by_workflow(
    sqlite_url: str, twilio: tuple[FakeTwilio, str]
) -> None:
    fake, base = twilio
    raw = _raw(sqlite_url, base,
               {"name": "desk", "group": "desk", "channels": ["sms"]},
               {"name": "billing-only", "role": "operator", "workflows": ["billing"],
                "channels": ["sms"]})  # fmt: skip
    raw["escalation"]["operators"] = {"groups": [
        {"name": "desk", "members": ["ann@example.com"]}]}  # fmt: skip
    settings = from_mapping(raw, env={})
    async with Gateway.running(settings, fake) as gw:
        ann, _ = await add_member(gw, "ann@example.com", kind="team", role="operator",
                                  phone="+14155550201", token=False)  # fmt: skip
        await add_member(gw, "bob@example.com", kind="team", role="operator",
                         phone="+14155550202", token=False)  # fmt: skip
        await gw.sms("Can I talk to a person?")
        await fake.wait_sent(2)
        decided = await gw.all(select(Notification))
    assert [(n.rule, n.member_id) for n in decided] == [("desk", ann)]  # no billing workflow


def test_a_rule_naming_an_unknown_group_is_a_config_error(sqlite_url: str) -> None:
    raw = _raw(sqlite_url, "http://127.0.0.1:9", {"name": "x", "group": "nights"})
    with pytest.raises(ConfigError) as caught:
        from_mapping(raw, env={})
    assert "no operator group 'nights'" in str(caught.value.details)
