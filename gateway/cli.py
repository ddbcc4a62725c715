"""The ``frontdesk`` command (DESIGN §3). The only place that exits the process.

Exit codes: 0 done; 1 failed; 2 unusable input (a bad config, a bad argument).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from aiohttp import web

from gateway import logs
from gateway import settings as settings_module
from gateway.settings import DEFAULT_CONFIG, Settings
from store.errors import ConfigError, FrontdeskError

log = logging.getLogger("frontdesk")


CONFIG_HELP = "workspace YAML (default: $FRONTDESK_CONFIG or demo)"


class _Commands:
    """Subcommands that accept the global options too (``serve --config F`` as well as
    ``--config F serve``): each subparser gets them with no default of its own, so a value
    given before the subcommand is not overwritten by one's absence after it."""

    def __init__(self, parent: argparse.ArgumentParser, dest: str) -> None:
        self._sub = parent.add_subparsers(dest=dest, required=True)
        self._globals = argparse.ArgumentParser(add_help=False)
        self._globals.add_argument("--config", default=argparse.SUPPRESS, help=CONFIG_HELP)

    def add_parser(self, name: str, help: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = self._sub.add_parser(
            name, parents=[self._globals], help=help
        )
        return parser


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="frontdesk", description=__doc__)
    parser.add_argument("--config", help=CONFIG_HELP)
    commands = _Commands(parser, "command")

    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080, help="0 picks a free port")

    check = commands.add_parser("check-config", help="validate a workspace YAML")
    check.add_argument("path", nargs="?", help="the YAML (default: --config's)")

    db = commands.add_parser("db", help="database maintenance")
    db_commands = _Commands(db, "db_command")
    db_commands.add_parser("upgrade", help="apply migrations up to the newest")

    member_cmd = commands.add_parser("members", help="manage members")
    member_commands = _Commands(member_cmd, "members_command")
    add = member_commands.add_parser("add", help="add a member")
    add.add_argument("email")
    add.add_argument("--kind", choices=["team", "contact"], required=True)
    add.add_argument("--role", required=True)
    add.add_argument("--name")
    add.add_argument("--phone")

    imp = member_commands.add_parser("import", help="import members from a CSV file")
    imp.add_argument("file")
    imp.add_argument("--dry-run", action="store_true", help="validate and count; write nothing")
    exp = member_commands.add_parser("export", help="write members as CSV to standard output")
    exp.add_argument("--filter", help="a member filter (JSON)")

    token = commands.add_parser("token", help="API tokens")
    token_commands = _Commands(token, "token_command")
    create = token_commands.add_parser("create", help="print a new API token for a member")
    create.add_argument("email")
    create.add_argument("--name", default="cli")

    quals = commands.add_parser("qualifications", help="qualifications")
    qual_commands = _Commands(quals, "qualifications_command")
    regrade = qual_commands.add_parser(
        "grade", help="grade a member's latest attempt again from the stored submission"
    )
    regrade.add_argument("qualification")
    regrade.add_argument("member", help="a member id or email address")

    chat = commands.add_parser("chat", help="talk to an agent in the terminal")
    chat.add_argument("agent")
    return parser


def _load(path: str | None) -> Settings:
    return settings_module.load(path)


def _print_config_errors(path: str, error: ConfigError) -> None:
    print(f"{path}: {error.message}", file=sys.stderr)
    for detail in error.details:
        print(f"  {detail}", file=sys.stderr)


def check_config(path: str) -> int:
    try:
        loaded = settings_module.load(path)
    except ConfigError as exc:
        _print_config_errors(path, exc)
        return 2
    print(
        f"{path}: ok — workspace '{loaded.workspace.name}', "
        f"channels: {', '.join(loaded.channels) or 'none'}, "
        f"agents: {', '.join(a.name for a in loaded.agents) or 'none'}"
    )
    return 0


async def serve(config: Settings, host: str, port: int) -> None:
    from gateway.app import create_app
    from store.migrate import upgrade

    await upgrade(config.storage.database_url)
    runner = web.AppRunner(create_app(config), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    # Everything loaded so far lives as long as the process: keep it out of the garbage
    # collector's full passes, which otherwise stall every request for ~70 ms.
    gc.freeze()
    bound = runner.addresses[0]
    print(f"frontdesk listening on http://{bound[0]}:{bound[1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


async def _with_session(config: Settings, work: Callable[..., Awaitable[int]]) -> int:
    from store.engine import create_engine, session_factory
    from store.migrate import upgrade

    await upgrade(config.storage.database_url)
    engine = create_engine(config.storage.database_url)
    try:
        async with session_factory(engine).begin() as session:
            return await work(session)
    finally:
        await engine.dispose()


async def members_add(config: Settings, args: argparse.Namespace) -> int:
    from people import members
    from people.roles import load_book

    async def work(session: object) -> int:
        new = members.NewMember(
            kind=args.kind, role=args.role, email=args.email, phone=args.phone, name=args.name
        )
        # The roles as the API knows them: built-in, YAML and those defined over the API.
        book = await load_book(session, config.roles)  # type: ignore[arg-type]
        member = await members.add(
            session,  # type: ignore[arg-type]
            new,
            config.workspace.default_region,
            book,
        )
        print(f"added member {member.id} ({member.kind}, {member.role}) {member.email}")
        return 0

    return await _with_session(config, work)


async def token_create(config: Settings, args: argparse.Namespace) -> int:
    from people import credentials, members

    async def work(session: object) -> int:
        member = await members.by_email(session, args.email)  # type: ignore[arg-type]
        if member is None:
            print(f"no member with email {args.email}", file=sys.stderr)
            return 1
        token = await credentials.create_token(session, member, args.name)  # type: ignore[arg-type]
        print(f"token for {member.email} (member {member.id}): {token}")
        return 0

    return await _with_session(config, work)


async def chat(config: Settings, agent: str) -> int:
    """The agent in a terminal: the same turns as the web chat, as a new anonymous member of
    the workspace's store (so abilities that keep records, like bookings, work); the
    conversation itself is kept in memory only."""
    from dataclasses import replace

    from agents.base import MemberFacts, TurnInput, Utterance
    from gateway.app import runtime_for
    from people.roles import load_book
    from store.engine import create_engine, session_factory
    from store.migrate import upgrade
    from store.models import Member, utcnow

    if agent not in {a.name for a in config.agents}:
        raise ConfigError(f"no agent named '{agent}'")
    await upgrade(config.storage.database_url)
    engine = create_engine(config.storage.database_url)
    runtime = runtime_for(config)
    try:
        sessions = session_factory(engine)
        async with sessions.begin() as session:
            member = Member(kind="anonymous", role="contact", data={}, created_at=utcnow())
            session.add(member)
            await session.flush()
            role = (await load_book(session, config.roles)).get(member.role)
            facts = MemberFacts(id=member.id, kind=member.kind, role=member.role)
        runtime.use_store(sessions)
        turn = TurnInput(text="", channel="webchat", member=facts, role=role)
        print(
            f"Talking to {agent} ({config.workspace.name}) as member {facts.id}. Ctrl-D to leave."
        )
        while True:
            try:
                text = await asyncio.to_thread(input, "you> ")
            except EOFError:
                print()
                return 0
            turn = replace(turn, text=text)
            result = await runtime.run_turn(agent, turn)
            history = [*turn.history, Utterance("member", text)]
            for reply in result.replies:
                print(f"{agent}> {reply}")
                history.append(Utterance("agent", reply))
            for name, value in result.collected.items():
                print(f"  [recorded {name} = {value!r}]")
            if result.escalation:
                print(f"  [handoff requested: {result.escalation.reason}]")
            workflow = result.workflow.state if result.workflow else turn.workflow
            turn = replace(turn, history=tuple(history), workflow=workflow)
    finally:
        await runtime.close()
        await engine.dispose()


def _run(args: argparse.Namespace) -> int:
    if args.command == "check-config":
        return check_config(
            args.path or args.config or os.environ.get("FRONTDESK_CONFIG") or DEFAULT_CONFIG
        )
    config = _load(args.config)
    if args.command == "serve":
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(config, args.host, args.port))
        return 0
    if args.command == "db":
        from store.migrate import upgrade_sync

        upgrade_sync(config.storage.database_url)
        print("database is at the newest migration")
        return 0
    if args.command == "members":
        from gateway import cli_members

        if args.members_command == "import":
            return asyncio.run(cli_members.import_file(config, Path(args.file), args.dry_run))
        if args.members_command == "export":
            return asyncio.run(cli_members.export(config, args.filter))
        return asyncio.run(members_add(config, args))
    if args.command == "qualifications":
        from gateway import cli_qualifications

        return asyncio.run(cli_qualifications.grade(config, args.qualification, args.member))
    if args.command == "token":
        return asyncio.run(token_create(config, args))
    return asyncio.run(chat(config, args.agent))


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logs.configure()
    try:
        return _run(args)
    except ConfigError as exc:
        _print_config_errors(
            args.config or os.environ.get("FRONTDESK_CONFIG") or DEFAULT_CONFIG, exc
        )
        return 2
    except FrontdeskError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
