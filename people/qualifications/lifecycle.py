"""A member's way through a qualification: enrolment, answers and simulated chats,
submission, the grade's outcome, review, revocation, and the history of every move."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from people.qualifications.criteria import Candidate, RequirementResult
from people.qualifications.definitions import QualificationSettings, Requirement, Status
from store.models import (
    Label,
    Member,
    QualificationEvent,
    QualificationProgress,
    QualificationSubmission,
    utcnow,
)

log = logging.getLogger(__name__)


class QualificationError(ValueError):
    """A transition the lifecycle does not allow now, and why."""


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
