"""Qualification work that must not hold a request's transaction: grading and the
simulated customer's answers.

Both read what they need in one short transaction, do the slow part (CEL in the worker
pool, a model's answer) with no transaction open, and write in another that locks the row
and checks it still waits on them -- so a submission is graded once however many
processes try, and a chat gets one customer answer however fast the member types.

A submission that got its 2xx is graded: at once in the background, and, if the process
died first, by ``sweep`` (at start and on the gateway's sweep timer). When grading
qualifies someone, routing reads the qualifications afresh and offers what waits.
"""

from __future__ import annotations

import logging
from collections.abc import Coroutine
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agents.examiner import Examiner
from gateway.dispatch import Dispatcher
from gateway.settings import Settings
from gateway.supervisor import Supervisor
from people import qualifications as q
from people.cel import CelRunner
from people.qualifications import grade_attempt
from store.models import Member, QualificationProgress, QualificationSubmission, utcnow

log = logging.getLogger(__name__)

SWEEP_BATCH = 100
GRADING_WORKERS = 1
ANSWER_TRIES = 3
STALE = timedelta(minutes=5)


class Examinations:
    """Grading and simulated customers for one process. Formulas are evaluated in a pool
    of their own (``GRADING_WORKERS``, started when first needed), so a burst of grading or
    a runaway formula never queues the CEL of live conversations' workflows."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], settings: Settings,
        examiner: Examiner, supervisor: Supervisor | None, routing: Dispatcher | None,
    ) -> None:  # fmt: skip
        self._sessions = sessions
        self._settings = settings
        self.runner = CelRunner(workers=GRADING_WORKERS)
        self._examiner = examiner
        self._supervisor = supervisor
        self._routing = routing
        self._grading: set[int] = set()  # submissions being graded by this process

    async def close(self) -> None:
        await self.runner.close()

    async def qualifications(self, session: AsyncSession) -> dict[str, q.QualificationSettings]:
        return await q.catalog(session, self._settings.qualifications)

    def _spawn(self, work: Coroutine[Any, Any, Any], name: str) -> None:
        if self._supervisor is not None:
            self._supervisor.spawn(work, name=name)
        else:
            work.close()

    # -- grading ----------------------------------------------------------------------

    def grade_soon(self, submission_id: int) -> None:
        """Grade in the background (call it once the submission is committed)."""
        self._spawn(self._grade_logged(submission_id), "grade")

    async def _grade_logged(self, submission_id: int) -> None:
        if submission_id in self._grading:
            return  # already under way here
        self._grading.add(submission_id)
        try:
            await self.grade(submission_id)
        except Exception:  # the sweep tries again
            log.exception("grading submission %s failed", submission_id)
        finally:
            self._grading.discard(submission_id)

    async def grade(self, submission_id: int, again: bool = False) -> str | None:
        """Grade a submission (``again``: even one already graded, from its stored answers)
        and advance its progress if it waits on it. The progress's status after, or None
        if there was nothing to grade."""
        async with self._sessions() as session:
            submission = await session.get(QualificationSubmission, submission_id)
            if submission is None or (submission.graded_at is not None and not again):
                return None
            progress = await session.get(QualificationProgress, submission.progress_id)
            assert progress is not None
            member = await session.get(Member, progress.member_id)
            assert member is not None
            qualification = (await self.qualifications(session)).get(progress.qualification)
            candidate = await q.candidate(session, member)
            answers = dict(submission.answers or {})
        if qualification is None:
            await self._orphan(submission_id, progress.qualification)
            return None
        grader = self._examiner.grader(qualification)
        results = await grade_attempt(qualification, answers, candidate, self.runner, grader)
        async with self._sessions.begin() as session:
            submission = await session.get(
                QualificationSubmission, submission_id, with_for_update=True
            )
            assert submission is not None
            if submission.graded_at is not None and not again:
                return None  # another process graded it meanwhile
            progress = await session.get(
                QualificationProgress, submission.progress_id, with_for_update=True
            )
            assert progress is not None
            q.record(session, qualification, progress, submission, results)
            status, member_id = progress.status, progress.member_id
        if status == "qualified" and self._routing is not None:
            self._routing.qualified()
        log.info("member %s %s: %s", member_id, qualification.name, status)
        return status

    async def _orphan(self, submission_id: int, name: str) -> None:
        """The qualification is gone (removed from the YAML): nothing to grade against. The
        attempt fails, saying so, and the sweep stops trying."""
        log.warning("submission %s: no qualification %s to grade it by", submission_id, name)
        async with self._sessions.begin() as session:
            submission = await session.get(QualificationSubmission, submission_id)
            if submission is None or submission.graded_at is not None:
                return
            progress = await session.get(QualificationProgress, submission.progress_id)
            assert progress is not None
            q.orphaned(session, progress, submission)
        return

    async def sweep(self, older_than: timedelta = timedelta(0)) -> int:
        """Grade submissions left ungraded (a crash between the 2xx and the grade), one
        after another; those this process is grading already are left to it. The periodic
        sweep looks only at submissions older than ``STALE`` (another process may still be
        grading younger ones: a model's answer can take a while)."""
        cutoff = utcnow() - older_than
        async with self._sessions() as session:
            found = await session.execute(
                select(QualificationSubmission.id)
                .where(
                    QualificationSubmission.graded_at.is_(None),
                    QualificationSubmission.created_at <= cutoff,
                )
                .order_by(QualificationSubmission.id)
                .limit(SWEEP_BATCH)
            )
            waiting = list(found.scalars())
        waiting = [s for s in waiting if s not in self._grading]
        for submission_id in waiting:
            await self._grade_logged(submission_id)
        return len(waiting)

    # -- simulated chats --------------------------------------------------------------

    def answer_soon(self, progress_id: int, requirement_id: str) -> None:
        """The simulated customer answers (call it once the member's turn is committed)."""
        self._spawn(self._answer(progress_id, requirement_id), "customer")

    async def _answer(self, progress_id: int, requirement_id: str) -> None:
        """Answer the transcript as read; if the member said more (or started over) while
        the customer was thinking, read it again and answer that instead."""
        for _ in range(ANSWER_TRIES):
            async with self._sessions() as session:
                progress = await session.get(QualificationProgress, progress_id)
                if progress is None:
                    return
                qualification = (await self.qualifications(session)).get(progress.qualification)
                draft = (progress.drafts or {}).get(requirement_id)
            if qualification is None or draft is None or draft["done"]:
                return
            transcript = draft["transcript"]
            requirement = next((r for r in qualification.requirements
                                if r.id == requirement_id), None)  # fmt: skip
            if requirement is None or transcript[-1]["author"] != "member":
                return
            try:
                line = await self._examiner.customer(requirement).reply(requirement, transcript)
            except Exception as exc:  # the member's next message asks again
                log.warning("the simulated customer of %s could not answer: %r",
                            requirement_id, exc)  # fmt: skip
                return
            async with self._sessions.begin() as session:
                progress = await session.get(
                    QualificationProgress, progress_id, with_for_update=True
                )
                if progress is None or q.customer_turn(
                    progress, requirement, line.text, line.done, seen=len(transcript)
                ):
                    return
