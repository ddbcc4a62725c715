"""Who may change whom, beyond the endpoint matrix: identities that merge members, kinds
and roles that must agree (API, CSV import, CLI), and what a merge leaves behind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from gateway.cli import main
from people import members
from store.models import Conversation, Handoff, Identity, Member, Message
from tests.helpers import Api, Gateway, add_member, make_config
from tests.people.test_imports import _import

OWNER_EMAIL = "owner@example.com"


@pytest.fixture
async def owner(gateway: Gateway) -> Api:
    _, token = await add_member(gateway, OWNER_EMAIL, kind="team", role="owner")
    return Api(gateway, token)


async def _anonymous(gw: Gateway, phone: str) -> int:
    async with gw.services.sessions.begin() as session:
        return (await members.resolve(session, "phone", phone)).id


async def _rows(gw: Gateway, stmt: Any) -> list[tuple[Any, ...]]:
    async with gw.services.sessions() as session:
        return [tuple(row) for row in (await session.execute(stmt)).all()]


async def _identities(gw: Gateway, member_id: int) -> set[tuple[Any, ...]]:
    return set(await _rows(gw, select(Identity.kind, Identity.address).where(
        Identity.member_id == member_id)))  # fmt: skip


async def test_an_admin_cannot_give_the_owner_a_phone_by_attaching_the_owners_email(
    gateway: Gateway, owner: Api
) -> None:
    owner_id = int((await owner.get("/api/members"))[1]["items"][0]["id"])
    _, admin_token = await add_member(gateway, "admin@example.com", kind="team", role="admin")
    admin = Api(gateway, admin_token)
    texter = await _anonymous(gateway, "+14155550142")
    before = await _identities(gateway, owner_id)

    status, body = await admin.post(
        f"/api/members/{texter}/identities", {"kind": "email", "address": OWNER_EMAIL}
    )

    assert status == 403, body
    assert body["error"]["message"] == "only an owner may change an owner"
    assert await _identities(gateway, owner_id) == before == {("email", OWNER_EMAIL)}
    assert (await gateway.all(select(Member.merged_into).where(Member.id == texter))) == [None]
    # The owner may do it: the texter was the owner all along.
    status, merged = await owner.post(
        f"/api/members/{texter}/identities", {"kind": "email", "address": OWNER_EMAIL}
    )
    assert (status, merged["id"]) == (200, str(owner_id))


async def test_a_manager_cannot_fold_a_stronger_member_into_anyone_through_an_identity(
    gateway: Gateway, owner: Api
) -> None:
    manager = {"admin_access": True, "workspace_management": True,
               "features": {"members": "admin"}}  # fmt: skip
    assert (await owner.call("PUT", "/api/roles/manager", manager))[0] == 200
    _, token = await add_member(gateway, "manager@example.com", kind="team", role="manager")
    admin_id, _ = await add_member(gateway, "admin@example.com", kind="team", role="admin")
    texter = await _anonymous(gateway, "+14155550143")

    status, body = await Api(gateway, token).post(
        f"/api/members/{texter}/identities", {"kind": "email", "address": "admin@example.com"}
    )

    assert status == 403, body
    assert "role 'admin' is stronger than your role 'manager'" in body["error"]["message"]
    assert await _identities(gateway, admin_id) == {("email", "admin@example.com")}


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/members", {"email": "c@example.com", "role": "owner"}),
        ("POST", "/api/members", {"email": "c@example.com", "kind": "contact", "role": "operator"}),
        ("PATCH", "/api/members/{contact}", {"role": "admin"}),
        ("PATCH", "/api/members/{team}", {"kind": "contact"}),
        ("PATCH", "/api/members/{anonymous}", {"role": "operator"}),
    ],
)
async def test_a_contact_or_anonymous_member_never_holds_a_role_with_admin_access(
    gateway: Gateway, owner: Api, method: str, path: str, body: dict[str, Any]
) -> None:
    ids = {
        "contact": (await add_member(gateway, "pat@example.com", token=False))[0],
        "team": (
            await add_member(gateway, "op@example.com", kind="team", role="operator", token=False)
        )[0],
        "anonymous": await _anonymous(gateway, "+14155550144"),
    }
    for key, value in ids.items():
        path = path.replace("{" + key + "}", str(value))
    before = await _rows(gateway, select(Member.id, Member.kind, Member.role).order_by(Member.id))

    status, answer = await owner.call(method, path, body)

    assert status == 422, answer
    assert "only team members may hold" in answer["error"]["message"]
    assert answer["error"]["details"][0]["path"] == "role"
    after = await _rows(gateway, select(Member.id, Member.kind, Member.role).order_by(Member.id))
    assert after == before


async def test_a_role_given_to_contacts_cannot_gain_admin_access(
    gateway: Gateway, owner: Api
) -> None:
    assert (await owner.call("PUT", "/api/roles/vip", {"features": {"files": "use"}}))[0] == 200
    await add_member(gateway, "pat@example.com", role="vip", token=False)

    status, answer = await owner.call("PUT", "/api/roles/vip", {"admin_access": True})
    assert status == 422, answer
    assert "1 contact or anonymous members hold role 'vip'" in answer["error"]["message"]
    assert answer["error"]["details"][0]["path"] == "admin_access"
    status, answer = await owner.call("PUT", "/api/roles/contact", {"admin_access": True})
    assert status == 422, answer
    listed = {r["name"]: r for r in (await owner.get("/api/roles"))[1]["items"]}
    assert listed["vip"]["admin_access"] is False
    assert listed["contact"]["admin_access"] is False


async def test_an_import_row_cannot_make_a_contact_an_admin(gateway: Gateway, owner: Api) -> None:
    await add_member(gateway, "pat@example.com", token=False)
    await add_member(gateway, "op@example.com", kind="team", role="operator", token=False)
    body = (
        "email,kind,role\r\n"
        "new@example.com,,owner\r\n"  # a new row is a contact unless it says otherwise
        "other@example.com,contact,operator\r\n"
        "pat@example.com,,admin\r\n"  # an existing contact
        "op@example.com,contact,\r\n"  # a team operator made a contact, keeping its role
        "fine@example.com,team,operator\r\n"
    )
    report = await _import(owner, body.encode())
    assert [(e["row"], e["column"]) for e in report["errors"]] == [
        (2, "role"),
        (3, "role"),
        (4, "role"),
        (5, "role"),
    ]
    assert all("only team members may hold" in e["message"] for e in report["errors"])
    assert report["created"] == 1
    roles = dict(await _rows(gateway, select(Member.email, Member.role)))
    assert roles["pat@example.com"] == "contact"
    assert "new@example.com" not in roles


def test_the_cli_refuses_to_add_a_contact_with_an_admin_role(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import yaml

    config = tmp_path / "frontdesk.yaml"
    raw = make_config(f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}")
    config.write_text(yaml.safe_dump(raw))
    argv = ["--config", str(config), "members", "add", "boss@example.com", "--kind"]

    assert main([*argv, "contact", "--role", "owner"]) == 1
    assert "only team members may hold" in capsys.readouterr().err
    assert main([*argv, "team", "--role", "owner"]) == 0


async def test_a_merge_leaves_one_open_conversation_per_inbox_and_no_stale_addresses(
    gateway: Gateway, owner: Api
) -> None:
    status, pat = await owner.post("/api/members", {"email": "pat@example.com"})
    texter = await _anonymous(gateway, "+14155550145")
    async with gateway.services.sessions.begin() as session:
        made = {}
        for who, inbox, status_ in ((int(pat["id"]), "+14155550100", "bot"),
                                    (texter, "+14155550100", "queued"),
                                    (texter, "+14155550199", "bot")):  # fmt: skip
            conversation = Conversation(member_id=who, channel="sms", inbox=inbox,
                                        status=status_, data={"who": who})  # fmt: skip
            session.add(conversation)
            await session.flush()
            session.add(Message(conversation_id=conversation.id, direction="in", author="member",
                                text=f"from {who} on {inbox}", status="received"))  # fmt: skip
            made[(who, inbox)] = conversation.id
        session.add(Handoff(conversation_id=made[(texter, "+14155550100")], reason="person",
                            trigger="asked"))  # fmt: skip

    status, merged = await owner.post(f"/api/members/{pat['id']}/merge", {"duplicate": texter})

    assert status == 200, merged
    open_ = await _rows(
        gateway,
        select(Conversation.inbox, Conversation.id)
        .where(Conversation.member_id == int(pat["id"]), Conversation.status != "closed")
        .order_by(Conversation.inbox),
    )
    kept = made[(int(pat["id"]), "+14155550100")]
    assert open_ == [("+14155550100", kept), ("+14155550199", made[(texter, "+14155550199")])]
    texts = await gateway.all(select(Message.text).where(Message.conversation_id == kept))
    assert sorted(texts) == [f"from {pat['id']} on +14155550100", f"from {texter} on +14155550100"]
    [handoff] = await gateway.all(select(Handoff))
    assert (handoff.conversation_id, handoff.status) == (kept, "open")
    assert merged["merge"]["moved"]["folded"] == {str(made[(texter, "+14155550100")]): kept}
    status, duplicate = await owner.get(f"/api/members/{texter}")
    assert (duplicate["phone"], duplicate["email"], duplicate["identities"]) == (None, None, [])
    assert merged["member"]["phone"] == "+14155550145"


async def test_a_manager_cannot_remove_or_replace_a_role_stronger_than_its_own(
    gateway: Gateway, owner: Api
) -> None:
    manager = {"admin_access": True, "workspace_management": True,
               "features": {"members": "admin"}}  # fmt: skip
    senior = {**manager, "features": {"members": "admin", "chats": "edit"}}
    for name, role in (("manager", manager), ("senior", senior), ("junior", {})):
        assert (await owner.call("PUT", f"/api/roles/{name}", role))[0] == 200
    _, token = await add_member(gateway, "manager@example.com", kind="team", role="manager")
    api = Api(gateway, token)

    for method, body in (("DELETE", None), ("PUT", manager)):
        status, answer = await api.call(method, "/api/roles/senior", body)
        assert status == 403, answer
        assert "role 'senior' is stronger than your role 'manager'" in answer["error"]["message"]
    listed = {r["name"]: r for r in (await owner.get("/api/roles"))[1]["items"]}
    assert listed["senior"]["features"] == senior["features"]
    assert (await api.call("PUT", "/api/roles/junior", {"features": {"members": "use"}}))[0] == 200
    assert (await api.call("DELETE", "/api/roles/junior"))[0] == 204


def test_members_merged_before_lose_their_stale_addresses_on_upgrade(tmp_path: Path) -> None:
    import sqlite3

    from store.migrate import upgrade_sync

    database = tmp_path / "old.db"
    url = f"sqlite+aiosqlite:///{database}"
    upgrade_sync(url, "0009")
    with sqlite3.connect(database) as connection:
        for member_id, merged_into in ((1, None), (2, 1)):
            connection.execute(
                "INSERT INTO members (id, kind, role, email, phone, data, notify_sms, "
                "notify_email, notify_voice, archived, merged_into, created_at) VALUES "
                "(?, 'contact', 'contact', ?, '+14155550146', '{}', 1, 1, 1, 0, ?, "
                "'2026-01-01 00:00:00')",
                (member_id, f"m{member_id}@example.com", merged_into),
            )
    upgrade_sync(url)
    with sqlite3.connect(database) as connection:
        rows = connection.execute("SELECT id, email, phone FROM members ORDER BY id").fetchall()
    assert rows == [(1, "m1@example.com", "+14155550146"), (2, None, None)]
