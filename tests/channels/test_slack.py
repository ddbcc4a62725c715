"""Slack: signed events, a handoff thread, a team member's thread reply reaching the
customer by SMS exactly once (Slack retries included), refusals, and DMs to the app."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestServer
from slack_sdk.signature import SignatureVerifier
from sqlalchemy import select, text

from channels.base import ChannelContext, OutboundMessage
from channels.slack import DM_INBOX, SlackChannel, SlackSettings
from gateway.settings import from_mapping
from store.models import Conversation, Handoff, Identity, Inbound, Outbox
from tests.fakes.slack_api import FakeSlack
from tests.fakes.twilio_api import FakeTwilio
from tests.helpers import Gateway, add_member, eventually, make_config

SECRET = "slack-signing-secret-0123456789"
TOKEN = "xoxb-test-token"
HANDOFF = "C0HANDOFF"


@pytest.fixture
async def slack() -> AsyncIterator[tuple[FakeSlack, str]]:
    fake = FakeSlack(token=TOKEN)
    server = TestServer(fake.app(), host="127.0.0.1", port=0)
    await server.start_server()
    yield fake, str(server.make_url("/api/"))
    await server.close()


@pytest.fixture
async def team_gateway(
    database_url: str, twilio: tuple[FakeTwilio, str], slack: tuple[FakeSlack, str]
) -> AsyncIterator[Gateway]:
    raw = make_config(database_url, twilio_base=twilio[1])
    raw["channels"]["slack"] = {"bot_token": TOKEN, "signing_secret": SECRET,
                                "handoff_channel": HANDOFF, "agent": "receptionist",
                                "api_base_url": slack[1]}  # fmt: skip
    async with Gateway.running(from_mapping(raw, env={}), twilio[0]) as gw:
        member_id, _ = await add_member(gw, "olive@example.com", kind="team", role="operator",
                                        name="Olive", token=False)  # fmt: skip
        async with gw.services.sessions.begin() as session:
            session.add(Identity(member_id=member_id, kind="slack", address="U0OLIVE"))
        yield gw


def _event(event_id: str, **event: Any) -> dict[str, Any]:
    return {"type": "event_callback", "team_id": "T0TEAM", "event_id": event_id,
            "event": {"type": "message", "ts": f"{time.time():.6f}", **event}}  # fmt: skip


async def _deliver(
    gw: Gateway,
    body: dict[str, Any],
    *,
    retry: int | None = None,
    secret: str = SECRET,
    timestamp: str | None = None,
) -> ClientResponse:
    data = json.dumps(body).encode()
    stamp = timestamp or str(int(time.time()))
    headers = {"Content-Type": "application/json", "X-Slack-Request-Timestamp": stamp,
               "X-Slack-Signature": SignatureVerifier(secret).generate_signature(
                   timestamp=stamp, body=data)}  # fmt: skip
    if retry is not None:
        headers["X-Slack-Retry-Num"] = str(retry)
    return await gw.client.post("/channels/slack/events", data=data, headers=headers)


async def test_a_slack_thread_reply_reaches_the_customer_by_sms_once(
    team_gateway: Gateway, slack: tuple[FakeSlack, str]
) -> None:
    gw, fake = team_gateway, slack[0]
    await gw.sms("Can I talk to a person please?")
    [post] = await fake.wait(1)
    assert post.channel == HANDOFF
    assert post.text.startswith("member ")
    assert "needs a person: asked for a person" in post.text
    assert "> member: Can I talk to a person please?" in post.text
    await gw.twilio.wait_sent(1)

    reply = _event("Ev0001", channel=HANDOFF, user="U0OLIVE", thread_ts=post.ts,
                   text="Hi, this is Olive. I'll call you at 3pm.")  # fmt: skip
    for attempt in (None, 1, 2):  # Slack retries the same event
        assert (await _deliver(gw, reply, retry=attempt)).status == 200
    await gw.twilio.wait_sent(2)
    await eventually(lambda: _settled(gw))
    bodies = [s.body for s in gw.twilio.sent]
    assert bodies.count("Hi, this is Olive. I'll call you at 3pm.") == 1
    [conversation] = await gw.all(select(Conversation).where(Conversation.channel == "sms"))
    assert conversation.status == "operator"

    await gw.sms("Thanks! 3pm works.")  # a person has it now: the agent stays quiet
    await eventually(lambda: _settled(gw))
    assert len(gw.twilio.sent) == 2
    mirrored = (await fake.wait(2))[-1]  # ...and the team sees it in the thread
    assert (mirrored.thread_ts, mirrored.text) == (post.ts, "member: Thanks! 3pm works.")


async def test_notes_and_strangers_do_not_reach_the_customer(
    team_gateway: Gateway, slack: tuple[FakeSlack, str]
) -> None:
    gw, fake = team_gateway, slack[0]
    await gw.sms("I need a human")
    [post] = await fake.wait(1)
    await gw.twilio.wait_sent(1)
    await _deliver(gw, _event("Ev1", channel=HANDOFF, user="U0OLIVE", thread_ts=post.ts,
                              text="note: she called yesterday too"))  # fmt: skip
    await _deliver(gw, _event("Ev2", channel=HANDOFF, user="U0STRANGER", thread_ts=post.ts,
                              text="Buy my product!"))  # fmt: skip
    posts = await fake.wait(2)
    assert posts[1].thread_ts == post.ts
    assert posts[1].text == "Not sent to the customer: no team member has your Slack identity."
    await eventually(lambda: _settled(gw))
    assert len(gw.twilio.sent) == 1


async def test_forged_and_malformed_requests_store_nothing(team_gateway: Gateway) -> None:
    gw = team_gateway
    body = _event("Ev9", channel="D0DM", channel_type="im", user="U0CUST", text="hi")
    assert (await _deliver(gw, body, secret="wrong-secret")).status == 403
    assert (await _deliver(gw, body, timestamp="not-a-time")).status == 401
    challenge = await _deliver(gw, {"type": "url_verification", "challenge": "abc123"})
    assert await challenge.json() == {"challenge": "abc123"}
    bot = _event("Ev10", channel="D0DM", channel_type="im", user="U0BOT", bot_id="B1", text="x")
    assert (await _deliver(gw, bot)).status == 200
    assert await gw.count(Inbound, Inbound.channel == "slack") == 0


async def test_a_direct_message_to_the_app_is_answered_by_the_agent(
    team_gateway: Gateway, slack: tuple[FakeSlack, str]
) -> None:
    gw, fake = team_gateway, slack[0]
    dm = _event("Ev20", channel="D0DM", channel_type="im", user="U0CUST",
                text="What are your opening hours?")  # fmt: skip
    assert (await _deliver(gw, dm)).status == 200
    [answer] = await fake.wait(1)
    assert (answer.channel, answer.text) == ("D0DM", "We are open 8am to 6pm, Monday to Friday.")


async def _settled(gw: Gateway) -> bool:
    from store.models import Outbox

    pending = await gw.count(Inbound, Inbound.status == "pending")
    return pending + await gw.count(Outbox, Outbox.status == "pending") == 0


async def _command(gw: Gateway, user: str, text: str, secret: str = SECRET) -> ClientResponse:
    data = urlencode({"command": "/frontdesk", "text": text, "user_id": user,
                      "team_id": "T0TEAM", "trigger_id": "1.2.3"}).encode()  # fmt: skip
    stamp = str(int(time.time()))
    headers = {"Content-Type": "application/x-www-form-urlencoded",
               "X-Slack-Request-Timestamp": stamp,
               "X-Slack-Signature": SignatureVerifier(secret).generate_signature(
                   timestamp=stamp, body=data)}  # fmt: skip
    return await gw.client.post("/channels/slack/commands", data=data, headers=headers)


@contextlib.asynccontextmanager
async def _live_in_slack(
    database_url: str, twilio: tuple[FakeTwilio, str], slack: tuple[FakeSlack, str]
) -> AsyncIterator[tuple[Gateway, int]]:
    """Slack and live operators; Olive, an operator with a Slack identity (U0OLIVE)."""
    raw = make_config(database_url, twilio_base=twilio[1])
    raw["channels"]["slack"] = {"bot_token": TOKEN, "signing_secret": SECRET,
                                "handoff_channel": HANDOFF, "agent": "receptionist",
                                "api_base_url": slack[1]}  # fmt: skip
    raw["escalation"] = {
        "operators": {"enabled": True, "groups": [{"name": "all", "role": "operator"}]}
    }
    async with Gateway.running(from_mapping(raw, env={}), twilio[0]) as gw:
        olive, _ = await add_member(gw, "olive@example.com", kind="team", role="operator",
                                    name="Olive", token=False)  # fmt: skip
        async with gw.services.sessions.begin() as session:
            session.add(Identity(member_id=olive, kind="slack", address="U0OLIVE"))
        yield gw, olive


async def test_an_offer_mentions_the_operator_in_the_thread_and_their_reply_takes_it(
    database_url: str, twilio: tuple[FakeTwilio, str], slack: tuple[FakeSlack, str]
) -> None:
    fake = slack[0]
    async with _live_in_slack(database_url, twilio, slack) as (gw, olive):
        live = gw.services.pipeline.live
        await live.go_live(olive)
        await gw.sms("Can I talk to a person please?")
        thread, mention = await fake.wait(2)
        await live.leave(olive)  # the offer goes back to the queue...

        async def offered(to: int | None) -> bool:
            return await gw.count(Handoff, Handoff.operator_id.is_(to) if to is None
                                  else Handoff.operator_id == to) == 1  # fmt: skip

        await eventually(lambda: offered(None))
        await live.go_live(olive)  # ...and comes round to her again: no second mention
        await eventually(lambda: offered(olive))
        await eventually(lambda: _settled(gw))
        reply = _event("Ev0100", channel=HANDOFF, user="U0OLIVE", thread_ts=thread.ts,
                       text="Olive here, I've got this.")  # fmt: skip
        assert (await _deliver(gw, reply)).status == 200
        await gw.twilio.wait_sent(2)
        [handoff] = await gw.all(select(Handoff))
    assert "needs a person" in thread.text
    assert mention.thread_ts == thread.ts
    assert mention.text.startswith("<@U0OLIVE> this conversation is offered to you")
    assert gw.twilio.sent[-1].body == "Olive here, I've got this."
    assert len(fake.posts) == 2  # the thread and one mention
    assert (handoff.operator_id, handoff.taken_at is not None) == (olive, True)


async def test_slash_commands_take_a_team_member_live_and_offline(
    sqlite_url: str, twilio: tuple[FakeTwilio, str], slack: tuple[FakeSlack, str]
) -> None:
    async with _live_in_slack(sqlite_url, twilio, slack) as (gw, olive):
        live = await _command(gw, "U0OLIVE", "live")
        live_body = await live.json()
        await gw.sms("Can I talk to a person please?")

        async def offered() -> bool:
            return await gw.count(Handoff, Handoff.operator_id == olive) == 1

        await eventually(offered)
        status = await (await _command(gw, "U0OLIVE", "status")).json()
        stranger = await (await _command(gw, "U0NOBODY", "live")).json()
        forged = await _command(gw, "U0OLIVE", "leave", secret="wrong-secret")
        left = await (await _command(gw, "U0OLIVE", "leave")).json()
        on_board = await gw.services.pipeline.live.live()
    assert live.status == 200
    assert live_body["response_type"] == "ephemeral"
    assert live_body["text"].startswith("You are live for 8 hours")
    assert status["text"] == "You are live, holding 1 conversation(s); 1 operator(s) live."
    assert stranger["text"].startswith("You are not a team member")
    assert forged.status == 403
    assert left["text"].startswith("You are offline")
    assert on_board == {}


async def test_a_thread_reply_to_a_call_no_channel_can_deliver_is_refused_in_the_thread(
    database_url: str, twilio: tuple[FakeTwilio, str], slack: tuple[FakeSlack, str]
) -> None:
    """The call's number is not the SMS channel's: the reply cannot reach the caller, so the
    thread says so and nothing is queued for them (not a silent failure in the outbox)."""
    from tests.channels.test_voice import OTHER_NUMBER, _form, _post

    raw = make_config(database_url, twilio_base=twilio[1])
    raw["channels"]["voice"] = {"numbers": [OTHER_NUMBER], "agent": "receptionist"}
    raw["channels"]["slack"] = {"bot_token": TOKEN, "signing_secret": SECRET,
                                "handoff_channel": HANDOFF, "agent": "receptionist",
                                "api_base_url": slack[1]}  # fmt: skip
    fake = slack[0]
    async with Gateway.running(from_mapping(raw, env={}), twilio[0]) as gw:
        member_id, _ = await add_member(gw, "olive@example.com", kind="team", role="operator",
                                        name="Olive", token=False)  # fmt: skip
        async with gw.services.sessions.begin() as session:
            session.add(Identity(member_id=member_id, kind="slack", address="U0OLIVE"))
        await _post(gw, "/channels/twilio/voice", _form(To=OTHER_NUMBER))
        asks = _form(To=OTHER_NUMBER, SpeechResult="Can I talk to a person?")
        await _post(gw, "/channels/twilio/voice/turn", asks, n=1)
        [post] = await fake.wait(1)
        await _deliver(gw, _event("Ev7", channel=HANDOFF, user="U0OLIVE", thread_ts=post.ts,
                                  text="I'll call you back."))  # fmt: skip
        posts = await fake.wait(2)
        await eventually(lambda: _settled(gw))
        [handoff] = await gw.all(select(Handoff))
        operator_outbox = await gw.count(Outbox, Outbox.key.startswith("team:"),
                                         Outbox.channel != "slack")  # fmt: skip
    assert posts[1].thread_ts == post.ts
    assert posts[1].text == (
        "Not sent to the customer: a reply to a voice conversation can only be said during "
        f"the call, and no SMS channel has {OTHER_NUMBER} to text it from."
    )
    assert (handoff.operator_id, operator_outbox) == (None, 0)


def _slack_config(database_url: str, twilio_base: str, slack_base: str) -> dict[str, Any]:
    raw = make_config(database_url, twilio_base=twilio_base)
    raw["channels"]["slack"] = {"bot_token": TOKEN, "signing_secret": SECRET,
                                "handoff_channel": HANDOFF, "agent": "receptionist",
                                "api_base_url": slack_base}  # fmt: skip
    return raw


async def test_events_nobody_listens_for_are_acknowledged_and_store_nothing(
    team_gateway: Gateway,
) -> None:
    """Slack retries, and in the end disables, an events URL that answers errors: bolt's
    404 for an event without a listener (a mention, a rate-limit notice) is not ours."""
    gw = team_gateway
    mention = _event("Ev30", channel="C0OTHER", user="U0CUST", text="<@U0APP> hello")
    mention["event"]["type"] = "app_mention"
    limited = {"type": "app_rate_limited", "team_id": "T0TEAM", "minute_rate_limited": 1}
    for body in (mention, limited):
        assert (await _deliver(gw, body)).status == 200
    assert await gw.count(Inbound, Inbound.channel == "slack") == 0


async def test_signed_requests_bolt_cannot_read_are_a_400_saying_why(team_gateway: Gateway) -> None:
    gw = team_gateway
    not_an_event = await _deliver(gw, {"type": "event_callback", "event_id": "Ev31",
                                       "event": "message"})  # fmt: skip
    data = json.dumps({"command": "/frontdesk", "text": "live", "user_id": "U0OLIVE"}).encode()
    stamp = str(int(time.time()))
    headers = {"Content-Type": "application/json", "X-Slack-Request-Timestamp": stamp,
               "X-Slack-Signature": SignatureVerifier(SECRET).generate_signature(
                   timestamp=stamp, body=data)}  # fmt: skip
    json_command = await gw.client.post("/channels/slack/commands", data=data, headers=headers)
    assert not_an_event.status == 400
    assert (await not_an_event.json())["error"]["message"] == "event is not a JSON object"
    assert json_command.status == 400
    assert "a slash command's body is a form" in (await json_command.json())["error"]["message"]
    assert await gw.count(Inbound, Inbound.channel == "slack") == 0


async def test_an_event_the_store_refuses_is_not_acknowledged_and_its_retry_is_stored(
    sqlite_url: str, twilio: tuple[FakeTwilio, str], slack: tuple[FakeSlack, str]
) -> None:
    """The 200 means stored: a listener that could not store answers a 5xx (in our error
    shape), so Slack sends the event again; the retry is stored and answered once."""
    raw = _slack_config(sqlite_url, twilio[1], slack[1])
    dm = _event("Ev40", channel="D0DM", channel_type="im", user="U0CUST",
                text="What are your opening hours?")  # fmt: skip
    async with Gateway.running(from_mapping(raw, env={}), twilio[0]) as gw:
        full = "CREATE TRIGGER no_room BEFORE INSERT ON inbound BEGIN SELECT RAISE(ABORT, 'x'); END"
        async with gw.services.engine.begin() as connection:  # the disk is full, say
            await connection.execute(text(full))
        refused = await _deliver(gw, dm)
        refusal = await refused.json()
        stored_then = await gw.count(Inbound)
        async with gw.services.engine.begin() as connection:
            await connection.execute(text("DROP TRIGGER no_room"))
        retried = await _deliver(gw, dm, retry=1)
        [answer] = await slack[0].wait(1)
        await eventually(lambda: _settled(gw))
        stored = await gw.count(Inbound, Inbound.external_id == "Ev40")
    assert (refused.status, refusal["error"]["code"], stored_then) == (500, "internal", 0)
    assert (retried.status, stored, answer.channel) == (200, 1, "D0DM")


async def test_a_rate_limited_post_is_sent_once_after_its_retry_after(
    slack: tuple[FakeSlack, str],
) -> None:
    fake, base = slack
    fake.rate_limit_next = 1
    settings = SlackSettings(bot_token=TOKEN, signing_secret=SECRET, handoff_channel=HANDOFF,
                             agent="receptionist", api_base_url=base)  # fmt: skip
    async with aiohttp.ClientSession() as http:

        async def publish(topic: str, payload: object) -> None:
            raise AssertionError("Slack never publishes")

        channel = SlackChannel(settings, ChannelContext(None, "US", http, publish))  # type: ignore[arg-type]
        loop = asyncio.get_running_loop()
        started = loop.time()
        delivery = await channel.send(OutboundMessage(channel="slack", inbox=DM_INBOX, to="D0DM",
                                                      text="We are open.", key="k1"))  # fmt: skip
        waited = loop.time() - started
    assert (fake.rate_limited, [p.text for p in fake.posts]) == (1, ["We are open."])
    assert delivery.provider_id == fake.posts[0].ts
    assert waited >= 1.0  # the fake's Retry-After: 1
