"""Saving what a member told an agent (workflow answers) on the member.

Answers go into the member's ``data`` under the field's name. An ``email`` or ``phone``
answer also becomes the member's identity: an anonymous texter who gives the email of a
known member is merged into that member (``merges.attach_identity``); an address that
belongs to another known member stays in ``data`` only, and is logged, since two known
people are never merged without an admin. A ``name`` answer names an unnamed member.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from gateway.errors import Conflict
from people import merges
from store.models import Member

log = logging.getLogger(__name__)


async def record(
    session: AsyncSession, member_id: int, answers: Mapping[str, Any], types: Mapping[str, str]
) -> Member | None:
    """Save ``answers`` (already validated and normalised) on the member; the member they
    end up on (another one, if giving an address resolved an anonymous member)."""
    member = await session.get(Member, member_id)
    while member is not None and member.merged_into is not None:
        member = await session.get(Member, member.merged_into)
    if member is None or not answers:
        return member
    member.data = {**(member.data or {}), **answers}
    name = answers.get("name")
    if isinstance(name, str) and name and not member.name:
        member.name = name
    for field, value in answers.items():
        kind = types.get(field)
        if kind not in ("email", "phone") or not isinstance(value, str):
            continue
        try:
            member = await merges.attach_identity(session, member, kind, value, None)
        except Conflict:
            log.info("member %s gave a %s that belongs to another member", member.id, kind)
    return member
