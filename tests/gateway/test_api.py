"""The admin API's member and conversation resources, with tokens from the CLI."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from gateway.cli import main
from store.models import Member
from tests.fakes.twilio_api import FakeTwilio
from tests.helpers import CUSTOMER, Gateway, make_config, make_settings


async def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code = await asyncio.to_thread(main, list(argv))
    out = capsys.readouterr().out
    assert code == 0, out
    return out


async def _token(
    capsys: pytest.CaptureFixture[str], config: Path, email: str, kind: str, role: str
) -> str:
    await _cli(
        capsys, "--config", str(config), "members", "add", email, "--kind", kind, "--role", role
    )
    out = await _cli(capsys, "--config", str(config), "token", "create", email, "--name", "test")
    return out.split()[-1]


@pytest.fixture
async def setup(
    database_url: str,
    twilio: tuple[FakeTwilio, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> Any:
    fake, base = twilio
    config = tmp_path / "frontdesk.yaml"
    config.write_text(yaml.safe_dump(make_config(database_url, twilio_base=base)))
    tokens = {
        "owner": await _token(capsys, config, "owner@example.com", "team", "owner"),
        "operator": await _token(capsys, config, "op@example.com", "team", "operator"),
        "contact": await _token(capsys, config, "pat@example.com", "contact", "contact"),
    }
    async with Gateway.running(make_settings(database_url, twilio_base=base), fake) as gw:
        await gw.sms("What are your opening hours?")
        await fake.wait_sent(1)
        yield gw, tokens


async def _get(gw: Gateway, path: str, token: str | None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = await gw.client.get(path, headers=headers)
    return response.status, await response.json()


async def _texter(gw: Gateway) -> Member:
    [member] = await gw.all(select(Member).where(Member.phone == CUSTOMER))
    return member


async def test_owner_reads_a_texters_member_record_conversations_and_messages(setup: Any) -> None:
    gw, tokens = setup
    texter = await _texter(gw)

    status, member = await _get(gw, f"/api/members/{texter.id}", tokens["owner"])
    assert status == 200
    assert member["kind"] == "anonymous"
    assert member["phone"] == CUSTOMER
    assert member["identities"] == [{"kind": "phone", "address": CUSTOMER}]
    assert member["notify"] == {"sms": True, "email": True, "voice": True}
    assert member["archived"] is False
    assert member["last_active_at"] is not None

    status, conversations = await _get(
        gw, f"/api/conversations?member={texter.id}", tokens["owner"]
    )
    assert status == 200
    [conversation] = conversations["items"]
    assert conversations["next"] is None
    assert (conversation["channel"], conversation["inbox"], conversation["member"]) == (
        "sms",
        "+14155550100",
        str(texter.id),
    )

    path = f"/api/conversations/{conversation['id']}/messages"
    status, messages = await _get(gw, path, tokens["owner"])
    assert status == 200
    assert [(m["direction"], m["author"]) for m in messages["items"]] == [
        ("in", "member"),
        ("out", "agent"),
    ]
    assert "8am" in messages["items"][1]["text"]


async def test_operator_may_read_members_and_their_conversations(setup: Any) -> None:
    gw, tokens = setup
    texter = await _texter(gw)
    assert (await _get(gw, f"/api/members/{texter.id}", tokens["operator"]))[0] == 200
    status, found = await _get(gw, f"/api/conversations?member={texter.id}", tokens["operator"])
    assert status == 200
    assert len(found["items"]) == 1


async def test_a_contact_sees_only_itself_and_others_look_absent(setup: Any) -> None:
    gw, tokens = setup
    texter = await _texter(gw)
    [contact] = await gw.all(select(Member).where(Member.email == "pat@example.com"))

    assert (await _get(gw, f"/api/members/{contact.id}", tokens["contact"]))[0] == 200
    status, body = await _get(gw, f"/api/members/{texter.id}", tokens["contact"])
    assert status == 404
    assert body["error"]["code"] == "not_found"
    assert (await _get(gw, "/api/members/999999", tokens["contact"]))[1] == body
    status, _ = await _get(gw, f"/api/conversations?member={texter.id}", tokens["contact"])
    assert status == 404


@pytest.mark.parametrize("token", [None, "fd_not-a-real-token", "garbage"])
async def test_missing_or_unknown_token_is_401(setup: Any, token: str | None) -> None:
    gw, _ = setup
    texter = await _texter(gw)
    status, body = await _get(gw, f"/api/members/{texter.id}", token)
    assert status == 401
    assert body["error"]["code"] == "unauthenticated"


async def test_bad_ids_and_paging_arguments_are_client_errors(setup: Any) -> None:
    gw, tokens = setup
    assert (await _get(gw, "/api/members/abc", tokens["owner"]))[0] == 404
    assert (await _get(gw, "/api/conversations", tokens["owner"]))[0] == 400
    assert (await _get(gw, "/api/conversations?member=1&limit=0", tokens["owner"]))[0] == 400


async def test_members_add_refuses_an_unknown_role(
    setup: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "frontdesk.yaml"
    argv = ["--config", str(config), "members", "add", "x@example.com", "--kind", "team"]
    code = await asyncio.to_thread(main, [*argv, "--role", "wizard"])
    assert code == 1
    assert "unknown role 'wizard'" in capsys.readouterr().err
