"""Qualifications over the API, the member's side (the member itself, with
``qualifications: use``; the admin side is ``gateway.api.qualifications``):

- ``GET /api/members/{id}/qualifications``: their progress in each, with the questions,
  chats so far, the last attempt's results and the history (edit: anyone's).
- ``POST /api/members/{id}/qualifications/{name}/chats/{requirement}`` starts a simulated
  chat (``{"again": true}`` starts it over); ``.../messages`` ``{"text"}`` is the member's
  turn (the customer answers shortly after: read the progress again).
- ``POST /api/members/{id}/qualifications/{name}/submission`` ``{"answers": {id: text}}``
  records the attempt (202); it is graded in the background.

A transition the lifecycle does not allow now is a 409 that says why.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from gateway.api.core import Call, Endpoint, iso
from gateway.api.qualifications import (
    MINE,
    TAG,
    in_force,
    lifecycle,
    named,
    path_member,
    progress_json,
    public,
)
from people import qualifications as q
from store.errors import NotFound
from store.models import Member, QualificationProgress, QualificationSubmission

MAX_ANSWER = 4000


class ChatBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    again: bool = False


class MessageBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=4000)


class SubmissionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    answers: dict[str, Annotated[str, Field(max_length=MAX_ANSWER)]] = Field(default_factory=dict)


def _id(value: int | None) -> str | None:
    return None if value is None else str(value)


async def _latest(call: Call, progress: QualificationProgress) -> dict[str, Any] | None:
    found = await call.session.execute(
        select(QualificationSubmission)
        .where(QualificationSubmission.progress_id == progress.id)
        .order_by(QualificationSubmission.id.desc())
        .limit(1)
    )
    submission = found.scalar_one_or_none()
    if submission is None:
        return None
    return {"attempt": submission.attempt, "graded": submission.graded_at is not None,
            "passed": submission.passed, "results": submission.results,
            "answers": submission.answers, "submitted_at": iso(submission.created_at)}  # fmt: skip


async def member_progress(call: Call) -> dict[str, Any]:
    member = await path_member(call)
    mine = await q.progress_by_name(call.session, member.id)
    items = []
    for qualification in (await in_force(call)).values():
        progress = mine.get(qualification.name)
        if progress is None:
            continue
        events = await q.history(call.session, progress)
        items.append({
            **progress_json(progress), "qualification": public(qualification),
            "chats": progress.drafts or {}, "latest": await _latest(call, progress),
            "history": [{"from": e.from_status, "to": e.to_status, "actor_id": _id(e.actor_id),
                         "reason": e.reason, "at": iso(e.created_at)} for e in events],
        })  # fmt: skip
    return {"items": items}


async def _mine(call: Call) -> tuple[Member, q.QualificationSettings, QualificationProgress]:
    """The caller's own progress in the path's qualification (locked for this change)."""
    member = await path_member(call)
    if member.id != call.actor.id:
        raise NotFound("only the member takes its qualification")
    qualification = await named(call)
    progress = await q.progress_of(call.session, member.id, qualification.name, lock=True)
    if progress is None:
        raise NotFound("you are not enrolled in this qualification")
    return member, qualification, progress


async def start_chat(call: Call) -> dict[str, Any]:
    _, qualification, progress = await _mine(call)
    body = await call.body(ChatBody)
    try:
        return q.start_chat(progress, qualification, call.request.match_info["requirement"],
                            again=body.again)  # fmt: skip
    except q.QualificationError as exc:
        raise lifecycle(exc) from exc


async def chat_message(call: Call) -> dict[str, Any]:
    _, qualification, progress = await _mine(call)
    requirement = call.request.match_info["requirement"]
    text = (await call.body(MessageBody)).text
    try:
        draft = q.member_turn(progress, qualification, requirement, text)
    except q.QualificationError as exc:
        raise lifecycle(exc) from exc
    exams, progress_id = call.services.examinations, progress.id
    call.after_commit.append(lambda: exams.answer_soon(progress_id, requirement))
    return draft


async def submit(call: Call) -> dict[str, Any]:
    member, qualification, progress = await _mine(call)
    answers = (await call.body(SubmissionBody)).answers
    try:
        submission = await q.submit(call.session, qualification, progress, member, answers)
    except q.QualificationError as exc:
        raise lifecycle(exc) from exc
    exams, submission_id = call.services.examinations, submission.id
    call.after_commit.append(lambda: exams.grade_soon(submission_id))
    return {**progress_json(progress), "attempt": submission.attempt}


ENDPOINTS = [
    Endpoint("GET", "/api/members/{id}/qualifications", member_progress,
             "A member's qualifications", None, tag=TAG),
    Endpoint("POST", MINE + "/chats/{requirement}", start_chat, "Start a simulated chat",
             None, ChatBody, tag=TAG),
    Endpoint("POST", MINE + "/chats/{requirement}/messages", chat_message,
             "Say something in a simulated chat", None, MessageBody, tag=TAG),
    Endpoint("POST", MINE + "/submission", submit, "Submit an attempt", None, SubmissionBody,
             status=202, tag=TAG),
]  # fmt: skip
