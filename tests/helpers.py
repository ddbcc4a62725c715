"""Helpers for driving a running gateway the way providers and visitors do."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlencode

import pytest
from aiohttp import ClientResponse, ClientWebSocketResponse
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select
from twilio.request_validator import RequestValidator

from agents.runtime import Runtime
from escalation.presence import Presence
from gateway.app import create_app
from gateway.settings import Settings, from_mapping
from gateway.state import STATE, Services
from store.models import Inbound, Outbox
from tests.fakes.twilio_api import FakeTwilio

REQUIRE_SERVICES = os.environ.get("FRONTDESK_REQUIRE_SERVICES") == "1"
PUBLIC_URL = "https://frontdesk.example.com"
ACCOUNT_SID = "AC" + "1" * 32
AUTH_TOKEN = "test-auth-token-0123456789abcdef"
SMS_NUMBER = "+14155550100"
CUSTOMER = "+14155551234"


def unavailable(what: str, why: object) -> None:
    message = f"{what} is not reachable ({why})"
    if REQUIRE_SERVICES:
        pytest.fail(message + "; FRONTDESK_REQUIRE_SERVICES=1 requires it")
    pytest.skip(message)


def sms_form(
    body: str, from_: str = CUSTOMER, sid: str | None = None, **extra: str
) -> dict[str, str]:
    return {
        "MessageSid": sid or "SM" + secrets.token_hex(16),
        "AccountSid": ACCOUNT_SID,
        "From": from_,
        "To": SMS_NUMBER,
        "Body": body,
        "NumMedia": "0",
        **extra,
    }


def twilio_signature(path: str, form: dict[str, str], token: str = AUTH_TOKEN) -> str:
    return str(RequestValidator(token).compute_signature(PUBLIC_URL + path, form))


def make_settings(database_url: str, **options: Any) -> Settings:
    """A test workspace: one SMS number, web chat, the receptionist agent."""
    return from_mapping(make_config(database_url, **options), env={})


def make_config(
    database_url: str,
    *,
    twilio_base: str = "http://127.0.0.1:9",
    redis_url: str | None = None,
    workers: int = 4,
    **overrides: Any,
) -> dict[str, Any]:
    """The raw YAML document of ``make_settings`` (to write to a file for the CLI)."""
    gateway = {
        "workers": workers,
        "outbox_backoff_seconds": 0.05,
        "sweep_seconds": 0.5,
        **overrides.pop("gateway", {}),
    }
    raw: dict[str, Any] = {
        "workspace": {
            "name": "Example Dental",
            "public_url": PUBLIC_URL,
            "default_region": "US",
            "timezone": "America/New_York",
        },
        "storage": {"database_url": database_url, "redis_url": redis_url},
        "gateway": gateway,
        "channels": {
            "sms": {
                "account_sid": ACCOUNT_SID,
                "auth_token": AUTH_TOKEN,
                "numbers": [SMS_NUMBER],
                "agent": "receptionist",
                "api_base_url": twilio_base,
                "timeout_seconds": 1.0,
            },
            "webchat": {"agent": "receptionist"},
        },
        "agents": [
            {
                "name": "receptionist",
                "bio": "You are the friendly front desk of Example Dental.",
                "knowledge": [
                    {
                        "q": "What are your opening hours?",
                        "a": "We are open 8am to 6pm, Monday to Friday.",
                    },
                    {"q": "Where are you located?", "a": "12 Main Street, Springfield."},
                    {
                        "q": "Do you accept insurance?",
                        "a": "We accept most dental insurance plans.",
                    },
                ],
            }
        ],
        **overrides,
    }
    return raw


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    """Wait until ``check()`` holds (for state with no event to wait on: rows in the store)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


class Gateway:
    """A running app behind aiohttp's test client, with the fake Twilio it talks to."""

    def __init__(
        self, client: TestClient[Any, Any], settings: Settings, twilio: FakeTwilio
    ) -> None:
        self.client = client
        self.settings = settings
        self.twilio = twilio

    @classmethod
    @asynccontextmanager
    async def running(
        cls,
        settings: Settings,
        twilio: FakeTwilio,
        runtime: Runtime | None = None,
        presence: Presence | None = None,
    ) -> AsyncIterator[Gateway]:
        app = create_app(settings, runtime=runtime, presence=presence)
        client: TestClient[Any, Any] = TestClient(TestServer(app, host="127.0.0.1", port=0))
        await client.start_server()
        try:
            yield cls(client, settings, twilio)
        finally:
            await client.close()

    @property
    def services(self) -> Services:
        return self.client.app[STATE].services  # type: ignore[index]

    async def post_form(
        self, path: str, form: dict[str, str], signature: str | None = None
    ) -> ClientResponse:
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        headers["X-Twilio-Signature"] = (
            twilio_signature(path, form) if signature is None else signature
        )
        return await self.client.post(path, data=urlencode(form), headers=headers)

    async def sms(self, body: str, from_: str = CUSTOMER, sid: str | None = None) -> ClientResponse:
        return await self.post_form("/channels/twilio/sms", sms_form(body, from_, sid))

    async def count(self, model: Any, *where: Any) -> int:
        async with self.services.sessions() as session:
            stmt = select(func.count()).select_from(model)
            if where:
                stmt = stmt.where(*where)
            return int((await session.execute(stmt)).scalar_one())

    async def settled(self) -> bool:
        """Every stored message processed and every queued delivery made or given up. A
        turn writes its replies in the transaction that marks its message done, so once
        this holds, a reply that should not have been queued would have been sent."""
        pending = await self.count(Inbound, Inbound.status == "pending")
        return pending + await self.count(Outbox, Outbox.status == "pending") == 0

    async def all(self, stmt: Any) -> list[Any]:
        async with self.services.sessions() as session:
            return list((await session.execute(stmt)).scalars())

    async def chat(self) -> ClientWebSocketResponse:
        return await self.client.ws_connect("/webchat/ws")


async def receive(ws: ClientWebSocketResponse, kind: str, timeout: float = 10.0) -> dict[str, Any]:
    """The next frame of type ``kind`` (frames of other types before it are skipped)."""
    while True:
        msg = await ws.receive(timeout=timeout)
        if msg.type.name != "TEXT":
            raise AssertionError(f"socket ended: {msg.type.name} {msg.data!r}")
        frame: dict[str, Any] = json.loads(msg.data)
        if frame["type"] == kind:
            return frame


async def add_member(
    gw: Gateway,
    email: str,
    *,
    kind: str = "contact",
    role: str = "contact",
    token: bool = True,
    **fields: Any,
) -> tuple[int, str]:
    """A member made through the people layer, and (optionally) an API token for it."""
    from people import credentials, directory

    async with gw.services.sessions.begin() as session:
        member = await directory.create(
            session,
            directory.MemberFields(email=email, kind=kind, role=role, **fields),  # type: ignore[arg-type]
            "US",
        )
        secret = await credentials.create_token(session, member, "test") if token else ""
        return member.id, secret


class Api:
    """The admin API as one member calls it."""

    def __init__(self, gw: Gateway, token: str) -> None:
        self.gw = gw
        self.headers = {"Authorization": f"Bearer {token}"}

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        response = (
            await self.gw.client.request(method, path, json=body, headers=self.headers)
            if body is not None
            else await self.gw.client.request(method, path, headers=self.headers)
        )
        text = await response.text()
        return response.status, json.loads(
            text
        ) if text and response.content_type == "application/json" else text

    async def get(self, path: str) -> tuple[int, Any]:
        return await self.call("GET", path)

    async def post(self, path: str, body: Any = None) -> tuple[int, Any]:
        return await self.call("POST", path, body if body is not None else {})

    async def patch(self, path: str, body: Any) -> tuple[int, Any]:
        return await self.call("PATCH", path, body)
