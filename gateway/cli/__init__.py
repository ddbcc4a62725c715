"""The ``frontdesk`` command (DESIGN §3). The only place that exits the process.

Exit codes: 0 done; 1 failed; 2 unusable input (a bad config, a bad argument).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

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


def _run(args: argparse.Namespace) -> int:
    if args.command == "check-config":
        if args.path and args.config and args.path != args.config:
            print(f"two files given: {args.path} and --config {args.config}; give one",
                  file=sys.stderr)  # fmt: skip
            return 2
        return check_config(
            args.path or args.config or os.environ.get("FRONTDESK_CONFIG") or DEFAULT_CONFIG
        )
    config = _load(args.config)
    if args.command == "serve":
        from gateway.cli.serve import serve

        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(config, args.host, args.port))
        return 0
    if args.command == "db":
        from store.migrate import upgrade_sync

        upgrade_sync(config.storage.database_url)
        print("database is at the newest migration")
        return 0
    if args.command == "members":
        from gateway.cli import members

        if args.members_command == "import":
            return asyncio.run(members.import_file(config, Path(args.file), args.dry_run))
        if args.members_command == "export":
            return asyncio.run(members.export(config, args.filter))
        return asyncio.run(members.add(config, args))
    if args.command == "qualifications":
        from gateway.cli import qualifications

        return asyncio.run(qualifications.grade(config, args.qualification, args.member))
    if args.command == "token":
        from gateway.cli import members

        return asyncio.run(members.token_create(config, args))
    from gateway.cli.chat import chat

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
