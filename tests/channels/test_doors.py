"""NUL characters are refused at every door, with the door's own way of saying no (a 400,
an SMTP 5xx, a WebSocket error frame), and nothing is stored (README: PostgreSQL cannot
store NUL; SQLite and the mail parser cut text at one without a word)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import smtplib
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import pytest
from aiohttp import ClientResponse

from channels.email import EmailChannel
from gateway.settings import from_mapping
from store.models import Inbound, Message
from tests.channels.test_voice import _form
from tests.fakes.smtp_sink import SmtpSink
from tests.fakes.twilio_api import FakeTwilio
from tests.helpers import SMS_NUMBER, Gateway, make_config, receive

MAIL_SECRET = "inbound-secret-0123456789"
SLACK_SECRET = "slack-signing-secret-0123456789"
INBOX = "support@example.com"


@pytest.fixture
async def doors(
    database_url: str, twilio: tuple[FakeTwilio, str], sink: SmtpSink
) -> AsyncIterator[Gateway]:
    """Every channel at once: SMS, voice, web chat, email (SMTP and webhook) and Slack."""
    raw = make_config(database_url, twilio_base=twilio[1])
    raw["channels"]["voice"] = {"numbers": [SMS_NUMBER], "agent": "receptionist"}
    raw["channels"]["email"] = {
        "inboxes": [{"address": INBOX, "agent": "receptionist"}],
        "smtp_listen": {"host": "127.0.0.1", "port": 0}, "inbound_secret": MAIL_SECRET,
        "smtp": {"host": "127.0.0.1", "port": sink.port, "starttls": False},
    }  # fmt: skip
    raw["channels"]["slack"] = {"bot_token": "xoxb-test", "signing_secret": SLACK_SECRET,
                                "handoff_channel": "C0HANDOFF", "agent": "receptionist",
                                "api_base_url": "http://127.0.0.1:9/api/"}  # fmt: skip
    async with Gateway.running(from_mapping(raw, env={}), twilio[0]) as gw:
        yield gw


async def _nothing_stored(gw: Gateway) -> None:
    assert (await gw.count(Inbound), await gw.count(Message)) == (0, 0)


def _mail(headers: str = "Subject: Hours", body: bytes = b"What are your hours?") -> bytes:
    top = f"From: Ann <ann@example.org>\r\nTo: {INBOX}\r\nMessage-ID: <m1@example.org>\r\n"
    return (top + headers + "\r\n\r\n").encode() + body + b"\r\n"


QP = "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable"
B64 = "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64"
MAILS = {
    "raw-body": _mail(body=b"What are\x00 your hours?"),
    "quoted-printable-body": _mail(f"Subject: Hours\r\n{QP}", b"What are=00 your hours?"),
    "base64-body": _mail(f"Subject: Hours\r\n{B64}", b"aGkAdGhlcmU="),
    "raw-subject": _mail("Subject: Hou\x00rs"),
    "encoded-subject": _mail("Subject: =?utf-8?q?Hou=00rs?="),
    "encoded-from-name": _mail("Subject: Hours\r\nReply-To: =?utf-8?b?QQBubg==?= <a@example.org>"),
    "other-header": _mail("Subject: Hours\r\nX-Note: a\x00b"),
    "attachment-name": _mail(
        'Subject: Hours\r\nContent-Type: multipart/mixed; boundary="b"',
        b"--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b\r\nContent-Type: application/pdf\r\n"
        b"Content-Disposition: attachment; filename*=utf-8''a%00b.pdf\r\n\r\nxx\r\n--b--",
    ),
}


@pytest.mark.parametrize("mail", MAILS.values(), ids=MAILS.keys())
async def test_mail_with_a_nul_is_refused_over_smtp_with_a_5xx(doors: Gateway, mail: bytes) -> None:
    def send() -> None:
        with smtplib.SMTP("127.0.0.1", _smtp_port(doors), timeout=10) as client:
            client.sendmail("ann@example.org", [INBOX], mail)

    with pytest.raises(smtplib.SMTPDataError) as refused:
        await asyncio.to_thread(send)
    assert refused.value.smtp_code == 554
    assert b"NUL" in refused.value.smtp_error
    await _nothing_stored(doors)


@pytest.mark.parametrize("mail", MAILS.values(), ids=MAILS.keys())
async def test_mail_with_a_nul_is_refused_on_the_webhook_with_a_400(
    doors: Gateway, mail: bytes
) -> None:
    response = await doors.client.post("/channels/email/inbound", data=mail, headers={
        "Content-Type": "message/rfc822", "X-Frontdesk-Secret": MAIL_SECRET})  # fmt: skip
    await _refused(response)
    await _nothing_stored(doors)


@pytest.mark.parametrize("command", ["mail", "rcpt"])
async def test_an_smtp_address_with_a_nul_is_refused(doors: Gateway, command: str) -> None:
    def send() -> tuple[int, bytes]:
        with smtplib.SMTP("127.0.0.1", _smtp_port(doors), timeout=10) as client:
            client.ehlo()
            if command == "mail":
                return client.mail("ann\x00@example.org")
            client.mail("ann@example.org")
            return client.rcpt("support\x00@example.com")

    code, said = await asyncio.to_thread(send)
    assert (code, b"NUL" in said) == (553, True)


async def test_a_nul_is_still_accepted_nowhere_once_the_mail_is_fine(doors: Gateway) -> None:
    """The same mail without the NUL is taken at both doors (the refusals are the NUL's)."""
    response = await doors.client.post("/channels/email/inbound", data=_mail(), headers={
        "Content-Type": "message/rfc822", "X-Frontdesk-Secret": MAIL_SECRET})  # fmt: skip
    assert response.status == 200
    assert await doors.count(Inbound) == 1


def _slack(body: bytes, content_type: str = "application/json") -> dict[str, str]:
    stamp = str(int(time.time()))
    digest = hmac.new(SLACK_SECRET.encode(), b"v0:" + stamp.encode() + b":" + body, hashlib.sha256)
    return {"Content-Type": content_type, "X-Slack-Request-Timestamp": stamp,
            "X-Slack-Signature": "v0=" + digest.hexdigest()}  # fmt: skip


def _event(**event: Any) -> bytes:
    return json.dumps({"type": "event_callback", "team_id": "T0TEAM", "event_id": "Ev1",
                       "event": {"type": "message", "channel": "D0DM", "channel_type": "im",
                                 "user": "U0CUST", "ts": "1.0", **event}}).encode()  # fmt: skip


@pytest.mark.parametrize(
    "body",
    [_event(text="hello\x00there"), _event(text="hi", user="U0\x00X"),
     _event(text="hi", subtype="message_changed", note="\x00")],
    ids=["text", "user", "ignored-event"],
)  # fmt: skip
async def test_a_slack_event_with_a_nul_is_a_400(doors: Gateway, body: bytes) -> None:
    response = await doors.client.post("/channels/slack/events", data=body, headers=_slack(body))
    await _refused(response)
    await _nothing_stored(doors)


async def test_a_slack_command_with_a_nul_is_a_400(doors: Gateway) -> None:
    body = urlencode({"command": "/frontdesk", "text": "live\x00", "user_id": "U0X"}).encode()
    response = await doors.client.post(
        "/channels/slack/commands", data=body,
        headers=_slack(body, "application/x-www-form-urlencoded"),
    )  # fmt: skip
    await _refused(response)


@pytest.mark.parametrize(
    ("body", "said"),
    [(b"\xff\xfe{}", "not UTF-8"), (b"{not json", "not JSON"), (b"[1, 2]", "JSON object"),
     (b'{"type": "event_callback", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}", "nested deeper"),
     (b'{"type": "event_callback", "x": NaN}', "NaN is not JSON")],
)  # fmt: skip
async def test_a_signed_slack_body_that_is_not_utf8_json_is_a_400_saying_so(
    doors: Gateway, body: bytes, said: str
) -> None:
    response = await doors.client.post("/channels/slack/events", data=body, headers=_slack(body))
    assert response.status == 400
    assert said in (await response.json())["error"]["message"]
    forged = {**_slack(body), "X-Slack-Signature": "v0=" + "0" * 64}
    unsigned = await doors.client.post("/channels/slack/events", data=body, headers=forged)
    assert unsigned.status == 403  # the body is judged only once it is Slack's
    await _nothing_stored(doors)


@pytest.mark.parametrize("field", ["SpeechResult", "Digits", "From"])
async def test_a_call_step_with_a_nul_is_a_400(doors: Gateway, field: str) -> None:
    form = _form(**{field: "1\x002"})
    response = await doors.post_form("/channels/twilio/voice/turn?n=1", form)
    await _refused(response)
    await _nothing_stored(doors)


@pytest.mark.parametrize(
    "frame",
    [{"type": "message", "text": "hi\x00", "client_id": "c1"},
     {"type": "message", "text": "hi", "client_id": "c\x001"},
     {"type": "message", "text": "hi", "client_id": "c1", "extra": ["\x00"]}],
    ids=["text", "client_id", "other"],
)  # fmt: skip
async def test_a_web_chat_frame_with_a_nul_gets_an_error_frame(
    doors: Gateway, frame: dict[str, Any]
) -> None:
    ws = await doors.chat()
    await ws.send_json({"type": "hello", "visitor": None})
    await receive(ws, "welcome")
    await ws.send_json(frame)
    error = await receive(ws, "error")
    assert (error["code"], "NUL" in error["message"]) == ("bad_frame", True)
    await ws.send_json({"type": "message", "text": "still here?", "client_id": "c2"})
    assert (await receive(ws, "ack"))["client_id"] == "c2"  # the socket stays usable
    await ws.close()
    assert await doors.count(Inbound) == 1


async def _refused(response: ClientResponse) -> None:
    assert response.status == 400
    assert "NUL" in (await response.json())["error"]["message"]


def _smtp_port(gw: Gateway) -> int:
    channel = gw.services.channels["email"]
    assert isinstance(channel, EmailChannel)
    assert channel.port is not None
    return channel.port
