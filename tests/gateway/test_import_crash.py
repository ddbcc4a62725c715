"""An import whose process died does not stay "running": it is marked failed with what it
had done, by the next gateway's start-up, its sweeper, or when someone reads it."""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select, update

from people import credentials, directory
from store.engine import create_engine, session_factory
from store.models import Import, Member, utcnow
from tests.fakes.twilio_api import FakeTwilio
from tests.helpers import Api, Gateway, add_member, eventually, make_config
from tests.process import ServeProcess

ROWS = 60_000


async def _owner_token(database_url: str) -> str:
    engine = create_engine(database_url)
    try:
        async with session_factory(engine).begin() as session:
            fields = directory.MemberFields(email="owner@example.com", kind="team", role="owner")
            member = await directory.create(session, fields, "US")
            return await credentials.create_token(session, member, "test")
    finally:
        await engine.dispose()


async def _import_row(database_url: str) -> Import:
    engine = create_engine(database_url)
    try:
        async with session_factory(engine)() as session:
            return (await session.execute(select(Import))).scalar_one()
    finally:
        await engine.dispose()


async def test_an_import_killed_mid_way_is_marked_failed_with_what_it_did(
    database_url: str, twilio: tuple[FakeTwilio, str], tmp_path: Path
) -> None:
    config = make_config(
        database_url, twilio_base=twilio[1], people={"import_heartbeat_seconds": 0.25,
                                                     "import_dir": str(tmp_path / "imports")},
    )  # fmt: skip
    token = await _owner_token(database_url)
    headers = {"Authorization": f"Bearer {token}"}
    body = "email,name\r\n" + "".join(f"m{i}@example.com,M {i}\r\n" for i in range(ROWS))
    server = await ServeProcess.start(config, tmp_path / "a.yaml")
    try:
        async with aiohttp.ClientSession(headers=headers) as http:
            async with http.post(
                server.url + "/api/imports",
                data=io.BytesIO(body.encode()),
                headers={"Content-Type": "text/csv"},
            ) as response:
                assert response.status == 202, await response.text()
                import_id = (await response.json())["id"]

            async def importing() -> bool:
                async with http.get(f"{server.url}/api/imports/{import_id}") as r:
                    report: dict[str, Any] = await r.json()
                assert report["status"] != "done", "the import finished before the kill"
                return bool(report["status"] == "running" and report["processed"] > 0)

            await eventually(importing, timeout=60)
    finally:
        await server.kill()
    left = await _import_row(database_url)
    assert left.status == "running"  # as the crash left it

    restarted = await ServeProcess.start(config, tmp_path / "b.yaml")
    try:

        async def resolved() -> bool:
            return (await _import_row(database_url)).status == "failed"

        await eventually(resolved, timeout=20)  # nobody asked: the start-up or the sweeper
    finally:
        await restarted.stop()
    record = await _import_row(database_url)
    assert record.message is not None
    assert record.message.startswith("interrupted")
    assert record.finished_at is not None
    assert 0 < record.processed < ROWS
    assert record.created >= left.created  # what it had done is kept, and said
    engine = create_engine(database_url)
    try:
        async with session_factory(engine)() as session:
            members = await session.scalars(select(Member.id).where(Member.email != "x"))
            assert len(list(members)) - 1 >= record.created  # the owner, and what was created
    finally:
        await engine.dispose()


@pytest.fixture
async def owner(gateway: Gateway) -> Api:
    _, token = await add_member(gateway, "owner@example.com", kind="team", role="owner")
    return Api(gateway, token)


async def test_a_running_import_with_a_stale_heartbeat_is_failed_when_read(owner: Api) -> None:
    now = utcnow()
    async with owner.gw.services.sessions.begin() as session:
        stale = Import(
            status="running",
            total=10,
            processed=4,
            created=3,
            failed=1,
            created_at=now - timedelta(hours=1),
            heartbeat_at=now - timedelta(minutes=5),
        )
        queued = Import(status="queued", created_at=now - timedelta(hours=1))  # never started
        alive = Import(status="running", total=10, processed=2, created_at=now, heartbeat_at=now)
        session.add_all([stale, queued, alive])
    ids = [stale.id, queued.id, alive.id]  # fmt: skip

    reports = [(await owner.get(f"/api/imports/{i}"))[1] for i in ids]

    assert [r["status"] for r in reports] == ["failed", "failed", "running"]
    assert reports[0]["message"].startswith("interrupted")
    assert (reports[0]["processed"], reports[0]["created"], reports[0]["failed"]) == (4, 3, 1)
    assert reports[0]["finished_at"] is not None


async def test_an_import_given_up_while_it_still_runs_stays_failed(owner: Api) -> None:
    from gateway.api.imports import ImportGivenUp, _save
    from people.imports import Summary

    async with owner.gw.services.sessions.begin() as session:
        record = Import(status="running", created_at=utcnow() - timedelta(hours=1))
        session.add(record)
    async with owner.gw.services.sessions.begin() as session:
        await session.execute(update(Import).values(status="failed"))
    with pytest.raises(ImportGivenUp):
        async with owner.gw.services.sessions.begin() as session:
            await _save(session, record.id, Summary(processed=9), "running", [])
    assert (await owner.get(f"/api/imports/{record.id}"))[1]["status"] == "failed"
