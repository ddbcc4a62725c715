"""``agents.abilities.call`` as the boundary of every ability's faults: whatever an ability
raises is its refusal, in the embedded agent and in the LangChain runtime alike."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from unittest import mock

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from langchain_core.messages import AIMessage

from agents import abilities
from agents.abilities import AbilityContext
from agents.base import MemberFacts, TurnInput
from agents.runtime import HOLDING_REPLY, Runtime
from gateway.app import runtime_for
from gateway.settings import from_mapping
from people.roles import BUILTIN_ROLES
from tests.agents.test_llm import Scripted, _tool_outputs
from tests.helpers import make_config

# Arguments each ability accepts, so that the call reaches the ability's own code.
VALID_ARGUMENTS: dict[str, dict[str, Any]] = {
    "supervisor_escalation": {"reason": "billing"},
    "calendar_booking": {"action": "list"},
    "data_query": {"query": "me"},
    "file_access": {"action": "list"},
    "web_search": {"query": "flossing"},
    "custom_tool": {"tool": "orders"},
    "phone_controls": {"action": "hangup"},
}


class Oddity(Exception):
    """An exception type no ability knows about."""


def test_every_registered_ability_is_exercised_here() -> None:
    assert set(VALID_ARGUMENTS) == set(abilities.REGISTRY)


@pytest.mark.parametrize("name", sorted(abilities.REGISTRY))
@pytest.mark.parametrize("fault", [ValueError("bad"), KeyError("k"), RuntimeError("boom"),
                                   ZeroDivisionError(), LookupError("x"), Oddity()])  # fmt: skip
async def test_any_exception_inside_an_ability_is_its_refusal(name: str, fault: Exception) -> None:
    counted: list[tuple[str, str]] = []
    context = AbilityContext(
        agent="receptionist", channel="sms", conversation_id=3,
        member=MemberFacts(id=1, kind="team", role="owner"), role=BUILTIN_ROLES["owner"],
        abilities={name: {}},
    )  # fmt: skip
    ability = abilities.load(name)
    # Fault injection: the ability's own code raises.
    with mock.patch.object(type(ability), "run", side_effect=fault):
        result = await abilities.call(
            context, name, VALID_ARGUMENTS[name], lambda n, o: counted.append((n, o))
        )
    assert result.refused
    assert result.text == f"{name} failed ({type(fault).__name__})."
    assert counted == [(name, "failed")]


@pytest.mark.parametrize("answer", ["order 12 is \x00 shipped", "broken \ud800 text"])
async def test_an_ability_answering_what_the_store_cannot_hold_is_its_refusal(answer: str) -> None:
    counted: list[tuple[str, str]] = []
    context = AbilityContext(
        agent="receptionist", channel="sms", conversation_id=3,
        member=MemberFacts(id=1, kind="team", role="owner"), role=BUILTIN_ROLES["owner"],
        abilities={"custom_tool": {}},
    )  # fmt: skip
    ability = abilities.load("custom_tool")
    # Fault injection: the tool answers text with a NUL or a lone surrogate.
    with mock.patch.object(type(ability), "run", return_value=abilities.AbilityResult(answer)):
        result = await abilities.call(
            context, "custom_tool", VALID_ARGUMENTS["custom_tool"],
            lambda n, o: counted.append((n, o)),
        )  # fmt: skip
    assert result.refused
    assert result.text.startswith("custom_tool failed (its answer holds ")
    assert counted == [("custom_tool", "failed")]


class Redirecting:
    """An HTTP tool on 127.0.0.1 whose every path redirects to ``target``."""

    def __init__(self) -> None:
        self.target = "file:///etc/passwd"

    async def handle(self, request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": self.target})


@pytest.fixture
async def redirecting() -> AsyncIterator[tuple[Redirecting, str]]:
    fake = Redirecting()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    yield fake, str(server.make_url("")).rstrip("/")
    await server.close()


LOOKUP_FLOW: dict[str, Any] = {
    "name": "lookup",
    "start_when": ["where is my order"],
    "steps": [
        {"ability": "custom_tool", "args": {"tool": "orders"}},
        {"done": "Anything else?"},
    ],
}


def _runtime(database_url: str, base: str, **options: Any) -> Runtime:
    raw = make_config(database_url)
    tool = {"description": "Order status", "url": f"{base}/orders", "public": True}
    raw["agents"][0].update({
        "workflows": ["lookup"],
        "abilities": {"custom_tool": {"allow_hosts": ["127.0.0.1"], "tools": {"orders": tool}}},
    })  # fmt: skip
    raw["workflows"] = [LOOKUP_FLOW]
    return runtime_for(from_mapping(raw, env={}), **options)


REDIRECTS = ["file:///etc/passwd", "http://10.0.0.1/x", "gopher://127.0.0.1/", "http://h:99999/"]


@pytest.mark.parametrize("target", REDIRECTS)
async def test_a_tool_redirected_elsewhere_is_refused_in_the_langchain_runtime(
    sqlite_url: str, redirecting: tuple[Redirecting, str], target: str
) -> None:
    fake, base = redirecting
    fake.target = target
    asks = AIMessage(content="", tool_calls=[
        {"name": "custom_tool", "args": {"tool": "orders"}, "id": "c1"}])  # fmt: skip
    model = Scripted(responses=[asks, AIMessage(content="I couldn't look that up.")])
    model.seen = []
    runtime = _runtime(sqlite_url, base, chat_models={"receptionist": model})
    try:
        result = await runtime.run_turn("receptionist", TurnInput(text="order?", channel="sms"))
    finally:
        await runtime.close()
    [output] = _tool_outputs(model)
    assert output.startswith("orders may not be called:")
    assert (result.replies, result.escalation) == (("I couldn't look that up.",), None)


async def test_a_tool_redirected_to_a_file_is_refused_in_the_embedded_agent(
    sqlite_url: str, redirecting: tuple[Redirecting, str]
) -> None:
    _, base = redirecting
    runtime = _runtime(sqlite_url, base)
    try:
        result = await runtime.run_turn(
            "receptionist", TurnInput(text="where is my order", channel="sms")
        )
    finally:
        await runtime.close()
    assert HOLDING_REPLY not in result.replies
    assert result.replies[0].startswith("orders may not be called: only http(s) URLs")
    assert result.escalation is not None
    assert result.escalation.trigger == "workflow_step_failed"  # the step's refusal, not a crash
