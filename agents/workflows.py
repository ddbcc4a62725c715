"""Workflows: steps an agent follows to collect data and act on it (``workflows:`` in YAML).

A workflow is a list of steps, each one of:

``ask``      a field: ``prompt``, ``type`` (text, email, phone, number, date, choice with
             ``choices``), an optional CEL ``validate`` over ``answer`` (the typed value)
             and ``fields`` (everything collected so far, null where not yet), and the
             ``error`` said when the answer is refused.
``say``      a message; ``{field}`` placeholders are filled from the collected fields.
``branch``   a list of ``{when: <CEL over fields>, goto: <step id>}``; the first true one
             jumps, else the next step follows.
``ability``  calls an ability with ``args`` (``{field}`` templates) -- see ``agents.abilities``.
``handoff``  asks for a person, with the reason given.
``done``     says its text and ends the workflow.

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
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

from agents.abilities import AbilityResult
from agents.answer_types import FieldType, typed
from agents.base import EscalationRequest
from people import cel
from store.errors import ValidationFailed
from store.payloads import CallAction

log = logging.getLogger(__name__)

Id = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
MAX_ATTEMPTS = 3
_PLACEHOLDER = re.compile(r"\{([a-z][a-z0-9_]*)\}")


class _Step(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    id: Id | None = None
    agent: str | None = None


class Ask(_Step):
    ask: Id = Field(description="The field this step collects.")
    prompt: str = Field(min_length=1)
    type: FieldType = "text"
    choices: tuple[str, ...] = ()
    validate_: str | None = Field(default=None, alias="validate", description="CEL: true = ok.")
    error: str = "Sorry, that doesn't look right."

    @model_validator(mode="after")
    def _choices(self) -> Ask:
        if self.type == "choice" and not self.choices:
            raise ValueError("a choice needs choices")
        if self.choices and self.type != "choice":
            raise ValueError("choices are only for type: choice")
        if self.validate_ is not None:
            try:
                cel.check(self.validate_, {"answer", "fields"})
            except cel.CelProblem as exc:
                raise ValueError(f"validate: {exc}") from None
        return self


class Say(_Step):
    say: str = Field(min_length=1)


class Case(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    when: str
    goto: Id

    @model_validator(mode="after")
    def _cel(self) -> Case:
        try:
            cel.check(self.when, {"fields"})
        except cel.CelProblem as exc:
            raise ValueError(f"when: {exc}") from None
        return self


class Branch(_Step):
    branch: tuple[Case, ...] = Field(min_length=1)


class UseAbility(_Step):
    ability: str
    args: dict[str, str] = Field(default_factory=dict)
    save_as: Id | None = Field(default=None, description="A field to keep the result in.")
    on_failure: Id | None = Field(
        default=None, description="Step to go back to (saying why) when the ability refuses."
    )


class Handoff(_Step):
    handoff: str = Field(min_length=1, description="Why a person is needed.")


class Done(_Step):
    done: str = Field(min_length=1)


_KINDS = ("ask", "say", "branch", "ability", "handoff", "done")


def _kind(raw: Any) -> str | None:
    if isinstance(raw, BaseModel):
        raw = raw.model_dump(by_alias=True)
    if not isinstance(raw, dict):
        return None
    present = [k for k in _KINDS if k in raw]
    return present[0] if len(present) == 1 else None


Step = Annotated[
    Annotated[Ask, Tag("ask")] | Annotated[Say, Tag("say")] | Annotated[Branch, Tag("branch")]
    | Annotated[UseAbility, Tag("ability")] | Annotated[Handoff, Tag("handoff")]
    | Annotated[Done, Tag("done")],
    Discriminator(_kind, custom_error_type="step_kind",
                  custom_error_message=f"a step has exactly one of: {', '.join(_KINDS)}"),
]  # fmt: skip


class WorkflowSettings(BaseModel):
    """One workflow (DESIGN §8): what starts it and its steps."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Id
    description: str = ""
    agent: str | None = Field(default=None, description="Runs it, unless a step names another.")
    start_when: tuple[str, ...] = Field(
        default=(), description="Phrases that start it (the embedded model matches these)."
    )
    steps: tuple[Step, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _references(self) -> WorkflowSettings:
        problems = []
        ids = [s.id for s in self.steps if s.id]
        if len(ids) != len(set(ids)):
            problems.append("step ids must be unique")
        collected: set[str] = set()
        fields = self.fields()
        for i, step in enumerate(self.steps):
            where = f"steps[{i}]"
            texts: list[str] = []
            if isinstance(step, Ask):
                texts.append(step.prompt)
                if step.validate_:
                    problems += _unknown(where, cel.fields_read(step.validate_, "fields"), fields)
                collected.add(step.ask)
            elif isinstance(step, Say):
                texts.append(step.say)
            elif isinstance(step, Done):
                texts.append(step.done)
            elif isinstance(step, Branch):
                for j, case in enumerate(step.branch):
                    if case.goto not in ids:
                        problems.append(f"{where}.branch[{j}].goto: no step with id '{case.goto}'")
                    read = cel.fields_read(case.when, "fields")
                    problems += _unknown(f"{where}.branch[{j}].when", read, fields)
            elif isinstance(step, UseAbility):
                texts.extend(step.args.values())
                if step.on_failure is not None and step.on_failure not in ids:
                    problems.append(f"{where}.on_failure: no step with id '{step.on_failure}'")
            for text in texts:
                problems += _unknown(where, set(_PLACEHOLDER.findall(text)), fields)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def fields(self) -> set[str]:
        """Every field this workflow can collect (asked for, or saved from an ability)."""
        return {s.ask for s in self.steps if isinstance(s, Ask)} | {
            s.save_as for s in self.steps if isinstance(s, UseAbility) and s.save_as
        }

    def index(self, step_id: str) -> int:
        return next(i for i, s in enumerate(self.steps) if s.id == step_id)


def _unknown(where: str, used: set[str], known: set[str]) -> list[str]:
    return [f"{where}: unknown field '{name}'" for name in sorted(used - known)]


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
    return _PLACEHOLDER.sub(lambda m: _show(fields.get(m.group(1))), text)


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
