"""Who an email is from: only our relay's Authentication-Results header, the topmost one
it wrote, on mail it posted to the webhook, can vouch for a sender; over SMTP nothing can."""

from __future__ import annotations

from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

import pytest
from langchain_core.messages import AIMessage

from channels.mailtext import dmarc_passed
from gateway.app import runtime_for
from gateway.settings import from_mapping
from store.errors import ConfigError
from tests.agents.test_llm import Scripted, _call
from tests.channels.test_email import SECRET, _email_config, _mail, _smtp_send
from tests.fakes.smtp_sink import SmtpSink
from tests.fakes.twilio_api import FakeTwilio
from tests.helpers import Gateway, add_member

RELAY = "mx.frontdesk.example"
EVERYONE = {"data_query": {"queries": {"everyone": {
    "filter": {"field": "kind", "op": "eq", "value": "team"}, "fields": ["name"]}}}}  # fmt: skip
DENIED, ALLOWED = "may not run", '[{"name": "Olive"}]'


def _owner_mail(*results: str) -> bytes:
    """Mail from the owner's address with ``results`` as Authentication-Results headers,
    the first one topmost (each hop adds its own on top)."""
    mail = _mail("List everyone", sender="Olive <olive@example.org>").as_bytes()
    return "".join(f"Authentication-Results: {v}\n" for v in results).encode() + mail


async def test_only_the_relays_topmost_header_on_the_webhook_gives_the_owner_rights(
    database_url: str, twilio: tuple[FakeTwilio, str], sink: SmtpSink
) -> None:
    raw = _email_config(database_url, sink, trust_authentication_results=True, authserv_id=RELAY)
    raw["agents"][0]["abilities"] = EVERYONE
    settings = from_mapping(raw, env={})
    model = Scripted(responses=[_call("data_query", "c1", query="everyone"), AIMessage("done")])
    model.seen = []
    runtime = runtime_for(settings, chat_models={"receptionist": model})
    tries: list[tuple[str, bytes, str]] = [
        ("smtp", _owner_mail(f"{RELAY}; dmarc=pass header.from=example.org"), DENIED),
        ("webhook", _owner_mail("evil; dmarc=pass"), DENIED),
        ("webhook", _owner_mail(f"{RELAY}; dmarc=fail", f"{RELAY}; dmarc=pass"), DENIED),
        ("webhook", _owner_mail(f"{RELAY}; spf=pass", "evil; dmarc=pass"), DENIED),
        ("webhook", _owner_mail(f"{RELAY}; dmarc=pass header.from=example.org"), ALLOWED),
    ]
    outputs = []
    try:
        async with Gateway.running(settings, twilio[0], runtime=runtime) as gw:
            await add_member(gw, "olive@example.org", kind="team", role="owner", name="Olive",
                             token=False)  # fmt: skip
            for door, mail, _ in tries:
                if door == "smtp":
                    await _smtp_send(gw, _parsed(mail))
                else:
                    response = await gw.client.post(
                        "/channels/email/inbound", data=mail,
                        headers={"Content-Type": "message/rfc822", "X-Frontdesk-Secret": SECRET},
                    )  # fmt: skip
                    assert response.status == 200
                await sink.wait(len(outputs) + 1)
                outputs.append(next(str(m.content) for m in model.seen[-1] if m.type == "tool"))
    finally:
        await runtime.close()
    for (door, mail, expected), output in zip(tries, outputs, strict=True):
        assert expected in output, (door, mail.split(b"\nFrom:")[0], output)


def _parsed(raw: bytes) -> EmailMessage:
    message = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    return message


def _results(*values: str) -> EmailMessage:
    head = "".join(f"Authentication-Results: {v}\r\n" for v in values)
    return _parsed(f"{head}From: Ann <ann@example.org>\r\n\r\nhi\r\n".encode())


@pytest.mark.parametrize(
    ("values", "passed"),
    [
        ([f"{RELAY}; dmarc=pass"], True),
        ([f"{RELAY.upper()} 1; DMARC = Pass (p=reject) header.from=Example.ORG"], True),
        ([f"{RELAY};\r\n spf=pass;\r\n dmarc=pass"], True),
        ([f"{RELAY}; dmarc=pass", f"{RELAY}; dmarc=fail"], True),  # the lower one is older
        ([f"{RELAY}; dmarc=fail", f"{RELAY}; dmarc=pass"], False),
        (["evil; dmarc=pass"], False),
        ([f"{RELAY}.evil.example; dmarc=pass"], False),
        ([f"evil ({RELAY}); dmarc=pass"], False),
        ([f"{RELAY}; dmarc=pass header.from=other.example"], False),
        ([f'{RELAY}; spf=fail smtp.mailfrom="x; dmarc=pass"@evil.example'], False),
        ([f"{RELAY}; spf=fail (dmarc=pass; dmarc=pass)"], False),
        ([f"{RELAY}; spf=fail reason=dmarc=pass"], False),
        ([f"=?utf-8?q?{RELAY}=3B_dmarc=3Dpass?="], False),
        ([f"{RELAY}; none"], False),
        ([], False),
    ],
)
def test_dmarc_is_read_from_our_relays_topmost_header_only(values: list[str], passed: bool) -> None:
    assert dmarc_passed(_results(*values), RELAY, "ann@example.org") is passed


@pytest.mark.parametrize(
    ("email", "problem"),
    [
        ({"trust_authentication_results": True}, "needs authserv_id"),
        (
            {"trust_authentication_results": True, "authserv_id": RELAY, "inbound_secret": None},
            "needs inbound_secret",
        ),
        ({"authserv_id": "mx; dmarc=pass"}, "authserv_id"),
    ],
)
async def test_trust_without_a_relay_to_trust_is_a_config_error(
    email: dict[str, Any], problem: str, sink: SmtpSink
) -> None:
    with pytest.raises(ConfigError) as refused:
        from_mapping(_email_config("sqlite+aiosqlite:///:memory:", sink, **email), env={})
    [detail] = refused.value.details
    assert detail.path.startswith("channels.email")
    assert problem in str(detail)
