"""Read-only member lookups for agents: a member's own record, and admin-declared filters.

No SQL reaches here from outside: a named query is a member filter (``people.filters``)
declared in YAML, with ``{param}`` placeholders the caller fills with plain values, and
only the fields the declaration lists come back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from people.directory import MemberView, views
from people.filters import compile_filter
from store.models import Member

FIELDS = ("id", "name", "email", "phone", "kind", "labels", "data", "created", "last_active")


def show(view: MemberView, fields: Sequence[str]) -> dict[str, Any]:
    """The listed fields of a member (``data.x`` picks one data field)."""
    member = view.member
    whole = {
        "id": member.id, "name": member.name, "email": member.email, "phone": member.phone,
        "kind": member.kind, "labels": view.labels, "data": dict(member.data or {}),
        "created": member.created_at.isoformat() if member.created_at else None,
        "last_active": member.last_active_at.isoformat() if member.last_active_at else None,
    }  # fmt: skip
    out: dict[str, Any] = {}
    for name in fields:
        if name.startswith("data."):
            out[name] = (member.data or {}).get(name.removeprefix("data."))
        else:
            out[name] = whole[name]
    return out


async def own(
    session: AsyncSession, member_id: int, fields: Sequence[str]
) -> dict[str, Any] | None:
    member = await session.get(Member, member_id)
    if member is None:
        return None
    [view] = await views(session, [member])
    return show(view, fields)


def fill_params(node: Any, params: Mapping[str, Any]) -> Any:
    """The filter with every string ``"{name}"`` replaced by ``params[name]`` (a whole value,
    never text spliced into SQL: the filter compiler binds it as a parameter)."""
    if isinstance(node, dict):
        return {k: fill_params(v, params) for k, v in node.items()}
    if isinstance(node, list):
        return [fill_params(v, params) for v in node]
    if isinstance(node, str) and node.startswith("{") and node.endswith("}"):
        return params.get(node[1:-1], node)
    return node


async def run(
    session: AsyncSession, condition: Any, fields: Sequence[str], limit: int
) -> list[dict[str, Any]]:
    dialect = session.get_bind().dialect.name
    found = await session.execute(
        select(Member).where(compile_filter(condition, dialect).condition).order_by(Member.id)
        .limit(limit)
    )  # fmt: skip
    return [show(v, fields) for v in await views(session, list(found.scalars()))]
