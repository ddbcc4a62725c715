"""Schemathesis against ``/api/openapi.json`` with an owner's token: no input, however odd,
makes the admin API answer 5xx."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from people import credentials, directory
from store.engine import create_engine, session_factory
from tests.fakes.twilio_api import FakeTwilio
from tests.helpers import make_config
from tests.process import ServeProcess

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


async def _owner_token(database_url: str) -> str:
    engine = create_engine(database_url)
    try:
        async with session_factory(engine).begin() as session:
            owner = await directory.create(
                session,
                directory.MemberFields(email="owner@example.com", kind="team", role="owner"),
                "US",
            )
            return await credentials.create_token(session, owner, "fuzz")
    finally:
        await engine.dispose()


async def test_no_generated_request_gets_a_server_error(
    database_url: str, twilio: tuple[FakeTwilio, str], tmp_path: Path
) -> None:
    token = await _owner_token(database_url)
    config = make_config(database_url, twilio_base=twilio[1])
    config["people"] = {"import_dir": str(tmp_path / "imports")}
    server = await ServeProcess.start(config, tmp_path / "frontdesk.yaml")
    try:
        proc = await asyncio.create_subprocess_exec(
            str(SCHEMATHESIS), "run", f"{server.url}/api/openapi.json",
            "--checks", "not_a_server_error", "--header", f"Authorization: Bearer {token}",
            "--max-examples", "40", "--seed", "7", "--no-color",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=300)
    finally:
        await server.stop()
    report = out.decode(errors="replace")
    assert proc.returncode == 0, report[-4000:] + "\n".join(server.lines[-20:])
    assert " passed" in report
