"""Two gateway processes on one PostgreSQL and one Redis serve one workspace."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from tests.fakes.twilio_api import FakeTwilio
from tests.helpers import make_config
from tests.process import ServeProcess

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


async def test_web_chat_reply_produced_on_b_reaches_the_socket_on_a(
    postgres_url: str, redis_url: str, twilio: tuple[FakeTwilio, str], tmp_path: Path
) -> None:
    _, base = twilio
    # A only accepts (no workers): any reply its socket receives was produced by B.
    a = await ServeProcess.start(
        make_config(postgres_url, twilio_base=base, redis_url=redis_url, workers=0),
        tmp_path / "a.yaml",
    )
    b = await ServeProcess.start(
        make_config(postgres_url, twilio_base=base, redis_url=redis_url, workers=4),
        tmp_path / "b.yaml",
    )
    try:
        async with aiohttp.ClientSession() as http, http.ws_connect(a.url + "/webchat/ws") as ws:
            await ws.send_json({"type": "hello", "visitor": None})
            welcome = await ws.receive_json(timeout=10)
            await ws.receive_json(timeout=10)  # history
            await ws.send_json({"type": "message", "text": "opening hours?", "client_id": "1"})
            ack = await ws.receive_json(timeout=10)
            reply = await ws.receive_json(timeout=20)
    finally:
        await a.stop()
        await b.stop()

    assert welcome["type"] == "welcome"
    assert ack == {"type": "ack", "client_id": "1"}
    assert reply["type"] == "message"
    assert "8am to 6pm" in reply["text"]
