"""API tokens: random, shown once, stored as a SHA-256 hash.

Tokens carry 256 bits of randomness, so a fast hash is the right tool (a slow password
hash adds latency to every request and no security); passwords use argon2.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerifyMismatchError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import ApiToken, Member

_HASHER = PasswordHasher()
TOKEN_PREFIX = "fd_"  # noqa: S105 - a marker that makes tokens recognisable, not a secret


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


async def create_token(session: AsyncSession, member: Member, name: str) -> str:
    """A new token for ``member``; the caller commits. The token is not stored in clear."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(member_id=member.id, name=name, token_hash=hash_token(token)))
    await session.flush()
    return token


async def authenticate(session: AsyncSession, token: str) -> Member | None:
    """The member a live token belongs to, or None."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    row = await session.execute(
        select(Member)
        .join(ApiToken, ApiToken.member_id == Member.id)
        .where(ApiToken.token_hash == hash_token(token), ApiToken.revoked_at.is_(None))
    )
    member = row.scalar_one_or_none()
    if member is None or member.archived or member.merged_into is not None:
        return None
    return member


def hash_password(password: str) -> str:
    """An argon2id hash (the library's current defaults)."""
    return _HASHER.hash(password)


def check_password(member: Member, password: str) -> bool:
    """Whether ``password`` is the member's; a member without one never matches."""
    if not member.password_hash:
        return False
    try:
        return _HASHER.verify(member.password_hash, password)
    except (VerifyMismatchError, InvalidHashError):
        return False


_NOBODY = _HASHER.hash("an unguessable password nobody has")


async def password_of(session: AsyncSession, email: str) -> tuple[int | None, str]:
    """The team member with this email and the hash to check a password against: their
    own, or (no such member, or no password) one nobody matches -- so the check costs
    the same either way and timing does not tell which."""
    found = await session.execute(
        select(Member.id, Member.password_hash).where(
            Member.email == email.strip().lower(),
            Member.kind == "team",
            Member.archived.is_(False),
            Member.merged_into.is_(None),
        )
    )
    row = found.first()
    if row is None or not row.password_hash:
        return None, _NOBODY
    return int(row.id), str(row.password_hash)


async def verify_password(stored: str, password: str) -> bool:
    """argon2 verification in a thread, off the event loop (and outside any transaction:
    it takes tens of milliseconds)."""
    try:
        ok: bool = await asyncio.to_thread(_HASHER.verify, stored, password)
    except (VerifyMismatchError, InvalidHashError):
        return False
    return ok
