"""The agent runtime: picks each agent's model and runs one bounded turn.

A turn never ends in silence or a stack trace: a model that errors, loops or misses its
deadline yields a short holding reply and an escalation, so a person follows up, and the
conversation's workflow position is left as it was.

Inside a workflow the agent that runs the turn is the current step's ``agent``, else the
workflow's, else the conversation's. Abilities run with the role the conversation grants
(``TurnInput.role``) and only if the running agent has them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agents import abilities
from agents.abilities import AbilityContext, AbilityResult, Count
from agents.base import EscalationRequest, TurnInput, TurnResult
from agents.embedded import EmbeddedModel
from agents.settings import AgentSettings
from agents.workflow_steps import WorkflowSettings
from agents.workflows import AbilityCall, Engine
from people.cel import CelFailed, CelRunner
from store.errors import ConfigError

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

log = logging.getLogger(__name__)

CEL_WORKERS = 2  # for workflows' checks (grading has a pool of its own)
HOLDING_REPLY = (
    "Sorry, I'm having trouble answering right now. I've asked a person to follow up with you."
)


class Model(Protocol):
    """Something that answers a turn: the embedded model, or a LangChain chat model."""

    async def respond(self, turn: TurnInput, call: AbilityCall) -> TurnResult:
        """Answer one member message. May raise; the runtime turns failures into a holding reply."""
        ...


class Runtime:
    """Runs turns for the workspace's agents, by name."""

    def __init__(
        self,
        agents: tuple[AgentSettings, ...],
        workspace: str,
        models: Mapping[str, Model] | None = None,
        *,
        workflows: tuple[WorkflowSettings, ...] = (),
        region: str = "US",
        timezone: str = "UTC",
        count: Count | None = None,
        chat_models: Mapping[str, BaseChatModel] | None = None,
    ) -> None:
        """``models`` replaces the model of the agents it names (fault injection in tests);
        ``chat_models`` gives agents a LangChain chat model of the caller's (a scripted one)."""
        self._agents = {a.name: a for a in agents}
        self._cel = CelRunner(workers=CEL_WORKERS)
        self.engine = Engine(workflows, self._cel, region, timezone)
        self._count = count or (lambda name, outcome: None)
        self._timezone = timezone
        self._sessions: async_sessionmaker[AsyncSession] | None = None
        self._models: dict[str, Model] = {}
        chat_models = chat_models or {}
        for agent in agents:
            if agent.name in (models or {}):
                continue
            if agent.model == "embedded" and agent.name not in chat_models:
                self._models[agent.name] = EmbeddedModel(agent, workspace, self.engine)
            else:
                from agents.llm import LangChainModel, chat_model  # LangChain loads only if used

                model = chat_models.get(agent.name) or chat_model(agent)
                self._models[agent.name] = LangChainModel(agent, workspace, model, self.engine)
        self._models.update(models or {})

    async def warm_up(self) -> None:
        """Start the CEL worker now if any workflow uses CEL, not in a member's first turn."""
        if self.engine.uses_cel():
            try:
                await self._cel.warm_up()
            except CelFailed as exc:  # the first turn that needs it will try again
                log.warning("the CEL worker did not start: %s", exc)

    def use_store(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        """Give abilities that keep records (bookings) the store to keep them in."""
        self._sessions = sessions

    def agent(self, name: str) -> AgentSettings:
        try:
            return self._agents[name]
        except KeyError:
            raise ConfigError(f"no agent named '{name}'") from None

    def runner(self, agent_name: str, turn: TurnInput) -> str:
        """Who runs this turn: the current workflow step's agent, the workflow's, or ours."""
        if turn.workflow is None:
            return agent_name
        workflow = self.engine.workflows.get(turn.workflow.workflow)
        if workflow is None or not 0 <= turn.workflow.step < len(workflow.steps):
            return agent_name
        named = workflow.steps[turn.workflow.step].agent or workflow.agent
        return named if named in self._agents else agent_name

    async def run_turn(self, agent_name: str, turn: TurnInput) -> TurnResult:
        """One reply (or a holding reply and an escalation) for ``turn``."""
        self.agent(agent_name)
        name = self.runner(agent_name, turn)
        agent = self.agent(name)
        context = AbilityContext(
            agent=name,
            channel=turn.channel,
            conversation_id=turn.conversation_id,
            member=turn.member,
            role=turn.role,
            abilities=agent.abilities,
            sessions=self._sessions,
            timezone=self._timezone,
        )

        async def call(ability: str, arguments: Any) -> AbilityResult:
            return await abilities.call(context, ability, arguments, self._count)

        try:
            async with asyncio.timeout(agent.turn_deadline_seconds):
                result = await self._models[name].respond(turn, call)
        except TimeoutError:
            log.warning("agent %s missed its %.1fs deadline", name, agent.turn_deadline_seconds)
            trigger = "agent_timeout"
        except Exception:
            # The runtime is the boundary: whatever the model raised, the member gets an
            # answer and a person is asked to follow up.
            log.exception("agent %s failed its turn", name)
            trigger = "agent_error"
        else:
            return (
                replace(result, meta={**result.meta, "agent": name})
                if name != agent_name
                else result
            )
        return TurnResult(
            replies=(HOLDING_REPLY,),
            escalation=EscalationRequest(reason="the agent could not answer", trigger=trigger),
        )

    async def close(self) -> None:
        await self._cel.close()
