"""``/api/imports``: CSV imports that run in the background and report progress.

An import never stays ``queued`` or ``running`` after the process running it died: that
process writes ``heartbeat_at`` every ``people.import_heartbeat_seconds``, and an import
silent for ``STALE_BEATS`` of those is marked failed with what it had done
(``give_up_stale``: at a gateway's start, by its sweeper, and when the import is read).
Every later write of the running import is conditional on it still running, so a process
that was only paused does not bring a given-up import back to life.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.api.core import Call, Endpoint, admin, iso
from gateway.state import Services
from people import imports
from people.imports import Importer, Summary
from people.roles import Need
from people.spreadsheet import FileRejected, RowError, errors_csv
from store.errors import NotFound, PayloadTooLarge, ValidationFailed
from store.models import Import, ImportRowError, table_of, utcnow

log = logging.getLogger(__name__)

IMPORTS = admin(Need(feature="members", level="create"))
CHUNK = 64 * 1024
MAX_REPORTED_ERRORS = 10_000
STALE_BEATS = 4
UNFINISHED = ("queued", "running")
INTERRUPTED = (
    "interrupted: the process running this import stopped. The rows counted in 'processed' "
    "were imported as counted (a dry run wrote nothing); the rest were not. Import the file "
    "again to finish: rows already imported come back unchanged."
)


class ImportGivenUp(Exception):
    """The import was marked failed (its heartbeat was missed) while it still ran here."""


async def give_up_stale(
    session: AsyncSession, heartbeat_seconds: float, import_id: int | None = None
) -> int:
    """Mark failed the unfinished imports (or import ``import_id``) whose heartbeat stopped;
    how many. One conditional UPDATE: an import that beats meanwhile is left alone."""
    now = utcnow()
    cutoff = now - timedelta(seconds=heartbeat_seconds * STALE_BEATS)
    stmt = (
        update(Import)
        .where(
            Import.status.in_(UNFINISHED),
            func.coalesce(Import.heartbeat_at, Import.created_at) < cutoff,
        )
        .values(status="failed", message=INTERRUPTED, finished_at=now)
    )
    if import_id is not None:
        stmt = stmt.where(Import.id == import_id)
    result = await session.execute(stmt)
    given_up = int(getattr(result, "rowcount", 0) or 0)
    if given_up:
        log.warning("%s import(s) left unfinished by a stopped process marked failed", given_up)
    return given_up


async def receive_upload(request: web.Request, s: Services) -> Path:
    """The CSV body (raw ``text/csv`` or a multipart ``file`` field) in a file of its own.

    A declared length over the limit is refused before reading; an undeclared one as soon
    as it passes the limit.
    """
    limit = s.settings.people.import_max_bytes
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"the file is larger than the {limit} byte limit")
    folder = Path(s.settings.people.import_dir)
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    path = folder / f"upload-{secrets.token_hex(8)}.csv"
    out = await asyncio.to_thread(path.open, "wb")
    try:
        size = 0
        async for chunk in _body_chunks(request):
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"the file is larger than the {limit} byte limit")
            await asyncio.to_thread(out.write, chunk)
    except BaseException:
        out.close()
        path.unlink(missing_ok=True)
        raise
    out.close()
    return path


async def _body_chunks(request: web.Request) -> AsyncIterator[bytes]:
    if request.content_type != "multipart/form-data":
        async for chunk in request.content.iter_chunked(CHUNK):
            yield chunk
        return
    found = False
    try:
        reader = await request.multipart()
        async for part in reader:
            if not isinstance(part, BodyPartReader) or part.name != "file" or found:
                # An option sent as a form field (dry_run) would be ignored: refuse it.
                name = part.name if isinstance(part, BodyPartReader) else None
                raise ValidationFailed(
                    f"unexpected form field {name!r}: send the CSV as the one 'file' field, "
                    "and options as query parameters (?dry_run=true)"
                )
            found = True
            while chunk := await part.read_chunk(CHUNK):
                yield chunk
    except (ValueError, AssertionError, LookupError, HttpProcessingError) as exc:
        if isinstance(exc, ValidationFailed):
            raise
        # aiohttp's multipart parser reports a malformed body with these
        raise ValidationFailed(f"the multipart body is malformed: {exc}") from exc
    if not found:
        raise ValidationFailed("the multipart body has no 'file' field")


def import_json(record: Import, errors: list[ImportRowError]) -> dict[str, Any]:
    return {
        "id": str(record.id),
        "status": record.status,
        "dry_run": record.dry_run,
        "total": record.total,
        "processed": record.processed,
        "created": record.created,
        "updated": record.updated,
        "unchanged": record.unchanged,
        "failed": record.failed,
        "message": record.message,
        "errors": [{"row": e.row, "column": e.column, "message": e.message} for e in errors],
        "created_at": iso(record.created_at),
        "finished_at": iso(record.finished_at),
    }


def _stale(record: Import, heartbeat_seconds: float) -> bool:
    last = record.heartbeat_at or record.created_at
    return last < utcnow() - timedelta(seconds=heartbeat_seconds * STALE_BEATS)


async def sweep(s: Services) -> None:
    """Mark failed every import a stopped process left unfinished (start-up, sweeper)."""
    async with s.sessions.begin() as session:
        await give_up_stale(session, s.settings.people.import_heartbeat_seconds)


async def create_import(call: Call) -> web.Response:
    if call.upload is None:
        raise ValidationFailed("send the CSV as the body")
    dry_run = call.flags["dry_run"]
    now = utcnow()
    record = Import(
        actor_id=call.actor.id, status="queued", dry_run=dry_run, created_at=now, heartbeat_at=now
    )
    call.session.add(record)
    await call.session.flush()
    path, call.upload = call.upload, None  # the background import owns the file now
    importer = Importer(call.actor.role_name, call.actor.role, call.roles)
    s, import_id = call.services, record.id

    def start() -> None:
        s.supervisor.spawn(
            run_import(s, import_id, path, importer, dry_run), name=f"import:{import_id}"
        )

    call.after_commit.append(start)
    return web.json_response({"id": str(record.id), "status": "queued"}, status=202)


async def run_import(
    s: Services, import_id: int, path: Path, importer: Importer, dry_run: bool
) -> None:
    reported = 0

    async def progress(summary: Summary) -> None:
        nonlocal reported
        new_errors = summary.errors[reported:MAX_REPORTED_ERRORS]
        reported += len(new_errors)
        async with s.sessions.begin() as session:
            await _save(session, import_id, summary, "running", new_errors)

    heartbeat = asyncio.create_task(
        _beat(s.sessions, import_id, s.settings.people.import_heartbeat_seconds),
        name=f"import:{import_id}:heartbeat",
    )
    try:
        summary = await imports.run(
            path, s.sessions, importer, s.settings.workspace.default_region,
            dry_run=dry_run, progress=progress,
        )  # fmt: skip
        async with s.sessions.begin() as session:
            await _save(
                session, import_id, summary, "done", summary.errors[reported:MAX_REPORTED_ERRORS]
            )
    except ImportGivenUp:
        log.warning("import %s was given up (its heartbeat was missed); stopped", import_id)
    except FileRejected as exc:
        await _fail(s.sessions, import_id, exc.message)
    except Exception:
        log.exception("import %s failed", import_id)
        await _fail(s.sessions, import_id, "the import stopped on an internal error")
    finally:
        heartbeat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await heartbeat
        await asyncio.to_thread(path.unlink, missing_ok=True)


async def _beat(sessions: async_sessionmaker[AsyncSession], import_id: int, seconds: float) -> None:
    """Show that this process still runs the import, until cancelled."""
    while True:
        await asyncio.sleep(seconds)
        try:
            async with sessions.begin() as session:
                await session.execute(
                    update(Import)
                    .where(Import.id == import_id, Import.status.in_(UNFINISHED))
                    .values(heartbeat_at=utcnow())
                )
        except Exception:
            log.exception("import %s: heartbeat not written; next in %ss", import_id, seconds)


async def _fail(sessions: async_sessionmaker[AsyncSession], import_id: int, message: str) -> None:
    async with sessions.begin() as session:
        await session.execute(
            update(Import)
            .where(Import.id == import_id, Import.status.in_(UNFINISHED))
            .values(status="failed", message=message, finished_at=utcnow())
        )


async def _save(
    session: Any, import_id: int, summary: Summary, status: str, errors: list[RowError]
) -> None:
    values: dict[str, Any] = {
        "status": status,
        "total": summary.total,
        "processed": summary.processed,
        "created": summary.created,
        "updated": summary.updated,
        "unchanged": summary.unchanged,
        "failed": summary.failed,
    }
    values["heartbeat_at"] = utcnow()
    if status == "done":
        values["finished_at"] = utcnow()
    result = await session.execute(
        update(Import).where(Import.id == import_id, Import.status.in_(UNFINISHED)).values(**values)
    )
    if not getattr(result, "rowcount", 1):
        raise ImportGivenUp(f"import {import_id} is no longer running")
    if errors:
        await session.execute(
            insert(table_of(ImportRowError)),
            [
                {"import_id": import_id, "row": e.row, "column": e.column, "message": e.message}
                for e in errors
            ],
        )


async def _record(call: Call) -> tuple[Import, list[ImportRowError]]:
    import_id = call.path_id(what="import")
    record = await call.session.get(Import, import_id)
    if record is None:
        raise NotFound("no such import")
    seconds = call.services.settings.people.import_heartbeat_seconds
    if record.status in UNFINISHED and _stale(record, seconds):
        # Written only when stale: polling a running import must not contend with its writes.
        await give_up_stale(call.session, seconds, import_id)
        await call.session.refresh(record)
    errors = await call.session.execute(
        select(ImportRowError)
        .where(ImportRowError.import_id == record.id)
        .order_by(ImportRowError.row, ImportRowError.id)
    )
    return record, list(errors.scalars())


async def get_import(call: Call) -> dict[str, Any]:
    return import_json(*await _record(call))


async def get_errors_csv(call: Call) -> web.Response:
    _, errors = await _record(call)
    body = errors_csv(RowError(e.row, e.column, e.message) for e in errors)
    return web.Response(text=body, content_type="text/csv", charset="utf-8")


ENDPOINTS = [
    Endpoint("POST", "/api/imports", create_import, "Import members from CSV (202; poll it)",
             IMPORTS, status=202, tag="imports", upload=receive_upload,
             flags={"dry_run": "true to validate and count without writing"}),
    Endpoint("GET", "/api/imports/{id}", get_import, "An import's progress and row errors",
             IMPORTS, tag="imports"),
    Endpoint("GET", "/api/imports/{id}/errors.csv", get_errors_csv, "An import's row errors as CSV",
             IMPORTS, tag="imports"),
]  # fmt: skip
