"""Qualifications: certify a member before real conversations of a workflow reach them.

A qualification (YAML ``qualifications:``) names the workflows it unlocks and its
requirements; this first version has **knowledge questions** (a prompt, optional choices,
criteria). Each criterion is one of:

- ``formula``: CEL over the submission's activation -- ``answer`` (text), ``choices``
  (the offered choices), ``transcript`` (list of ``{author, text, at}``; empty for a
  question), ``metrics`` (``words``, ``turns``, ``duration_seconds``,
  ``first_reply_seconds``), ``member`` (the candidate's ``name``, ``role``, ``labels``).
  Checked when the YAML loads (length, nesting and macro caps, known names only, the
  position of a problem) and evaluated in the CEL worker process with a deadline and a
  memory cap (``people.cel``): a runaway or failing formula is an *error* on that
  criterion, with the message, never a crash.
- ``rubric`` (AI evaluation) with a ``reference`` answer: graded by an LLM where one is
  configured for grading (not built yet); otherwise by the deterministic fallback --
  similarity between the answer and the reference (TF-IDF over stems and 4-grams), passed
  at ``pass_score`` -- and labelled ``fallback`` in the result.

A requirement passes when all its criteria pass; scores, rationales and errors are kept.

Lifecycle per member and qualification: ``enrolled -> submitted -> provisional ->
qualified``, and ``failed`` / ``revoked``. Submitting grades at once: all requirements
pass -> ``provisional`` (or ``qualified`` directly with ``admin_review: false``); else
``failed``. A failed member may try again after ``cooldown_hours``, up to ``max_attempts``.
An admin's review moves ``provisional`` to ``qualified`` or back to ``enrolled``, with a
note. Every transition is recorded: who, when, why.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from agents._similarity import SimilarityIndex
from gateway.errors import repeats
from people import cel
from store.models import (
    Label,
    Member,
    QualificationEvent,
    QualificationProgress,
    QualificationSubmission,
    utcnow,
)

ACTIVATION = {"answer", "choices", "transcript", "metrics", "member"}
MAX_ERROR = 300
Status = Literal["enrolled", "submitted", "provisional", "qualified", "failed", "revoked"]


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

    id: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,63}$")
    kind: Literal["question"] = "question"
    prompt: str = Field(min_length=1, max_length=4000)
    choices: list[str] = Field(default_factory=list)
    criteria: list[Criterion] = Field(min_length=1)


class QualificationSettings(BaseModel):
    """One entry of ``qualifications:``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,63}$")
    description: str = ""
    workflows: list[str] = Field(default_factory=list, description="What it unlocks.")
    requirements: list[Requirement] = Field(min_length=1)
    admin_review: bool = Field(default=True, description="False: qualified on passing.")
    max_attempts: int = Field(default=3, ge=1, le=100)
    cooldown_hours: float = Field(default=24, ge=0, le=24 * 365)

    @field_validator("requirements")
    @classmethod
    def _unique(cls, requirements: list[Requirement]) -> list[Requirement]:
        for i in repeats([r.id for r in requirements]):
            raise ValueError(f"[{i}].id: '{requirements[i].id}' is used twice")
        return requirements


class QualificationError(ValueError):
    """A transition the lifecycle does not allow now, and why."""


# -- grading -------------------------------------------------------------------------


@dataclass(frozen=True)
class CriterionResult:
    kind: Literal["formula", "ai", "ai-fallback"]
    passed: bool
    score: float | None = None
    rationale: str = ""
    error: str | None = None


@dataclass(frozen=True)
class RequirementResult:
    requirement: str
    passed: bool
    criteria: tuple[CriterionResult, ...]


class Evaluator(Protocol):
    async def evaluate(self, expression: str, activation: Mapping[str, Any]) -> Any: ...


def activation(
    answer: str, requirement: Requirement, member: Member, labels: Sequence[str]
) -> dict[str, Any]:
    """What a formula sees for a knowledge question: the answer and nothing of anyone
    else's (the member's non-sensitive fields only)."""
    return {
        "answer": answer,
        "choices": list(requirement.choices),
        "transcript": [],
        "metrics": {"words": len(answer.split()), "turns": 1, "duration_seconds": 0,
                    "first_reply_seconds": 0},
        "member": {"name": member.name or "", "role": member.role, "labels": list(labels)},
    }  # fmt: skip


async def grade(
    requirement: Requirement, facts: Mapping[str, Any], runner: Evaluator
) -> RequirementResult:
    """Every criterion of ``requirement`` over ``facts`` (its activation)."""
    results = []
    for criterion in requirement.criteria:
        if criterion.formula is not None:
            results.append(await _formula(criterion.formula, facts, runner))
        else:
            results.append(_fallback(criterion, str(facts.get("answer", ""))))
    passed = all(r.passed for r in results)
    return RequirementResult(requirement.id, passed, tuple(results))


async def _formula(formula: str, facts: Mapping[str, Any], runner: Evaluator) -> CriterionResult:
    try:
        value = await runner.evaluate(formula, facts)
    except (cel.CelFailed, cel.CelProblem) as exc:
        # cel-python appends its whole activation to some messages: keep what explains.
        message = str(exc).split(" (in activation", 1)[0]
        return CriterionResult("formula", False, error=message[:MAX_ERROR])
    if not isinstance(value, bool):
        return CriterionResult(
            "formula", False, error=f"the formula gave {value!r}, not true/false"
        )
    why = "the formula holds" if value else "the formula does not hold"
    return CriterionResult("formula", value, 1.0 if value else 0.0, why)


def _fallback(criterion: Criterion, answer: str) -> CriterionResult:
    """The deterministic grader used when no LLM grades: similarity to the reference."""
    best = SimilarityIndex([criterion.reference or ""]).best(answer)
    score = round(best[1], 3) if best else 0.0
    passed = score >= criterion.pass_score
    why = (
        f"fallback grader (no grading model): similarity {score:.2f} to the reference "
        f"answer, {'at or above' if passed else 'below'} the bar of {criterion.pass_score}"
    )
    return CriterionResult("ai-fallback", passed, score, why)  # fmt: skip


# -- the lifecycle --------------------------------------------------------------------


async def progress_of(
    session: AsyncSession, member_id: int, qualification: str
) -> QualificationProgress | None:
    found = await session.execute(
        select(QualificationProgress).where(
            QualificationProgress.member_id == member_id,
            QualificationProgress.qualification == qualification,
        )
    )
    return found.scalar_one_or_none()


def _move(
    session: AsyncSession, progress: QualificationProgress, to: Status, actor: int | None,
    reason: str, now: datetime,
) -> None:  # fmt: skip
    session.add(QualificationEvent(
        progress_id=progress.id, from_status=progress.status, to_status=to, actor_id=actor,
        reason=reason, created_at=now,
    ))  # fmt: skip
    progress.status, progress.updated_at = to, now


async def enroll(
    session: AsyncSession, member: Member, qualification: QualificationSettings,
    actor: int | None, now: datetime | None = None,
) -> QualificationProgress:  # fmt: skip
    """Enroll ``member`` (again, after a failure once the cooldown has passed and attempts
    remain; a revoked member may be enrolled anew). Enrolling twice changes nothing."""
    now = now or utcnow()
    progress = await progress_of(session, member.id, qualification.name)
    if progress is None:
        progress = QualificationProgress(
            member_id=member.id, qualification=qualification.name, status="enrolled",
            attempts=0, created_at=now, updated_at=now,
        )  # fmt: skip
        session.add(progress)
        await session.flush()
        session.add(QualificationEvent(progress_id=progress.id, from_status=None,
                                       to_status="enrolled", actor_id=actor,
                                       reason="enrolled", created_at=now))  # fmt: skip
        return progress
    if progress.status == "failed":
        if progress.attempts >= qualification.max_attempts:
            raise QualificationError(f"no attempts left ({qualification.max_attempts} used)")
        ready = (progress.last_submitted_at or now) + timedelta(hours=qualification.cooldown_hours)
        if now < ready:
            raise QualificationError(f"try again after {ready.isoformat()}")
        _move(session, progress, "enrolled", actor, "another attempt", now)
    elif progress.status == "revoked":
        _move(session, progress, "enrolled", actor, "enrolled again", now)
    return progress


async def submit(
    session: AsyncSession, qualification: QualificationSettings,
    progress: QualificationProgress, member: Member, answers: Mapping[str, str],
    runner: Evaluator, now: datetime | None = None,
) -> QualificationSubmission:  # fmt: skip
    """The member's answers: recorded, graded, and the progress advanced."""
    now = now or utcnow()
    if progress.status != "enrolled":
        raise QualificationError(f"answers are taken while enrolled, not {progress.status}")
    missing = [r.id for r in qualification.requirements if not answers.get(r.id, "").strip()]
    if missing:
        raise QualificationError(f"no answer for {', '.join(missing)}")
    labels = await _labels(session, member.id)
    _move(session, progress, "submitted", member.id, "answers submitted", now)
    progress.attempts += 1
    progress.last_submitted_at = now
    submission = QualificationSubmission(
        progress_id=progress.id, attempt=progress.attempts,
        answers={r.id: answers[r.id] for r in qualification.requirements}, results=[],
        passed=False, created_at=now,
    )  # fmt: skip
    session.add(submission)
    await regrade(session, qualification, progress, submission, member, runner, labels, now)
    return submission


async def regrade(
    session: AsyncSession, qualification: QualificationSettings,
    progress: QualificationProgress, submission: QualificationSubmission, member: Member,
    runner: Evaluator, labels: Sequence[str] | None = None, now: datetime | None = None,
) -> None:  # fmt: skip
    """Grade ``submission`` (again) and, if the progress waits on it, advance it."""
    now = now or utcnow()
    if labels is None:
        labels = await _labels(session, member.id)
    results = []
    for requirement in qualification.requirements:
        answer = str((submission.answers or {}).get(requirement.id, ""))
        facts = activation(answer, requirement, member, labels)
        results.append(await grade(requirement, facts, runner))
    submission.results = [asdict(r) for r in results]
    submission.passed = all(r.passed for r in results)
    if progress.status != "submitted":
        return
    if submission.passed:
        to: Status = "provisional" if qualification.admin_review else "qualified"
        _move(session, progress, to, None, "every requirement passed", now)
    else:
        failed = ", ".join(r.requirement for r in results if not r.passed)
        _move(session, progress, "failed", None, f"not passed: {failed}", now)


async def review(
    session: AsyncSession, progress: QualificationProgress, actor: int, approve: bool,
    note: str, now: datetime | None = None,
) -> None:  # fmt: skip
    """An admin's review of a provisional member: qualified, or back to enrolled."""
    if progress.status != "provisional":
        raise QualificationError(f"only a provisional member is reviewed, not {progress.status}")
    if not note.strip():
        raise QualificationError("a review needs a note")
    _move(session, progress, "qualified" if approve else "enrolled", actor, note, now or utcnow())


async def revoke(
    session: AsyncSession, progress: QualificationProgress, actor: int, reason: str,
    now: datetime | None = None,
) -> None:  # fmt: skip
    if progress.status in ("revoked", "enrolled"):
        raise QualificationError(f"there is nothing to revoke ({progress.status})")
    _move(session, progress, "revoked", actor, reason or "revoked", now or utcnow())


async def history(
    session: AsyncSession, progress: QualificationProgress
) -> list[QualificationEvent]:
    found = await session.execute(
        select(QualificationEvent)
        .where(QualificationEvent.progress_id == progress.id)
        .order_by(QualificationEvent.id)
    )
    return list(found.scalars())


async def _labels(session: AsyncSession, member_id: int) -> list[str]:
    found = await session.execute(select(Label.label).where(Label.member_id == member_id))
    return sorted(found.scalars())


async def qualified_by_workflow(
    session: AsyncSession, qualifications: Sequence[QualificationSettings]
) -> dict[str, set[int]]:
    """For each workflow some qualification unlocks: the members qualified for it (by any
    of those qualifications). A workflow missing from the result requires none."""
    if not qualifications:
        return {}
    found = await session.execute(
        select(QualificationProgress.qualification, QualificationProgress.member_id).where(
            QualificationProgress.status == "qualified",
            QualificationProgress.qualification.in_([q.name for q in qualifications]),
        )
    )
    holders: dict[str, set[int]] = {}
    for name, member_id in found.all():
        holders.setdefault(name, set()).add(int(member_id))
    unlocked: dict[str, set[int]] = {}
    for qualification in qualifications:
        for workflow in qualification.workflows:
            unlocked.setdefault(workflow, set()).update(holders.get(qualification.name, set()))
    return unlocked
