"""Workflows: YAML checks, the engine through the runtime, and end to end over SMS and web chat."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import date, timedelta
from typing import Any

import holidays
import pytest
from sqlalchemy import select

from agents.base import TurnInput, TurnResult
from agents.runtime import Runtime
from gateway.app import runtime_for
from gateway.settings import Settings, from_mapping
from people import cel
from store.errors import ConfigError
from store.models import Booking, Conversation, Handoff, Identity, Member
from tests.fakes.twilio_api import FakeTwilio
from tests.helpers import Gateway, add_member, make_config, make_settings, receive

INTAKE: dict[str, Any] = {
    "name": "intake",
    "description": "New patient intake",
    "start_when": ["new patient", "book an appointment"],
    "steps": [
        {"ask": "name", "prompt": "What's your full name?"},
        {"ask": "age", "prompt": "How old are you, {name}?", "type": "number",
         "validate": "answer >= 18 && answer < 130", "error": "You must be an adult to book."},
        {"ask": "reason", "prompt": "What's the visit for? 1) check-up 2) toothache",
         "type": "choice", "choices": ["check-up", "toothache"]},
        {"branch": [{"when": 'fields.reason == "toothache"', "goto": "urgent"}]},
        {"ask": "email", "prompt": "Your email?", "type": "email"},
        {"ask": "day", "prompt": "Which day suits you?", "type": "date"},
        {"done": "Thanks {name}! A {reason} on {day}; we'll write to {email}."},
        {"id": "urgent", "say": "Sorry you're in pain, {name}."},
        {"handoff": "toothache: {name} needs a same-day visit"},
    ],
}  # fmt: skip


def _config(database_url: str, **options: Any) -> dict[str, Any]:
    raw = make_config(database_url, **options)
    raw["agents"][0]["workflows"] = ["intake"]
    raw["workflows"] = [copy.deepcopy(INTAKE)]
    return raw


def _settings(database_url: str, **options: Any) -> Settings:
    return from_mapping(_config(database_url, **options), env={})


@pytest.fixture
async def runtime(sqlite_url: str) -> AsyncIterator[Runtime]:
    runtime = runtime_for(_settings(sqlite_url))
    yield runtime
    await runtime.close()


class Chat:
    """Turns through the runtime, carrying history and workflow position like the pipeline."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.turn = TurnInput(text="", channel="sms")
        self.collected: dict[str, Any] = {}

    async def say(self, text: str) -> TurnResult:
        result = await self.runtime.run_turn("receptionist", replace(self.turn, text=text))
        self.collected.update(result.collected)
        if result.workflow is not None:
            self.turn = replace(self.turn, workflow=result.workflow.state)
        return result


async def test_the_embedded_agent_runs_a_workflow_step_by_step(runtime: Runtime) -> None:
    chat = Chat(runtime)
    assert (await chat.say("Hi, I'm a new patient")).replies == ("What's your full name?",)
    assert (await chat.say("Ann Archer")).replies == ("How old are you, Ann Archer?",)
    refused = await chat.say("twelve")
    assert refused.replies == ("'twelve' is not a number. How old are you, Ann Archer?",)
    too_young = await chat.say("12")
    assert too_young.replies == ("You must be an adult to book. How old are you, Ann Archer?",)
    assert (await chat.say("41")).replies[0].startswith("What's the visit for?")
    assert (await chat.say("1")).replies == ("Your email?",)
    assert (await chat.say("ANN@Example.com")).replies == ("Which day suits you?",)
    done = await chat.say("December 3rd, 2026")
    assert done.replies == ("Thanks Ann Archer! A check-up on 2026-12-03; we'll write to "
                            "ann@example.com.",)  # fmt: skip
    assert done.workflow is not None
    assert done.workflow.state is None
    assert chat.collected == {"name": "Ann Archer", "age": 41, "reason": "check-up",
                              "email": "ann@example.com", "day": "2026-12-03"}  # fmt: skip


async def test_a_number_must_be_one_a_database_can_hold(runtime: Runtime) -> None:
    chat = Chat(runtime)
    await chat.say("new patient")
    await chat.say("Ann")
    for text in ("nan", "1e400"):
        reply = (await chat.say(text)).replies[0]
        assert reply == f"'{text}' is not a number I can use. How old are you, Ann?"


async def test_a_branch_can_hand_the_member_to_a_person(runtime: Runtime) -> None:
    chat = Chat(runtime)
    for text in ("book an appointment please", "Bo", "30"):
        await chat.say(text)
    result = await chat.say("toothache")
    assert result.replies == ("Sorry you're in pain, Bo.",)
    assert result.escalation is not None
    assert (result.escalation.trigger, result.escalation.reason) == (
        "workflow_handoff", "toothache: Bo needs a same-day visit",
    )  # fmt: skip
    assert result.workflow is not None
    assert result.workflow.state is None


async def test_three_refused_answers_hand_over_and_cancel_leaves(runtime: Runtime) -> None:
    chat = Chat(runtime)
    await chat.say("new patient")
    await chat.say("Cy")
    await chat.say("abc")
    await chat.say("abc")
    third = await chat.say("abc")
    assert third.escalation is not None
    assert third.escalation.trigger == "workflow_step_failed"
    assert third.workflow is not None
    assert third.workflow.state is None

    again = Chat(runtime)
    await again.say("new patient")
    left = await again.say("cancel")
    assert left.replies == ("OK, I've stopped that. Anything else I can help with?",)
    assert (await again.say("Where are you located?")).replies == ("12 Main Street, Springfield.",)


def _errors(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        from_mapping(raw, env={})
    return [f"{d.path}: {d.message}" for d in caught.value.details]


def test_check_config_names_the_path_of_each_workflow_problem(sqlite_url: str) -> None:
    raw = _config(sqlite_url)
    steps = raw["workflows"][0]["steps"]
    steps[1]["validate"] = "answer >= 18 &&"
    steps[3]["branch"][0]["when"] = "fields.shoe_size > 3"
    steps[3]["branch"].append({"when": "true", "goto": "nowhere"})
    steps[6]["done"] = "Bye {nickname}"
    steps.append({"say": "two kinds", "done": "at once"})
    raw["agents"][0]["abilities"] = ["teleport"]
    raw["agents"][0]["workflows"] = ["intake", "onboarding"]
    raw["agents"].append({"name": "smart", "model": "anthropic:claude-sonnet-4-5"})

    errors = _errors(raw)

    validate = next(e for e in errors if e.startswith("workflows[0].steps[1]"))
    assert validate.startswith("workflows[0].steps[1].ask: validate: line 1, column 14: not valid")
    assert any(e.startswith("workflows[0].steps[9]") and "exactly one of" in e for e in errors)
    teleport = next(e for e in errors if "teleport" in e)
    assert teleport.startswith("agents[0].abilities: unknown ability 'teleport' (known: calendar")
    assert (
        "agents[1].model: model 'anthropic:claude-sonnet-4-5' needs the langchain-anthropic "
        "package: pip install 'frontdesk[anthropic]'" in errors
    )
    del steps[9]
    steps[1]["validate"] = "answer >= 18"
    errors = _errors(raw)
    problems = next(e for e in errors if e.startswith("workflows[0]:"))
    assert "steps[3].branch[0].when: unknown field 'shoe_size'" in problems
    assert "steps[3].branch[1].goto: no step with id 'nowhere'" in problems
    assert "steps[6]: unknown field 'nickname'" in problems

    raw = _config(sqlite_url)  # cross-references are checked once each part is valid
    raw["agents"][0]["workflows"] = ["intake", "onboarding"]
    raw["workflows"][0]["steps"][0]["agent"] = "nobody"
    raw["agents"][0]["channels"] = ["webchat"]
    errors = _errors(raw)
    assert (
        "channels.sms.agent: agent 'receptionist' is not deployed to sms (its channels: "
        "webchat)" in errors
    )
    assert "agents[0].workflows[1]: no workflow named 'onboarding' (intake)" in errors
    assert any(e.startswith("workflows[0].steps[0].agent: no agent named 'nobody'") for e in errors)


def test_cel_problems_say_where_and_runaways_are_stopped() -> None:
    with pytest.raises(cel.CelProblem) as caught:
        cel.parse("answer.size( > 2")
    assert (caught.value.line, caught.value.column) == (1, 14)
    with pytest.raises(cel.CelProblem, match="nested deeper"):
        cel.parse("(" * 40 + "1" + ")" * 40)
    with pytest.raises(cel.CelProblem, match="unknown name shoe"):
        cel.check("shoe > 3", {"answer", "fields"})
    assert cel.names("[1, 2].map(x, x * answer).size() > 0") == {"answer"}


async def test_a_runaway_expression_is_killed_at_its_deadline_and_the_next_one_runs() -> None:
    runner = cel.CelRunner(deadline=0.5)
    try:
        assert await runner.evaluate("answer + 1", {"answer": 1}) == 2  # the worker is warm
        numbers = "[" + ",".join(str(i) for i in range(60)) + "]"
        runaway = f"{numbers}.map(a, {numbers}.map(b, {numbers}.map(c, a * b * c))).size() > 0"
        with pytest.raises(cel.CelFailed, match=r"took longer than 0\.5s"):
            await runner.evaluate(runaway, {})
        with pytest.raises(cel.CelFailed, match="divide by zero"):
            await runner.evaluate("1 / answer == 1", {"answer": 0})
        assert await runner.evaluate('answer.matches("^[a-z]+$")', {"answer": "abc"}) is True
    finally:
        await runner.close()


# End to end through the gateway: SMS on both back ends, a restart, and the web chat.


@pytest.fixture
async def intake_gateway(
    database_url: str, twilio: tuple[FakeTwilio, str]
) -> AsyncIterator[Gateway]:
    fake, base = twilio
    async with Gateway.running(_settings(database_url, twilio_base=base), fake) as gw:
        yield gw


async def _texts(gw: Gateway, *texts: str) -> list[str]:
    """Send each text after the reply to the previous one; the replies' bodies."""
    for text in texts:
        before = len(gw.twilio.sent)
        assert (await gw.sms(text)).status == 200
        await gw.twilio.wait_sent(before + 1)
    return [s.body for s in gw.twilio.sent]


async def test_an_sms_workflow_saves_the_answers_on_the_member(intake_gateway: Gateway) -> None:
    gw = intake_gateway
    replies = await _texts(gw, "I'm a new patient", "Ann Archer", "41", "check-up",
                           "not-an-email", "ann@example.com", "2026-12-03")  # fmt: skip

    assert replies[0] == "What's your full name?"
    assert replies[4].startswith("'not-an-email' is not an email address")
    assert (
        replies[-1]
        == "Thanks Ann Archer! A check-up on 2026-12-03; we'll write to ann@example.com."
    )
    [ann] = await gw.all(select(Member))
    assert (ann.name, ann.kind, ann.email) == ("Ann Archer", "anonymous", None)
    assert ann.data == {"name": "Ann Archer", "age": 41, "reason": "check-up",
                        "email": "ann@example.com", "day": "2026-12-03"}  # fmt: skip
    identities = {(i.kind, i.address) for i in await gw.all(select(Identity))}
    assert identities == {("phone", "+14155551234")}  # a typed email proves nothing
    [conversation] = await gw.all(select(Conversation))
    assert conversation.workflow is None
    assert "workflow" not in conversation.data


async def test_typing_a_known_members_email_does_not_make_you_that_member(
    intake_gateway: Gateway,
) -> None:
    gw = intake_gateway
    await add_member(gw, "boss@example.com", kind="team", role="owner", token=False)
    await _texts(gw, "new patient", "Mallory", "40", "check-up", "boss@example.com")
    texter = (await gw.all(select(Member).where(Member.name == "Mallory")))[0]
    [boss] = await gw.all(select(Member).where(Member.email == "boss@example.com"))
    assert (texter.id != boss.id, texter.role, texter.merged_into) == (True, "contact", None)
    assert texter.data["email"] == "boss@example.com"
    assert boss.merged_into is None


async def test_a_workflow_continues_after_a_restart(
    sqlite_url: str, twilio: tuple[FakeTwilio, str]
) -> None:
    fake, base = twilio
    settings = _settings(sqlite_url, twilio_base=base)
    async with Gateway.running(settings, fake) as gw:
        await _texts(gw, "new patient", "Bo Brown")
        [conversation] = await gw.all(select(Conversation))
        assert conversation.workflow == "intake"
    async with Gateway.running(settings, fake) as gw:
        replies = await _texts(gw, "52")
    assert replies[-1].startswith("What's the visit for?")


async def test_a_web_chat_workflow_can_end_in_a_handoff(
    sqlite_url: str, twilio: tuple[FakeTwilio, str]
) -> None:
    fake, base = twilio
    async with Gateway.running(_settings(sqlite_url, twilio_base=base), fake) as gw:
        ws = await gw.chat()
        await ws.send_json({"type": "hello"})
        await receive(ws, "welcome")
        said = []
        for i, text in enumerate(("book an appointment", "Cy", "33", "2")):
            await ws.send_json({"type": "message", "text": text, "client_id": f"c{i}"})
            await receive(ws, "ack")
            said.append((await receive(ws, "message"))["text"])
        assert said[-1] == "Sorry you're in pain, Cy."
        [handoff] = await gw.all(select(Handoff))
        assert (handoff.trigger, handoff.reason) == (
            "workflow_handoff", "toothache: Cy needs a same-day visit",
        )  # fmt: skip
        await ws.close()


async def test_the_demo_intake_books_a_slot_in_the_web_chat(
    sqlite_url: str, twilio: tuple[FakeTwilio, str]
) -> None:
    """The shipped config/frontdesk.yaml, no keys: name, reason, email, a day, a slot."""
    from gateway.settings import load

    settings = load(env={"FRONTDESK_DATABASE_URL": sqlite_url})
    day = date.today() + timedelta(days=3)
    while day.weekday() >= 5 or day in holidays.country_holidays("US", years=day.year):
        day += timedelta(days=1)
    async with Gateway.running(settings, twilio[0]) as gw:
        ws = await gw.chat()
        await ws.send_json({"type": "hello"})
        await receive(ws, "welcome")
        said: list[str] = []
        for i, text in enumerate(("Hi! I'm a new patient", "Ann Archer", "cleaning",
                                  "ann@example.com", day.isoformat(), "10am")):  # fmt: skip
            await ws.send_json({"type": "message", "text": text, "client_id": f"c{i}"})
            await receive(ws, "ack")
            said.append((await receive(ws, "message"))["text"])
            if said[-1].startswith(("Free times", "Booked")):
                said.append((await receive(ws, "message"))["text"])
        await ws.close()
        [ann] = await gw.all(select(Member).where(Member.name == "Ann Archer"))
        [booking] = await gw.all(select(Booking))
    assert said[4].startswith(f"Free times on {day.strftime('%A %B ')}{day.day}: ")
    assert said[-2].startswith(f"Booked: {day.strftime('%A %B ')}{day.day} at 10 AM")
    assert said[-1].startswith("Thank you, Ann Archer!")
    assert (ann.name, ann.data["reason"], booking.member_id) == ("Ann Archer", "cleaning", ann.id)


def test_make_settings_still_works_without_workflows(sqlite_url: str) -> None:
    assert make_settings(sqlite_url).workflows == ()


async def test_a_pool_keeps_evaluating_while_one_worker_runs_away() -> None:
    runner = cel.CelRunner(deadline=1.5, workers=2)
    try:
        await runner.warm_up()
        numbers = "[" + ",".join(str(i) for i in range(60)) + "]"
        runaway = f"{numbers}.map(a, {numbers}.map(b, {numbers}.map(c, a * b * c))).size() > 0"
        stuck = asyncio.ensure_future(runner.evaluate(runaway, {}))
        await asyncio.sleep(0)  # one step: it takes a free worker without waiting, and runs
        answers = [await runner.evaluate("answer * 2", {"answer": n}) for n in range(20)]
        assert answers == [n * 2 for n in range(20)]
        assert not stuck.done()  # the other worker answered all twenty meanwhile
        with pytest.raises(cel.CelFailed, match="took longer"):
            await stuck
        assert await runner.evaluate("answer + 1", {"answer": 1}) == 2  # replaced, serving
    finally:
        await runner.close()


async def test_a_caller_giving_up_twice_never_crosses_another_callers_answer() -> None:
    runner = cel.CelRunner(deadline=5.0, workers=1)
    try:
        await runner.warm_up()
        numbers = "[" + ",".join(str(i % 10) for i in range(80)) + "]"
        slow = f"{numbers}.map(a, {numbers}.map(b, a * b)).size()"  # a second or so, then 80
        gave_up = asyncio.ensure_future(runner.evaluate(slow, {}))
        await asyncio.sleep(0)  # one step: it holds the only worker, its call under way
        gave_up.cancel()
        await asyncio.sleep(0)
        gave_up.cancel()
        assert await runner.evaluate("answer", {"answer": 7}) == 7  # not the slow one's 80
        with pytest.raises(asyncio.CancelledError):
            await gave_up
    finally:
        await runner.close()
    with pytest.raises(cel.CelFailed, match="stopped"):
        await runner.evaluate("1 + 1", {})
