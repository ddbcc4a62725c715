"""Live routing on PostgreSQL and Redis: 200 live operators, 10,000 handoffs.

Operators finish conversations as new ones arrive (each holds about three of five seats;
the closing is outside the timed part). Each handoff is routed the way the gateway
routes a new one (``Live.route_queued``): who
is live (one Redis round trip), the operators of the groups that handle it with their
role and load (PostgreSQL), and the conditional offer (row lock, recount, UPDATE). The
decision's p50/p99 are printed beside a bare Redis round trip (PING) and a bare
PostgreSQL round trip (``SELECT 1``) measured in the same run, and as ratios to them.

    .venv/bin/python benchmarks/routing.py [--operators 200] [--handoffs 10000]
        [--postgres URL] [--redis URL]

Target: p99 under 5 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import redis.asyncio as redis
from sqlalchemy import func, select, text, update

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from escalation.presence import RedisPresence
from gateway.live import Live
from gateway.settings import from_mapping
from store.engine import create_engine, insert_rows, session_factory
from store.migrate import upgrade_sync
from store.models import Conversation, Handoff, Member, utcnow

DATABASE = "fd_bench_routing"
HELD = 3  # conversations each operator holds in the steady state (capacity 5)


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _round_trips(call: Any, n: int = 2000) -> list[float]:
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


async def main(operators: int, handoffs: int, admin_url: str, redis_url: str) -> None:
    admin = await asyncpg.connect(admin_url)
    await admin.execute(f'DROP DATABASE IF EXISTS "{DATABASE}"')
    await admin.execute(f'CREATE DATABASE "{DATABASE}"')
    await admin.close()
    url = admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    url += f"/{DATABASE}"
    await asyncio.to_thread(upgrade_sync, url)
    settings = from_mapping({
        "workspace": {"name": "Bench"},
        "storage": {"database_url": url, "redis_url": redis_url},
        "channels": {"webchat": {"agent": "receptionist"}},
        "agents": [{"name": "receptionist", "bio": "Bench."}],
        "escalation": {"operators": {"enabled": True, "groups": [
            {"name": "front", "role": "operator", "capacity": 5}]}},
    }, env={})  # fmt: skip
    engine = create_engine(url, pool_size=4)
    sessions = session_factory(engine)
    client = redis.Redis.from_url(redis_url)
    await client.flushdb()
    now = utcnow()
    async with sessions.begin() as session:
        team = await insert_rows(
            session,
            Member,
            [
                {
                    "kind": "team",
                    "name": f"Operator {i}",
                    "email": f"op{i}@example.com",
                    "role": "operator",
                    "data": {},
                    "created_at": now,
                }
                for i in range(operators)
            ],
        )
        customers = await insert_rows(
            session,
            Member,
            [
                {"kind": "contact", "role": "contact", "data": {}, "created_at": now}
                for _ in range(handoffs)
            ],
        )
        chats = await insert_rows(
            session,
            Conversation,
            [
                {
                    "member_id": c,
                    "channel": "webchat",
                    "inbox": "+14155550100",
                    "status": "queued",
                    "data": {},
                    "created_at": now,
                    "updated_at": now,
                }
                for c in customers
            ],
        )
        ids = await insert_rows(session, Handoff, [
            {"conversation_id": c, "reason": "bench", "trigger": "bench", "status": "open",
             "created_at": now} for c in chats])  # fmt: skip
    async with engine.connect() as conn:  # as autovacuum would have by now
        await conn.execute(text("ANALYZE"))
    presence = RedisPresence(client, ttl=600)
    for member_id in team:
        await presence.go_live(member_id)

    async def noop_notify(*_: Any) -> None:
        raise AssertionError("nobody should be notified: everyone is live with room")

    live = Live(sessions, settings, presence, noop_notify, lambda: None)
    redis_rtt = await _round_trips(client.ping)

    async def select_one() -> None:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    pg_rtt = await _round_trips(select_one)
    decisions = []
    held = operators * HELD
    for i, handoff_id in enumerate(ids):
        started = time.perf_counter()
        await live.route_queued([handoff_id])
        decisions.append((time.perf_counter() - started) * 1000)
        if i >= held:  # steady state: operators finish conversations as new ones arrive
            async with sessions.begin() as session:
                await session.execute(
                    update(Handoff).where(Handoff.id == ids[i - held]).values(status="closed")
                )
    async with sessions() as session:
        offered = await session.execute(
            select(func.count()).select_from(Handoff).where(Handoff.operator_id.is_not(None))
        )
        spread = await session.execute(
            select(func.count())
            .select_from(Handoff)
            .where(Handoff.status == "open")
            .group_by(Handoff.operator_id)
        )
        per_operator = [int(n) for n in spread.scalars()]
    await client.flushdb()
    await client.aclose()
    await engine.dispose()

    print(f"{operators} live operators, {handoffs} handoffs routed one by one")
    print(f"offered: {offered.scalar_one()}; open per operator at the end: "
          f"{min(per_operator)}-{max(per_operator)} (capacity 5)")  # fmt: skip
    r50, r99 = _pct(redis_rtt, 0.5), _pct(redis_rtt, 0.99)
    p50, p99 = _pct(pg_rtt, 0.5), _pct(pg_rtt, 0.99)
    d50, d99 = _pct(decisions, 0.5), _pct(decisions, 0.99)
    print(f"bare Redis round trip       p50 {r50:.3f} ms  p99 {r99:.3f} ms")
    print(f"bare PostgreSQL round trip  p50 {p50:.3f} ms  p99 {p99:.3f} ms")
    print(f"routing decision            p50 {d50:.3f} ms  p99 {d99:.3f} ms  "
          f"(mean {statistics.fmean(decisions):.3f})")  # fmt: skip
    print(f"ratio to Redis round trip   p50 {d50 / r50:.1f}x  p99 {d99 / r99:.1f}x")
    print(f"ratio to PostgreSQL trip    p50 {d50 / p50:.1f}x  p99 {d99 / p99:.1f}x")
    print(f"target p99 < 5 ms: {'met' if d99 < 5 else 'MISSED'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--operators", type=int, default=200)
    parser.add_argument("--handoffs", type=int, default=10_000)
    parser.add_argument(
        "--postgres",
        default="postgresql://postgres@127.0.0.1/test",
        help=f"admin URL; a database {DATABASE} is created beside it",
    )
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/14")
    args = parser.parse_args()
    asyncio.run(main(args.operators, args.handoffs, args.postgres, args.redis))
