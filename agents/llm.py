"""Agents on LangChain chat models (``model: provider:name``), with a bounded tool loop.

The model sees the agent's bio (``{workspace}`` filled in), what is known of the member,
the agent's knowledge entries and, inside a workflow, the question being asked and the
fields still to collect. Its tools are the agent's abilities plus ``start_workflow`` and
``record_field``; every tool call goes through ``agents.abilities.call`` or the workflow
engine, which check it whatever the model was told. The loop stops after ``max_steps``
model calls, or when the provider's reported token use passes ``max_turn_tokens``:
the runtime then gives the member a holding reply and asks for a person.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)

from agents import abilities
from agents.abilities import AbilityResult
from agents.base import EscalationRequest, TurnInput, TurnResult, WorkflowUpdate
from agents.settings import AgentSettings
from agents.workflows import Engine, Progress, WorkflowState, fill
from store.errors import ConfigError
from store.payloads import CallAction

log = logging.getLogger(__name__)

CallAbility = Callable[[str, Any], Awaitable[AbilityResult]]


class TurnOverrun(RuntimeError):
    """The model used up its steps or tokens without answering."""


def chat_model(agent: AgentSettings) -> BaseChatModel:
    """The LangChain chat model for ``agent.model`` (``provider:name``) and its settings."""
    return language_model(
        agent.model, f"agent {agent.name}", timeout=agent.timeout_seconds,
        base_url=agent.base_url, api_key=agent.api_key, temperature=agent.temperature,
        max_tokens=agent.max_tokens,
    )  # fmt: skip


def language_model(
    spec: str, who: str, *, timeout: float, base_url: str | None = None,
    api_key: str | None = None, temperature: float | None = None, max_tokens: int | None = None,
) -> BaseChatModel:  # fmt: skip
    """A LangChain chat model for ``spec`` (``provider:name``); ``who`` uses it (for errors)."""
    from langchain.chat_models import init_chat_model

    options: dict[str, Any] = {"timeout": timeout, "max_retries": 1}
    if base_url:
        options["base_url"] = base_url
    if api_key:
        options["api_key"] = api_key
    if temperature is not None:
        options["temperature"] = temperature
    if max_tokens is not None:
        options["max_tokens"] = max_tokens
    try:
        model = init_chat_model(spec, **options)
    except Exception as exc:  # a provider's own check (a missing key, say), in its words
        raise ConfigError(f"{who}: cannot start model {spec}: {exc}") from exc
    if not isinstance(model, BaseChatModel):
        raise ConfigError(f"{who}: {spec} is not a chat model")
    return model


@dataclass
class _Turn:
    """What one turn has done so far (tool calls change it)."""

    state: WorkflowState | None
    workflow_changed: bool = False
    collected: dict[str, Any] = field(default_factory=dict)
    field_types: dict[str, str] = field(default_factory=dict)
    escalation: EscalationRequest | None = None
    said: list[str] = field(default_factory=list)  # workflow texts the member must see
    actions: list[CallAction] = field(default_factory=list)

    def absorb(self, progress: Progress) -> None:
        self.state, self.workflow_changed = progress.state, True
        self.collected.update(progress.collected)
        self.field_types.update(progress.field_types)
        self.escalation = progress.escalation or self.escalation


class LangChainModel:
    """One agent on a LangChain chat model."""

    def __init__(
        self, agent: AgentSettings, workspace: str, model: BaseChatModel, engine: Engine
    ) -> None:
        self.agent = agent
        self.workspace = workspace
        self._model = model
        self._engine = engine

    async def respond(self, turn: TurnInput, call: CallAbility) -> TurnResult:
        state = _Turn(turn.workflow)
        messages: list[BaseMessage] = [SystemMessage(self._system(turn)), *_history(turn)]
        messages.append(HumanMessage(turn.text))
        tokens = 0
        for _ in range(self.agent.max_steps):
            bound = self._model.bind_tools(self._tools(state))
            reply = await bound.ainvoke(messages)
            if not isinstance(reply, AIMessage):
                raise TypeError(f"the model answered with {type(reply).__name__}")
            messages.append(reply)
            if reply.usage_metadata:
                tokens += reply.usage_metadata["total_tokens"]
            if tokens > self.agent.max_turn_tokens:
                raise TurnOverrun(f"{tokens} tokens used in one turn")
            if not reply.tool_calls:
                return self._result(state, _text(reply))
            for tool_call in reply.tool_calls:
                output = await self._tool(tool_call["name"], tool_call["args"], state, turn, call)
                messages.append(ToolMessage(output, tool_call_id=tool_call["id"] or ""))
        raise TurnOverrun(f"no answer after {self.agent.max_steps} model calls")

    def _result(self, state: _Turn, text: str) -> TurnResult:
        replies = tuple(r for r in (*state.said, text.strip()) if r)
        return TurnResult(
            replies=replies or ("I'm here. How can I help?",),
            escalation=state.escalation,
            workflow=WorkflowUpdate(state.state) if state.workflow_changed else None,
            collected=state.collected,
            field_types=state.field_types,
            actions=tuple(state.actions),
        )

    async def _tool(
        self, name: str, args: dict[str, Any], state: _Turn, turn: TurnInput, call: CallAbility
    ) -> str:
        if name == "start_workflow":
            return await self._start(str(args.get("name", "")), state, call)
        if name == "record_field":
            return await self._record(args, state, call)
        result = await call(name, args)
        if result.escalation is not None:
            state.escalation = state.escalation or result.escalation
        state.actions.extend(result.actions)
        return result.text

    async def _start(self, name: str, state: _Turn, call: CallAbility) -> str:
        if name not in self.agent.workflows or name not in self._engine.workflows:
            return f"There is no workflow '{name}' you may start."
        if state.state is not None:
            return f"Workflow {state.state.workflow} is already running; finish it first."
        progress = await self._engine.start(name, call)
        state.absorb(progress)
        return self._next(progress)

    async def _record(self, args: dict[str, Any], state: _Turn, call: CallAbility) -> str:
        if state.state is None:
            return "No workflow is running; there is nothing to record."
        step = self._engine.current(state.state)
        name, value = str(args.get("field", "")), args.get("value")
        if step is None or step.ask != name:
            expected = step.ask if step is not None else "nothing"
            return f"Not recorded: the workflow is waiting for '{expected}', not '{name}'."
        checked = await self._engine.check(step, str(value if value is not None else ""),
                                           state.state.fields)  # fmt: skip
        if isinstance(checked, str):
            return f"Not recorded: {checked} Ask again: {fill(step.prompt, state.state.fields)}"
        progress = await self._engine.answer(state.state, str(value), call)
        state.absorb(progress)
        return f"Recorded {name}. " + self._next(progress)

    def _next(self, progress: Progress) -> str:
        said = " ".join(progress.replies[:-1] if progress.state else progress.replies)
        if progress.escalation is not None:
            return f"{said} The workflow hands over to a person: {progress.escalation.reason}."
        if progress.state is None:
            return f"{said} The workflow is complete.".strip()
        step = self._engine.current(progress.state)
        question = fill(step.prompt, progress.state.fields) if step else ""
        return f"{said} Now ask the member: {question}".strip()

    def _tools(self, state: _Turn) -> list[dict[str, Any]]:
        tools = []
        for name in self.agent.abilities:
            ability = abilities.load(name)
            tools.append({"name": name, "description": ability.description,
                          "parameters": ability.arguments.model_json_schema()})  # fmt: skip
        if state.state is None and self.agent.workflows:
            tools.append({
                "name": "start_workflow",
                "description": "Start one of your workflows: " + "; ".join(
                    f"{w}: {self._engine.workflows[w].description or w}"
                    for w in self.agent.workflows if w in self._engine.workflows
                ),
                "parameters": {"type": "object", "properties": {"name": {"type": "string"}},
                               "required": ["name"]},
            })  # fmt: skip
        if state.state is not None:
            tools.append({
                "name": "record_field",
                "description": "Record the member's answer to the workflow's current question.",
                "parameters": {"type": "object", "properties": {
                    "field": {"type": "string"}, "value": {"type": "string"}},
                    "required": ["field", "value"]},
            })  # fmt: skip
        return tools

    def _system(self, turn: TurnInput) -> str:
        parts = [self.agent.bio.replace("{workspace}", self.workspace) or
                 f"You are an assistant for {self.workspace}.",
                 f"You are talking with a member of the public over {turn.channel}. Keep replies "
                 "short. Never reveal other people's information."]  # fmt: skip
        if turn.member is not None:
            known = {k: v for k, v in (("name", turn.member.name), ("email", turn.member.email),
                                       ("phone", turn.member.phone)) if v}  # fmt: skip
            known.update({f"data.{k}": v for k, v in turn.member.data.items()})
            parts.append("What we know about this member: " + json.dumps(known, default=str))
        if self.agent.knowledge:
            parts.append("Facts you can rely on:\n" + "\n".join(
                f"Q: {k.q}\nA: {k.a}" for k in self.agent.knowledge))  # fmt: skip
        if turn.workflow is not None:
            step = self._engine.current(turn.workflow)
            if step is not None:
                missing = [f for f, v in turn.workflow.fields.items() if v is None]
                parts.append(
                    f"You are in workflow {turn.workflow.workflow}. The current question is: "
                    f"{fill(step.prompt, turn.workflow.fields)} (field {step.ask}, type "
                    f"{step.type}). Still to collect: {', '.join(missing)}. When the member "
                    "answers, call record_field."
                )
        return "\n\n".join(parts)


def _history(turn: TurnInput) -> list[BaseMessage]:
    out: list[BaseMessage] = []
    for utterance in turn.history:
        if utterance.author == "member":
            out.append(HumanMessage(utterance.text))
        else:
            out.append(AIMessage(utterance.text))
    return out


def _text(message: AIMessage) -> str:
    content = message.content
    if isinstance(content, str):
        return content
    return "".join(
        part.get("text", "") if isinstance(part, dict) else str(part) for part in content
    )
