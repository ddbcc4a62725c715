"""``/api/members``: read, create, change, archive, merge, resolve, search, export."""

from __future__ import annotations

import base64
import binascii
import json
import logging
from datetime import UTC, datetime
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import ColumnElement, Select, and_, false, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.api.core import Call, Endpoint, Unprocessable, admin, iso, listing, page
from people import credentials, directory, members, merges, spreadsheet
from people.directory import MemberFields, MemberView
from people.filters import compile_filter
from people.identities import normalise
from people.roles import Need, kind_refusal, may_grant, may_manage
from store.errors import Conflict, ErrorDetail, NotFound, PermissionDenied, ValidationFailed
from store.models import Member, MemberMerge
from store.text import loads_json

log = logging.getLogger(__name__)

MEMBERS_USE = admin(Need(feature="members", level="use"))
MEMBERS_EDIT = admin(Need(feature="members", level="edit"))
MEMBERS_CREATE = admin(Need(feature="members", level="create"))
MEMBERS_ADMIN = admin(Need(feature="members", level="admin"))
SELF_FIELDS = {"name", "notify"}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# sort name -> (column, what NULL sorts as); times travel in cursors as ISO strings
SORTS: dict[str, tuple[Any, Any]] = {
    "id": (Member.id, None),
    "name": (Member.name, ""),
    "created": (Member.created_at, EPOCH),
    "last_active": (Member.last_active_at, EPOCH),
}


def member_json(view: MemberView) -> dict[str, Any]:
    m = view.member
    return {
        "id": str(m.id),
        "kind": m.kind,
        "name": m.name,
        "email": m.email,
        "phone": m.phone,
        "role": m.role,
        "labels": view.labels,
        "data": m.data or {},
        "notify": {"sms": m.notify_sms, "email": m.notify_email, "voice": m.notify_voice},
        "identities": [{"kind": k, "address": a} for k, a in view.identities],
        "archived": m.archived,
        "merged_into": str(m.merged_into) if m.merged_into else None,
        "created_at": iso(m.created_at),
        "last_active_at": iso(m.last_active_at),
    }


async def _json(session: AsyncSession, member: Member) -> dict[str, Any]:
    [view] = await directory.views(session, [member])
    return member_json(view)


async def visible_member(call: Call, member_id: int) -> Member:
    """The member, if the caller may see it: itself, or anyone with ``members: use``."""
    member = await call.session.get(Member, member_id)
    if member is None or not (member_id == call.actor.id or call.actor.may(MEMBERS_USE)):
        raise NotFound("no such member")
    return member


def _check_grant(call: Call, role: str) -> None:
    if role not in call.roles:
        raise ValidationFailed(f"unknown role '{role}' (valid: {', '.join(call.roles.names())})")
    why = may_grant(call.actor.role_name, call.actor.role, role, call.roles.get(role))
    if why is not None:
        raise PermissionDenied(why)


def guard(call: Call, target: Member) -> None:
    """Refuse (403) unless the caller may act on ``target``: only with a role at least as
    strong as ``target``'s (``people.roles.may_manage``). Every endpoint that changes a
    member, or moves an identity onto or off it, calls this for each member it changes
    (and ``_not_merged`` first, except a merge, which says why in its own words)."""
    actor = call.actor
    why = may_manage(actor.role_name, actor.role, target.role, call.roles.get(target.role))
    if why is not None:
        log.warning("member %s (%s) denied changing member %s: %s",
                    call.actor.id, call.actor.role_name, target.id, why)  # fmt: skip
        raise PermissionDenied(why)


def _not_merged(member: Member) -> None:
    """Refuse (409) to change a member merged into another, whoever asks: it resolves to
    the member it was merged into, so what changed it (an identity) would change that
    member, whose role ``guard`` would never have seen."""
    if member.merged_into is not None:
        raise Conflict(
            f"member {member.id} was merged into member {member.merged_into}; "
            "change that member instead"
        )


def _check_kind(call: Call, kind: str, role: str) -> None:
    why = kind_refusal(kind, role, call.roles.get(role))
    if why is not None:
        raise Unprocessable(why, [ErrorDetail("role", why)])


async def get_member(call: Call) -> dict[str, Any]:
    return await _json(call.session, await visible_member(call, call.path_id(what="member")))


async def create_member(call: Call) -> web.Response:
    fields = await call.body(MemberFields)
    if fields.kind == "anonymous":
        raise ValidationFailed("anonymous members are made by channels, not created")
    _check_grant(call, fields.role or "contact")
    _check_kind(call, fields.kind or "contact", fields.role or "contact")
    member = await directory.create(call.session, fields, call.region)
    call.after_commit.append(call.services.pipeline.live.forget_roles)
    return web.json_response(await _json(call.session, member), status=201)


async def update_member(call: Call) -> dict[str, Any]:
    member = await visible_member(call, call.path_id(what="member"))
    fields = await call.body(MemberFields)
    _not_merged(member)
    named = fields.model_fields_set
    own_only = member.id == call.actor.id and named <= SELF_FIELDS
    if not own_only:
        call.require(MEMBERS_EDIT)
        guard(call, member)
        if fields.role is not None and fields.role != member.role:
            _check_grant(call, fields.role)
    if fields.kind == "anonymous" and member.kind != "anonymous":
        raise ValidationFailed("a known member cannot become anonymous")
    if {"kind", "role"} & named:
        _check_kind(call, fields.kind or member.kind, fields.role or member.role)
    await directory.apply(call.session, member, fields, call.region)
    call.after_commit.append(call.services.pipeline.live.forget_roles)  # operator groups
    return await _json(call.session, member)


async def _set_archived(call: Call, archived: bool) -> dict[str, Any]:
    member = await visible_member(call, call.path_id(what="member"))
    call.require(MEMBERS_EDIT)
    _not_merged(member)
    guard(call, member)
    if member.id == call.actor.id and archived:
        raise Conflict("you cannot archive yourself")
    member.archived = archived
    await call.session.flush()
    call.after_commit.append(call.services.pipeline.live.forget_roles)
    return await _json(call.session, member)


async def archive(call: Call) -> dict[str, Any]:
    return await _set_archived(call, True)


async def unarchive(call: Call) -> dict[str, Any]:
    return await _set_archived(call, False)


class MergeBody(BaseModel):
    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)

    duplicate: str = Field(pattern=r"^[0-9]{1,18}$", description="The member merged away.")
    reason: str = Field(default="", max_length=1000)


async def merge(call: Call) -> dict[str, Any]:
    primary = await visible_member(call, call.path_id(what="member"))
    body = await call.body(MergeBody)
    duplicate = await visible_member(call, int(body.duplicate))
    guard(call, primary)
    guard(call, duplicate)
    record = await merges.merge(call.session, primary, duplicate, call.actor.id, body.reason)
    return {"member": await _json(call.session, primary), "merge": merge_json(record)}


def merge_json(record: MemberMerge) -> dict[str, Any]:
    return {
        "id": str(record.id),
        "primary": str(record.primary_id),
        "duplicate": str(record.duplicate_id),
        "actor": str(record.actor_id) if record.actor_id else None,
        "reason": record.reason,
        "moved": record.moved,
        "created_at": iso(record.created_at),
    }


async def list_merges(call: Call) -> dict[str, Any]:
    member = await visible_member(call, call.path_id(what="member"))
    rows = await call.session.execute(
        select(MemberMerge)
        .where(or_(MemberMerge.primary_id == member.id, MemberMerge.duplicate_id == member.id))
        .order_by(MemberMerge.id)
    )
    return {"items": [merge_json(r) for r in rows.scalars()], "next": None}


class IdentityBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["phone", "email", "slack"]
    address: str = Field(min_length=1, max_length=320)


async def add_identity(call: Call) -> dict[str, Any]:
    member = await visible_member(call, call.path_id(what="member"))
    body = await call.body(IdentityBody)
    _not_merged(member)
    guard(call, member)
    address = normalise(body.kind, body.address, call.region)
    holder = await members.by_identity(call.session, body.kind, address)
    if holder is not None and holder.id != member.id:
        _not_merged(holder)
        guard(call, holder)  # attaching merges the two: the holder changes as well
    result = await merges.attach_identity(call.session, member, body.kind, address, call.actor.id)
    return await _json(call.session, result)


class PasswordBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    password: str = Field(min_length=12, max_length=1000)


async def set_password(call: Call) -> None:
    member = await visible_member(call, call.path_id(what="member"))
    _not_merged(member)
    if member.id != call.actor.id:
        call.require(MEMBERS_ADMIN)
        guard(call, member)
    if member.kind != "team":
        raise Conflict("only team members sign in with a password")
    member.password_hash = credentials.hash_password((await call.body(PasswordBody)).password)


class SearchBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    filter: dict[str, Any] | None = None
    limit: int = Field(default=50, ge=1, le=200)
    cursor: str | None = Field(default=None, max_length=500)
    sort: Literal["id", "-id", "name", "-name", "created", "-created", "last_active",
                  "-last_active"] = "id"  # fmt: skip


def _cursor(raw: str | None) -> list[Any] | None:
    if not raw:
        return None
    try:
        value = loads_json(base64.urlsafe_b64decode(raw.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise ValidationFailed("cursor is not one this API gave out") from None
    if not (isinstance(value, list) and len(value) == 2 and isinstance(value[1], int)
            and 0 <= value[1] < 2**63):  # fmt: skip
        raise ValidationFailed("cursor is not one this API gave out")
    return value


def search_statement(body: SearchBody, dialect: str) -> Select[Member]:
    """One page of members matching ``body``: ``limit + 1`` rows, to tell if there is more."""
    condition = compile_filter(body.filter, dialect).condition
    descending = body.sort.startswith("-")
    column, null_as = SORTS[body.sort.lstrip("-")]
    key: ColumnElement[Any] = column if null_as is None else func.coalesce(column, null_as)
    stmt = select(Member).where(condition)
    after = _cursor(body.cursor)
    if after is not None:
        value, last = after
        if isinstance(null_as, datetime):
            value = _time(value)
        beyond = (key < value) if descending else (key > value)
        tie = and_(key == value, (Member.id < last) if descending else (Member.id > last))
        stmt = stmt.where(or_(beyond, tie))
    order = [key.desc(), Member.id.desc()] if descending else [key.asc(), Member.id.asc()]
    return stmt.order_by(*order).limit(body.limit + 1)


async def search(call: Call, body: SearchBody) -> dict[str, Any]:
    dialect = call.session.get_bind().dialect.name
    found = list((await call.session.execute(search_statement(body, dialect))).scalars())
    column, null_as = SORTS[body.sort.lstrip("-")]
    shown = found[: body.limit]
    items = [member_json(v) for v in await directory.views(call.session, shown)]
    next_cursor = None
    if len(found) > body.limit and shown:
        last_member = shown[-1]
        value = getattr(last_member, column.key)
        if value is None:
            value = null_as
        if isinstance(value, datetime):
            value = value.isoformat()
        next_cursor = base64.urlsafe_b64encode(
            json.dumps([value, last_member.id]).encode()
        ).decode()
    return {"items": items, "next": next_cursor}


def _time(raw: Any) -> datetime:
    try:
        return datetime.fromisoformat(str(raw))
    except ValueError:
        raise ValidationFailed("cursor is not one this API gave out") from None


async def search_members(call: Call) -> dict[str, Any]:
    return await search(call, await call.body(SearchBody))


async def list_members(call: Call) -> dict[str, Any]:
    limit, cursor = page(call.request)
    query = select(Member).where(Member.id > cursor, Member.merged_into.is_(None))
    if not call.flags["archived"]:
        query = query.where(Member.archived == false())
    found = list((await call.session.execute(query.order_by(Member.id).limit(limit + 1))).scalars())
    views = await directory.views(call.session, found[:limit])
    return listing([member_json(v) for v in views], len(found) > limit)


async def export_members(call: Call) -> web.StreamResponse:
    raw = call.request.query.get("filter")
    try:
        condition = loads_json(raw) if raw else None
    except ValueError:
        raise ValidationFailed("filter is not JSON") from None
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": 'attachment; filename="members.csv"',
        }
    )
    dialect = call.session.get_bind().dialect.name
    rows = spreadsheet.export_rows(call.session, compile_filter(condition, dialect).condition)
    await response.prepare(call.request)
    async for chunk in rows:
        await response.write(chunk.encode("utf-8"))
    await response.write_eof()
    return response


ENDPOINTS = [
    Endpoint("GET", "/api/members", list_members, "List members", MEMBERS_USE,
             query={"limit": "1 to 200", "cursor": "the last id seen"},
             flags={"archived": "true to include archived members"}),
    Endpoint("POST", "/api/members", create_member, "Create a member", MEMBERS_CREATE,
             body=MemberFields, status=201),
    Endpoint("POST", "/api/members/search", search_members, "Find members by filter",
             MEMBERS_USE, body=SearchBody),
    Endpoint("GET", "/api/members/export", export_members, "Export members as CSV",
             MEMBERS_USE, query={"filter": "a member filter, as JSON"}),
    Endpoint("GET", "/api/members/{id}", get_member, "Read a member (anyone may read itself)"),
    Endpoint("PATCH", "/api/members/{id}", update_member,
             "Change a member (anyone may change its own name and notify)", body=MemberFields),
    Endpoint("POST", "/api/members/{id}/archive", archive, "Archive a member", MEMBERS_EDIT),
    Endpoint("POST", "/api/members/{id}/unarchive", unarchive, "Unarchive a member", MEMBERS_EDIT),
    Endpoint("POST", "/api/members/{id}/merge", merge, "Merge a duplicate into this member",
             MEMBERS_ADMIN, body=MergeBody),
    Endpoint("GET", "/api/members/{id}/merges", list_merges, "Merges this member took part in",
             MEMBERS_USE),
    Endpoint("POST", "/api/members/{id}/identities", add_identity,
             "Attach an identity (merging with its owner if anonymous)", MEMBERS_EDIT,
             body=IdentityBody),
    Endpoint("PUT", "/api/members/{id}/password", set_password,
             "Set a team member's console password", body=PasswordBody, status=204),
]  # fmt: skip
