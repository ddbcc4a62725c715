"""The operator console: ``GET /console`` (one static page), its socket ``/console/ws``, and
``POST /api/sessions`` (sign in with email and password, get an API token; ten failures
for an address in five minutes and it waits) and ``DELETE /api/sessions`` (sign out:
revoke the token).

The page is plain HTML and JavaScript served from the package -- no build step, nothing
to install, one file to read. It signs in (password or token), then uses the admin API
for every action (go live, heartbeat, take, reply, notes, hand back, close, history) and
the socket for what changes: on ``{"type": "hello", "token": ...}`` the server sends the
operator's board (``gateway.api.board.board``) and sends it again whenever it changes --
on the ``console`` pub/sub topic any gateway process publishes to, and at least every
few seconds (so a missed publish only delays an update). The token is checked on every
refresh: a revoked token or a role that lost ``operators: use`` ends the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Mapping
from importlib import resources
from typing import Any

from aiohttp import WSMsgType, web
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import update

from gateway.api.board import board
from gateway.api.live import OPERATORS_USE
from gateway.state import Services, services
from people import credentials
from people.roles import allows, load_book
from store.errors import TooManyAttempts, Unauthenticated, ValidationFailed
from store.models import ApiToken, Member, utcnow
from store.text import loads_json

log = logging.getLogger(__name__)

REFRESH_SECONDS = 3.0
HELLO_SECONDS = 10.0
MAX_FAILURES = 10
WINDOW_SECONDS = 300.0


class Consoles:
    """The console sockets this process holds: each waits on its own event."""

    def __init__(self) -> None:
        self._waiting: dict[asyncio.Event, web.WebSocketResponse] = {}

    def watch(self, ws: web.WebSocketResponse) -> asyncio.Event:
        event = asyncio.Event()
        self._waiting[event] = ws
        return event

    def unwatch(self, event: asyncio.Event) -> None:
        self._waiting.pop(event, None)

    async def close_all(self) -> None:
        for ws in list(self._waiting.values()):
            await ws.close()

    async def changed(self, _payload: Mapping[str, Any]) -> None:
        """A pub/sub handler: every console here refreshes."""
        for event in self._waiting:
            event.set()


async def page(_request: web.Request) -> web.Response:
    html = resources.files("gateway.web").joinpath("static/console.html").read_text("utf-8")
    return web.Response(text=html, content_type="text/html")


class SignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=1024)


class Attempts:
    """Failed sign-ins per email address in a sliding window: past ``MAX_FAILURES`` in
    ``WINDOW_SECONDS`` the address is refused (429) until the window moves on. In process
    (several gateway processes each keep their own count)."""

    def __init__(self) -> None:
        self._failed: dict[str, deque[float]] = {}

    def _recent(self, key: str) -> deque[float]:
        failed = self._failed.setdefault(key, deque())
        while failed and failed[0] < time.monotonic() - WINDOW_SECONDS:
            failed.popleft()
        return failed

    def blocked(self, key: str) -> bool:
        return len(self._recent(key)) >= MAX_FAILURES

    def failed(self, key: str) -> None:
        self._recent(key).append(time.monotonic())
        if len(self._failed) > 10_000:  # forget the oldest addresses, not memory
            self._failed.pop(next(iter(self._failed)))

    def succeeded(self, key: str) -> None:
        self._failed.pop(key, None)


ATTEMPTS = web.AppKey("sign_in_attempts", Attempts)


async def sign_in(request: web.Request) -> web.Response:
    """``POST /api/sessions``: ``{"email", "password"}`` -> 201 ``{"token", "member"}``."""
    s = services(request)
    try:
        body = SignIn.model_validate(await request.json(loads=loads_json))
    except (ValueError, UnicodeDecodeError, ValidationError) as exc:
        raise ValidationFailed('send {"email": ..., "password": ...}') from exc
    attempts, key = request.app[ATTEMPTS], body.email.strip().lower()
    if attempts.blocked(key):
        raise TooManyAttempts("too many failed sign-ins for this address; wait a few minutes")
    async with s.sessions() as session:
        member_id, stored = await credentials.password_of(session, key)
    ok = await credentials.verify_password(stored, body.password)  # no transaction open
    if not ok or member_id is None:
        attempts.failed(key)
        raise Unauthenticated("the email or password is wrong")
    attempts.succeeded(key)
    async with s.sessions.begin() as session:
        member = await session.get(Member, member_id)
        if member is None:
            raise Unauthenticated("the email or password is wrong")
        token = await credentials.create_token(session, member, "console")
    return web.json_response({"token": token, "member": str(member_id)}, status=201)


async def sign_out(request: web.Request) -> web.Response:
    """``DELETE /api/sessions``: revoke the bearer token this request carries."""
    s = services(request)
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("send Authorization: Bearer <token>")
    async with s.sessions.begin() as session:
        revoked = await session.execute(
            update(ApiToken)
            .where(ApiToken.token_hash == credentials.hash_token(token.strip()),
                   ApiToken.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )  # fmt: skip
    if revoked.rowcount != 1:  # type: ignore[attr-defined]
        raise Unauthenticated("the token is unknown or revoked")
    return web.Response(status=204)


async def socket(request: web.Request) -> web.WebSocketResponse:
    s = services(request)
    ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=16_384)
    await ws.prepare(request)
    try:
        hello = await ws.receive(timeout=HELLO_SECONDS)
        frame = loads_json(hello.data) if hello.type == WSMsgType.TEXT else {}
    except (TimeoutError, ValueError):
        frame = {}
    if not isinstance(frame, dict):
        frame = {}
    token = str(frame.get("token") or "")
    try:
        first = await _board(s, token) if frame.get("type") == "hello" else None
    except Exception:
        log.exception("could not build a console board")
        await ws.close(code=1011, message=b"unavailable, try again")
        return ws
    if first is None:
        await _refuse(ws)
        return ws
    changed = s.consoles.watch(ws)
    pushing = asyncio.create_task(_push(s, ws, token, changed), name="console-push")
    try:
        async for _ in ws:  # the client only says hello; reading notices it leaving
            pass
    finally:
        s.consoles.unwatch(changed)
        pushing.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await pushing
    return ws


async def _refuse(ws: web.WebSocketResponse) -> None:
    with contextlib.suppress(ConnectionError):
        await ws.send_json({"type": "error", "code": "unauthenticated", "message": "sign in again"})
        await ws.close()


async def _board(s: Services, token: str) -> dict[str, Any] | None:
    """The board for the token's member, or None when they may not have one."""
    async with s.sessions() as session:
        member = await credentials.authenticate(session, token) if token else None
        if member is None:
            return None
        book = await load_book(session, s.settings.roles)
        if not allows(book.get(member.role), OPERATORS_USE):
            return None
        return await board(session, s.pipeline.live, member, book)


async def _push(s: Services, ws: web.WebSocketResponse, token: str, changed: asyncio.Event) -> None:
    last: dict[str, Any] | None = None
    while not ws.closed:
        changed.clear()
        try:
            board = await _board(s, token)
        except Exception:  # a database hiccup: keep the last board, try again shortly
            log.exception("could not build a console board; retrying")
        else:
            if board is None:  # the token was revoked, or the role lost operators: use
                await _refuse(ws)
                return
            if board != last:
                try:
                    await ws.send_json(board)
                except ConnectionError:
                    return  # the console is going away
                last = board
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), REFRESH_SECONDS)


def add(app: web.Application) -> None:
    app.router.add_get("/console", page)
    app.router.add_get("/console/ws", socket)
    app[ATTEMPTS] = Attempts()
    app.router.add_post("/api/sessions", sign_in)
    app.router.add_delete("/api/sessions", sign_out)
