"""Doors and deliveries, with the inputs a review found: JSON nested too deeply or not
strictly JSON at every door, cursors out of range, an operator's reply to a customer who
opted out, a tool answering what the store cannot hold, two rows in doubt with the same
text, and check-config given two files."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from gateway.cli import main
from store import outbox
from store.models import Conversation, Inbound, Outbox, utcnow
from store.payloads import OutboxPayload
from tests.fakes.twilio_api import FakeTwilio, SentSms
from tests.helpers import CUSTOMER, SMS_NUMBER, Api, Gateway, add_member, eventually, receive

DEEP = b"[" * 5000 + b"]" * 5000


@pytest.mark.parametrize("path", ["/api/sessions", "/api/members", "/api/members/search"])
async def test_json_nested_too_deeply_is_a_400_at_the_api(
    sqlite_gateway: Gateway, path: str
) -> None:
    _, token = await add_member(sqlite_gateway, "owner@example.com", kind="team", role="owner")
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}

    response = await sqlite_gateway.client.post(
        path, data=b'{"email": ' + DEEP + b"}", headers=headers
    )

    assert response.status == 400
    assert "error" in await response.json()


async def test_a_web_chat_frame_nested_too_deeply_gets_an_error_frame_and_the_socket_lives(
    sqlite_gateway: Gateway,
) -> None:
    ws = await sqlite_gateway.chat()
    await ws.send_json({"type": "hello", "visitor": None})
    await receive(ws, "welcome")

    await ws.send_str(DEEP.decode())
    error = await receive(ws, "error")
    await ws.send_json({"type": "message", "text": "still there?", "client_id": "c9"})
    ack = await receive(ws, "ack")
    await ws.close()

    assert error["code"] == "bad_frame"
    assert ack["client_id"] == "c9"


async def test_a_page_cursor_beyond_any_id_is_a_400(sqlite_gateway: Gateway) -> None:
    _, token = await add_member(sqlite_gateway, "owner@example.com", kind="team", role="owner")
    status, body = await Api(sqlite_gateway, token).get("/api/members?cursor=99999999999999999999")
    assert status == 400, body


async def test_an_operator_reply_to_a_texter_who_opted_out_is_refused_before_it_is_stored(
    sqlite_gateway: Gateway,
) -> None:
    from tests.escalation.test_live import _operator  # an operator with an API token

    gw = sqlite_gateway
    ann = await _operator(gw, "Ann", "+14155550177")
    await gw.sms("hello, what are your opening hours?")
    await gw.twilio.wait_sent(1)
    await gw.sms("STOP")

    async def both_done() -> bool:
        return await gw.count(Inbound, Inbound.status == "done") == 2

    await eventually(both_done)
    [conversation] = await gw.all(select(Conversation))
    outbox_before = await gw.count(Outbox)

    status, answer = await ann.post(f"/api/conversations/{conversation.id}/reply", {"text": "Hi!"})

    assert status == 409, answer
    assert "opted out" in answer["error"]["message"]
    assert await gw.count(Outbox) == outbox_before


async def test_two_rows_in_doubt_with_the_same_text_do_not_share_the_one_message_sent(
    gateway: Gateway,
) -> None:
    gw = gateway
    earlier = utcnow() - timedelta(seconds=120)
    gw.twilio.sent.append(SentSms(to=CUSTOMER, from_=SMS_NUMBER, body="Anything else?",
                                  status_callback=None, sid="SM" + "b" * 32))  # fmt: skip
    async with gw.services.sessions.begin() as session:
        for key in ("k-a", "k-b"):
            row = outbox.row(key, channel="sms", inbox=SMS_NUMBER, to=CUSTOMER,
                             payload=OutboxPayload(text="Anything else?"), now=earlier)  # fmt: skip
            row.attempts, row.attempted_at = 1, earlier
            row.lease_until = earlier + timedelta(seconds=1)  # a send that was never recorded
            session.add(row)
    gw.services.deliverer.wake()

    async def both_sent() -> bool:
        return await gw.count(Outbox, Outbox.status == "sent") == 2

    await eventually(both_sent)
    ids = {r.provider_id for r in await gw.all(select(Outbox))}

    assert len(gw.twilio.sent) == 2
    assert len(ids) == 2


def test_check_config_given_two_different_files_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = Path(__file__).parent.parent / "fixtures" / "smallest.yaml"
    bad = tmp_path / "bad.yaml"
    bad.write_text("workspace: 7\n")

    code = main(["check-config", str(good), "--config", str(bad)])

    assert code == 2
    assert "two files given" in capsys.readouterr().err


async def test_a_model_reply_with_a_nul_is_stored_and_sent_without_it(
    sqlite_url: str, twilio: tuple[FakeTwilio, str]
) -> None:
    from agents.base import TurnInput, TurnResult
    from agents.runtime import Runtime
    from tests.helpers import make_settings

    class Nul(Runtime):
        async def run_turn(self, agent: str, turn: TurnInput) -> TurnResult:
            return TurnResult(replies=["we are \x00open"])

    fake, base = twilio
    settings = make_settings(sqlite_url, twilio_base=base)
    async with Gateway.running(settings, fake, runtime=Nul(settings.agents, "x")) as gw:
        await gw.sms("hello")
        [sent] = await fake.wait_sent(1)

    assert sent.body == "we are open"
