"""The agent runtime: picks each agent's model and runs one bounded turn.

A turn never ends in silence or a stack trace: a model that errors or misses its
deadline yields a short holding reply and an escalation, so a person follows up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from agents.base import EscalationRequest, Model, TurnInput, TurnResult
from agents.embedded import EmbeddedModel
from agents.settings import AgentSettings
from gateway.errors import ConfigError

log = logging.getLogger(__name__)

HOLDING_REPLY = (
    "Sorry, I'm having trouble answering right now. I've asked a person to follow up with you."
)


class Runtime:
    """Runs turns for the workspace's agents, by name."""

    def __init__(
        self,
        agents: tuple[AgentSettings, ...],
        workspace: str,
        models: Mapping[str, Model] | None = None,
    ) -> None:
        """``models`` replaces the model of the agents it names (fault injection in tests)."""
        self._agents = {a.name: a for a in agents}
        self._models: dict[str, Model] = {a.name: EmbeddedModel(a, workspace) for a in agents}
        self._models.update(models or {})

    def agent(self, name: str) -> AgentSettings:
        try:
            return self._agents[name]
        except KeyError:
            raise ConfigError(f"no agent named '{name}'") from None

    async def run_turn(self, agent_name: str, turn: TurnInput) -> TurnResult:
        """One reply (or a holding reply and an escalation) for ``turn``."""
        agent = self.agent(agent_name)
        try:
            async with asyncio.timeout(agent.turn_deadline_seconds):
                return await self._models[agent_name].respond(turn)
        except TimeoutError:
            log.warning(
                "agent %s missed its %.1fs deadline", agent_name, agent.turn_deadline_seconds
            )
            trigger = "agent_timeout"
        except Exception:
            # The runtime is the boundary: whatever the model raised, the member gets an
            # answer and a person is asked to follow up.
            log.exception("agent %s failed its turn", agent_name)
            trigger = "agent_error"
        return TurnResult(
            replies=(HOLDING_REPLY,),
            escalation=EscalationRequest(reason="the agent could not answer", trigger=trigger),
        )
