"""What a qualification is: its requirements and criteria as YAML or the API define them,
checked when loaded, and the catalog in force (the YAML's, replaced by the API's)."""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    SerializationInfo,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from people import cel
from store.errors import ErrorDetail, repeats
from store.models import QualificationDefinition

log = logging.getLogger(__name__)


ACTIVATION = {"answer", "choices", "transcript", "metrics", "member"}
NAME = r"^[a-z][a-z0-9_-]{0,63}$"
Status = Literal["enrolled", "submitted", "provisional", "qualified", "failed", "revoked"]


class LanguageModel(BaseModel):
    """A LangChain chat model (``provider:name``) for grading or playing a customer.

    Which providers can start here is the agents' to say: the app checks
    ``language_models`` against them when the YAML is loaded and when a definition is PUT.
    Its ``api_key`` is never shown (``**********``) unless dumped with
    ``context={"secrets": True}``; over the API a model is named only."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field(description="provider:name")
    base_url: str | None = None
    api_key: SecretStr | None = None
    temperature: float | None = Field(default=0, ge=0, le=2)
    timeout_seconds: float = Field(default=30, gt=0, le=300)

    @field_serializer("api_key")
    def _hidden(self, key: SecretStr | None, info: SerializationInfo) -> str | None:
        if key is None:
            return None
        return key.get_secret_value() if (info.context or {}).get("secrets") else "**********"


class Criterion(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    formula: str | None = Field(default=None, description="CEL; true passes.")
    rubric: str | None = Field(default=None, description="What a good answer does (AI).")
    reference: str | None = Field(default=None, description="A model answer for the rubric.")
    pass_score: float = Field(default=0.35, gt=0, le=1, description="The rubric's bar, 0-1.")

    @field_validator("formula")
    @classmethod
    def _formula(cls, formula: str | None) -> str | None:
        if formula is not None:
            try:
                cel.check(formula, ACTIVATION)
            except cel.CelProblem as exc:
                raise ValueError(str(exc)) from None
        return formula

    @model_validator(mode="after")
    def _one(self) -> Criterion:
        if (self.formula is None) == (self.rubric is None):
            raise ValueError("give exactly one of formula or rubric")
        if self.rubric is not None and not self.reference:
            raise ValueError("a rubric needs a reference answer (the fallback grader uses it)")
        return self


class Requirement(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=NAME)
    kind: Literal["question", "scenario"] = "question"
    prompt: str = Field(min_length=1, max_length=4000, description="The question, or a brief.")
    choices: list[str] = Field(default_factory=list, description="A question's choices.")
    persona: str = Field(default="", max_length=2000, description="Who the customer is.")
    goal: str = Field(default="", max_length=2000, description="What the customer wants.")
    opening: str = Field(default="", max_length=2000, description="The customer's first line.")
    script: list[str] = Field(default_factory=list, description="The customer's next lines.")
    closing: str = Field(default="Thanks, that's everything.", max_length=2000)
    turn_limit: int = Field(default=6, ge=1, le=50, description="The member's turns at most.")
    customer: LanguageModel | None = Field(default=None, description="None: the script.")
    criteria: list[Criterion] = Field(min_length=1)

    @model_validator(mode="after")
    def _shape(self) -> Requirement:
        if self.kind == "scenario":
            if not self.opening.strip() or not self.persona.strip():
                raise ValueError("a scenario needs a persona and an opening line")
            if self.choices:
                raise ValueError("a scenario has no choices")
        elif self.opening or self.script or self.persona or self.customer:
            raise ValueError("persona, opening, script and customer belong to a scenario")
        return self


class QualificationSettings(BaseModel):
    """One entry of ``qualifications:``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=NAME)
    description: str = ""
    workflows: list[str] = Field(default_factory=list, description="What it unlocks.")
    requirements: list[Requirement] = Field(min_length=1)
    admin_review: bool = Field(default=True, description="False: qualified on passing.")
    max_attempts: int = Field(default=3, ge=1, le=100)
    cooldown_hours: float = Field(default=24, ge=0, le=24 * 365)
    grader: LanguageModel | None = Field(default=None, description="None: the fallback grader.")

    @field_validator("requirements")
    @classmethod
    def _unique(cls, requirements: list[Requirement]) -> list[Requirement]:
        for i in repeats([r.id for r in requirements]):
            raise ValueError(f"[{i}].id: '{requirements[i].id}' is used twice")
        return requirements


def language_models(qualification: QualificationSettings) -> list[tuple[str, LanguageModel]]:
    """Each model ``qualification`` names, with its path (the grader, each customer)."""
    named = [("grader", qualification.grader)] + [
        (f"requirements[{i}].customer", r.customer)
        for i, r in enumerate(qualification.requirements)
    ]
    return [(path, model) for path, model in named if model is not None]


def unknown_workflows(
    qualification: QualificationSettings, workflows: Collection[str]
) -> list[ErrorDetail]:
    """Each workflow ``qualification`` names that is not defined, at its path."""
    listed = ", ".join(sorted(workflows)) or "none defined"
    return [
        ErrorDetail(f"workflows[{i}]", f"no workflow named '{name}' ({listed})")
        for i, name in enumerate(qualification.workflows)
        if name not in workflows
    ]


async def catalog(
    session: AsyncSession, configured: Sequence[QualificationSettings]
) -> dict[str, QualificationSettings]:
    """The qualifications in force: the YAML's, each replaced by one of its name defined
    over the API, plus those defined only over the API."""
    merged = {q.name: q for q in configured}
    found = await session.execute(select(QualificationDefinition))
    for row in found.scalars():
        try:
            merged[row.name] = QualificationSettings.model_validate(row.body)
        except ValidationError as exc:  # saved valid; a later release may read it otherwise
            log.warning("qualification %s as saved no longer loads: %s", row.name, exc)
    return merged


# -- the lifecycle --------------------------------------------------------------------
