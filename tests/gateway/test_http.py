"""Every error answer is the JSON error shape, whoever raised it: our code, aiohttp's router,
its body reader, a WebSocket handshake, or a bug."""

from __future__ import annotations

import io
import logging
from typing import Any

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer

from gateway import http
from tests.helpers import Gateway


@pytest.fixture
def gateway(sqlite_gateway: Gateway) -> Gateway:
    """No store is involved: one back end is enough."""
    return sqlite_gateway


async def _error(response: ClientResponse, status: int, code: str) -> dict[str, Any]:
    assert response.status == status
    assert response.content_type == "application/json"
    body = await response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    assert body["error"]["details"] == []
    return dict(body["error"])


@pytest.mark.parametrize(
    "path", ["/api/nothing-here", "/nothing-here", "/console/nothing", "/channels/twilio/fax"]
)
async def test_an_unknown_path_is_a_json_404_on_every_prefix(gateway: Gateway, path: str) -> None:
    await _error(await gateway.client.get(path), 404, "not_found")


async def test_a_method_a_path_does_not_take_is_a_json_405_with_allow(gateway: Gateway) -> None:
    for method, path in (("DELETE", "/healthz"), ("GET", "/channels/twilio/sms"),
                         ("PUT", "/api/sessions"), ("POST", "/console")):  # fmt: skip
        response = await gateway.client.request(method, path)
        error = await _error(response, 405, "method_not_allowed")
        assert method in error["message"]
        assert response.headers["Allow"]


async def test_a_body_over_the_limit_is_a_json_413(gateway: Gateway) -> None:
    big = b"x" * (gateway.settings.gateway.max_body_bytes + 1)
    form = "application/x-www-form-urlencoded"
    for path, content_type in (("/api/sessions", "application/json"),
                               ("/channels/twilio/sms", form)):  # fmt: skip
        response = await gateway.client.post(
            path, data=io.BytesIO(big), headers={"Content-Type": content_type}
        )
        error = await _error(response, 413, "payload_too_large")
        assert "exceeded" in error["message"]


async def test_bad_json_and_a_plain_get_on_a_websocket_are_json_400s(gateway: Gateway) -> None:
    response = await gateway.client.post(
        "/api/sessions", data=b"{not json", headers={"Content-Type": "application/json"}
    )
    await _error(response, 400, "bad_request")
    await _error(await gateway.client.get("/webchat/ws"), 400, "bad_request")


async def test_an_unexpected_exception_is_a_json_500_that_hides_its_cause(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(request: web.Request) -> web.Response:
        raise KeyError("secret-column-name")

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPFound("/elsewhere")

    app = web.Application(middlewares=[http.request_ids, http.errors])
    app.router.add_get("/broken", broken)
    app.router.add_get("/moved", moved)
    async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as client:
        with caplog.at_level(logging.ERROR, logger="gateway.http"):
            response = await client.get("/broken")
            error = await _error(response, 500, "internal")
        assert "secret-column-name" not in error["message"]
        assert "secret-column-name" in caplog.text  # the cause is in the log
        redirect = await client.get("/moved", allow_redirects=False)
        assert (redirect.status, redirect.headers["Location"]) == (302, "/elsewhere")
