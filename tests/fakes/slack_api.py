"""A fake Slack Web API on 127.0.0.1: ``chat.postMessage`` as Slack answers it.

It checks the bot token, records every post (channel, text, thread_ts) with the ``ts`` it
gave it, and can be told to answer the next requests with 429 and ``Retry-After``
(``rate_limit_next``; ``rate_limited`` counts the 429s it gave).
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes._waiting import until


@dataclass
class Post:
    channel: str
    text: str
    thread_ts: str | None
    ts: str


@dataclass
class FakeSlack:
    token: str
    posts: list[Post] = field(default_factory=list)
    rate_limit_next: int = 0
    rate_limited: int = 0
    _ts: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/api/chat.postMessage", self._post)
        return app

    async def _post(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response({"ok": False, "error": "invalid_auth"})
        if self.rate_limit_next:
            self.rate_limit_next -= 1
            self.rate_limited += 1
            return web.json_response({"ok": False, "error": "ratelimited"}, status=429,
                                     headers={"Retry-After": "1"})  # fmt: skip
        body: dict[str, Any] = (
            await request.json() if request.content_type == "application/json"
            else dict(await request.post())
        )  # fmt: skip
        ts = f"1700000000.{next(self._ts):06d}"
        async with self._changed:
            self.posts.append(Post(str(body["channel"]), str(body.get("text", "")),
                                   body.get("thread_ts"), ts))  # fmt: skip
            self._changed.notify_all()
        return web.json_response({"ok": True, "channel": body["channel"], "ts": ts})

    async def wait(self, count: int, timeout: float = 10.0) -> list[Post]:
        await until(self._changed, lambda: len(self.posts) >= count, timeout,
                    lambda: f"{len(self.posts)} of {count} Slack posts arrived")  # fmt: skip
        return self.posts
