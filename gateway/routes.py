"""Non-API routes: channel webhooks, the web chat socket, health and metrics."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import func, select, text, update

import channels
from channels.base import (
    Conversational,
    SupportsStatusCallbacks,
    WebhookReceiver,
    is_forward,
    webhook_paths,
)
from gateway import webchat_socket
from gateway.http import to_raw_request
from gateway.settings import Settings
from gateway.state import Services, services
from store import outbox
from store.errors import FrontdeskError, NotFound
from store.models import Inbound, Message

log = logging.getLogger(__name__)

RouteHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def add(app: web.Application, settings: Settings) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    for name in settings.channels:
        cls = channels.load(name)
        for path in getattr(cls, "paths", ()):
            app.router.add_post(path, _conversational(name))
        message_path, status_path = webhook_paths(cls)
        if message_path:
            app.router.add_post(message_path, _webhook(name))
        if status_path:
            app.router.add_post(status_path, _status(name))
    if "webchat" in settings.channels:
        app.router.add_get("/webchat/ws", webchat_socket.handle)


def _receiver(request: web.Request, name: str) -> WebhookReceiver:
    channel = services(request).channels[name]
    if not isinstance(channel, WebhookReceiver):
        raise NotFound(f"channel {name} takes no webhooks")
    return channel


def _webhook(name: str) -> RouteHandler:
    async def handle(request: web.Request) -> web.Response:
        s = services(request)
        channel = _receiver(request, name)
        with _counting_rejections(s, name):
            raw = await to_raw_request(request, s.settings.workspace.public_url)
            message = await channel.parse(raw)
        await s.pipeline.accept(message)
        reply = channel.acknowledge(message)
        return web.Response(text=reply.body, content_type=reply.content_type)

    return handle


@contextlib.contextmanager
def _counting_rejections(s: Services, channel: str) -> Iterator[None]:
    """Count a refused request (bad signature, bad form, too large) by channel and reason."""
    try:
        yield
    except FrontdeskError as exc:
        s.metrics.rejected.labels(channel, exc.code).inc()
        raise
    except web.HTTPRequestEntityTooLarge:
        s.metrics.rejected.labels(channel, "payload_too_large").inc()
        raise


def _conversational(name: str) -> RouteHandler:
    """A request the channel answers itself (a call's TwiML), storing through its context."""

    async def handle(request: web.Request) -> web.Response:
        s = services(request)
        channel = s.channels[name]
        if not isinstance(channel, Conversational):
            raise NotFound(f"channel {name} does not answer calls")
        with _counting_rejections(s, name):
            raw = await to_raw_request(request, s.settings.workspace.public_url)
            reply = await channel.handle(raw)
        return web.Response(text=reply.body, content_type=reply.content_type)

    return handle


def _status(name: str) -> RouteHandler:
    async def handle(request: web.Request) -> web.Response:
        s = services(request)
        channel = s.channels[name]
        if not isinstance(channel, SupportsStatusCallbacks):
            raise NotFound(f"channel {name} takes no status callbacks")
        update_ = await channel.parse_status(
            await to_raw_request(request, s.settings.workspace.public_url)
        )
        async with s.sessions.begin() as session:
            current = (
                await session.execute(
                    select(Message.id, Message.status).where(
                        Message.provider_id == update_.provider_id, Message.direction == "out"
                    )
                )
            ).first()
            if current is not None and is_forward(current.status, update_.status):
                await session.execute(
                    update(Message)
                    .where(Message.id == current.id, Message.status == current.status)
                    .values(status=update_.status, error=update_.error_code or None)
                )
        return web.Response(status=204)

    return handle


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready when the database (and Redis, when configured) answer and no required
    background loop is down (waiting to be restarted after a failure)."""
    s = services(request)
    down = s.supervisor.down()
    checks: dict[str, str] = {"loops": "down: " + ", ".join(down) if down else "ok"}
    try:
        async with s.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        log.warning("readiness: database check failed: %r", exc)
        checks["database"] = "unavailable"
    if s.redis is not None:
        try:
            await s.redis.ping()
            checks["redis"] = "ok"
        except Exception as exc:
            log.warning("readiness: redis check failed: %r", exc)
            checks["redis"] = "unavailable"
    ready = all(v == "ok" for v in checks.values())
    return web.json_response(
        {"status": "ready" if ready else "unavailable", "checks": checks},
        status=200 if ready else 503,
    )


async def metrics(request: web.Request) -> web.Response:
    s = services(request)
    async with s.sessions() as session:
        pending = await session.execute(
            select(func.count()).select_from(Inbound).where(Inbound.status == "pending")
        )
        s.metrics.inbound_pending.set(pending.scalar_one())
        s.metrics.outbox_pending.set(await outbox.pending_count(session))
    return web.Response(body=s.metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})
