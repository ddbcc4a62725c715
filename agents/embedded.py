"""The embedded offline model: no key, no network, deterministic.

It greets in the agent's voice (the bio's "You are ..." becomes "I'm ..."), answers from
the agent's knowledge entries by text similarity, hands over to a person when asked,
and says plainly when it does not know rather than guessing.
"""

from __future__ import annotations

import re

from agents._similarity import SimilarityIndex
from agents.base import EscalationRequest, TurnInput, TurnResult
from agents.settings import AgentSettings

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

    def __init__(self, agent: AgentSettings, workspace: str) -> None:
        self.agent = agent
        self.workspace = workspace
        self._index = SimilarityIndex([f"{k.q} {k.q} {k.a}" for k in agent.knowledge])

    async def respond(self, turn: TurnInput) -> TurnResult:
        text = turn.text.strip()
        if _PERSON.search(text):
            return TurnResult(
                replies=(
                    f"Of course. I've asked a person from {self.workspace} to take over; "
                    "they'll reply here. I'm still here meanwhile if I can help.",
                ),
                escalation=EscalationRequest(reason="asked for a person", trigger="member_request"),
            )
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
