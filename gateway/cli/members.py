"""``frontdesk members add|import|export`` and ``frontdesk token create``.

The CLI has the database, so it acts with an owner's rights. Import exit codes: 0 when
every row was taken, 1 when some rows failed (the good ones are kept), 2 when the file
is unusable.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.settings import Settings
from people import credentials, imports, members, spreadsheet
from people.filters import compile_filter
from people.imports import Importer, Summary
from people.roles import OWNER, load_book
from store.engine import create_engine, session_factory
from store.errors import ValidationFailed
from store.migrate import upgrade

MAX_SHOWN_ERRORS = 50


async def _with_session(config: Settings, work: Callable[[AsyncSession], Awaitable[int]]) -> int:
    """``work`` in one transaction on the workspace's database, migrated first."""
    await upgrade(config.storage.database_url)
    engine = create_engine(config.storage.database_url)
    try:
        async with session_factory(engine).begin() as session:
            return await work(session)
    finally:
        await engine.dispose()


async def add(config: Settings, args: argparse.Namespace) -> int:
    async def work(session: AsyncSession) -> int:
        new = members.NewMember(
            kind=args.kind, role=args.role, email=args.email, phone=args.phone, name=args.name
        )
        # The roles as the API knows them: built-in, YAML and those defined over the API.
        book = await load_book(session, config.roles)
        member = await members.add(session, new, config.workspace.default_region, book)
        print(f"added member {member.id} ({member.kind}, {member.role}) {member.email}")
        return 0

    return await _with_session(config, work)


async def token_create(config: Settings, args: argparse.Namespace) -> int:
    async def work(session: AsyncSession) -> int:
        member = await members.by_email(session, args.email)
        if member is None:
            print(f"no member with email {args.email}", file=sys.stderr)
            return 1
        token = await credentials.create_token(session, member, args.name)
        print(f"token for {member.email} (member {member.id}): {token}")
        return 0

    return await _with_session(config, work)


async def import_file(config: Settings, path: Path, dry_run: bool) -> int:
    console = Console(stderr=True)
    if not await asyncio.to_thread(path.is_file):
        console.print(f"no such file: {path}", style="red", markup=False, soft_wrap=True)
        return 2
    await upgrade(config.storage.database_url)
    engine = create_engine(config.storage.database_url)
    async with session_factory(engine)() as session:
        # The roles as the API knows them: built-in, YAML and those defined over the API.
        book = await load_book(session, config.roles)
    importer = Importer(OWNER, book.get(OWNER), book)
    columns = [TextColumn("importing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    try:
        with Progress(*columns, console=console, disable=not console.is_terminal) as bar:
            task = bar.add_task("rows", total=None)

            async def progress(summary: Summary) -> None:
                bar.update(task, total=summary.total, completed=summary.processed)

            summary = await imports.run(
                path, session_factory(engine), importer, config.workspace.default_region,
                dry_run=dry_run, progress=progress,
            )  # fmt: skip
    except spreadsheet.FileRejected as exc:
        console.print(f"{path}: {exc.message}", style="red", markup=False, soft_wrap=True)
        return 2
    finally:
        await engine.dispose()
    _report(summary, dry_run)
    return 1 if summary.failed else 0


def _report(summary: Summary, dry_run: bool) -> None:
    verb = "would be " if dry_run else ""
    print(
        f"{summary.processed} rows: {summary.created} {verb}created, "
        f"{summary.updated} {verb}updated, {summary.unchanged} unchanged, {summary.failed} failed"
    )
    for error in summary.errors[:MAX_SHOWN_ERRORS]:
        column = f" {error.column}" if error.column else ""
        print(f"  row {error.row}{column}: {error.message}")
    if len(summary.errors) > MAX_SHOWN_ERRORS:
        print(f"  ... and {len(summary.errors) - MAX_SHOWN_ERRORS} more")


async def export(config: Settings, raw_filter: str | None) -> int:
    try:
        condition = json.loads(raw_filter) if raw_filter else None
    except ValueError as exc:
        print(f"--filter is not JSON: {exc}", file=sys.stderr)
        return 2
    engine = create_engine(config.storage.database_url)
    try:
        async with session_factory(engine)() as session:
            try:
                compiled = compile_filter(condition, engine.dialect.name)
            except ValidationFailed as exc:
                print(exc.message, file=sys.stderr)
                for detail in exc.details:
                    print(f"  {detail}", file=sys.stderr)
                return 2
            async for chunk in spreadsheet.export_rows(session, compiled.condition):
                sys.stdout.write(chunk)
    finally:
        await engine.dispose()
    sys.stdout.flush()
    return 0
