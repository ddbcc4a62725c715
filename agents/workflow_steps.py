"""A workflow as YAML declares it: steps an agent follows to collect data and act on it
(``workflows:``), checked when loaded (fields, placeholders, CEL, goto targets).

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
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

from agents.answer_types import FieldType
from people import cel

Id = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
PLACEHOLDER = re.compile(r"\{([a-z][a-z0-9_]*)\}")


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
                problems += _unknown(where, set(PLACEHOLDER.findall(text)), fields)
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
