"""CSV import: validate every row, match members, upsert in batches, report progress.

The file is read twice, streaming, never held whole: a first pass checks its structure
(UTF-8, header, quoting) and counts rows, so a broken file is refused before anything is
written; the second pass imports ``BATCH`` rows per transaction. A row is all or
nothing: it is validated completely and checked for conflicts before its batch is
written, and if a batch still fails in the database it is retried row by row. Rows match
members by email, then phone; a person who appears twice in one file is one member.
Importing sends nothing: no messages, turns or notifications. Reading, validating (in a
worker process for large files) and progress are here; matching and writing a batch are
``people.import_batches``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from people.import_batches import Importer, Summary, import_batch
from people.spreadsheet import Reader, Row, RowError, count_rows, parse_row

log = logging.getLogger(__name__)

BATCH = 2000
POOL_FROM_ROWS = 10_000  # smaller files are validated in process: a worker costs ~0.3 s


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _pool() -> ProcessPoolExecutor:
    return ProcessPoolExecutor(
        max_workers=1,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_die_with_parent,
        initargs=(os.getpid(),),
    )


def _die_with_parent(parent: int) -> None:
    """A validating worker ends when the gateway does: after a SIGKILL it would otherwise
    live on, blocked on its queue and holding the gateway's output pipes open."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the gateway died before the line above
        os._exit(1)


Progress = Callable[[Summary], Awaitable[None]]


def _open(path: Path) -> IO[str]:
    # utf-8-sig: a BOM is dropped; errors="strict": bad bytes refuse the file.
    return path.open(encoding="utf-8-sig", errors="strict", newline="")


async def run(
    path: Path,
    sessions: async_sessionmaker[AsyncSession],
    importer: Importer,
    region: str,
    *,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> Summary:
    """Import the CSV at ``path``; ``FileRejected`` when the file as a whole is unusable."""
    summary = Summary()

    def check() -> int:
        with _open(path) as stream:
            return count_rows(stream)

    summary.total = await asyncio.to_thread(check)
    if progress:
        await progress(summary)
    with _open(path) as stream:
        reader = Reader(stream)
        columns = await asyncio.to_thread(reader.read_header)
        parsed: asyncio.Queue[_Parsed | None] = asyncio.Queue(maxsize=2)
        # Validating rows (emails, phone numbers) is the costliest CPU work: in a process
        # of its own it runs beside writing the previous batch, on another core.
        pool = _pool() if summary.total >= POOL_FROM_ROWS else None
        producer = asyncio.create_task(_produce(reader, columns, region, importer, parsed, pool))
        try:
            await _consume(parsed, sessions, summary, importer, dry_run, progress)
        finally:
            producer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await producer
            if pool is not None:
                pool.shutdown(cancel_futures=True)
    return summary


@dataclass(frozen=True)
class _Parsed:
    rows: list[Row]
    errors: list[RowError]
    records: int


def _parse(
    batch: list[tuple[int, list[str]]], columns: list[str], region: str, importer: Importer
) -> _Parsed:
    rows, errors = [], []
    for number, cells in batch:
        row, problems = parse_row(number, columns, cells, region)
        if row is not None and row.role is not None:
            refusal = importer.refuse_role(row.role)
            if refusal:
                row, problems = None, [RowError(number, "role", refusal)]
        if row is None:
            errors.extend(problems)
        else:
            rows.append(row)
    return _Parsed(rows, errors, len(batch))


async def _produce(
    reader: Reader,
    columns: list[str],
    region: str,
    importer: Importer,
    out: asyncio.Queue[_Parsed | None],
    pool: ProcessPoolExecutor | None,
) -> None:
    loop = asyncio.get_running_loop()
    while batch := await asyncio.to_thread(reader.records, BATCH):
        if pool is None:
            parsed = _parse(batch, columns, region, importer)
        else:
            parsed = await loop.run_in_executor(pool, _parse, batch, columns, region, importer)
        await out.put(parsed)
    await out.put(None)


async def _consume(
    parsed: asyncio.Queue[_Parsed | None],
    sessions: async_sessionmaker[AsyncSession],
    summary: Summary,
    importer: Importer,
    dry_run: bool,
    progress: Progress | None,
) -> None:
    seen: dict[tuple[str, str], int] = {}  # addresses met in this file -> member id
    batches = 0
    while (batch := await parsed.get()) is not None:
        summary.errors.extend(batch.errors)
        summary.failed += len(batch.errors)
        await import_batch(sessions, batch.rows, summary, seen, importer, dry_run)
        summary.processed += batch.records
        batches += 1
        if batches & (batches - 1) == 0 and not dry_run:
            await _refresh_statistics(sessions)
        if progress:
            await progress(summary)


async def _refresh_statistics(sessions: async_sessionmaker[AsyncSession]) -> None:
    """Let PostgreSQL's planner see the tables this import is growing (after batches 1, 2,
    4, 8...): planned on an empty table's statistics, the per-batch lookups scan it whole."""
    async with sessions.begin() as session:
        if session.get_bind().dialect.name == "postgresql":
            await session.execute(text("ANALYZE members, identities, member_labels"))


__all__ = ["BATCH", "Importer", "Summary", "run"]
