"""Engines and sessions for SQLite (the default) and PostgreSQL.

SQLite runs in WAL mode with ``synchronous=NORMAL``, foreign keys on and a busy timeout
of seconds; every transaction starts with ``BEGIN IMMEDIATE`` so two writers queue on
the busy timeout instead of one failing at once when it upgrades a read lock
(``SQLITE_BUSY_SNAPSHOT``). PostgreSQL connections run with ``jit=off``: the JIT made
our short OLTP queries slower, never faster.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import String, any_, bindparam, event, func, select, text
from sqlalchemy import insert as sa_insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.ext.asyncio import create_async_engine as _create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from store.models import Base, table_of

SQLITE_BUSY_TIMEOUT_MS = 30_000


def create_engine(
    url: str, *, pool_size: int = 10, manual_checkpoints: bool = False
) -> AsyncEngine:
    """An async engine for ``url`` with the per-back-end settings above.

    ``manual_checkpoints`` turns SQLite's automatic WAL checkpoint off for this engine's
    connections: the checkpoint (and its fsync) would otherwise run inside whichever
    commit crosses the threshold and stall every request behind it for ~100 ms. The
    caller then runs ``checkpoint`` from a background task instead.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = _create_async_engine(
            url,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            pool_size=1,
            max_overflow=0,
            pool_timeout=60,
        )
        _tune_sqlite(engine, manual_checkpoints)
        return engine
    if parsed.get_backend_name() == "postgresql":
        return _create_async_engine(
            url,
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_pre_ping=True,
            connect_args={"server_settings": {"jit": "off"}},
        )
    raise ValueError(f"unsupported database '{parsed.get_backend_name()}' (sqlite, postgresql)")


def _tune_sqlite(engine: AsyncEngine, manual_checkpoints: bool) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # Let SQLAlchemy's "begin" hook below issue BEGIN, not the driver.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        if manual_checkpoints:
            cursor.execute("PRAGMA wal_autocheckpoint=0")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def insert(session: AsyncSession, model: type[Base]) -> postgresql.Insert | sqlite.Insert:
    """A Core INSERT into ``model``'s table, with ``on_conflict_do_*`` for the session's
    back end. Core rather than ORM: run with a list of rows it is one cached executemany."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table_of(model))
    return sqlite.insert(table_of(model))


def sqlite_path(url: str) -> str | None:
    """The database file of a SQLite URL; None for other back ends and in-memory SQLite."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return parsed.database


async def checkpoint(path: str) -> tuple[int, int]:
    """Copy the WAL back into the database file without blocking readers or the writer
    (``PASSIVE``), on a connection and thread of its own. Returns (WAL frames, copied)."""

    def run() -> tuple[int, int]:
        connection = sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000)
        try:
            _, frames, copied = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            return int(frames), int(copied)
        finally:
            connection.close()

    return await asyncio.to_thread(run)


async def reserve_ids(session: AsyncSession, model: type[Base], count: int) -> list[int]:
    """``count`` fresh primary keys for ``model``, so a bulk insert can name its rows.

    With the ids known up front a bulk insert is one plain executemany; asking the
    database to return them in order instead makes SQLAlchemy insert row by row on
    SQLite. PostgreSQL hands them out from the table's sequence; on SQLite the
    transaction holds the write lock (``BEGIN IMMEDIATE``), so the next ids are ours.
    """
    if count <= 0:
        return []
    table = table_of(model)
    if session.get_bind().dialect.name == "postgresql":
        rows = await session.execute(
            text(
                "SELECT nextval(pg_get_serial_sequence(:table, 'id')) FROM generate_series(1, :n)"
            ),
            {"table": table.name, "n": count},
        )
        return [int(i) for i in rows.scalars()]
    top = (await session.execute(select(func.max(table.c.id)))).scalar() or 0
    return list(range(int(top) + 1, int(top) + 1 + count))


async def insert_rows(
    session: AsyncSession, model: type[Base], rows: Sequence[dict[str, Any]]
) -> list[int]:
    """Insert ``rows`` into ``model``'s table in one executemany; their new ids, in order."""
    ids = await reserve_ids(session, model, len(rows))
    if ids:
        await session.execute(
            sa_insert(table_of(model)), [{**row, "id": i} for row, i in zip(rows, ids, strict=True)]
        )
    return ids


def among(session: AsyncSession, column: Any, values: Sequence[str]) -> Any:
    """``column IN values`` that stays cheap for thousands of values: one array
    parameter (``= ANY(...)``) on PostgreSQL, where a long IN list is slow to plan."""
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam(None, list(values), type_=postgresql.ARRAY(String)))
    return column.in_(list(values))
