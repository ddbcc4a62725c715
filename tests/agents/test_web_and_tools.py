"""web_search and custom_tool, and the address rules every ability request follows."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from agents import abilities
from agents.abilities import AbilityContext, AbilityResult
from agents.abilities._http import AddressRefused, fetch
from agents.base import MemberFacts
from gateway.settings import from_mapping
from people.roles import BUILTIN_ROLES, Role
from store.errors import ConfigError
from tests.helpers import make_config


class FakeApi:
    """An HTTP API on 127.0.0.1: records requests; /redirect sends elsewhere."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str], Any]] = []
        self.redirect_to = "http://127.0.0.2/"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/orders/{id}", self._order)
        app.router.add_get("/redirect", self._redirect)
        app.router.add_get("/big", self._big)
        app.router.add_get("/search", self._search)
        return app

    async def _order(self, request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else None
        self.requests.append((request.method, request.path_qs, dict(request.headers), body))
        return web.json_response({"order": request.match_info["id"], "status": "shipped"})

    async def _redirect(self, request: web.Request) -> web.Response:
        raise web.HTTPFound(self.redirect_to)

    async def _big(self, request: web.Request) -> web.Response:
        return web.Response(text="x" * 5000)

    async def _search(self, request: web.Request) -> web.Response:
        self.requests.append(("GET", request.path_qs, dict(request.headers), None))
        return web.json_response({"results": [
            {"title": "Flossing guide", "content": "Floss once a day.", "url": "https://a.example/f"},
            {"title": "Whitening", "content": "Ask your dentist.", "url": "https://a.example/w"},
        ]})  # fmt: skip


@pytest.fixture
async def api() -> AsyncIterator[tuple[FakeApi, str]]:
    fake = FakeApi()
    server = TestServer(fake.app(), host="127.0.0.1", port=0)
    await server.start_server()
    yield fake, str(server.make_url("")).rstrip("/")
    await server.close()


LOCAL = frozenset({"127.0.0.1"})


@pytest.mark.parametrize(
    "url",
    ["file:///etc/passwd", "ftp://example.com/x", "http://10.0.0.1/", "http://192.168.1.1/",
     "http://169.254.169.254/latest/meta-data/", "http://[::1]/", "http://0.0.0.0/",
     "http://[::ffff:127.0.0.1]/", "http://[64:ff9b::a00:1]/", "http://[2002:7f00:1::]/",
     "http://[::127.0.0.1]/"],
)  # fmt: skip
async def test_non_public_addresses_and_other_schemes_are_refused(url: str) -> None:
    with pytest.raises(AddressRefused):
        await fetch("GET", url, timeout_seconds=2)


async def test_loopback_is_refused_unless_allow_listed_and_redirects_are_checked(
    api: tuple[FakeApi, str],
) -> None:
    fake, base = api
    with pytest.raises(AddressRefused):
        await fetch("GET", f"{base}/orders/1")
    port = base.rsplit(":", 1)[1]
    with pytest.raises(AddressRefused, match="localhost resolves to a non-public address"):
        await fetch("GET", f"http://localhost:{port}/orders/1")
    assert (await fetch("GET", f"{base}/orders/1", allow_hosts=LOCAL)).status == 200
    with pytest.raises(AddressRefused, match=r"127\.0\.0\.2 is not a public address"):
        await fetch("GET", f"{base}/redirect", allow_hosts=LOCAL)
    fake.redirect_to = f"http://localhost:{port}/orders/9"
    both = frozenset({"127.0.0.1", "localhost"})
    moved = await fetch("GET", f"{base}/redirect", allow_hosts=both,
                        headers={"Authorization": "Bearer tool-secret"})  # fmt: skip
    assert moved.status == 200
    assert "Authorization" not in fake.requests[-1][2]  # a secret never follows to another host
    big = await fetch("GET", f"{base}/big", allow_hosts=LOCAL, max_bytes=100)
    assert (len(big.text), big.truncated) == (100, True)


CONTACT = Role()


def _context(role: Role = CONTACT, **settings: Any) -> AbilityContext:
    return AbilityContext(
        agent="receptionist", channel="sms", conversation_id=None,
        member=MemberFacts(id=1, kind="contact", role="contact"), role=role, abilities=settings,
    )  # fmt: skip


ORDER_ID = {"type": "string", "pattern": "^[0-9]{1,8}$"}


def _tools(base: str) -> dict[str, Any]:
    return {
        "allow_hosts": ["127.0.0.1"],
        "tools": {
            "order_status": {
                "description": "Where an order is", "url": f"{base}/orders/{{order_id}}",
                "parameters": {"type": "object", "required": ["order_id"],
                               "properties": {"order_id": ORDER_ID,
                                              "verbose": {"type": "boolean"}},
                               "additionalProperties": False},
                "headers": {"Authorization": "Bearer secret-api-key"}, "public": True,
            },
            "refund": {
                "description": "Refund an order", "url": f"{base}/orders/{{order_id}}",
                "method": "POST",
                "parameters": {"type": "object", "required": ["order_id", "amount"],
                               "properties": {"order_id": {"type": "string"},
                                              "amount": {"type": "number", "maximum": 500}}},
                "level": "edit",
            },
        },
    }  # fmt: skip


async def _tool(context: AbilityContext, tool: str, **arguments: Any) -> AbilityResult:
    return await abilities.call(context, "custom_tool", {"tool": tool, "arguments": arguments})


async def test_a_declared_tool_is_called_with_validated_arguments(
    api: tuple[FakeApi, str],
) -> None:
    fake, base = api
    customer = _context(custom_tool=_tools(base))

    shipped = await _tool(customer, "order_status", order_id="1234", verbose=True)
    assert shipped.text == '{"order": "1234", "status": "shipped"}'
    method, path, headers, _ = fake.requests[0]
    assert (method, path, headers["Authorization"]) == ("GET", "/orders/1234?verbose=True",
                                                        "Bearer secret-api-key")  # fmt: skip

    for bad in ({"order_id": "../../admin"}, {"order_id": "1", "sql": "DROP"}, {}):
        refused = await _tool(customer, "order_status", **bad)
        assert refused.refused
        assert refused.text.startswith("Invalid arguments for order_status:")
        assert "secret-api-key" not in refused.text
    assert len(fake.requests) == 1  # nothing invalid was sent

    assert (await _tool(customer, "refund", order_id="1", amount=50)).text == (
        "This conversation may not use 'refund'."
    )
    operator = _context(BUILTIN_ROLES["operator"], custom_tool=_tools(base))  # data: use < edit
    assert (await _tool(operator, "refund", order_id="1", amount=50)).refused
    staff = _context(BUILTIN_ROLES["admin"], custom_tool=_tools(base))
    assert (await _tool(staff, "refund", order_id="1", amount=5000)).text.startswith(
        "Invalid arguments for refund: amount: 5000 is greater than the maximum of 500"
    )
    assert not (await _tool(staff, "refund", order_id="7", amount=20)).refused
    assert fake.requests[-1][0] == "POST"
    assert fake.requests[-1][3] == {"amount": 20}


async def test_a_tool_on_a_host_not_allow_listed_is_refused(api: tuple[FakeApi, str]) -> None:
    fake, base = api
    settings = _tools(base)
    settings["allow_hosts"] = []
    refused = await _tool(_context(custom_tool=settings), "order_status", order_id="1")
    assert refused.text == "order_status may not be called: 127.0.0.1 is not a public address."
    assert fake.requests == []


def test_tool_declarations_are_checked_when_the_yaml_loads(sqlite_url: str) -> None:
    raw = make_config(sqlite_url)
    raw["agents"][0]["abilities"] = {
        "custom_tool": {"tools": {"bad": {"description": "x", "url": "gopher://x",
                                          "parameters": {"type": "object", "required": 3}}}},
        "web_search": {"provider": "searxng", "url": "http://127.0.0.1:8888"},
    }  # fmt: skip
    with pytest.raises(ConfigError) as caught:
        from_mapping(raw, env={})
    [detail] = [d.message for d in caught.value.details if d.path == "agents[0].abilities"]
    assert "custom_tool.tools.bad.url: only http(s) URLs" in detail
    assert (
        "custom_tool.tools.bad.parameters: not a valid JSON Schema: 3 is not of type 'array'"
        in detail
    )
    assert (
        "web_search: url: 127.0.0.1 is not a public address (allow-list the host to use it)"
        in detail
    )


async def test_web_search_from_searxng_and_from_knowledge_files(
    api: tuple[FakeApi, str], tmp_path: Path
) -> None:
    fake, base = api
    searx = _context(web_search={"provider": "searxng", "url": base, "allow_hosts": ["127.0.0.1"]})
    found = await abilities.call(searx, "web_search", {"query": "how often to floss"})
    assert found.text.splitlines() == [
        "Flossing guide: Floss once a day. (https://a.example/f)",
        "Whitening: Ask your dentist. (https://a.example/w)",
    ]
    assert fake.requests[0][1] == "/search?q=how+often+to+floss&format=json"

    (tmp_path / "care.md").write_text(
        "# Care\n\nBrush twice a day for two minutes.\n\nAfter an extraction, avoid straws for "
        "a week.\n"
    )
    offline = _context(web_search={"provider": "files", "folder": str(tmp_path), "max_results": 1})
    answer = await abilities.call(
        offline, "web_search", {"query": "can I use a straw after an extraction"}
    )
    assert answer.text == "care.md: After an extraction, avoid straws for a week."
