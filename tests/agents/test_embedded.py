"""The embedded offline model through the runtime: greet, answer, hand over, admit ignorance."""

from __future__ import annotations

import asyncio

import pytest

from agents.base import TurnInput, TurnResult
from agents.embedded import EmbeddedModel, greeting_for
from agents.runtime import HOLDING_REPLY, Runtime
from agents.settings import AgentSettings, KnowledgeEntry

AGENT = AgentSettings(
    name="receptionist",
    bio="You are the friendly front desk of Example Dental. Be brief.",
    knowledge=(
        KnowledgeEntry(q="What are your opening hours?", a="We are open 8am to 6pm."),
        KnowledgeEntry(q="Where are you located?", a="12 Main Street, Springfield."),
        KnowledgeEntry(q="Do you accept dental insurance?", a="We accept most plans."),
        KnowledgeEntry(q="How much does a cleaning cost?", a="A cleaning is $120."),
    ),
)


async def _say(text: str, agent: AgentSettings = AGENT) -> TurnResult:
    runtime = Runtime((agent,), "Example Dental")
    return await runtime.run_turn(agent.name, TurnInput(text=text, channel="sms"))


async def test_greets_in_the_voice_of_its_bio() -> None:
    result = await _say("Hello!")
    assert result.replies == (
        "Hi, I'm the friendly front desk of Example Dental. How can I help you today?",
    )
    assert result.escalation is None


def test_an_explicit_greeting_wins_and_a_bio_without_you_are_uses_the_workspace() -> None:
    assert greeting_for(AGENT.model_copy(update={"greeting": "Howdy!"}), "X") == "Howdy!"
    plain = AGENT.model_copy(update={"bio": "Helpful and brief."})
    assert greeting_for(plain, "Example Dental").startswith("Hi, this is Example Dental.")


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("when are you open?", "8am to 6pm"),
        ("what time do you open on monday", "8am to 6pm"),
        ("where's your location", "Main Street"),
        ("do you take my insurence", "most plans"),  # sic: a typo still matches
        ("price of a teeth cleaning?", "$120"),
    ],
)
async def test_answers_paraphrased_questions_from_its_knowledge(
    question: str, expected: str
) -> None:
    result = await _say(question)
    assert expected in result.replies[0]
    assert result.escalation is None


@pytest.mark.parametrize(
    "text",
    ["Can I talk to a real person?", "I want to speak with someone", "representative please"],
)
async def test_asking_for_a_person_escalates(text: str) -> None:
    result = await _say(text)
    assert result.escalation is not None
    assert result.escalation.trigger == "member_request"
    assert "person" in result.replies[0]


@pytest.mark.parametrize("text", ["What is the capital of France?", "Is the moon made of cheese"])
async def test_says_honestly_when_it_does_not_know(text: str) -> None:
    result = await _say(text)
    assert "don't know" in result.replies[0]
    assert result.escalation is None


async def test_thanks_gets_a_polite_reply() -> None:
    assert "welcome" in (await _say("thanks a lot!")).replies[0]


class _Failing:
    async def respond(self, turn: TurnInput, call: object) -> TurnResult:
        raise RuntimeError("provider exploded")


class _Slow:
    async def respond(self, turn: TurnInput, call: object) -> TurnResult:
        await asyncio.sleep(60)
        return TurnResult(replies=("too late",))


@pytest.mark.parametrize(
    ("model", "trigger"), [(_Failing(), "agent_error"), (_Slow(), "agent_timeout")]
)
async def test_a_failing_or_slow_model_yields_a_holding_reply_and_an_escalation(
    model: object, trigger: str
) -> None:
    agent = AGENT.model_copy(update={"turn_deadline_seconds": 0.05})
    runtime = Runtime((agent,), "Example Dental", models={agent.name: model})  # type: ignore[dict-item]

    result = await runtime.run_turn(agent.name, TurnInput(text="hi", channel="sms"))

    assert result.replies == (HOLDING_REPLY,)
    assert result.escalation is not None
    assert result.escalation.trigger == trigger


async def test_the_same_input_always_gives_the_same_reply() -> None:
    model = EmbeddedModel(AGENT, "Example Dental")
    turns = [await model.respond(TurnInput(text="opening hours?", channel="sms")) for _ in range(3)]
    assert len({t.replies for t in turns}) == 1
