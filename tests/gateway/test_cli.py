"""The CLI: db upgrade, serve migrating a fresh database, chat in the terminal."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from pathlib import Path

import aiohttp
import pytest

from gateway.cli import main
from tests.fakes.twilio_api import FakeTwilio
from tests.helpers import make_config
from tests.process import ServeProcess

DEMO = Path(__file__).parent.parent.parent / "config" / "frontdesk.yaml"


def _tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as connection:
        rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {name for (name,) in rows}


def test_db_upgrade_creates_the_schema(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    database = tmp_path / "fresh.db"
    monkeypatch.setenv("FRONTDESK_DATABASE_URL", f"sqlite+aiosqlite:///{database}")

    assert main(["--config", str(DEMO), "db", "upgrade"]) == 0
    assert main(["--config", str(DEMO), "db", "upgrade"]) == 0  # again: nothing to do

    assert {"members", "identities", "inbound", "outbox", "alembic_version"} <= _tables(database)
    assert "newest migration" in capsys.readouterr().out


async def test_serve_migrates_an_empty_database_on_start(
    tmp_path: Path, twilio: tuple[FakeTwilio, str]
) -> None:
    database = tmp_path / "empty.db"
    config = make_config(f"sqlite+aiosqlite:///{database}", twilio_base=twilio[1])
    server = await ServeProcess.start(config, tmp_path / "frontdesk.yaml")
    try:
        async with aiohttp.ClientSession() as http, http.get(server.url + "/readyz") as r:
            assert r.status == 200
    finally:
        assert await server.stop() == 0

    assert "members" in _tables(database)


async def test_chat_talks_to_an_agent_in_the_terminal(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "--config", str(DEMO), "chat", "receptionist",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=tmp_path,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(
        proc.communicate(b"hello\nwhen are you open?\nget me a human\n"), timeout=30
    )
    text = out.decode()

    assert proc.returncode == 0
    assert "receptionist> Hi, I'm the friendly front desk of Example Dental" in text
    assert "8am to 6pm" in text
    assert "[handoff requested: asked for a person]" in text


def test_chat_with_an_unknown_agent_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(DEMO), "chat", "nobody"]) == 2
    assert "no agent named 'nobody'" in capsys.readouterr().err


COMMANDS = [
    ["serve"], ["serve", "--port", "0"], ["check-config"], ["db", "upgrade"], ["chat", "a"],
    ["members", "add", "a@example.com", "--kind", "team", "--role", "owner"],
    ["members", "import", "x.csv"], ["members", "export"], ["token", "create", "a@example.com"],
    ["qualifications", "grade", "q", "a@example.com"],
]  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_the_global_config_option_is_taken_after_any_subcommand(
    command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each command loads its config first: a broken one shows which file was used."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("workspace: {name: x, timezone: Mars/Olympus}\n")
    expected = f"{bad}: invalid configuration (1 error)\n  workspace.timezone: unknown"

    for argv in (["--config", str(bad), *command], [*command, "--config", str(bad)],
                 [*command[:1], "--config", str(bad), *command[1:]]):  # fmt: skip
        assert main(argv) == 2, argv
        assert expected in capsys.readouterr().err, argv
