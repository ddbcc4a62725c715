"""``frontdesk members import`` / ``export`` against a database file."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from gateway.cli import main
from store.models import Member
from tests.helpers import Api, Gateway, add_member, make_config


@pytest.fixture
def config(sqlite_url: str, tmp_path: Path) -> Path:
    path = tmp_path / "frontdesk.yaml"
    path.write_text(yaml.safe_dump(make_config(sqlite_url)))
    return path


def test_import_reports_a_summary_and_exits_1_when_rows_fail(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = tmp_path / "members.csv"
    csv.write_text("email,name,labels\nann@example.com,Ann,vip\nnope,Bob,\n")

    assert main(["--config", str(config), "members", "import", str(csv), "--dry-run"]) == 1
    assert "1 would be created" in capsys.readouterr().out
    assert main(["--config", str(config), "members", "import", str(csv)]) == 1
    out = capsys.readouterr().out
    assert "2 rows: 1 created, 0 updated, 0 unchanged, 1 failed" in out
    assert "row 3 email:" in out

    assert main(["--config", str(config), "members", "export", "--filter", '{"label": "vip"}']) == 0
    exported = capsys.readouterr().out
    assert exported.splitlines()[1].startswith("ann@example.com,,Ann,contact,contact,vip,")

    csv.write_text("email,name\nann@example.com,Ann\n")
    assert main(["--config", str(config), "members", "import", str(csv)]) == 0
    assert "1 unchanged" in capsys.readouterr().out


def test_an_unusable_file_exits_2(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = tmp_path / "members.csv"
    csv.write_bytes(b"email,shoe\nann@example.com,9\n")
    assert main(["--config", str(config), "members", "import", str(csv)]) == 2
    assert "unknown columns: 'shoe'" in capsys.readouterr().err
    assert main(["--config", str(config), "members", "export", "--filter", '{"x": 1}']) == 2


async def test_the_progress_bar_shows_on_a_terminal(config: Path, tmp_path: Path) -> None:
    csv = tmp_path / "members.csv"
    csv.write_text("email\n" + "".join(f"m{i}@example.com\n" for i in range(50)))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c",
        "import sys, rich.console; rich.console.Console.is_terminal = property(lambda s: True);"
        "from gateway.cli import main; sys.exit(main(sys.argv[1:]))",
        "--config", str(config), "members", "import", str(csv),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode == 0
    assert "importing" in err.decode()
    assert "50/50" in err.decode()
    assert "50 created" in out.decode()


async def test_the_cli_knows_roles_defined_over_the_api(
    gateway: Gateway, database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, token = await add_member(gateway, "owner@example.com", kind="team", role="owner")
    manager = {"admin_access": True, "features": {"members": "edit"}}
    assert (await Api(gateway, token).call("PUT", "/api/roles/manager", manager))[0] == 200
    config = tmp_path / "frontdesk.yaml"
    config.write_text(yaml.safe_dump(make_config(database_url)))

    add = ["--config", str(config), "members", "add", "mia@example.com", "--kind", "team"]
    assert await asyncio.to_thread(main, [*add, "--role", "manager"]) == 0
    csv = tmp_path / "members.csv"
    csv.write_text("email,kind,role\nned@example.com,team,manager\n")
    imported = ["--config", str(config), "members", "import", str(csv)]
    assert await asyncio.to_thread(main, imported) == 0
    out = capsys.readouterr().out
    assert "1 created, 0 updated, 0 unchanged, 0 failed" in out

    managers = await gateway.all(select(Member.email).where(Member.role == "manager"))
    assert sorted(managers) == ["mia@example.com", "ned@example.com"]
