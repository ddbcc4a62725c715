"""``storage``: where state lives."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class StorageSettings(BaseModel):
    """``storage.database_url`` (``FRONTDESK_DATABASE_URL`` overrides it) and ``redis_url``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    database_url: str = Field(
        default="sqlite+aiosqlite:///./var/frontdesk.db",
        description="sqlite+aiosqlite:///PATH or postgresql+asyncpg://USER@HOST/DB",
    )
    redis_url: str | None = Field(
        default=None,
        description="redis://HOST:PORT/DB; when set, presence, pub/sub and the work queue "
        "go through Redis so several gateway processes serve one workspace.",
    )
    pool_size: int = Field(default=10, ge=1, le=200)
    redis_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        le=60,
        description="How long a Redis read or connect may take before the connection is "
        "given up and made again; the work queue's blocking pop waits on the server for "
        "half of it.",
    )
