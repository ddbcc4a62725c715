"""A fake Twilio REST API on 127.0.0.1 that speaks the wire format our client uses.

It checks HTTP Basic auth like Twilio, records every ``Messages.json`` create, lists them
(``GET Messages.json?To=&From=&DateSent>=``, paged as Twilio pages), and can be told to
fail the next requests (a 5xx, a Twilio 4xx with its error code, a hang, or ``"taken"``:
the message is sent but the answer never comes, as when a process dies mid-request).
"""

from __future__ import annotations

import asyncio
import base64
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from aiohttp import web

from tests.fakes._waiting import until


@dataclass
class SentSms:
    to: str
    from_: str
    body: str
    status_callback: str | None
    sid: str
    date_sent: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass
class PlacedCall:
    to: str
    from_: str
    twiml: str
    sid: str


@dataclass
class FakeTwilio:
    account_sid: str
    auth_token: str
    sent: list[SentSms] = field(default_factory=list)
    calls: list[PlacedCall] = field(default_factory=list)
    requests: int = 0  # creates (POST Messages.json) only
    lookups: int = 0  # lists (GET Messages.json)
    script: list[Any] = field(default_factory=list)  # int status, ("error", status, code), "hang"
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", self._create)
        app.router.add_get("/2010-04-01/Accounts/{sid}/Messages.json", self._list)
        app.router.add_post("/2010-04-01/Accounts/{sid}/Calls.json", self._call)
        return app

    async def _call(self, request: web.Request) -> web.Response:
        """Calls.json with inline TwiML (``Twiml``), as the twilio SDK sends it."""
        if not self._authorised(request) or request.match_info["sid"] != self.account_sid:
            return _error(401, 20003, "Authenticate")
        form = await request.post()
        if "Twiml" not in form and "Url" not in form:
            return _error(400, 21205, "Url or Twiml is required")
        call = PlacedCall(
            to=str(form["To"]),
            from_=str(form["From"]),
            twiml=str(form.get("Twiml", "")),
            sid="CA" + secrets.token_hex(16),
        )
        async with self._changed:
            self.calls.append(call)
            self._changed.notify_all()
        return web.json_response({
            "sid": call.sid, "account_sid": self.account_sid, "to": call.to, "from": call.from_,
            "status": "queued", "direction": "outbound-api", "api_version": "2010-04-01",
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Calls/{call.sid}.json",
        }, status=201)  # fmt: skip

    async def wait_calls(self, count: int, timeout: float = 10.0) -> list[PlacedCall]:
        await until(self._changed, lambda: len(self.calls) >= count, timeout)
        return list(self.calls)

    def _authorised(self, request: web.Request) -> bool:
        expected = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        return request.headers.get("Authorization") == f"Basic {expected}"

    async def _create(self, request: web.Request) -> web.Response:
        async with self._changed:
            self.requests += 1
            self._changed.notify_all()
        if not self._authorised(request) or request.match_info["sid"] != self.account_sid:
            return _error(401, 20003, "Authenticate")
        step = self.script.pop(0) if self.script else None
        if step == "hang":
            await asyncio.sleep(3600)
        if isinstance(step, int):
            return _error(step, 20500, "Internal Server Error")
        if isinstance(step, tuple):
            return _error(step[1], step[2], "The 'To' number is not a valid phone number.")
        form = await request.post()
        sms = SentSms(
            to=str(form["To"]),
            from_=str(form["From"]),
            body=str(form["Body"]),
            status_callback=str(form["StatusCallback"]) if "StatusCallback" in form else None,
            sid="SM" + secrets.token_hex(16),
        )
        async with self._changed:
            self.sent.append(sms)
            self._changed.notify_all()
        if step == "taken":
            await asyncio.sleep(3600)
        return web.json_response(self._resource(sms), status=201)

    def _resource(self, sms: SentSms) -> dict[str, Any]:
        dated = format_datetime(sms.date_sent)  # RFC 2822, as Twilio dates its resources
        return {
            "sid": sms.sid, "account_sid": self.account_sid, "to": sms.to, "from": sms.from_,
            "body": sms.body, "status": "queued", "num_segments": "1",
            "direction": "outbound-api", "api_version": "2010-04-01",
            "date_created": dated, "date_updated": dated, "date_sent": dated,
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sms.sid}.json",
        }  # fmt: skip

    async def _list(self, request: web.Request) -> web.Response:
        """Messages, newest first, filtered like Twilio: ``To``, ``From``, and ``DateSent>=``
        by date (Twilio compares the day: ``YYYY-MM-DD`` or a full timestamp's day)."""
        if not self._authorised(request) or request.match_info["sid"] != self.account_sid:
            return _error(401, 20003, "Authenticate")
        async with self._changed:
            self.lookups += 1
            self._changed.notify_all()
        query = request.query
        after = query.get("DateSent>")  # aiohttp splits ``DateSent>=X`` at its ``=``
        day = after.lstrip("=")[:10] if after is not None else None
        if day is not None and len(day) != 10:
            return _error(400, 20001, "Invalid DateSent")
        found = [
            s for s in reversed(self.sent)
            if query.get("To", s.to) == s.to and query.get("From", s.from_) == s.from_
            and (day is None or s.date_sent.strftime("%Y-%m-%d") >= day)
        ]  # fmt: skip
        size = int(query.get("PageSize", "50"))
        page = int(query.get("Page", "0"))
        chunk = found[page * size : (page + 1) * size]
        more = (page + 1) * size < len(found)
        at = request.rel_url
        return web.json_response({
            "messages": [self._resource(s) for s in chunk],
            "first_page_uri": str(at.update_query(Page=0)), "uri": str(at),
            "next_page_uri": str(at.update_query(Page=page + 1)) if more else None,
            "previous_page_uri": None, "page": page, "page_size": size,
            "start": page * size, "end": page * size + len(chunk) - 1,
        })  # fmt: skip

    async def wait_sent(self, count: int, timeout: float = 10.0) -> list[SentSms]:
        """Wait until ``count`` messages were taken; return them."""
        await until(self._changed, lambda: len(self.sent) >= count, timeout)
        return list(self.sent)

    async def wait_sent_to(self, to: str, timeout: float = 10.0) -> list[SentSms]:
        """Wait until a message to ``to`` was taken; return those to ``to``."""
        await until(self._changed, lambda: any(s.to == to for s in self.sent), timeout)
        return [s for s in self.sent if s.to == to]

    async def wait_requests(self, count: int, timeout: float = 10.0) -> None:
        await until(self._changed, lambda: self.requests >= count, timeout)


def _error(status: int, code: int, message: str) -> web.Response:
    return web.json_response(
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
        status=status,
    )
