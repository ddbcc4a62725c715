"""Saving what a member told an agent (workflow answers) on the member.

Answers go into the member's ``data`` under the field's name, and a ``name`` answer names
an unnamed member. An ``email`` or ``phone`` answer is *not* made the member's identity:
nothing proves the person typing controls that address, and taking it would let anyone
who types a known customer's email become that customer (their record, their role, their
files). Resolving an anonymous member to a real identity is an admin's (``POST
/api/members/{id}/identities``) or a future verified step (a code sent to the address).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from store.models import Member


async def record(
    session: AsyncSession, member_id: int, answers: Mapping[str, Any], types: Mapping[str, str]
) -> Member | None:
    """Save ``answers`` (already validated and normalised) on the member."""
    member = await session.get(Member, member_id)
    while member is not None and member.merged_into is not None:
        member = await session.get(Member, member.merged_into)
    if member is None or not answers:
        return member
    member.data = {**(member.data or {}), **answers}
    name = answers.get("name")
    if isinstance(name, str) and name and not member.name:
        member.name = name
    return member
