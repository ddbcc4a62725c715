"""Web chat frames: what the client may send, and what it gets back for the rest."""

from __future__ import annotations

import json

import pytest

from channels.webchat import ChatText, Hello, new_visitor_id, parse_frame, to_inbound
from store.errors import ValidationFailed


def test_hello_and_message_frames_parse() -> None:
    visitor = new_visitor_id()
    assert parse_frame(json.dumps({"type": "hello", "visitor": None}), 100) == Hello(None)
    assert parse_frame(json.dumps({"type": "hello", "visitor": visitor}), 100) == Hello(visitor)
    frame = parse_frame(json.dumps({"type": "message", "text": "hi", "client_id": "c"}), 100)
    assert frame == ChatText(text="hi", client_id="c")


def test_visitor_ids_are_unguessable_and_distinct() -> None:
    ids = {new_visitor_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(i) >= 24 for i in ids)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("nope", "not JSON"),
        ("[1, 2]", "JSON object"),
        ('{"type": "typing"}', "unknown frame type"),
        ('{"type": "hello", "visitor": 42}', "visitor"),
        ('{"type": "hello", "visitor": "v_short"}', "visitor"),
        ('{"type": "message", "text": "", "client_id": "c"}', "non-empty text"),
        ('{"type": "message", "text": "hi"}', "client_id"),
        ('{"type": "message", "text": "hi", "client_id": "' + "c" * 101 + '"}', "client_id"),
        ('{"type": "message", "text": "' + "x" * 101 + '", "client_id": "c"}', "longer than"),
    ],
)
def test_bad_frames_say_what_is_wrong(raw: str, reason: str) -> None:
    with pytest.raises(ValidationFailed, match=reason):
        parse_frame(raw, 100)


def test_a_message_dedupes_on_visitor_and_client_id() -> None:
    visitor = new_visitor_id()
    message = to_inbound(visitor, ChatText(text="hi", client_id="42"))
    assert message.external_id == f"{visitor}:42"
    assert (message.sender_kind, message.sender, message.inbox) == ("webchat", visitor, "webchat")
