"""A fake OpenAI-compatible chat completions API on 127.0.0.1 (``POST /v1/chat/completions``).

It answers from a script of assistant turns -- text, or tool calls -- in OpenAI's wire
format, and records every request (its JSON and Authorization header) for assertions.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes._waiting import until


@dataclass
class FakeOpenAI:
    script: list[str | list[tuple[str, dict[str, Any]]]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    authorizations: list[str] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._complete)
        return app

    async def _complete(self, request: web.Request) -> web.Response:
        body = await request.json()
        async with self._changed:
            self.requests.append(body)
            self.authorizations.append(request.headers.get("Authorization", ""))
            self._changed.notify_all()
        turn = self.script.pop(0) if self.script else "(the script ran out)"
        if isinstance(turn, str):
            message: dict[str, Any] = {"role": "assistant", "content": turn}
            finish = "stop"
        else:
            message = {"role": "assistant", "content": None, "tool_calls": [
                {"id": f"call_{next(self._ids)}", "type": "function",
                 "function": {"name": name, "arguments": json.dumps(args)}}
                for name, args in turn
            ]}  # fmt: skip
            finish = "tool_calls"
        return web.json_response({
            "id": f"chatcmpl-{next(self._ids)}", "object": "chat.completion",
            "created": int(time.time()), "model": body.get("model", "gpt-test"),
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25},
        })  # fmt: skip

    async def wait_requests(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Wait until ``count`` completions were asked for; return their bodies."""
        await until(self._changed, lambda: len(self.requests) >= count, timeout)
        return list(self.requests)
