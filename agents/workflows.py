"""Workflows: the engine that runs one (``workflows:`` in YAML; the steps are
``agents.workflow_steps``).

Any step may have an ``id`` (for ``goto``) and an ``agent`` (who runs it; the workflow's
``agent``, else the conversation's, by default). The engine here is deterministic: the
embedded model drives it directly, an LLM agent through its ``record_field`` tool, and the
same checks apply to both. Its position (``WorkflowState``) is saved on the conversation
with the reply, so it survives restarts, and answers are saved on the member's ``data``
(a ``name`` one also as its name; see ``people.answers`` for why an email or phone answer
does not become the member's identity).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from agents.abilities import AbilityResult
from agents.answer_types import typed
from agents.base import EscalationRequest
from agents.workflow_steps import (
    PLACEHOLDER,
    Ask,
    Branch,
    Done,
    Handoff,
    Say,
    UseAbility,
    WorkflowSettings,
)
from people import cel
from store.errors import ValidationFailed
from store.payloads import CallAction

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3


@dataclass
class WorkflowState:
    """Where a conversation is in a workflow: saved on the conversation between turns."""

    workflow: str
    step: int
    fields: dict[str, Any] = field(default_factory=dict)
    attempts: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"workflow": self.workflow, "step": self.step, "fields": dict(self.fields),
                "attempts": self.attempts}  # fmt: skip

    @classmethod
    def from_json(cls, raw: Any) -> WorkflowState | None:
        if not isinstance(raw, dict) or not isinstance(raw.get("workflow"), str):
            return None
        return cls(raw["workflow"], int(raw.get("step", 0)), dict(raw.get("fields") or {}),
                   int(raw.get("attempts", 0)))  # fmt: skip


@dataclass
class Progress:
    """What one workflow turn produced."""

    replies: list[str] = field(default_factory=list)
    state: WorkflowState | None = None  # None: the workflow is over (or never started)
    collected: dict[str, Any] = field(default_factory=dict)  # answers accepted this turn
    field_types: dict[str, str] = field(default_factory=dict)
    escalation: EscalationRequest | None = None
    actions: list[CallAction] = field(default_factory=list)


AbilityCall = Callable[[str, dict[str, str]], Awaitable[AbilityResult]]


def _tagged(progress: Progress, workflow: str) -> Progress:
    """Name the workflow on its escalation: the conversation is routed as that workflow's
    (to operators qualified for it) even when the workflow ended by handing off."""
    if progress.escalation is not None and progress.escalation.workflow is None:
        progress.escalation = replace(progress.escalation, workflow=workflow)
    return progress


def fill(text: str, fields: Mapping[str, Any]) -> str:
    """``text`` with ``{field}`` placeholders replaced by collected values."""
    return PLACEHOLDER.sub(lambda m: _show(fields.get(m.group(1))), text)


def _show(value: Any) -> str:
    return "" if value is None else str(value)


class Engine:
    """Runs workflows: starts them, takes answers, walks steps until one needs the member."""

    def __init__(
        self,
        workflows: tuple[WorkflowSettings, ...],
        runner: cel.CelRunner,
        region: str,
        timezone: str = "UTC",
    ) -> None:
        self.workflows = {w.name: w for w in workflows}
        self._cel = runner
        self._region = region
        self._zone = ZoneInfo(timezone)

    async def start(self, name: str, call: AbilityCall | None = None) -> Progress:
        state = WorkflowState(name, 0, dict.fromkeys(sorted(self.workflows[name].fields())))
        return _tagged(await self._walk(state, Progress(), call), name)

    def uses_cel(self) -> bool:
        """Whether any step has a CEL expression (a ``validate`` or a ``branch``)."""
        steps = [step for w in self.workflows.values() for step in w.steps]
        return any(isinstance(s, Branch) or (isinstance(s, Ask) and s.validate_) for s in steps)

    def current(self, state: WorkflowState) -> Ask | None:
        workflow = self.workflows.get(state.workflow)
        if workflow is None or not 0 <= state.step < len(workflow.steps):
            return None
        step = workflow.steps[state.step]
        return step if isinstance(step, Ask) else None

    async def answer(
        self, state: WorkflowState, text: str, call: AbilityCall | None = None
    ) -> Progress:
        """The member's reply to the question ``state`` is waiting on."""
        step = self.current(state)
        if step is None:  # the YAML changed under a running workflow: start afresh
            log.warning("workflow %s has no question at step %s", state.workflow, state.step)
            return Progress(state=None)
        progress = Progress()
        problem = await self.check(step, text, state.fields)
        if isinstance(problem, str):
            return _tagged(self._refused(state, step, problem, progress), state.workflow)
        value = problem[0]
        state = WorkflowState(state.workflow, state.step + 1, {**state.fields, step.ask: value})
        progress.collected[step.ask] = value
        progress.field_types[step.ask] = step.type
        return _tagged(await self._walk(state, progress, call), state.workflow)

    async def check(self, step: Ask, text: str, fields: Mapping[str, Any]) -> str | tuple[Any]:
        """``(value,)`` for an acceptable answer, else the sentence that says why not."""
        try:
            value = typed(
                step.type, step.choices, text, self._region, datetime.now(self._zone).date()
            )
        except ValidationFailed as exc:
            return f"{exc.message.rstrip('.')}."
        if step.validate_:
            try:
                ok = await self._cel.evaluate(step.validate_, {"answer": value, "fields": fields})
            except cel.CelFailed as exc:
                log.info("validate of %s failed to evaluate: %s", step.ask, exc)
                ok = False
            if ok is not True:
                return step.error
        return (value,)

    def _refused(
        self, state: WorkflowState, step: Ask, problem: str, progress: Progress
    ) -> Progress:
        attempts = state.attempts + 1
        if attempts >= MAX_ATTEMPTS:
            progress.replies.append(
                f"{problem} I'll ask a person to help with this; they'll be in touch here."
            )
            progress.escalation = EscalationRequest(
                reason=f"workflow {state.workflow}: no valid {step.ask} after {attempts} tries",
                trigger="workflow_step_failed",
            )
            progress.state = None
            return progress
        progress.replies.append(f"{problem} {fill(step.prompt, state.fields)}")
        progress.state = WorkflowState(state.workflow, state.step, state.fields, attempts)
        return progress

    async def _walk(
        self, state: WorkflowState, progress: Progress, call: AbilityCall | None
    ) -> Progress:
        workflow = self.workflows[state.workflow]
        for _ in range(len(workflow.steps) * 2 + 1):  # a branch loop cannot spin forever
            if state.step >= len(workflow.steps):
                progress.state = None
                return progress
            step = workflow.steps[state.step]
            if isinstance(step, Ask):
                progress.replies.append(fill(step.prompt, state.fields))
                progress.state = state
                return progress
            if isinstance(step, Say):
                progress.replies.append(fill(step.say, state.fields))
            elif isinstance(step, Done):
                progress.replies.append(fill(step.done, state.fields))
                progress.state = None
                return progress
            elif isinstance(step, Handoff):
                progress.escalation = EscalationRequest(
                    reason=fill(step.handoff, state.fields), trigger="workflow_handoff"
                )
                progress.state = None
                return progress
            elif isinstance(step, Branch):
                target = await self._branch(step, state)
                if target is not None:
                    state = WorkflowState(state.workflow, workflow.index(target), state.fields)
                    continue
            elif isinstance(step, UseAbility):
                if call is None:
                    raise RuntimeError(f"workflow {workflow.name} calls {step.ability} unwired")
                args = {k: fill(v, state.fields) for k, v in step.args.items()}
                result = await call(step.ability, args)
                progress.actions.extend(result.actions)
                if result.refused and step.on_failure is not None:
                    progress.replies.append(result.text)
                    state = WorkflowState(state.workflow, workflow.index(step.on_failure),
                                          state.fields)  # fmt: skip
                    continue
                if result.refused or result.escalation is not None:
                    progress.replies.append(result.text)
                    progress.escalation = result.escalation or EscalationRequest(
                        reason=f"workflow {workflow.name}: {step.ability} failed: {result.text}",
                        trigger="workflow_step_failed",
                    )
                    progress.state = None
                    return progress
                if step.save_as:
                    state.fields = {**state.fields, step.save_as: result.text}
                    progress.collected[step.save_as] = result.text
                    progress.field_types[step.save_as] = "text"
                else:
                    progress.replies.append(result.text)
            state = WorkflowState(state.workflow, state.step + 1, state.fields)
        progress.escalation = EscalationRequest(
            reason=f"workflow {workflow.name} went round in circles", trigger="workflow_step_failed"
        )
        progress.state = None
        return progress

    async def _branch(self, step: Branch, state: WorkflowState) -> str | None:
        for case in step.branch:
            try:
                if await self._cel.evaluate(case.when, {"fields": state.fields}) is True:
                    return case.goto
            except cel.CelFailed as exc:
                log.warning("workflow %s: branch '%s' failed: %s", state.workflow, case.when, exc)
        return None
