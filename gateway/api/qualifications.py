"""Qualifications over the API, the admin side: define them, enroll members, review and revoke.

Admin side (``qualifications`` feature level in brackets):

- ``GET /api/qualifications`` (use): those in force; criteria and reference answers only
  for ``edit`` (a candidate does not see the answers).
- ``GET /api/qualifications/{name}`` (use), ``PUT`` (edit): define or replace one; it
  takes the place of the YAML one of that name. 422 names the path of each error.
- ``POST /api/qualifications/{name}/enrollments`` (edit): ``{"member_ids": [...]}`` or
  ``{"filter": <member filter>}``; team members only, each enrolled once.
- ``GET /api/qualifications/{name}/members`` (edit): every member's progress,
  ``?status=provisional`` for the review queue.
- ``POST /api/members/{id}/qualifications/{name}/review`` (admin): ``{"approve", "note"}``;
  ``.../revoke`` (admin): ``{"reason"}`` -- and what the member holds of the workflows it
  unlocked goes back to the queue.

The member's side (its progress, the simulated chats, the submission) is
``gateway.api.member_qualifications``; the helpers here that both sides use are public.

A transition the lifecycle does not allow now is a 409 that says why.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import select

from gateway.api.core import Call, Endpoint, Unprocessable, admin, iso, listing, page
from gateway.cross_references import unstartable_models
from people import qualifications as q
from people.filters import compile_filter
from people.roles import Need
from store.engine import insert as dialect_insert
from store.errors import Conflict, ErrorDetail, NotFound, ValidationFailed
from store.models import (
    Member,
    QualificationDefinition,
    QualificationProgress,
    utcnow,
)

USE = admin(Need(feature="qualifications", level="use"))
EDIT = admin(Need(feature="qualifications", level="edit"))
ADMIN = admin(Need(feature="qualifications", level="admin"))
MAX_ENROLL = 1000
TAG = "qualifications"


class EnrollBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    member_ids: list[Annotated[int, Field(gt=0, lt=2**63)]] | None = Field(
        default=None, max_length=MAX_ENROLL
    )
    filter: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _one(self) -> EnrollBody:
        if (self.member_ids is None) == (self.filter is None):
            raise ValueError("give member_ids or filter")
        return self


class ReviewBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    approve: bool
    note: str = Field(min_length=1, max_length=2000)


class RevokeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=2000)


def public(qualification: q.QualificationSettings) -> dict[str, Any]:
    """What a candidate sees: the questions and chats, not how they are graded."""
    return {
        "name": qualification.name, "description": qualification.description,
        "workflows": qualification.workflows, "admin_review": qualification.admin_review,
        "max_attempts": qualification.max_attempts,
        "cooldown_hours": qualification.cooldown_hours,
        "requirements": [
            {"id": r.id, "kind": r.kind, "prompt": r.prompt, "choices": r.choices,
             **({"persona": r.persona, "turn_limit": r.turn_limit} if r.kind == "scenario"
                else {})}
            for r in qualification.requirements
        ],
    }  # fmt: skip


def _full(qualification: q.QualificationSettings, source: str) -> dict[str, Any]:
    return {**qualification.model_dump(mode="json"), "source": source}


async def in_force(call: Call) -> dict[str, q.QualificationSettings]:
    return await call.services.examinations.qualifications(call.session)


async def named(call: Call) -> q.QualificationSettings:
    found = (await in_force(call)).get(call.request.match_info["name"])
    if found is None:
        raise NotFound("no such qualification")
    return found


async def _sources(call: Call) -> set[str]:
    return set((await call.session.execute(select(QualificationDefinition.name))).scalars())


async def list_qualifications(call: Call) -> dict[str, Any]:
    catalog, api = await in_force(call), await _sources(call)
    if not call.actor.may(EDIT):
        return {"items": [public(v) for v in catalog.values()]}
    return {"items": [_full(v, "api" if k in api else "yaml") for k, v in catalog.items()]}


async def get_qualification(call: Call) -> dict[str, Any]:
    qualification = await named(call)
    if not call.actor.may(EDIT):
        return public(qualification)
    api = await _sources(call)
    return _full(qualification, "api" if qualification.name in api else "yaml")


def _connections(qualification: q.QualificationSettings) -> list[ErrorDetail]:
    """Over the API a model is named only: a key or a base URL is the YAML's to set (no
    caller reads a key, or sends the server's key somewhere of its choosing)."""
    return [
        ErrorDetail(f"{where}.{name}", "set in the workspace YAML, not over the API")
        for where, model in q.language_models(qualification)
        for name in ("api_key", "base_url")
        if getattr(model, name) is not None
    ]


async def put_qualification(call: Call) -> dict[str, Any]:
    name = call.request.match_info["name"]
    qualification = await call.body(q.QualificationSettings, name=name)
    workflows = {w.name for w in call.services.settings.workflows}
    errors = q.unknown_workflows(qualification, workflows) + _connections(qualification)
    errors += unstartable_models(qualification)
    if errors:
        raise Unprocessable("the qualification is not valid", errors)
    row = {"name": name, "body": qualification.model_dump(mode="json"),
           "updated_by": call.actor.id, "updated_at": utcnow()}  # fmt: skip
    upsert = dialect_insert(call.session, QualificationDefinition).values(row)
    await call.session.execute(upsert.on_conflict_do_update(
        index_elements=["name"], set_={k: v for k, v in row.items() if k != "name"}
    ))  # fmt: skip
    call.after_commit.append(call.services.pipeline.live.forget_roles)
    return _full(qualification, "api")


async def enroll(call: Call) -> dict[str, Any]:
    qualification = await named(call)
    body = await call.body(EnrollBody)
    stmt = select(Member).order_by(Member.id)
    if body.member_ids is not None:
        stmt = stmt.where(Member.id.in_(body.member_ids))
    else:
        dialect = call.session.get_bind().dialect.name
        stmt = stmt.where(compile_filter(body.filter, dialect).condition).limit(MAX_ENROLL + 1)
    members = list((await call.session.execute(stmt)).scalars())
    if len(members) > MAX_ENROLL:
        raise ValidationFailed(f"the filter matches more than {MAX_ENROLL} members")
    missing = sorted(set(body.member_ids or []) - {m.id for m in members})
    enrolled: list[str] = []
    unchanged: list[str] = []
    refused = [{"member_id": str(i), "reason": "no such member"} for i in missing]
    for member in members:
        if member.kind != "team" or member.archived or member.merged_into is not None:
            refused.append({"member_id": str(member.id), "reason": "only active team members"})
            continue
        try:
            _, now_enrolled = await q.enroll_once(
                call.session, member, qualification, call.actor.id
            )
        except q.QualificationError as exc:
            refused.append({"member_id": str(member.id), "reason": str(exc)})
            continue
        (enrolled if now_enrolled else unchanged).append(str(member.id))
    return {"enrolled": enrolled, "unchanged": unchanged, "refused": refused}


async def members_of(call: Call) -> dict[str, Any]:
    qualification = await named(call)
    limit, cursor = page(call.request)
    stmt = (
        select(QualificationProgress, Member.name)
        .join(Member, Member.id == QualificationProgress.member_id)
        .where(QualificationProgress.qualification == qualification.name,
               QualificationProgress.id > cursor)
        .order_by(QualificationProgress.id)
        .limit(limit + 1)
    )  # fmt: skip
    status = call.request.query.get("status")
    if status:
        stmt = stmt.where(QualificationProgress.status == status)
    found = (await call.session.execute(stmt)).all()
    items = [{"id": str(p.id), **progress_json(p), "name": name} for p, name in found[:limit]]
    return listing(items, len(found) > limit)


def progress_json(progress: QualificationProgress) -> dict[str, Any]:
    return {
        "member_id": str(progress.member_id), "qualification": progress.qualification,
        "status": progress.status, "attempts": progress.attempts,
        "last_submitted_at": iso(progress.last_submitted_at),
        "updated_at": iso(progress.updated_at),
    }  # fmt: skip


def lifecycle(error: q.QualificationError) -> Conflict:
    """A transition the lifecycle does not allow now: a 409 that says why."""
    return Conflict(str(error))


async def path_member(call: Call, need: Need = USE) -> Member:
    """The path's member: the caller itself (with ``need``), or anyone for ``edit``."""
    member_id = call.path_id(what="member")
    mine = member_id == call.actor.id and call.actor.may(need)
    member = await call.session.get(Member, member_id)
    if member is None or not (mine or call.actor.may(EDIT)):
        raise NotFound("no such member")
    return member


async def _progress_for_admin(call: Call) -> tuple[q.QualificationSettings, QualificationProgress]:
    member = await path_member(call, EDIT)
    qualification = await named(call)
    progress = await q.progress_of(call.session, member.id, qualification.name, lock=True)
    if progress is None:
        raise NotFound("the member is not enrolled in this qualification")
    return qualification, progress


async def review(call: Call) -> dict[str, Any]:
    _, progress = await _progress_for_admin(call)
    body = await call.body(ReviewBody)
    try:
        await q.review(call.session, progress, call.actor.id, body.approve, body.note)
    except q.QualificationError as exc:
        raise lifecycle(exc) from exc
    if body.approve:
        call.after_commit.append(call.services.pipeline.live.qualified)
    return progress_json(progress)


async def revoke(call: Call) -> dict[str, Any]:
    qualification, progress = await _progress_for_admin(call)
    body = await call.body(RevokeBody)
    try:
        await q.revoke(call.session, progress, call.actor.id, body.reason)
    except q.QualificationError as exc:
        raise lifecycle(exc) from exc
    # What another qualification of theirs still unlocks stays theirs.
    held = await q.progress_by_name(call.session, progress.member_id)
    qualified = {name for name, p in held.items() if p.status == "qualified"}
    kept: set[str] = set()
    for other in (await in_force(call)).values():
        if other.name != qualification.name and other.name in qualified:
            kept.update(other.workflows)
    lost = [w for w in qualification.workflows if w not in kept]
    live = call.services.pipeline.live
    back = await live.disqualify(call.session, progress.member_id, lost)
    call.after_commit.append(lambda: live.route_soon(back))
    return progress_json(progress)


ONE = "/api/qualifications/{name}"
MINE = "/api/members/{id}/qualifications/{name}"  # one member's progress in one
ENDPOINTS = [
    Endpoint("GET", "/api/qualifications", list_qualifications, "Qualifications in force",
             USE, tag=TAG),
    Endpoint("GET", ONE, get_qualification, "A qualification", USE, tag=TAG),
    Endpoint("PUT", ONE, put_qualification, "Define or replace a qualification", EDIT,
             q.QualificationSettings, tag=TAG),
    Endpoint("POST", ONE + "/enrollments", enroll, "Enroll members (ids or a filter)", EDIT,
             EnrollBody, tag=TAG),
    Endpoint("GET", ONE + "/members", members_of, "Members' progress", EDIT, tag=TAG,
             query={"status": "only this status (provisional: the review queue)",
                    "limit": "1 to 200 (50)", "cursor": "the next of the page before"}),
    Endpoint("POST", MINE + "/review", review, "Review a provisional member", ADMIN,
             ReviewBody, tag=TAG),
    Endpoint("POST", MINE + "/revoke", revoke, "Revoke a qualification", ADMIN, RevokeBody,
             tag=TAG),
]  # fmt: skip
