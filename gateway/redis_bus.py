"""Fan-out and the work queue on Redis, so several gateway processes serve one workspace.

Pub/sub: one subscriber connection per process, one Redis channel per topic; each
process runs its own local handlers (a web chat reply published by process B is
written to the socket by process A, which holds it).

Work queue: a Redis list of keys (``LPUSH``/``BRPOP``). A key is leased with
``SET NX PX`` and a random token, refreshed while held and released only by its holder
(compare-and-delete in Lua), so a crashed holder's lease simply expires.

Timeouts: every connection has a socket timeout (redis-py's default is 5 s), so a dead
connection is noticed. ``BRPOP`` blocks on the server for less than that timeout: a
block as long as the timeout made the socket give up first, the error killed the
processor, and an idle process stopped answering (issue 13). A read that times out all
the same means "nothing yet". The pub/sub reader and the lease refresher are loops kept
by the supervisor: if one fails it is logged, counted and started again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Mapping
from typing import Any

import redis.asyncio as redis
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeout

from gateway.bus import Handler, deliver
from gateway.supervisor import Supervisor

log = logging.getLogger(__name__)

PREFIX = "frontdesk:"
QUEUE = PREFIX + "work"
LEASE_MS = 30_000
SOCKET_TIMEOUT_SECONDS = 5.0
_RELEASE = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
)
_REFRESH = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then "
    "return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"
)


def connect(
    url: str, max_connections: int = 64, socket_timeout: float = SOCKET_TIMEOUT_SECONDS
) -> redis.Redis:
    """A client whose pool waits for a free connection instead of failing past its size,
    and whose reads give up after ``socket_timeout`` seconds."""
    pool = redis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=10,
        socket_timeout=socket_timeout,
        socket_connect_timeout=socket_timeout,
    )
    return redis.Redis.from_pool(pool)  # closing the client closes its pool


def block_seconds(socket_timeout: float) -> float:
    """How long ``BRPOP`` blocks on the server: well inside the socket's timeout."""
    return max(min(socket_timeout / 2, 5.0), 0.05)


class RedisPubSub:
    def __init__(self, client: redis.Redis, supervisor: Supervisor | None = None) -> None:
        self._client = client
        self._pubsub = client.pubsub(ignore_subscribe_messages=True)
        self._handlers: dict[str, list[Handler]] = {}
        self._supervisor = supervisor or Supervisor()
        self._reader: asyncio.Task[None] | None = None

    async def publish(self, topic: str, payload: Mapping[str, Any]) -> None:
        await self._client.publish(PREFIX + topic, json.dumps(payload))

    async def subscribe(self, topic: str, handler: Handler) -> None:
        if topic not in self._handlers:
            await self._pubsub.subscribe(PREFIX + topic)
        self._handlers.setdefault(topic, []).append(handler)
        if self._reader is None:
            self._reader = self._supervisor.keep(
                "redis-pubsub-reader", self._read, cancel_on_stop=True
            )

    async def _read(self) -> None:
        """Deliver what arrives until cancelled; a lost connection is the supervisor's to
        retry (redis-py resubscribes when the connection is made again)."""
        while True:
            message = await self._pubsub.get_message(timeout=None)
            if message is None or message.get("type") != "message":
                continue
            try:
                topic = _text(message["channel"]).removeprefix(PREFIX)
                payload = json.loads(message["data"])
            except (ValueError, UnicodeDecodeError) as exc:
                log.warning("ignored a pub/sub message that is not JSON: %s", exc)
                continue
            if isinstance(payload, dict):
                await deliver(self._handlers.get(topic, []), payload)
            else:
                log.warning("ignored a pub/sub message that is not a JSON object")

    async def close(self) -> None:
        if self._reader is not None:
            await self._supervisor.end("redis-pubsub-reader")
        await self._pubsub.aclose()  # type: ignore[no-untyped-call]


class RedisWorkQueue:
    def __init__(
        self,
        client: redis.Redis,
        blocking: redis.Redis,
        supervisor: Supervisor | None = None,
        socket_timeout: float = SOCKET_TIMEOUT_SECONDS,
    ) -> None:
        """``blocking`` is a client of its own for ``BRPOP`` (which holds its connection),
        made with ``socket_timeout`` like ``connect`` makes it."""
        self._client = client
        self._blocking = blocking
        self._block = block_seconds(socket_timeout)
        self._held: dict[str, str] = {}  # key -> our lease token
        self._supervisor = supervisor or Supervisor()
        self._refresher: asyncio.Task[None] | None = None

    async def push(self, key: str) -> None:
        await self._client.lpush(QUEUE, key)

    async def pop_many(self, limit: int) -> list[str]:
        while True:
            try:
                item = await self._blocking.brpop([QUEUE], timeout=self._block)
            except RedisTimeout:  # the socket gave up before the server answered: nothing yet
                continue
            if item is not None:
                break
        keys = {_text(item[1]): None}
        if limit > 1:
            more = await self._client.rpop(QUEUE, limit - 1) or []
            keys.update((_text(k), None) for k in more)
        return list(keys)

    async def claim(self, keys: list[str]) -> list[str]:
        wanted = list(dict.fromkeys(keys))
        tokens = [secrets.token_hex(16) for _ in wanted]
        async with self._client.pipeline(transaction=False) as pipe:
            for key, token in zip(wanted, tokens, strict=True):
                pipe.set(PREFIX + "lease:" + key, token, nx=True, px=LEASE_MS)
            results = await pipe.execute()
        claimed = [k for k, ok in zip(wanted, results, strict=True) if ok]
        self._held.update((k, t) for k, t, ok in zip(wanted, tokens, results, strict=True) if ok)
        if self._held and self._refresher is None:
            self._refresher = self._supervisor.keep(
                "lease-refresher", self._refresh, cancel_on_stop=True
            )
        return claimed

    async def release(self, keys: list[str]) -> None:
        held = [(k, self._held.pop(k)) for k in keys if k in self._held]
        if not held:
            return
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for key, token in held:
                    pipe.eval(_RELEASE, 1, PREFIX + "lease:" + key, token)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning(
                "could not release %s leases (%s); they expire by themselves", len(held), exc
            )

    async def _refresh(self) -> None:
        """Every third of a lease, extend the leases held; runs until cancelled."""
        while True:
            await asyncio.sleep(LEASE_MS / 3000)
            if not self._held:
                continue
            try:
                async with self._client.pipeline(transaction=False) as pipe:
                    for key, token in list(self._held.items()):
                        pipe.eval(_REFRESH, 1, PREFIX + "lease:" + key, token, LEASE_MS)
                    await pipe.execute()
            except (RedisError, OSError) as exc:
                log.warning("could not refresh leases: %s", exc)

    async def close(self) -> None:
        if self._refresher is not None:
            await self._supervisor.end("lease-refresher")
        await self.release(list(self._held))
        await self._blocking.aclose()


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
