"""Alembic, driven from code: ``frontdesk db upgrade`` and ``serve`` on start call this."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["database_url"] = database_url
    return config


def upgrade_sync(database_url: str, revision: str = "head") -> None:
    """Migrate to ``revision``. Alembic's async env runs its own loop, so when called from
    inside a running loop the work moves to a thread of its own."""
    config = alembic_config(database_url)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        command.upgrade(config, revision)
        return
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(command.upgrade, config, revision).result()


async def upgrade(database_url: str, revision: str = "head") -> None:
    """Migrate from inside a running loop (Alembic's async env calls ``asyncio.run``)."""
    await asyncio.to_thread(upgrade_sync, database_url, revision)
