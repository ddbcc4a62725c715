"""A process killed with SIGKILL loses nothing: after a restart every acknowledged message
is answered, once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
import pytest
from sqlalchemy import func, select

from store.engine import create_engine, session_factory
from store.models import Inbound, Outbox
from tests.fakes.twilio_api import FakeTwilio
from tests.helpers import CUSTOMER, eventually, make_config, sms_form, twilio_signature
from tests.process import ServeProcess

SMS_PATH = "/channels/twilio/sms"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def _text(
    http: aiohttp.ClientSession, server: ServeProcess, body: str, sender: str = CUSTOMER
) -> int:
    form = sms_form(body, from_=sender)
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": twilio_signature(SMS_PATH, form),
    }
    async with http.post(server.url + SMS_PATH, data=urlencode(form), headers=headers) as r:
        return r.status


async def _counts(database_url: str) -> tuple[int, int, int]:
    engine = create_engine(database_url)
    try:
        async with session_factory(engine)() as session:
            pending = await session.execute(
                select(func.count()).select_from(Inbound).where(Inbound.status == "pending")
            )
            sent = await session.execute(
                select(func.count()).select_from(Outbox).where(Outbox.status == "sent")
            )
            rows = await session.execute(select(func.count()).select_from(Outbox))
            return pending.scalar_one(), sent.scalar_one(), rows.scalar_one()
    finally:
        await engine.dispose()


async def test_killed_after_ack_before_processing_answers_once_after_restart(
    database_url: str, twilio: tuple[FakeTwilio, str], tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    fake, base = twilio
    accept_only = make_config(database_url, twilio_base=base, workers=0)
    server = await ServeProcess.start(accept_only, tmp_path / "a.yaml")
    assert await _text(http, server, "Where are you located?") == 200
    await server.kill()
    assert await _counts(database_url) == (1, 0, 0)  # stored, not processed, nothing sent

    restarted = await ServeProcess.start(
        make_config(database_url, twilio_base=base, workers=2), tmp_path / "b.yaml"
    )
    try:
        [sent] = await fake.wait_sent(1, timeout=20)
    finally:
        await restarted.stop()

    assert sent.to == CUSTOMER
    assert "Main Street" in sent.body
    assert await _counts(database_url) == (0, 1, 1)
    assert len(fake.sent) == 1


async def test_killed_while_sending_resends_once_when_the_lease_runs_out(
    database_url: str, twilio: tuple[FakeTwilio, str], tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    fake, base = twilio
    fake.script.append("hang")  # the first send never completes: the process dies meanwhile
    config = make_config(database_url, twilio_base=base, gateway={"outbox_lease_seconds": 1.0})
    config["channels"]["sms"]["timeout_seconds"] = 30.0
    server = await ServeProcess.start(config, tmp_path / "a.yaml")
    assert await _text(http, server, "Do you accept insurance?") == 200
    await fake.wait_requests(1, timeout=20)
    await server.kill()
    assert fake.sent == []

    restarted = await ServeProcess.start(config, tmp_path / "b.yaml")
    try:
        [sent] = await fake.wait_sent(1, timeout=20)
    finally:
        await restarted.stop()

    assert "insurance" in sent.body
    assert fake.requests == 2
    assert await _counts(database_url) == (0, 1, 1)


async def _sent_rows(database_url: str) -> int:
    return (await _counts(database_url))[1]


async def test_killed_mid_batch_of_sends_sends_each_reply_once_after_restart(
    database_url: str, twilio: tuple[FakeTwilio, str], tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """Six sends are taken by Twilio but their answers never come back (the process dies
    meanwhile): after the restart Twilio is asked, and they are recorded, not re-sent."""
    fake, base = twilio
    customers = [f"+1415555{2000 + i}" for i in range(12)]
    fake.script.extend([None] * 3 + ["taken"] * 6)  # six slots, all hung on a taken send
    config = make_config(
        database_url, twilio_base=base, workers=6, gateway={"outbox_lease_seconds": 1.0}
    )
    config["channels"]["sms"]["timeout_seconds"] = 30.0
    server = await ServeProcess.start(config, tmp_path / "a.yaml")
    for customer in customers:
        assert await _text(http, server, "Do you accept insurance?", customer) == 200
    await fake.wait_sent(9, timeout=20)
    await server.kill()

    restarted = await ServeProcess.start(config, tmp_path / "b.yaml")
    try:
        await eventually(lambda: _has_sent(database_url, len(customers)), timeout=30)
    finally:
        await restarted.stop()

    assert sorted(s.to for s in fake.sent) == sorted(customers)  # each once, none twice
    assert fake.lookups >= 6
    assert await _counts(database_url) == (0, len(customers), len(customers))


async def _has_sent(database_url: str, count: int) -> bool:
    return await _sent_rows(database_url) >= count
