"""The web chat sockets this process holds, by visitor id; fed by pub/sub."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web


class WebChatSockets:
    """The sockets this process holds, by visitor id."""

    def __init__(self) -> None:
        self._by_visitor: dict[str, set[web.WebSocketResponse]] = {}

    def add(self, visitor: str, ws: web.WebSocketResponse) -> None:
        self._by_visitor.setdefault(visitor, set()).add(ws)

    def remove(self, visitor: str, ws: web.WebSocketResponse) -> None:
        sockets = self._by_visitor.get(visitor)
        if sockets is not None:
            sockets.discard(ws)
            if not sockets:
                del self._by_visitor[visitor]

    async def deliver(self, payload: Mapping[str, Any]) -> None:
        """A pub/sub handler: write ``payload["frame"]`` to the visitor's sockets here."""
        for ws in list(self._by_visitor.get(str(payload.get("visitor")), ())):
            if not ws.closed:
                await ws.send_json(payload["frame"])

    async def close_all(self) -> None:
        for sockets in list(self._by_visitor.values()):
            for ws in list(sockets):
                await ws.close()
        self._by_visitor.clear()
