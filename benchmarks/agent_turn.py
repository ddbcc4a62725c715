"""What the agent runtime adds to a turn, against calling the model object directly.

Three cases, each timed both ways in the same run (N turns, after a warm-up):

- the embedded model: ``EmbeddedModel.respond`` vs ``Runtime.run_turn``;
- a scripted LangChain chat model answering with text: ``model.ainvoke`` vs the runtime
  (system prompt, history, tool binding, the deadline, the result);
- the scripted model calling one tool (``supervisor_escalation``) and then answering:
  two ``ainvoke`` calls vs the runtime (which also validates and runs the ability).

Prints p50 per turn both ways, the runtime's added p50 and the ratio.
Target: the runtime adds under 2 ms per turn at p50.

    .venv/bin/python benchmarks/agent_turn.py [--turns 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agents.base import TurnInput, Utterance
from agents.embedded import EmbeddedModel
from agents.runtime import Runtime
from agents.settings import AgentSettings, KnowledgeEntry


class Scripted(FakeMessagesListChatModel):
    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Scripted:  # type: ignore[override]
        return self


KNOWLEDGE = tuple(
    KnowledgeEntry(q=q, a=a)
    for q, a in [
        ("What are your opening hours?", "8am to 6pm, Monday to Friday."),
        ("Where are you located?", "12 Main Street, Springfield."),
        ("Do you accept insurance?", "We accept most dental insurance plans."),
        ("How much is a cleaning?", "A cleaning is $120 without insurance."),
    ]
)
HISTORY = tuple(
    Utterance("member" if i % 2 == 0 else "agent", f"message number {i} of the conversation")
    for i in range(10)
)
TURN = TurnInput(text="Do you take my insurance?", channel="sms", history=HISTORY)


async def _p50(work: Callable[[], Awaitable[Any]], turns: int) -> float:
    for _ in range(min(200, turns)):
        await work()
    took = []
    for _ in range(turns):
        started = time.perf_counter()
        await work()
        took.append(time.perf_counter() - started)
    return statistics.median(took) * 1000


def _report(name: str, direct: float, runtime: float) -> None:
    print(f"{name:28} direct {direct:7.3f} ms   runtime {runtime:7.3f} ms   "
          f"added {runtime - direct:6.3f} ms   ratio {runtime / direct:5.2f}"
          f"{'' if runtime - direct < 2 else '   (over the 2 ms target)'}")  # fmt: skip


async def main(turns: int) -> None:
    agent = AgentSettings(name="bench", bio="You are the front desk of Example Dental.",
                          knowledge=KNOWLEDGE, abilities=["supervisor_escalation"])  # fmt: skip
    runtime = Runtime((agent,), "Example Dental")
    embedded = EmbeddedModel(agent, "Example Dental", runtime.engine)
    _report("embedded model",
            await _p50(lambda: embedded.respond(TURN), turns),
            await _p50(lambda: runtime.run_turn("bench", TURN), turns))  # fmt: skip
    await runtime.close()

    text = AIMessage(content="We accept most dental insurance plans.")
    plain = Scripted(responses=[text])
    runtime = Runtime((agent,), "Example Dental", chat_models={"bench": plain})
    messages = [SystemMessage(agent.bio), HumanMessage(TURN.text)]
    _report("scripted model, no tools",
            await _p50(lambda: plain.ainvoke(messages), turns),
            await _p50(lambda: runtime.run_turn("bench", TURN), turns))  # fmt: skip
    await runtime.close()

    call = AIMessage(content="", tool_calls=[
        {"name": "supervisor_escalation", "args": {"reason": "asked"}, "id": "c1"}])  # fmt: skip
    tooling = Scripted(responses=[call, text])
    runtime = Runtime((agent,), "Example Dental", chat_models={"bench": tooling})

    async def twice() -> None:
        await tooling.ainvoke(messages)
        await tooling.ainvoke(messages)

    _report("scripted model, one tool",
            await _p50(twice, turns),
            await _p50(lambda: runtime.run_turn("bench", TURN), turns))  # fmt: skip
    await runtime.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--turns", type=int, default=2000)
    asyncio.run(main(parser.parse_args().turns))
