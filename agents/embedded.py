"""The embedded offline model: no key, no network, deterministic.

It greets in the agent's voice (the bio's "You are ..." becomes "I'm ..."), answers from
the agent's knowledge entries by text similarity, hands over to a person when asked,
and says plainly when it does not know rather than guessing. It runs the agent's
workflows step by step: a message containing one of a workflow's ``start_when`` phrases
(or close to one) starts it; inside a workflow every message answers the current question,
except a request for a person and "cancel"/"stop", which leave it.
"""

from __future__ import annotations

import re

from agents.base import EscalationRequest, TurnInput, TurnResult, WorkflowUpdate
from agents.settings import AgentSettings
from agents.workflows import AbilityCall, Engine, Progress
from people.similarity import SimilarityIndex

_PERSON = re.compile(
    r"\b(?:human|real person|live (?:person|agent|chat)|representative|operator|"
    r"(?:talk|speak|chat) (?:to|with) (?:a |an |the |some )?"
    r"(?:person|someone|somebody|human|agent|staff|manager|receptionist|people)|"
    r"customer (?:service|support) (?:agent|person|rep))\b",
    re.IGNORECASE,
)
_GREETING = re.compile(
    r"^\s*(?:hi|hello|hey|hiya|howdy|good (?:morning|afternoon|evening)|yo)\b"
    r"[\s!.,]*(?:there)?[\s!.]*$",
    re.IGNORECASE,
)
_THANKS = re.compile(r"^\s*(?:thanks|thank you|thx|ty|cheers)\b[\s\w!.,]{0,20}$", re.IGNORECASE)
_YOU_ARE = re.compile(r"^\s*you are\s+", re.IGNORECASE)
_CANCEL = re.compile(
    r"^\s*(?:cancel|stop|quit|never ?mind|forget it|start over)\b[\s\w!.,]{0,20}$", re.IGNORECASE
)


def greeting_for(agent: AgentSettings, workspace: str) -> str:
    """The agent's hello: its own ``greeting``, else the bio's first sentence in first person."""
    if agent.greeting:
        return agent.greeting
    first = re.split(r"(?<=[.!?])\s", agent.bio.strip(), maxsplit=1)[0].rstrip(".!? ")
    if _YOU_ARE.match(first):
        return f"Hi, I'm {_YOU_ARE.sub('', first)}. How can I help you today?"
    return f"Hi, this is {workspace}. How can I help you today?"


class EmbeddedModel:
    """Answers from one agent's settings; the same input always gives the same reply."""

    def __init__(self, agent: AgentSettings, workspace: str, engine: Engine | None = None) -> None:
        self.agent = agent
        self.workspace = workspace
        self._engine = engine
        self._index = SimilarityIndex([f"{k.q} {k.q} {k.a}" for k in agent.knowledge])
        self._starts = [
            (phrase.lower(), w.name)
            for w in (engine.workflows.values() if engine else ())
            if w.name in agent.workflows
            for phrase in w.start_when
        ]
        self._start_index = SimilarityIndex([p for p, _ in self._starts])

    async def respond(self, turn: TurnInput, call: AbilityCall | None = None) -> TurnResult:
        text = turn.text.strip()
        active = turn.workflow if self._engine and turn.workflow else None
        if _PERSON.search(text):
            return TurnResult(
                replies=(
                    f"Of course. I've asked a person from {self.workspace} to take over; "
                    "they'll reply here. I'm still here meanwhile if I can help.",
                ),
                escalation=EscalationRequest(reason="asked for a person", trigger="member_request"),
                workflow=WorkflowUpdate(None) if active else None,
            )
        if active is not None and self._engine is not None:
            if _CANCEL.match(text):
                return TurnResult(
                    replies=("OK, I've stopped that. Anything else I can help with?",),
                    workflow=WorkflowUpdate(None),
                )
            return _from(await self._engine.answer(active, text, call))
        workflow = self._workflow_asked_for(text)
        if workflow is not None and self._engine is not None:
            return _from(await self._engine.start(workflow, call))
        if not text or _GREETING.match(text):
            return TurnResult(replies=(greeting_for(self.agent, self.workspace),))
        if _THANKS.match(text):
            return TurnResult(replies=("You're welcome! Anything else I can help with?",))
        match = self._index.best(text)
        if match and match[1] >= self.agent.min_similarity:
            entry = self.agent.knowledge[match[0]]
            return TurnResult(replies=(entry.a,), meta={"knowledge": entry.q})
        return TurnResult(
            replies=(
                "I'm sorry, I don't know the answer to that. If you'd like, I can ask a "
                f'person from {self.workspace} to follow up: just say "talk to a person".',
            ),
            meta={"unanswered": "true"},
        )

    def _workflow_asked_for(self, text: str) -> str | None:
        lowered = text.lower()
        for phrase, name in self._starts:
            if phrase in lowered:
                return name
        match = self._start_index.best(text) if self._starts else None
        if match and match[1] >= max(self.agent.min_similarity, 0.5):
            return self._starts[match[0]][1]
        return None


def _from(progress: Progress) -> TurnResult:
    return TurnResult(
        replies=tuple(progress.replies),
        escalation=progress.escalation,
        workflow=WorkflowUpdate(progress.state),
        collected=progress.collected,
        field_types=progress.field_types,
        actions=tuple(progress.actions),
    )
