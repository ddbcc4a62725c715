"""One batch of an import: match its rows to members (email, then phone; earlier rows of
the same file included), decide what changes, check who may change whom, and write it
in one transaction -- or row by row when another writer took an address meanwhile."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from people.roles import Role, RoleBook, kind_refusal, may_grant, may_manage
from people.spreadsheet import Row, RowError
from store.engine import among, insert_rows
from store.engine import insert as dialect_insert
from store.models import Identity, Label, Member, table_of, utcnow

log = logging.getLogger(__name__)


@dataclass
class Summary:
    total: int = 0
    processed: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0
    errors: list[RowError] = field(default_factory=list)


@dataclass(frozen=True)
class Importer:
    """Who imports: nothing they import may hold a role above their own."""

    role_name: str
    role: Role
    roles: RoleBook

    def refuse_role(self, name: str) -> str | None:
        if name not in self.roles:
            return f"unknown role '{name}' (valid: {', '.join(self.roles.names())})"
        return may_grant(self.role_name, self.role, name, self.roles.get(name))

    def refuse_member(
        self, member: Member, row: Row, planned: Mapping[str, Any] | None = None
    ) -> str | None:
        """Why this row may not change ``member`` (stronger than the importer), or may not
        leave it holding its role as its kind (``people.roles.kind_refusal``). ``planned``:
        what earlier rows of the same batch already set on it (not written yet)."""
        why = may_manage(self.role_name, self.role, member.role, self.roles.get(member.role))
        kind_now = (planned or {}).get("kind") or member.kind
        role_now = (planned or {}).get("role") or member.role
        kind = row.kind or ("contact" if kind_now == "anonymous" else kind_now)
        return why or self.refuse_kind(kind, row.role or role_now)

    def refuse_kind(self, kind: str, role: str) -> str | None:
        return kind_refusal(kind, role, self.roles.get(role))


@dataclass
class _Plan:
    """What one batch will write, decided before writing."""

    new: list[Row] = field(default_factory=list)
    changed: dict[int, dict[str, Any]] = field(default_factory=dict)
    identities: list[dict[str, Any]] = field(default_factory=list)
    labels: list[dict[str, Any]] = field(default_factory=list)


async def import_batch(
    sessions: async_sessionmaker[AsyncSession],
    rows: list[Row],
    summary: Summary,
    seen: dict[tuple[str, str], int],
    importer: Importer,
    dry_run: bool,
) -> None:
    """Apply ``rows`` in one transaction (row by row if it conflicts), adding to
    ``summary``; ``seen`` maps the addresses met earlier in the file to their members."""
    if not rows:
        return
    try:
        async with sessions.begin() as session:
            counts, errors = await _apply(session, rows, seen, importer, dry_run)
    except IntegrityError:
        # Someone else took an address meanwhile: import these rows one at a time.
        log.warning("a batch of %s rows conflicted; retrying row by row", len(rows))
        for row in rows:
            try:
                async with sessions.begin() as session:
                    one, errors_one = await _apply(session, [row], seen, importer, dry_run)
            except IntegrityError as exc:
                summary.failed += 1
                summary.errors.append(RowError(row.number, "", f"conflict: {exc.orig}"))
                continue
            _count(summary, one, errors_one)
        return
    _count(summary, counts, errors)


def _count(summary: Summary, counts: dict[str, int], errors: list[RowError]) -> None:
    summary.created += counts["created"]
    summary.updated += counts["updated"]
    summary.unchanged += counts["unchanged"]
    summary.failed += len(errors)
    summary.errors.extend(errors)


async def _owners(session: AsyncSession, rows: Sequence[Row]) -> dict[tuple[str, str], int]:
    owners: dict[tuple[str, str], int] = {}
    for kind in ("email", "phone"):
        addresses = sorted({a for r in rows for k, a in _addresses(r) if k == kind})
        if not addresses:
            continue
        found = await session.execute(
            select(Identity.address, Member.id, Member.merged_into)
            .join(Member, Member.id == Identity.member_id)
            .where(Identity.kind == kind, among(session, Identity.address, addresses))
        )
        owners.update({(kind, address): merged or member for address, member, merged in found})
    return owners


NOT_YET = -1  # in a dry run: a member this file would have created in an earlier batch


async def _apply(
    session: AsyncSession,
    rows: list[Row],
    seen: dict[tuple[str, str], int],
    importer: Importer,
    dry_run: bool,
) -> tuple[dict[str, int], list[RowError]]:
    wanted = {a for row in rows for a in _addresses(row)}
    owners = {a: seen[a] for a in wanted if a in seen}
    owners.update(await _owners(session, rows))
    ids = set(owners.values()) - {NOT_YET}
    current = {
        m.id: m for m in (await session.execute(select(Member).where(Member.id.in_(ids)))).scalars()
    } if ids else {}  # fmt: skip
    labels: dict[int, set[str]] = {i: set() for i in ids}
    if ids:
        for member_id, label in await session.execute(
            select(Label.member_id, Label.label).where(Label.member_id.in_(ids))
        ):
            labels[member_id].add(label)
    plan, counts, errors = _Plan(), {"created": 0, "updated": 0, "unchanged": 0}, []
    pending: dict[tuple[str, str], Row] = {}  # new members' addresses, this batch
    for row in rows:
        addresses = _addresses(row)
        matches = {owners[a] for a in addresses if a in owners}
        if len(matches) > 1:
            first, second = sorted(matches)
            errors.append(
                RowError(row.number, "phone", f"email is member {first}'s, phone member {second}'s")
            )
            continue
        twin = next((pending[a] for a in addresses if a in pending), None)
        if matches == {NOT_YET}:
            counts["updated"] += 1  # dry run: folds into a member an earlier batch created
        elif matches:
            member = current[matches.pop()]
            if row.kind == "anonymous" and member.kind != "anonymous":
                errors.append(
                    RowError(row.number, "kind", "a known member cannot become anonymous")
                )
                continue
            refusal = importer.refuse_member(member, row, plan.changed.get(member.id))
            if refusal is not None:
                errors.append(RowError(row.number, "role", refusal))
                continue
            changed = _changes(member, labels[member.id], row, plan, addresses, owners)
            counts["updated" if changed else "unchanged"] += 1
        elif row.kind == "anonymous":
            why = "anonymous members are made by channels, not imported (an export lists them)"
            errors.append(RowError(row.number, "kind", why))
            continue
        elif twin is not None:
            refusal = importer.refuse_kind(row.kind or twin.kind or "contact",
                                           row.role or twin.role or "contact")  # fmt: skip
            if refusal is not None:
                errors.append(RowError(row.number, "role", refusal))
                continue
            _fold(twin, row)  # the same new person again in this batch: one member
            counts["updated"] += 1
            for address in addresses:
                pending.setdefault(address, twin)
        else:
            refusal = importer.refuse_kind(row.kind or "contact", row.role or "contact")
            if refusal is not None:
                errors.append(RowError(row.number, "role", refusal))
                continue
            plan.new.append(row)
            counts["created"] += 1
            for address in addresses:
                pending[address] = row
    if dry_run:
        for row in plan.new:
            for address in _addresses(row):
                seen[address] = NOT_YET
    else:
        await _write(session, plan, seen)
    return counts, errors


def _addresses(row: Row) -> list[tuple[str, str]]:
    return [(kind, a) for kind, a in (("email", row.email), ("phone", row.phone)) if a]


def _fold(into: Row, row: Row) -> None:
    into.email = into.email or row.email
    into.phone = into.phone or row.phone
    into.name = row.name or into.name
    into.kind = row.kind or into.kind
    into.role = row.role or into.role
    into.labels = sorted(set(into.labels) | set(row.labels))
    into.notify.update(row.notify)
    into.data.update(row.data)


def _new_member(row: Row) -> dict[str, Any]:
    return {
        "kind": row.kind or "contact",
        "role": row.role or "contact",
        "name": row.name,
        "email": row.email,
        "phone": row.phone,
        "data": dict(row.data),
        "notify_sms": row.notify.get("sms", True),
        "notify_email": row.notify.get("email", True),
        "notify_voice": row.notify.get("voice", True),
        "archived": False,
        "created_at": utcnow(),
    }


def _changes(
    member: Member,
    labels: set[str],
    row: Row,
    plan: _Plan,
    addresses: list[tuple[str, str]],
    owners: dict[tuple[str, str], int],
) -> bool:
    """Plan the row's changes to an existing member; whether there are any."""
    values = plan.changed.get(member.id) or {
        "member_id": member.id,
        "name": member.name,
        "kind": member.kind,
        "role": member.role,
        "email": member.email,
        "phone": member.phone,
        "data": dict(member.data or {}),
        "notify_sms": member.notify_sms,
        "notify_email": member.notify_email,
        "notify_voice": member.notify_voice,
    }
    before = {k: (dict(v) if isinstance(v, dict) else v) for k, v in values.items()}
    for key in ("name", "kind", "role"):
        if getattr(row, key) is not None:
            values[key] = getattr(row, key)
    if member.kind == "anonymous" and row.kind is None:
        values["kind"] = "contact"
    values["email"] = values["email"] or row.email
    values["phone"] = values["phone"] or row.phone
    values["data"].update(row.data)
    for channel, flag in row.notify.items():
        values[f"notify_{channel}"] = flag
    changed = _typed(values) != _typed(before)
    if changed:
        plan.changed[member.id] = values
    for kind, address in addresses:
        if (kind, address) not in owners:
            plan.identities.append({"member_id": member.id, "kind": kind, "address": address})
            owners[(kind, address)] = member.id
            changed = True
    new_labels = set(row.labels) - labels
    if new_labels:
        plan.labels.extend({"member_id": member.id, "label": label} for label in sorted(new_labels))
        labels.update(new_labels)
        changed = True
    return changed


def _typed(values: dict[str, Any]) -> str:
    """``values`` compared with their JSON types (``1``, ``1.0`` and ``true`` differ)."""
    return json.dumps(values, sort_keys=True, default=str)


async def _write(session: AsyncSession, plan: _Plan, seen: dict[tuple[str, str], int]) -> None:
    if plan.new:
        ids = await insert_rows(session, Member, [_new_member(row) for row in plan.new])
        for row, member_id in zip(plan.new, ids, strict=True):
            for kind, address in (("email", row.email), ("phone", row.phone)):
                if address:
                    plan.identities.append(
                        {"member_id": member_id, "kind": kind, "address": address}
                    )
                    seen[(kind, address)] = member_id
            plan.labels.extend({"member_id": member_id, "label": label} for label in row.labels)
    if plan.changed:
        members = table_of(Member)
        columns = [c for c in next(iter(plan.changed.values())) if c != "member_id"]
        await session.execute(
            update(members)
            .where(members.c.id == bindparam("member_id"))
            .values({c: bindparam(f"new_{c}") for c in columns}),
            [
                {"member_id": v["member_id"], **{f"new_{c}": v[c] for c in columns}}
                for v in plan.changed.values()
            ],
        )
    if plan.identities:
        await session.execute(insert(table_of(Identity)), plan.identities)
    if plan.labels:
        await session.execute(
            dialect_insert(session, Label).on_conflict_do_nothing(
                index_elements=["member_id", "label"]
            ),
            plan.labels,
        )
    for identity in plan.identities:
        seen[(identity["kind"], identity["address"])] = identity["member_id"]
