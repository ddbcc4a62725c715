"""``create_app(settings) -> web.Application``: wiring only.

Everything with a lifetime (engine, HTTP session, Redis, channels, background loops)
is opened and closed in one ``cleanup_ctx`` generator and reachable through the app's
``STATE`` key. Routes live in ``gateway.routes``, the admin API in ``gateway.api``, the
pages (console, web chat widget) in ``gateway.web``, the web chat socket in
``gateway.webchat_socket``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import aiohttp
import redis.asyncio as redis
from aiohttp import web

import channels
from agents.examiner import Examiner
from agents.runtime import Runtime
from channels import webchat
from channels.base import ChannelContext, InboundMessage, Listener
from escalation.presence import MemoryPresence, Presence, RedisPresence
from gateway import api, http, live, redis_bus, routes
from gateway import web as web_pages
from gateway.api import imports
from gateway.bus import MemoryPubSub, MemoryWorkQueue, PubSub, WorkQueue
from gateway.calls import TOPIC as TURNS_TOPIC
from gateway.delivery import Deliverer
from gateway.examinations import STALE, Examinations
from gateway.metrics import Metrics
from gateway.pipeline import Accepted, Pipeline
from gateway.processor import Processor
from gateway.settings import Settings
from gateway.sockets import WebChatSockets
from gateway.state import STATE, AppState, Services
from gateway.supervisor import Supervisor
from gateway.web.console import Consoles
from store.engine import checkpoint, create_engine, session_factory, sqlite_path

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_SECONDS = 5.0
CHECKPOINT_SECONDS = 1.0
ROUTE_SECONDS = 1.0


def create_app(
    settings: Settings, *, runtime: Runtime | None = None, presence: Presence | None = None
) -> web.Application:
    """The gateway for ``settings``. ``runtime`` replaces the agents' runtime, ``presence``
    where operators' presence is kept (tests: Redis behind a proxy they can cut)."""
    app = web.Application(
        client_max_size=settings.gateway.max_body_bytes,
        middlewares=[http.request_ids, http.errors],
    )
    app[STATE] = AppState(settings, runtime, presence)
    app.cleanup_ctx.append(_lifecycle)
    routes.add(app, settings)
    api.add(app)
    web_pages.add(app, settings)
    return app


async def _open_bus(
    settings: Settings, supervisor: Supervisor
) -> tuple[redis.Redis | None, PubSub, WorkQueue]:
    storage = settings.storage
    if storage.redis_url is None:
        return None, MemoryPubSub(), MemoryWorkQueue()
    timeout = storage.redis_timeout_seconds
    client = redis_bus.connect(storage.redis_url, storage.pool_size * 4, timeout)
    await client.ping()
    blocking = redis_bus.connect(storage.redis_url, 2, timeout)
    return (
        client,
        redis_bus.RedisPubSub(client, supervisor),
        redis_bus.RedisWorkQueue(client, blocking, supervisor, timeout),
    )


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    state = app[STATE]
    settings = state.settings
    url = settings.storage.database_url
    engine = create_engine(url, pool_size=settings.storage.pool_size, manual_checkpoints=True)
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
    metrics = Metrics()
    supervisor = Supervisor(metrics)
    client, pubsub, queue = await _open_bus(settings, supervisor)

    async def submit(message: InboundMessage) -> Accepted:
        return await pipeline.accept(message)  # bound below, before any listener starts

    context = ChannelContext(
        public_url=settings.workspace.public_url,
        default_region=settings.workspace.default_region,
        http=session,
        publish=pubsub.publish,
        submit=submit,
        pickup=lambda channel, external_id, wait: pipeline.calls.pickup(channel, external_id, wait),
        end=lambda channel, inbox, sender: pipeline.calls.end(channel, inbox, sender),
        take=lambda handoff, phone: pipeline.live.answer_call(handoff, phone),
        command=lambda channel, address, text: pipeline.live.command(channel, address, text),
    )
    opened = {name: channels.load(name)(cfg, context) for name, cfg in settings.channels.items()}
    sessions = session_factory(engine)
    own_runtime = state.runtime is None
    runtime = state.runtime or runtime_for(settings, metrics)
    runtime.use_store(sessions)
    await runtime.warm_up()
    ttl = settings.escalation.operators.heartbeat_ttl_seconds
    presence = state.presence or (
        RedisPresence(client, ttl) if client is not None else MemoryPresence(ttl)
    )
    pipeline = Pipeline(
        sessions, queue, settings, metrics, lambda: deliverer.wake(),
        presence=presence, publish=pubsub.publish,
    )  # fmt: skip
    pipeline.live.attach(pubsub.publish, supervisor)
    deliverer = Deliverer(
        sessions, opened, settings.gateway, metrics, supervisor, pipeline.defer_to_accepts
    )
    sockets, consoles = WebChatSockets(), Consoles()
    examinations = Examinations(sessions, settings, Examiner(), supervisor, pipeline.live)
    for name, channel in opened.items():
        if isinstance(channel, Listener) and await channel.start():
            supervisor.keep(f"{name}-listener", channel.serve, cancel_on_stop=True)
    await pubsub.subscribe(webchat.TOPIC, sockets.deliver)
    await pubsub.subscribe(live.TOPIC, consoles.changed)
    await pubsub.subscribe(TURNS_TOPIC, pipeline.calls.turns_done)
    state.running = Services(
        settings, engine, sessions, session, client, pubsub, queue, opened, runtime,
        pipeline, deliverer, supervisor, metrics, sockets, consoles, examinations,
    )  # fmt: skip
    stop = asyncio.Event()
    processor = Processor(queue, pipeline, runtime, supervisor, metrics, settings.gateway.workers)
    if settings.gateway.workers > 0:
        await _start_workers(state.services, processor, stop)
    try:
        yield
    finally:
        # Every loop stops between transactions: none is cancelled mid-way.
        stop.set()
        processor.stop()
        deliverer.stop()
        await supervisor.stop(SHUTDOWN_GRACE_SECONDS)
        await supervisor.drain(SHUTDOWN_GRACE_SECONDS)
        await pipeline.close()
        await deliverer.close()
        await examinations.close()
        await sockets.close_all()
        await consoles.close_all()
        for channel in opened.values():
            await channel.close()
        await pubsub.close()
        await queue.close()
        if client is not None:
            await client.aclose()
        await session.close()
        await engine.dispose()
        if own_runtime:
            await runtime.close()
        state.running = None


def runtime_for(settings: Settings, metrics: Metrics | None = None, **options: Any) -> Runtime:
    """The agent runtime for ``settings`` (ability calls counted in ``metrics``); ``options``
    go to ``Runtime`` (tests give scripted chat models)."""
    return Runtime(
        settings.agents,
        settings.workspace.name,
        workflows=settings.workflows,
        region=settings.workspace.default_region,
        timezone=settings.workspace.timezone,
        count=(lambda name, outcome: metrics.abilities.labels(name, outcome).inc())
        if metrics is not None
        else None,
        **options,
    )


async def _start_workers(s: Services, processor: Processor, stop: asyncio.Event) -> None:
    """Resume what a crash left behind, then keep the processor, deliverer, sweeper,
    routing and WAL checkpoints running under the supervisor."""
    for key in await s.pipeline.pending_keys():
        await s.pipeline.enqueue(key)
    s.supervisor.spawn(s.examinations.sweep(), name="grade-left")
    s.supervisor.spawn(imports.sweep(s), name="imports-left")
    keep = s.supervisor.keep
    keep("processor", processor.run)
    keep("deliverer", s.deliverer.run)
    keep("sweeper", lambda: _sweep(s, stop))
    path = sqlite_path(s.settings.storage.database_url)
    if path is not None:  # a missed checkpoint only lets the WAL grow: not a reason to be unready
        keep("wal-checkpoint", lambda: _checkpoint(path, stop), required=False)
    ladders = any(rule.ladder for rule in s.settings.escalation.notify)
    if s.pipeline.live.enabled or ladders:
        keep("routing", lambda: _route(s, stop))


async def _route(s: Services, stop: asyncio.Event) -> None:
    """Every second: give back what operators who went offline held, offer waiting handoffs
    to operators with room, notify for those that waited past their group's timeout, and
    climb the notification ladders of handoffs nobody has taken."""
    live = s.pipeline.live
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=ROUTE_SECONDS)
            return
        # A failing pass is the supervisor's to log, count and restart (readiness says so).
        if live.enabled:
            await live.release_absent()
            await live.route_queued()
        await s.pipeline.climb()


async def _checkpoint(path: str, stop: asyncio.Event) -> None:
    """SQLite's WAL is checkpointed here, off the request path (see ``create_engine``)."""
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=CHECKPOINT_SECONDS)
        try:
            await checkpoint(path)
        except sqlite3.Error as exc:
            log.warning("WAL checkpoint failed: %s", exc)


async def _sweep(s: Services, stop: asyncio.Event) -> None:
    """Re-queue messages left pending too long: their queue entry was lost with a crashed
    process or a Redis outage. A timer is the only signal such a loss leaves."""
    interval = s.settings.gateway.sweep_seconds
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)
            return
        # A failure is the supervisor's to log, count and restart (readiness says so).
        keys = await s.pipeline.pending_keys(older_than=timedelta(seconds=interval))
        for key in keys:
            await s.pipeline.enqueue(key)
        await s.examinations.sweep(older_than=STALE)
        await imports.sweep(s)
