"""``/api/roles`` and ``/api/tokens``: who may do what, and how they prove who they are."""

from __future__ import annotations

import re
from typing import Any, NoReturn

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select

from gateway.api.core import Call, Endpoint, Unprocessable, admin, iso
from gateway.api.members import MEMBERS_ADMIN
from people import credentials, roles
from people.roles import ADMIN_KINDS, CONTACT, OWNER, Need, Role, at_least_as_strong, may_manage
from store.errors import Conflict, ErrorDetail, NotFound, PermissionDenied
from store.models import ApiToken, Member, utcnow

SEE_ROLES = Need(admin_access=True)
CHANGE_ROLES = admin(Need(workspace_management=True))
ROLE_NAME = r"^[a-z][a-z0-9_-]{0,63}$"


def role_json(name: str, role: Role, source: str) -> dict[str, Any]:
    return {"name": name, "source": source, **role.model_dump(mode="json")}


async def list_roles(call: Call) -> dict[str, Any]:
    items = [role_json(n, r, call.roles.source(n)) for n, r in call.roles.items()]
    return {"items": items, "next": None}


def _role_name(call: Call) -> str:
    name = call.request.match_info["name"]
    if not re.match(ROLE_NAME, name):
        raise NotFound("no such role")
    return name


def _may_change(call: Call, name: str) -> None:
    """Refuse (403) changing or removing role ``name`` unless it is no stronger than the
    caller's own: its holders are exactly as strong as it, so this is the member rule
    (``people.roles.may_manage``) applied to all of them at once."""
    if name in call.roles:
        why = may_manage(call.actor.role_name, call.actor.role, name, call.roles.get(name))
        if why is not None:
            raise PermissionDenied(f"role '{name}' is stronger than your role "
                                   f"'{call.actor.role_name}'; you may not change it")  # fmt: skip


def _incoherent(why: str) -> NoReturn:
    """A role that would let contacts or anonymous members into the admin interface: 422,
    as for a member given such a role (``people.roles.kind_refusal``)."""
    raise Unprocessable(why, [ErrorDetail("admin_access", why)])


async def put_role(call: Call) -> dict[str, Any]:
    """Define or replace a role: the caller must be at least as strong as the role before
    and after the change. A role may not gain ``admin_access`` while members who are not
    team members hold it, and ``contact`` never has it (422: change their role first)."""
    name = _role_name(call)
    role = await call.body(Role)
    if name == OWNER:
        raise Conflict("the owner role always holds every permission; it cannot be changed")
    _may_change(call, name)
    if not at_least_as_strong(call.actor.role, role):
        raise PermissionDenied(f"the role grants more than your role '{call.actor.role_name}'")
    if role.admin_access:
        if name == CONTACT:
            _incoherent(f"role '{CONTACT}' is what new contacts and anonymous members get; "
                        "it cannot have admin_access")  # fmt: skip
        outsiders = (
            await call.session.execute(
                select(func.count()).where(
                    Member.role == name,
                    Member.kind.not_in(ADMIN_KINDS),
                    Member.merged_into.is_(None),
                )
            )
        ).scalar_one()
        if outsiders:
            _incoherent(
                f"{outsiders} contact or anonymous members hold role '{name}', and only team "
                "members may hold a role with admin_access; give them another role first"
            )
    await roles.save(call.session, name, role)
    call.after_commit.append(call.services.pipeline.live.forget_roles)
    return role_json(name, role, "api")


async def delete_role(call: Call) -> None:
    name = _role_name(call)
    if name not in call.roles:
        raise NotFound("no such role")
    if call.roles.source(name) != "api":
        raise Conflict(f"role '{name}' is defined in the configuration; change it there")
    _may_change(call, name)
    still_configured = name in call.services.settings.all_roles()
    holders = (
        await call.session.execute(select(func.count()).where(Member.role == name))
    ).scalar_one()
    if holders and not still_configured:
        raise Conflict(f"{holders} members hold role '{name}'; give them another role first")
    await roles.delete(call.session, name)
    call.after_commit.append(call.services.pipeline.live.forget_roles)


class TokenBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="api", min_length=1, max_length=100)


def token_json(token: ApiToken) -> dict[str, Any]:
    return {
        "id": str(token.id),
        "name": token.name,
        "member": str(token.member_id),
        "created_at": iso(token.created_at),
        "revoked_at": iso(token.revoked_at),
    }


async def list_tokens(call: Call) -> dict[str, Any]:
    rows = await call.session.execute(
        select(ApiToken).where(ApiToken.member_id == call.actor.id).order_by(ApiToken.id)
    )
    return {"items": [token_json(t) for t in rows.scalars()], "next": None}


async def create_token(call: Call) -> web.Response:
    body = await call.body(TokenBody)
    secret = await credentials.create_token(call.session, call.actor.member, body.name)
    token = (
        await call.session.execute(
            select(ApiToken).where(ApiToken.token_hash == credentials.hash_token(secret))
        )
    ).scalar_one()
    return web.json_response({**token_json(token), "token": secret}, status=201)


async def revoke_token(call: Call) -> None:
    token = await call.session.get(ApiToken, call.path_id(what="token"))
    if token is None:
        raise NotFound("no such token")
    if token.member_id != call.actor.id:
        holder = await call.session.get(Member, token.member_id)
        if not call.actor.may(MEMBERS_ADMIN) or (
            holder is not None
            and may_manage(call.actor.role_name, call.actor.role, holder.role,
                           call.roles.get(holder.role)) is not None
        ):  # fmt: skip
            raise NotFound("no such token")
    token.revoked_at = token.revoked_at or utcnow()


ENDPOINTS = [
    Endpoint("GET", "/api/roles", list_roles, "The workspace's roles", SEE_ROLES, tag="roles"),
    Endpoint("PUT", "/api/roles/{name}", put_role, "Define or change a role", CHANGE_ROLES,
             body=Role, tag="roles"),
    Endpoint("DELETE", "/api/roles/{name}", delete_role, "Remove a role defined through the API",
             CHANGE_ROLES, status=204, tag="roles"),
    Endpoint("GET", "/api/tokens", list_tokens, "Your API tokens", tag="tokens"),
    Endpoint("POST", "/api/tokens", create_token, "Make yourself a new API token (shown once)",
             body=TokenBody, status=201, tag="tokens"),
    Endpoint("DELETE", "/api/tokens/{id}", revoke_token,
             "Revoke a token (yours, or anyone's with members: admin)", status=204, tag="tokens"),
]  # fmt: skip
