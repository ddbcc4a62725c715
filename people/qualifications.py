"""Qualifications: certify a member before real conversations of a workflow reach them.

A qualification (YAML ``qualifications:``, or defined over the API, which replaces the YAML
one of the same name) names the workflows it unlocks and its requirements:

- a **knowledge question**: a prompt, optional choices, criteria;
- a **simulated chat** (``kind: scenario``): a customer with a ``persona`` and a ``goal``
  opens with ``opening``; the member answers as they would a real customer. The customer
  is played by the embedded model following ``script`` (one line per member turn, then
  ``closing``) or, with ``customer: {model: provider:name}``, by a LangChain model in
  character. The chat ends at the customer's last line or after ``turn_limit`` member
  turns; the transcript is the submission.

Criteria (``people.grading``): a CEL ``formula``, or a ``rubric`` with a ``reference``
answer graded by the qualification's ``grader`` model (structured output: pass/fail, a
score, a rationale) or, without one, by a deterministic fallback labelled as such.

Lifecycle per member and qualification: ``enrolled -> submitted -> provisional ->
qualified``, and ``failed`` / ``revoked``. A submission is recorded at once and graded
outside the request (``gateway.examinations``): all requirements pass -> ``provisional``
(or ``qualified`` directly with ``admin_review: false``); else ``failed``. A failed member
may be enrolled again after ``cooldown_hours``, up to ``max_attempts``. An admin's review
moves ``provisional`` to ``qualified`` or back to ``enrolled``, with a note. Every
transition is recorded: who (None: the grader), when, why.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any, Literal

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
from people.grading import Candidate, RequirementResult
from store.errors import ErrorDetail, repeats
from store.models import (
    Label,
    Member,
    QualificationDefinition,
    QualificationEvent,
    QualificationProgress,
    QualificationSubmission,
    utcnow,
)

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


class QualificationError(ValueError):
    """A transition the lifecycle does not allow now, and why."""


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


async def progress_of(
    session: AsyncSession, member_id: int, qualification: str, lock: bool = False
) -> QualificationProgress | None:
    """The member's progress (``lock``: the row locked for a change, on PostgreSQL)."""
    stmt = select(QualificationProgress).where(
        QualificationProgress.member_id == member_id,
        QualificationProgress.qualification == qualification,
    )
    found = await session.execute(stmt.with_for_update() if lock else stmt)
    return found.scalar_one_or_none()


async def progress_by_name(
    session: AsyncSession, member_id: int
) -> dict[str, QualificationProgress]:
    """The member's progress in every qualification they were ever enrolled in."""
    found = await session.execute(
        select(QualificationProgress).where(QualificationProgress.member_id == member_id)
    )
    return {p.qualification: p for p in found.scalars()}


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
    return (await enroll_once(session, member, qualification, actor, now))[0]


async def enroll_once(
    session: AsyncSession, member: Member, qualification: QualificationSettings,
    actor: int | None, now: datetime | None = None,
) -> tuple[QualificationProgress, bool]:  # fmt: skip
    """``enroll``, and whether this call enrolled them (False: they already were, or are
    further along)."""
    now = now or utcnow()
    progress = await progress_of(session, member.id, qualification.name, lock=True)
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
        return progress, True
    if progress.status == "failed":
        if progress.attempts >= qualification.max_attempts:
            raise QualificationError(f"no attempts left ({qualification.max_attempts} used)")
        ready = (progress.last_submitted_at or now) + timedelta(hours=qualification.cooldown_hours)
        if now < ready:
            raise QualificationError(f"try again after {ready.isoformat()}")
        _move(session, progress, "enrolled", actor, "another attempt", now)
        return progress, True
    if progress.status == "revoked":  # a fresh start: attempts count anew
        _move(session, progress, "enrolled", actor, "enrolled again", now)
        progress.attempts = 0
        return progress, True
    return progress, False


def _draft(progress: QualificationProgress, requirement: Requirement) -> dict[str, Any]:
    draft = (progress.drafts or {}).get(requirement.id)
    if draft is None:
        raise QualificationError(f"the chat {requirement.id} has not started")
    return dict(draft)


def _save(progress: QualificationProgress, requirement: Requirement, draft: dict[str, Any]) -> None:
    progress.drafts = {**(progress.drafts or {}), requirement.id: draft}  # a new value: saved


def _scenario(qualification: QualificationSettings, requirement_id: str) -> Requirement:
    for requirement in qualification.requirements:
        if requirement.id == requirement_id and requirement.kind == "scenario":
            return requirement
    raise QualificationError(f"{qualification.name} has no simulated chat {requirement_id}")


def start_chat(
    progress: QualificationProgress, qualification: QualificationSettings, requirement_id: str,
    now: datetime | None = None, again: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """Open a simulated chat (the customer's opening line); an open one is returned as is
    unless ``again``, which starts it over."""
    requirement = _scenario(qualification, requirement_id)
    if progress.status != "enrolled":
        raise QualificationError(f"chats are taken while enrolled, not {progress.status}")
    current = (progress.drafts or {}).get(requirement.id)
    if current is not None and not again:
        return dict(current)
    at = (now or utcnow()).isoformat()
    draft = {"transcript": [{"author": "customer", "text": requirement.opening, "at": at}],
             "done": False}  # fmt: skip
    _save(progress, requirement, draft)
    return draft


def member_turn(
    progress: QualificationProgress, qualification: QualificationSettings, requirement_id: str,
    text: str, now: datetime | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The member's message in a simulated chat (the customer answers separately)."""
    requirement = _scenario(qualification, requirement_id)
    if progress.status != "enrolled":
        raise QualificationError(f"chats are taken while enrolled, not {progress.status}")
    draft = _draft(progress, requirement)
    if draft["done"]:
        raise QualificationError("this chat has ended; submit it or start it again")
    if sum(t["author"] == "member" for t in draft["transcript"]) >= requirement.turn_limit:
        raise QualificationError(f"this chat allows {requirement.turn_limit} replies")
    turn = {"author": "member", "text": text, "at": (now or utcnow()).isoformat()}
    draft["transcript"] = [*draft["transcript"], turn]
    _save(progress, requirement, draft)
    return draft


def customer_turn(
    progress: QualificationProgress, requirement: Requirement, text: str, done: bool,
    seen: int, now: datetime | None = None,
) -> bool:  # fmt: skip
    """The simulated customer's answer to the transcript as it was when it had ``seen``
    turns; False if it changed since (the member said more, or started over), or there is
    nothing to answer."""
    draft = (progress.drafts or {}).get(requirement.id)
    if progress.status != "enrolled" or draft is None or draft["done"]:
        return False
    if len(draft["transcript"]) != seen or draft["transcript"][-1]["author"] != "member":
        return False
    turn = {"author": "customer", "text": text, "at": (now or utcnow()).isoformat()}
    _save(progress, requirement, {"transcript": [*draft["transcript"], turn], "done": done})
    return True


async def submit(
    session: AsyncSession, qualification: QualificationSettings,
    progress: QualificationProgress, member: Member, answers: Mapping[str, str],
    now: datetime | None = None,
) -> QualificationSubmission:  # fmt: skip
    """The member's attempt: the answers to the questions (``answers``) and the simulated
    chats so far, recorded; grading follows (``record``)."""
    now = now or utcnow()
    if progress.status != "enrolled":
        raise QualificationError(f"answers are taken while enrolled, not {progress.status}")
    if progress.attempts >= qualification.max_attempts:
        raise QualificationError(f"no attempts left ({qualification.max_attempts} used)")
    drafts = progress.drafts or {}
    stored: dict[str, Any] = {}
    missing = []
    for requirement in qualification.requirements:
        if requirement.kind == "scenario":
            transcript = (drafts.get(requirement.id) or {}).get("transcript", [])
            if not any(t["author"] == "member" for t in transcript):
                missing.append(f"{requirement.id} (the chat)")
            stored[requirement.id] = transcript
        elif not str(answers.get(requirement.id, "")).strip():
            missing.append(requirement.id)
        else:
            stored[requirement.id] = answers[requirement.id]
    if missing:
        raise QualificationError(f"no answer for {', '.join(missing)}")
    _move(session, progress, "submitted", member.id, "answers submitted", now)
    progress.attempts += 1
    progress.last_submitted_at = now
    progress.drafts = {}
    submission = QualificationSubmission(
        progress_id=progress.id, attempt=progress.attempts, answers=stored, results=[],
        passed=False, created_at=now,
    )  # fmt: skip
    session.add(submission)
    await session.flush()
    return submission


async def candidate(session: AsyncSession, member: Member) -> Candidate:
    found = await session.execute(select(Label.label).where(Label.member_id == member.id))
    return Candidate(member.name or "", member.role, tuple(sorted(found.scalars())))


def record(
    session: AsyncSession, qualification: QualificationSettings,
    progress: QualificationProgress, submission: QualificationSubmission,
    results: Sequence[RequirementResult], now: datetime | None = None,
) -> None:  # fmt: skip
    """Store how ``submission`` graded and, if the progress waits on it, advance it (a
    failed attempt that passes when graded again advances too)."""
    now = now or utcnow()
    submission.results = [asdict(r) for r in results]
    submission.passed = all(r.passed for r in results)
    submission.graded_at = now
    if submission.attempt != progress.attempts:
        return  # an older attempt: its grade is kept, the progress is not its
    passed_to: Status = "provisional" if qualification.admin_review else "qualified"
    if progress.status == "submitted" and submission.passed:
        _move(session, progress, passed_to, None, "every requirement passed", now)
    elif progress.status == "submitted":
        failed = ", ".join(r.requirement for r in results if not r.passed)
        _move(session, progress, "failed", None, f"not passed: {failed}", now)
    elif progress.status == "failed" and submission.passed:
        _move(session, progress, passed_to, None, "regraded: every requirement passed", now)


def orphaned(
    session: AsyncSession, progress: QualificationProgress, submission: QualificationSubmission,
) -> None:  # fmt: skip
    """The attempt's qualification is gone: it fails, saying so (nothing to grade by)."""
    submission.graded_at, submission.passed = utcnow(), False
    if progress.status == "submitted":
        _move(session, progress, "failed", None, "the qualification no longer exists", utcnow())


async def review(
    session: AsyncSession, progress: QualificationProgress, actor: int, approve: bool,
    note: str, now: datetime | None = None,
) -> None:  # fmt: skip
    """An admin's review of a provisional member: qualified, or back to enrolled."""
    if progress.status != "provisional":
        raise QualificationError(f"only a provisional member is reviewed, not {progress.status}")
    if not note.strip():
        raise QualificationError("a review needs a note")
    if actor == progress.member_id:
        raise QualificationError("no one reviews their own attempt")
    _move(session, progress, "qualified" if approve else "enrolled", actor, note, now or utcnow())


async def revoke(
    session: AsyncSession, progress: QualificationProgress, actor: int, reason: str,
    now: datetime | None = None,
) -> None:  # fmt: skip
    if progress.status not in ("qualified", "provisional"):
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
