"""Creating and changing members, and reading them with their labels and identities.

Addresses are normalised (E.164, lower-cased email) and become identities; an address
that already belongs to someone else is a ``Conflict``. ``data`` changes are JSON merge
patches (RFC 7386: a ``null`` removes the key). Archived members stay readable and
filterable (when asked for) but get no notifications.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from people.identities import normalise
from people.members import by_identity
from store.errors import Conflict, ValidationFailed
from store.models import Identity, Label, Member

Kind = Literal["team", "contact", "anonymous"]
MAX_LABELS = 100
MAX_DATA_BYTES = 64 * 1024


DATA_KEY = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # a top-level data key: a CSV column data.<key>


class Notify(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sms: bool | None = None
    email: bool | None = None
    voice: bool | None = None


class MemberFields(BaseModel):
    """What may be set on a member; every field optional (a PATCH sets only what it names)."""

    model_config = ConfigDict(extra="forbid")

    kind: Kind | None = None
    name: str | None = Field(default=None, max_length=200)
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=64)
    role: str | None = Field(default=None, max_length=64)
    labels: list[str] | None = Field(default=None, max_length=MAX_LABELS)
    data: dict[str, Any] | None = None
    notify: Notify | None = None

    @field_validator("labels")
    @classmethod
    def _labels(cls, labels: list[str] | None) -> list[str] | None:
        if labels is None:
            return None
        cleaned = [label.strip() for label in labels]
        if any(not label or len(label) > 100 for label in cleaned):
            raise ValueError("labels are 1 to 100 characters")
        if any(";" in label for label in cleaned):
            # the CSV's labels cell is ;-separated: such a label would not export and re-import
            raise ValueError("a label may not contain ';'")
        return sorted(set(cleaned))

    @field_validator("data")
    @classmethod
    def _data_keys(cls, data: dict[str, Any] | None) -> dict[str, Any] | None:
        # Each top-level key is a CSV column (data.<key>): one the import would refuse could
        # be set here but never re-imported from an export.
        bad = [key for key in data or {} if not DATA_KEY.fullmatch(key)]
        if bad:
            raise ValueError(
                f"data keys are 1 to 64 letters, digits, '_' or '-' (not {bad[0]!r}): each is "
                "a CSV column data.<key>"
            )
        return data

    @field_validator("name")
    @classmethod
    def _name(cls, name: str | None) -> str | None:
        # Surrounding spaces are dropped, as the CSV import drops them from every cell.
        return name.strip() if name is not None else None


@dataclass(frozen=True)
class MemberView:
    """A member with its labels and identities, as the API and exports show it."""

    member: Member
    labels: list[str]
    identities: list[tuple[str, str]]


async def views(session: AsyncSession, found: Sequence[Member]) -> list[MemberView]:
    """Labels and identities for many members in two queries."""
    ids = [m.id for m in found]
    labels: dict[int, list[str]] = {i: [] for i in ids}
    identities: dict[int, list[tuple[str, str]]] = {i: [] for i in ids}
    if ids:
        for member_id, label in await session.execute(
            select(Label.member_id, Label.label)
            .where(Label.member_id.in_(ids))
            .order_by(Label.label)
        ):
            labels[member_id].append(label)
        for member_id, kind, address in await session.execute(
            select(Identity.member_id, Identity.kind, Identity.address)
            .where(Identity.member_id.in_(ids))
            .order_by(Identity.id)
        ):
            identities[member_id].append((kind, address))
    return [MemberView(m, labels[m.id], identities[m.id]) for m in found]


async def _claim_address(session: AsyncSession, member: Member, kind: str, address: str) -> None:
    """Give ``member`` the identity, unless someone else holds it."""
    owner = await by_identity(session, kind, address)
    if owner is not None and owner.id != member.id:
        raise Conflict(f"{kind} {address} already belongs to member {owner.id}")
    if owner is None:
        session.add(Identity(member_id=member.id, kind=kind, address=address))


def _data_patch(current: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    merged = dict(current)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _data_patch(merged[key], value)
        else:
            merged[key] = value
    return merged


async def set_labels(session: AsyncSession, member_id: int, labels: Sequence[str]) -> None:
    await session.execute(delete(Label).where(Label.member_id == member_id))
    session.add_all(Label(member_id=member_id, label=label) for label in set(labels))


async def add_labels(session: AsyncSession, member_id: int, labels: Sequence[str]) -> None:
    have = set(
        (await session.execute(select(Label.label).where(Label.member_id == member_id))).scalars()
    )
    session.add_all(Label(member_id=member_id, label=new) for new in set(labels) - have)


async def apply(session: AsyncSession, member: Member, fields: MemberFields, region: str) -> None:
    """Apply ``fields`` to ``member`` (flushed, not committed)."""
    if fields.kind is not None:
        member.kind = fields.kind
    if fields.name is not None:
        member.name = fields.name.strip() or None
    if fields.role is not None:
        member.role = fields.role
    if fields.email:
        member.email = normalise("email", fields.email, region)
        await _claim_address(session, member, "email", member.email)
    if fields.phone:
        member.phone = normalise("phone", fields.phone, region)
        await _claim_address(session, member, "phone", member.phone)
    if fields.data is not None:
        data = _data_patch(member.data or {}, fields.data)
        if len(str(data)) > MAX_DATA_BYTES:
            raise ValidationFailed(f"data is larger than {MAX_DATA_BYTES} bytes")
        member.data = data
    if fields.notify is not None:
        for channel in ("sms", "email", "voice"):
            value = getattr(fields.notify, channel)
            if value is not None:
                setattr(member, f"notify_{channel}", value)
    if fields.labels is not None:
        await set_labels(session, member.id, fields.labels)
    await session.flush()


async def create(session: AsyncSession, fields: MemberFields, region: str) -> Member:
    """A new member from ``fields`` (kind and role default to contact)."""
    if not fields.email and not fields.phone:
        raise ValidationFailed("a member needs an email or a phone")
    member = Member(kind=fields.kind or "contact", role=fields.role or "contact", data={})
    session.add(member)
    await session.flush()
    await apply(session, member, fields.model_copy(update={"kind": None, "role": None}), region)
    return member
