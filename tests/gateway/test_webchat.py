"""The web chat socket: DESIGN §5's protocol, replies, reconnects and bad frames."""

from __future__ import annotations

import json

from aiohttp import WSMsgType
from sqlalchemy import select

from store.models import Identity, Inbound, Member, Message
from tests.helpers import Gateway, receive


async def _hello(ws, visitor: str | None = None) -> dict:  # type: ignore[no-untyped-def]
    await ws.send_json({"type": "hello", "visitor": visitor})
    return await receive(ws, "welcome")


async def test_visitor_says_hello_asks_and_gets_the_agents_answer(gateway: Gateway) -> None:
    ws = await gateway.chat()
    welcome = await _hello(ws)
    await ws.send_json({"type": "message", "text": "When are you open?", "client_id": "c1"})

    ack = await receive(ws, "ack")
    reply = await receive(ws, "message")

    assert welcome["visitor"].startswith("v_")
    assert welcome["conversation"]
    assert ack == {"type": "ack", "client_id": "c1"}
    assert reply["author"] == "agent"
    assert reply["name"] == "receptionist"
    assert "8am to 6pm" in reply["text"]
    [member] = await gateway.all(select(Member))
    assert member.kind == "anonymous"
    [identity] = await gateway.all(select(Identity))
    assert (identity.kind, identity.address) == ("webchat", welcome["visitor"])
    await ws.close()


async def test_reconnecting_visitor_continues_the_same_conversation(gateway: Gateway) -> None:
    first = await gateway.chat()
    welcome = await _hello(first)
    await first.send_json({"type": "message", "text": "Where are you located?", "client_id": "a"})
    await receive(first, "message")
    await first.close()

    second = await gateway.chat()
    again = await _hello(second, welcome["visitor"])
    history = await receive(second, "history")
    await second.send_json({"type": "message", "text": "thanks!", "client_id": "b"})
    reply = await receive(second, "message")

    assert again == welcome
    assert [(m["author"], m["text"][:22]) for m in history["messages"]] == [
        ("member", "Where are you located?"),
        ("agent", "12 Main Street, Spring"),
    ]
    assert "welcome" in reply["text"]
    assert await gateway.count(Member) == 1
    await second.close()


async def test_unknown_visitor_id_gets_a_new_visitor(gateway: Gateway) -> None:
    ws = await gateway.chat()
    welcome = await _hello(ws, "v_" + "x" * 24)

    assert welcome["visitor"] != "v_" + "x" * 24
    await ws.close()


async def test_resent_message_with_same_client_id_is_stored_once(gateway: Gateway) -> None:
    ws = await gateway.chat()
    await _hello(ws)
    frame = {"type": "message", "text": "Do you accept insurance?", "client_id": "same"}
    await ws.send_json(frame)
    await ws.send_json(frame)
    kinds = [(await ws.receive_json(timeout=10))["type"] for _ in range(4)]

    assert sorted(kinds) == ["ack", "ack", "history", "message"]
    assert await gateway.count(Inbound) == 1
    assert await gateway.count(Message, Message.direction == "in") == 1
    await ws.close()


async def _error_then_still_usable(gateway: Gateway, raw: str) -> dict:  # type: ignore[type-arg]
    ws = await gateway.chat()
    await ws.send_str(raw)
    error = await receive(ws, "error")
    welcome = await _hello(ws)  # the socket still works
    assert welcome["visitor"]
    await ws.close()
    return error


async def test_malformed_json_gets_an_error_frame_and_socket_stays_usable(
    gateway: Gateway,
) -> None:
    error = await _error_then_still_usable(gateway, "{not json")
    assert error["code"] == "bad_frame"
    assert "not JSON" in error["message"]


async def test_unknown_frame_type_gets_an_error_frame(gateway: Gateway) -> None:
    error = await _error_then_still_usable(gateway, json.dumps({"type": "subscribe"}))
    assert "unknown frame type" in error["message"]


async def test_visitor_id_in_a_foreign_format_gets_an_error_frame(gateway: Gateway) -> None:
    raw = json.dumps({"type": "hello", "visitor": "+14155551234"})
    error = await _error_then_still_usable(gateway, raw)
    assert "visitor" in error["message"]
    assert await gateway.count(Identity) == 1  # only the hello that followed


async def test_message_before_hello_is_refused(gateway: Gateway) -> None:
    raw = json.dumps({"type": "message", "text": "hi", "client_id": "x"})
    error = await _error_then_still_usable(gateway, raw)
    assert error["code"] == "no_hello"
    assert await gateway.count(Inbound) == 0


async def test_hundred_kilobyte_message_gets_an_error_and_is_not_stored(
    gateway: Gateway,
) -> None:
    ws = await gateway.chat()
    await _hello(ws)
    await ws.send_json({"type": "message", "text": "x" * 100_000, "client_id": "big"})

    error = await receive(ws, "error")
    await ws.send_json({"type": "message", "text": "hello", "client_id": "small"})
    ack = await receive(ws, "ack")

    assert "longer than" in error["message"]
    assert ack["client_id"] == "small"
    assert await gateway.count(Inbound) == 1
    await ws.close()


async def test_frame_over_the_size_limit_closes_the_socket_cleanly(gateway: Gateway) -> None:
    ws = await gateway.chat()
    await ws.send_str("x" * (300 * 1024))

    msg = await ws.receive(timeout=5)

    assert msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING)
    assert ws.close_code == 1009
    assert (await gateway.client.get("/healthz")).status == 200
    fresh = await gateway.chat()
    assert (await _hello(fresh))["visitor"]
    await fresh.close()


async def test_binary_frame_gets_an_error_frame(gateway: Gateway) -> None:
    ws = await gateway.chat()
    await ws.send_bytes(b"\x00\x01")
    error = await receive(ws, "error")
    assert error["code"] == "bad_frame"
    await ws.close()


async def test_widget_page_is_served_with_the_configured_title(gateway: Gateway) -> None:
    response = await gateway.client.get("/webchat")
    assert response.status == 200
    page = await response.text()
    assert "<title>Chat with us</title>" in page
    assert "/ws" in page
