"""Email: SMTP in (smtplib to our listener), the inbound-parse webhook, replies through a
fake SMTP relay, threading headers, and every loop-safety rule."""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import AsyncIterator
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any

import pytest
from sqlalchemy import select

from channels.email import EmailChannel
from channels.mailtext import automatic, html_to_text, trim
from gateway.settings import from_mapping
from store.models import Conversation, Identity, Inbound, Member, Message, Outbox
from tests.fakes.smtp_sink import SmtpSink
from tests.fakes.twilio_api import FakeTwilio
from tests.helpers import Api, Gateway, add_member, eventually, make_config

SECRET = "inbound-secret-0123456789"
INBOX = "support@example.com"


def _email_config(database_url: str, sink: SmtpSink, **email: Any) -> dict[str, Any]:
    raw = make_config(database_url)
    raw["channels"]["email"] = {
        "inboxes": [{"address": INBOX, "agent": "receptionist"}],
        "smtp_listen": {"host": "127.0.0.1", "port": 0},
        "inbound_secret": SECRET,
        "smtp": {"host": "127.0.0.1", "port": sink.port, "starttls": False},
        "from_name": "Example Dental",
        **email,
    }
    return raw


@pytest.fixture
async def mail_gateway(
    database_url: str, twilio: tuple[FakeTwilio, str], sink: SmtpSink
) -> AsyncIterator[Gateway]:
    settings = from_mapping(_email_config(database_url, sink), env={})
    async with Gateway.running(settings, twilio[0]) as gw:
        yield gw


def _mail(body: str, subject: str = "Opening hours", sender: str = "Ann <ann@example.org>",
          **headers: str) -> EmailMessage:  # fmt: skip
    message = EmailMessage()
    message["From"] = sender
    message["To"] = INBOX
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain="example.org")
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(body)
    return message


def _port(gw: Gateway) -> int:
    channel = gw.services.channels["email"]
    assert isinstance(channel, EmailChannel)
    assert channel.port is not None
    return channel.port


async def _smtp_send(gw: Gateway, message: EmailMessage, mail_from: str | None = None) -> None:
    def send() -> None:
        with smtplib.SMTP("127.0.0.1", _port(gw), timeout=10) as client:
            client.send_message(message, from_addr=mail_from)

    await asyncio.to_thread(send)


async def test_a_mail_is_answered_in_the_same_thread(mail_gateway: Gateway, sink: SmtpSink) -> None:
    gw = mail_gateway
    first = _mail("Hi, what are your opening hours?\n\n-- \nAnn Archer\nSent from my phone")
    await _smtp_send(gw, first)
    [reply] = await sink.wait(1)

    assert reply["To"] == "ann@example.org"
    assert str(reply["From"]) == "Example Dental <support@example.com>"
    assert reply["Subject"] == "Re: Opening hours"
    assert reply["In-Reply-To"] == first["Message-ID"]
    assert reply["References"] == first["Message-ID"]
    assert reply["Auto-Submitted"] == "auto-replied"
    assert reply.get_content().strip() == "We are open 8am to 6pm, Monday to Friday."

    second = _mail("Thanks! And where are you?\n\nOn Mon, Ann wrote:\n> old text",
                   subject="Re: Opening hours", In_Reply_To=reply["Message-ID"],
                   References=f"{first['Message-ID']} {reply['Message-ID']}")  # fmt: skip
    await _smtp_send(gw, second)
    [_, again] = await sink.wait(2)
    assert again["Subject"] == "Re: Opening hours"
    assert again["References"].split() == [first["Message-ID"], reply["Message-ID"],
                                           second["Message-ID"]]  # fmt: skip
    assert await gw.count(Conversation) == 1
    texts = [m.text for m in await gw.all(select(Message).where(Message.direction == "in"))]
    assert texts == ["Hi, what are your opening hours?", "Thanks! And where are you?"]
    [ann] = await gw.all(select(Member))
    assert ann.email == "ann@example.org"
    assert await gw.count(Identity, Identity.address == "ann@example.org") == 1


async def test_the_webhook_needs_the_secret_and_a_retry_is_one_message(
    mail_gateway: Gateway, sink: SmtpSink
) -> None:
    gw = mail_gateway
    raw = _mail("Do you accept insurance?").as_bytes()
    headers = {"Content-Type": "message/rfc822"}

    forged = await gw.client.post("/channels/email/inbound", data=raw,
                                  headers={**headers, "Authorization": "Bearer wrong"})  # fmt: skip
    assert forged.status == 403
    assert await gw.count(Inbound) == 0

    signed = {**headers, "Authorization": f"Bearer {SECRET}"}
    for _ in range(2):
        ok = await gw.client.post("/channels/email/inbound", data=raw, headers=signed)
        assert ok.status == 200
    await sink.wait(1)
    await eventually(lambda: _settled(gw))
    assert await gw.count(Inbound) == 1
    assert len(sink.messages) == 1


AUTOMATIC = [
    {"Auto_Submitted": "auto-replied"},
    {"Precedence": "bulk"},
    {"List_Id": "<news.example.org>"},
    {"X_Auto_Response_Suppress": "OOF"},
    {"X_Autoreply": "yes"},
]


@pytest.mark.parametrize("headers", AUTOMATIC, ids=lambda h: next(iter(h)))
async def test_automatic_mail_is_kept_and_never_answered(
    mail_gateway: Gateway, sink: SmtpSink, headers: dict[str, str]
) -> None:
    gw = mail_gateway
    await _smtp_send(gw, _mail("I am out of the office until Monday.", **headers))
    await eventually(lambda: _settled(gw, inbound=1))
    assert await gw.count(Message, Message.direction == "in") == 1
    assert await gw.count(Outbox) == 0
    assert sink.messages == []


async def test_bounces_and_null_senders_are_not_answered(
    mail_gateway: Gateway, sink: SmtpSink
) -> None:
    gw = mail_gateway
    await _smtp_send(gw, _mail("Delivery failed", sender="MAILER-DAEMON@mx.example.org"))
    await _smtp_send(gw, _mail("Out of office", sender="Bo <bo@example.org>"), mail_from="<>")
    report = _mail("Undeliverable")
    report.make_mixed()
    report.replace_header("Content-Type", 'multipart/report; report-type="delivery-status"')
    await _smtp_send(gw, report)
    await eventually(lambda: _settled(gw, inbound=3))
    assert await gw.count(Outbox) == 0


async def test_at_most_n_automatic_replies_per_sender_per_hour(
    database_url: str, twilio: tuple[FakeTwilio, str], sink: SmtpSink
) -> None:
    settings = from_mapping(_email_config(database_url, sink, max_auto_replies_per_hour=2), env={})
    async with Gateway.running(settings, twilio[0]) as gw:
        for i in range(4):
            await _smtp_send(gw, _mail(f"Question {i}: where are you located?"))
            await eventually(lambda: _settled(gw))
        assert len(sink.messages) == 2
        assert await gw.count(Message, Message.direction == "in") == 4


async def test_mail_to_an_address_we_do_not_serve_is_refused(mail_gateway: Gateway) -> None:
    message = _mail("hello")
    message.replace_header("To", "someone-else@example.com")
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        await _smtp_send(mail_gateway, message)
    assert await mail_gateway.count(Inbound) == 0


async def test_a_subject_that_smuggles_a_header_stays_one_subject(
    mail_gateway: Gateway, sink: SmtpSink
) -> None:
    raw = (
        _mail("Hours?")
        .as_bytes()
        .replace(
            b"Subject: Opening hours", b"Subject: =?utf-8?q?Hi=0D=0ABcc=3A_evil=40example=2Eorg?="
        )
    )
    response = await mail_gateway.client.post(
        "/channels/email/inbound", data=raw,
        headers={"Content-Type": "message/rfc822", "X-Frontdesk-Secret": SECRET},
    )  # fmt: skip
    assert response.status == 200
    [reply] = await sink.wait(1)
    assert reply["Bcc"] is None
    assert reply["Subject"] == "Re: Hi Bcc: evil@example.org"
    assert sink.envelopes[0][1] == ["ann@example.org"]


@pytest.mark.parametrize(
    ("find", "replace"),
    [(b'charset="utf-8"', b"charset=x-unknown"),
     (b"Message-ID: <", b"Message-ID: <>\nX-Old-ID: <")],
    ids=["unknown-charset", "empty-message-id"],
)  # fmt: skip
async def test_malformed_mail_is_still_read_and_answered(
    mail_gateway: Gateway, sink: SmtpSink, find: bytes, replace: bytes
) -> None:
    raw = _mail("What are your opening hours?").as_bytes()
    assert find in raw
    response = await mail_gateway.client.post(
        "/channels/email/inbound", data=raw.replace(find, replace, 1),
        headers={"Content-Type": "message/rfc822", "X-Frontdesk-Secret": SECRET},
    )  # fmt: skip
    assert response.status == 200
    [reply] = await sink.wait(1)
    assert reply.get_content().strip() == "We are open 8am to 6pm, Monday to Friday."


def test_html_is_read_as_text_and_quoted_history_is_trimmed() -> None:
    assert html_to_text("<p>Hello <b>there</b></p><style>p{}</style><div>Line&nbsp;2</div>") == (
        "Hello there\nLine\xa02"
    )
    assert trim("New text\n\nOn Tue, 1 Dec 2026, Bo <b@x.org> wrote:\n> old\n> older") == "New text"
    assert trim("Reply\n> quoted\nmore\n-- \nsig") == "Reply\nmore"
    message = _mail("hi")
    assert automatic(message, return_path="<ann@example.org>") is None
    assert automatic(message, return_path="<>") == "empty Return-Path"


async def _settled(gw: Gateway, inbound: int | None = None) -> bool:
    if inbound is not None and await gw.count(Inbound) < inbound:
        return False
    pending = await gw.count(Inbound, Inbound.status == "pending")
    return pending + await gw.count(Outbox, Outbox.status == "pending") == 0


async def test_an_operator_reply_with_no_smtp_relay_is_refused_before_anything_is_stored(
    sqlite_url: str, twilio: tuple[FakeTwilio, str], sink: SmtpSink
) -> None:
    settings = from_mapping(_email_config(sqlite_url, sink, smtp=None), env={})
    async with Gateway.running(settings, twilio[0]) as gw:
        _, token = await add_member(gw, "olive@example.com", kind="team", role="operator")
        signed = {"Content-Type": "message/rfc822", "Authorization": f"Bearer {SECRET}"}
        raw = _mail("Can I move my appointment?").as_bytes()
        assert (await gw.client.post("/channels/email/inbound", data=raw,
                                     headers=signed)).status == 200  # fmt: skip
        await eventually(lambda: _settled(gw))
        [conversation] = await gw.all(select(Conversation))
        status, answer = await Api(gw, token).post(
            f"/api/conversations/{conversation.id}/reply", {"text": "Yes, to Friday."}
        )
        operator_messages = await gw.count(Message, Message.author == "operator")
        [after] = await gw.all(select(Conversation))
    assert (status, answer["error"]["code"]) == (409, "conflict")
    assert answer["error"]["message"] == "the email channel has no way to send replies configured"
    assert (operator_messages, after.status) == (0, conversation.status)
