"""Member filters over 1,000,000 members on PostgreSQL: latency and the indexes the plan uses.

Loads N generated members (COPY) with labels, three data fields, preferences and a last
activity spread over a year into a fresh database, then times each filter below through the
statement ``POST /api/members/search`` runs (the first page of 50, ordered by id) and a
``count(*)`` of every match, and prints p50/p95 and the indexes in each plan (EXPLAIN).

    .venv/bin/python benchmarks/filters.py [--members 1000000] [--postgres URL]

The labels are skewed: ``vip`` is on ~2% of members (a selective label), ``family`` on ~25%.
Target: p50 < 200 ms for the DESIGN §6 example and a label-only filter.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncSession

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.api.members import SearchBody, search_statement
from people.filters import compile_filter
from store.engine import create_engine, session_factory
from store.migrate import upgrade_sync
from store.models import Member

EXAMPLE = {"all": [
    {"label": "vip"},
    {"any": [
        {"field": "data.plan", "op": "eq", "value": "gold"},
        {"field": "last_active", "op": "within", "value": "7d"},
    ]},
    {"not": {"field": "notify.sms", "op": "eq", "value": False}},
]}  # fmt: skip
FILTERS: dict[str, dict[str, Any]] = {
    "DESIGN §6 example": EXAMPLE,
    "label vip (~2%)": {"label": "vip"},
    "label family (~25%)": {"label": "family"},
    "data.plan eq platinum": {"field": "data.plan", "op": "eq", "value": "platinum"},
}
COMMON_LABELS = ["gold", "new", "dental", "ortho", "late", "referral"]
PLANS = ["basic", "gold", "platinum"]
RUNS = 25


def _members(count: int, now: datetime) -> Iterator[tuple[Any, ...]]:
    rng = random.Random(11)
    for i in range(count):
        active = now - timedelta(minutes=rng.randrange(365 * 24 * 60))
        yield (
            "contact", f"Member {i}", f"member{i}@example{i % 97}.com", f"+1415{i:07d}",
            "contact", json.dumps({"plan": rng.choice(PLANS), "city": f"City {i % 500}",
                                   "seats": rng.randint(1, 50)}),
            rng.random() < 0.5, True, rng.random() < 0.5, False, now - timedelta(days=400),
            active,
        )  # fmt: skip


def _labels(count: int) -> Iterator[tuple[int, str]]:
    rng = random.Random(13)
    for member_id in range(1, count + 1):
        chosen = set(rng.sample(COMMON_LABELS, rng.randint(0, 2)))
        if rng.random() < 0.02:
            chosen.add("vip")
        if rng.random() < 0.25:
            chosen.add("family")
        for label in sorted(chosen):
            yield member_id, label


async def load(url: str, count: int) -> None:
    connection = await asyncpg.connect(url)
    now = datetime.now(UTC)
    started = time.perf_counter()
    await connection.copy_records_to_table(
        "members", records=_members(count, now),
        columns=["kind", "name", "email", "phone", "role", "data", "notify_sms", "notify_email",
                 "notify_voice", "archived", "created_at", "last_active_at"],
    )  # fmt: skip
    await connection.copy_records_to_table(
        "member_labels", records=_labels(count), columns=["member_id", "label"]
    )
    await connection.execute("ANALYZE members; ANALYZE member_labels")
    took = time.perf_counter() - started
    labels = await connection.fetchval("SELECT count(*) FROM member_labels")
    print(f"loaded {count} members and {labels} labels in {took:.0f} s")
    await connection.close()


def _indexes(plan: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(plan, dict):
        if "Index Name" in plan:
            found.add(plan["Index Name"])
        for value in plan.values():
            found |= _indexes(value)
    elif isinstance(plan, list):
        for value in plan:
            found |= _indexes(value)
    return found


async def _time(session: AsyncSession, statement: Any) -> tuple[float, float, Any]:
    """p50 and p95 in ms of ``statement``, its last result, after one warm-up run."""
    result = (await session.execute(statement)).all()
    took = []
    for _ in range(RUNS):
        started = time.perf_counter()
        result = (await session.execute(statement)).all()
        took.append((time.perf_counter() - started) * 1000)
    took.sort()
    return statistics.median(took), took[int(len(took) * 0.95) - 1], result


_sent: list[tuple[str, Any]] = []  # the SQL and parameters the driver was last given


def _record(conn: Any, cursor: Any, sql: str, params: Any, context: Any, many: bool) -> None:
    _sent[:] = [(sql, params)]


async def _plan(session: AsyncSession, statement: Any) -> str:
    """The indexes in PostgreSQL's plan for ``statement``, with its real bound values."""
    await session.execute(statement)
    sql, params = _sent[0]
    connection = await session.connection()
    raw = await connection.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {sql}", params)
    plan = raw.scalar_one()
    return ", ".join(sorted(_indexes(json.loads(plan) if isinstance(plan, str) else plan)))


async def measure(url: str) -> None:
    engine = create_engine(url)
    event.listen(engine.sync_engine, "before_cursor_execute", _record)
    sessions = session_factory(engine)
    print(f"{'filter':24} {'query':10} {'p50 ms':>8} {'p95 ms':>8} {'rows':>8}  indexes")
    async with sessions() as session:
        for name, raw in FILTERS.items():
            page = search_statement(SearchBody(filter=raw, limit=50), "postgresql")
            counting = (
                select(func.count())
                .select_from(Member)
                .where(compile_filter(raw, "postgresql").condition)
            )
            for kind, statement in (("page of 50", page), ("count", counting)):
                p50, p95, result = await _time(session, statement)
                rows = result[0][0] if kind == "count" else len(result)
                verdict = "" if p50 < 200 else "  (over the 200 ms target)"
                print(f"{name:24} {kind:10} {p50:8.1f} {p95:8.1f} {rows:8}  "
                      f"{await _plan(session, statement)}{verdict}")  # fmt: skip
    await engine.dispose()


async def main(count: int, admin_url: str) -> None:
    admin = await asyncpg.connect(admin_url)
    await admin.execute('DROP DATABASE IF EXISTS "fd_bench_filters"')
    await admin.execute('CREATE DATABASE "fd_bench_filters"')
    await admin.close()
    raw_url = admin_url.rsplit("/", 1)[0] + "/fd_bench_filters"
    url = raw_url.replace("postgresql://", "postgresql+asyncpg://")
    await asyncio.to_thread(upgrade_sync, url)
    await load(raw_url, count)
    await measure(url)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument(
        "--postgres", default="postgresql://postgres@127.0.0.1/test",
        help="admin URL; a database fd_bench_filters is created beside it",
    )  # fmt: skip
    args = parser.parse_args()
    asyncio.run(main(args.members, args.postgres))
