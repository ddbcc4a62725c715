"""``frontdesk qualifications grade QUALIFICATION MEMBER``: grade a member's latest attempt
again from the stored submission (after a formula or rubric was fixed, or a grading model
was down), and print how each requirement and criterion graded.

MEMBER is a member id or an email address. A progress still waiting on that attempt
advances as the grade says; a failed one that now passes becomes provisional (or
qualified), recorded as a regrade. A provisional or qualified member whose attempt no
longer passes keeps that status -- taking it away is a decision (review or revoke), and
the output says so. Exit codes: 0 passed, 1 not passed, 2 nothing to grade
(no such qualification, member or submission).
"""

from __future__ import annotations

import sys

from sqlalchemy import select

from agents.examiner import Examiner
from gateway.examinations import Examinations
from gateway.settings import Settings
from people import members
from people import qualifications as q
from store.engine import create_engine, session_factory
from store.migrate import upgrade
from store.models import Member, QualificationSubmission


async def grade(config: Settings, qualification: str, who: str) -> int:
    await upgrade(config.storage.database_url)
    engine = create_engine(config.storage.database_url)
    exams: Examinations | None = None
    try:
        sessions = session_factory(engine)
        async with sessions() as session:
            member = (
                await session.get(Member, int(who))
                if who.isdigit()
                else await members.by_email(session, who)
            )
            if member is None:
                return _nothing(f"no member {who}")
            if qualification not in await q.catalog(session, config.qualifications):
                return _nothing(f"no qualification {qualification}")
            progress = await q.progress_of(session, member.id, qualification)
            found = None
            if progress is not None:
                found = await session.scalar(
                    select(QualificationSubmission.id)
                    .where(QualificationSubmission.progress_id == progress.id)
                    .order_by(QualificationSubmission.id.desc())
                    .limit(1)
                )
            if found is None:
                return _nothing(f"member {member.id} has submitted nothing for {qualification}")
        exams = Examinations(sessions, config, Examiner(), None, None)
        status = await exams.grade(found, again=True)
        async with sessions() as session:
            submission = await session.get(QualificationSubmission, found)
            assert submission is not None
        for result in submission.results:
            print(f"{result['requirement']}: {'passed' if result['passed'] else 'not passed'}")
            for criterion in result["criteria"]:
                score = "" if criterion["score"] is None else f" {criterion['score']:.2f}"
                why = criterion["error"] or criterion["rationale"]
                print(f"  {criterion['kind']}{score}: {why}")
        print(f"attempt {submission.attempt}: {'passed' if submission.passed else 'not passed'};"
              f" {qualification} is {status} for member {member.id}")  # fmt: skip
        if not submission.passed and status in ("provisional", "qualified"):
            print(f"{qualification} stays {status}: review or revoke it if it should not")
        return 0 if submission.passed else 1
    finally:
        if exams is not None:
            await exams.close()
        await engine.dispose()


def _nothing(why: str) -> int:
    print(why, file=sys.stderr)
    return 2
