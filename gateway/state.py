"""The app's state: one ``AppState`` under the ``STATE`` key, holding ``Services`` while running."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import aiohttp
import redis.asyncio as redis
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from agents.runtime import Runtime
from channels.base import Channel
from escalation.presence import Presence
from gateway.bus import PubSub, WorkQueue
from gateway.delivery import Deliverer
from gateway.examinations import Examinations
from gateway.metrics import Metrics
from gateway.pipeline import Pipeline
from gateway.settings import Settings
from gateway.sockets import WebChatSockets

if TYPE_CHECKING:  # the console's module reads Services through this one
    from gateway.web.console import Consoles
from gateway.supervisor import Supervisor


@dataclass
class Services:
    """What handlers use; exists while the app runs."""

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    http: aiohttp.ClientSession
    redis: redis.Redis | None
    pubsub: PubSub
    queue: WorkQueue
    channels: dict[str, Channel]
    runtime: Runtime
    pipeline: Pipeline
    deliverer: Deliverer
    supervisor: Supervisor
    metrics: Metrics
    sockets: WebChatSockets
    consoles: Consoles
    examinations: Examinations


class AppState:
    """The one mutable object the app holds; ``services`` is set while the app runs."""

    def __init__(
        self, settings: Settings, runtime: Runtime | None, presence: Presence | None = None
    ) -> None:
        self.settings = settings
        self.runtime = runtime
        self.presence = presence
        self.running: Services | None = None

    @property
    def services(self) -> Services:
        if self.running is None:
            raise RuntimeError("the app is not running")
        return self.running


STATE = web.AppKey("state", AppState)


def services(request: web.Request) -> Services:
    return request.app[STATE].services
