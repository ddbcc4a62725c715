"""Members through the admin API: create, change, archive, merge, resolve, tokens, roles."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from people import credentials
from store.models import Conversation, Member, MemberMerge
from tests.helpers import CUSTOMER, Api, Gateway, add_member


@pytest.fixture
async def owner(gateway: Gateway) -> Api:
    _, token = await add_member(gateway, "owner@example.com", kind="team", role="owner")
    return Api(gateway, token)


async def test_create_read_and_patch_a_member(owner: Api) -> None:
    status, created = await owner.post(
        "/api/members",
        {
            "email": "Pat@Example.COM",
            "phone": "(415) 555-0177",
            "name": "Pat",
            "labels": ["vip", "vip", "new"],
            "data": {"plan": "gold", "seats": 4},
            "notify": {"voice": False},
        },
    )
    assert status == 201, created
    assert created["email"] == "pat@example.com"
    assert created["phone"] == "+14155550177"
    assert created["kind"] == "contact"
    assert created["role"] == "contact"
    assert created["labels"] == ["new", "vip"]
    assert created["notify"] == {"sms": True, "email": True, "voice": False}
    assert {"kind": "phone", "address": "+14155550177"} in created["identities"]

    status, patched = await owner.patch(
        f"/api/members/{created['id']}",
        {
            "data": {"seats": None, "city": "Springfield"},
            "labels": ["vip"],
            "notify": {"sms": False},
        },
    )
    assert status == 200
    assert patched["data"] == {"plan": "gold", "city": "Springfield"}
    assert patched["labels"] == ["vip"]
    assert patched["notify"] == {"sms": False, "email": True, "voice": False}
    assert (await owner.get(f"/api/members/{created['id']}"))[1] == patched


async def test_an_address_that_belongs_to_someone_else_is_a_409(owner: Api) -> None:
    await owner.post("/api/members", {"email": "a@example.com"})
    status, body = await owner.post("/api/members", {"email": "A@example.com"})
    assert status == 409
    assert "already belongs" in body["error"]["message"]


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"email": "not-an-email"}, None),
        ({"phone": "12"}, None),
        ({"email": "x@example.com", "kind": "robot"}, "kind"),
        ({"email": "x@example.com", "surprise": 1}, "surprise"),
        ({"name": "no address"}, None),
    ],
)
async def test_bad_member_input_is_refused_and_nothing_is_made(
    owner: Api, body: dict[str, Any], where: str | None
) -> None:
    status, error = await owner.post("/api/members", body)
    assert status in (400, 422)
    if where:
        assert [d["path"] for d in error["error"]["details"]] == [where]
    assert await owner.gw.count(Member) == 1  # only the owner


async def test_a_contact_changes_only_its_own_name_and_notifications(gateway: Gateway) -> None:
    contact_id, token = await add_member(gateway, "pat@example.com", name="Pat")
    other_id, _ = await add_member(gateway, "kim@example.com", token=False)
    pat = Api(gateway, token)

    assert (await pat.patch(f"/api/members/{contact_id}", {"name": "Patricia"}))[0] == 200
    assert (await pat.patch(f"/api/members/{contact_id}", {"notify": {"email": False}}))[0] == 200
    assert (await pat.patch(f"/api/members/{contact_id}", {"role": "owner"}))[0] == 403
    assert (await pat.patch(f"/api/members/{contact_id}", {"labels": ["vip"]}))[0] == 403
    assert (await pat.patch(f"/api/members/{other_id}", {"name": "x"}))[0] == 404
    _status, me = await pat.get(f"/api/members/{contact_id}")
    assert (me["name"], me["notify"]["email"], me["role"], me["labels"]) == (
        "Patricia",
        False,
        "contact",
        [],
    )


async def test_archive_hides_from_lists_and_unarchive_brings_back(owner: Api) -> None:
    _, pat = await owner.post("/api/members", {"email": "pat@example.com"})
    assert (await owner.post(f"/api/members/{pat['id']}/archive"))[1]["archived"] is True
    listed = [m["id"] for m in (await owner.get("/api/members"))[1]["items"]]
    with_archived = [m["id"] for m in (await owner.get("/api/members?archived=true"))[1]["items"]]
    assert pat["id"] not in listed
    assert pat["id"] in with_archived
    assert (await owner.post(f"/api/members/{pat['id']}/unarchive"))[1]["archived"] is False


async def test_you_cannot_archive_yourself(owner: Api) -> None:
    [me] = await owner.gw.all(select(Member))
    assert (await owner.post(f"/api/members/{me.id}/archive"))[0] == 409


async def test_merge_moves_everything_and_keeps_a_record(owner: Api) -> None:
    gw = owner.gw
    await gw.sms("Where are you located?")  # an anonymous texter with a conversation
    await gw.twilio.wait_sent(1)
    [texter] = await gw.all(select(Member).where(Member.phone == CUSTOMER))
    await owner.patch(
        f"/api/members/{texter.id}", {"data": {"plan": "basic", "pet": "cat"}, "labels": ["sms"]}
    )
    _, pat = await owner.post(
        "/api/members", {"email": "pat@example.com", "data": {"plan": "gold"}, "labels": ["vip"]}
    )

    status, merged = await owner.post(
        f"/api/members/{pat['id']}/merge", {"duplicate": str(texter.id), "reason": "same person"}
    )

    assert status == 200, merged
    member = merged["member"]
    assert member["phone"] == CUSTOMER
    assert {"kind": "phone", "address": CUSTOMER} in member["identities"]
    assert member["labels"] == ["sms", "vip"]
    assert member["data"] == {"plan": "gold", "pet": "cat"}
    record = merged["merge"]
    assert record["moved"]["data_conflicts"] == {"plan": "basic"}
    assert record["reason"] == "same person"
    [conversation] = await gw.all(select(Conversation))
    assert str(conversation.member_id) == pat["id"]
    status, duplicate = await owner.get(f"/api/members/{texter.id}")
    assert duplicate["merged_into"] == pat["id"]
    # the texter's next message lands on the primary
    await gw.sms("thanks!")
    await gw.twilio.wait_sent(2)
    [conversation] = await gw.all(select(Conversation))
    assert str(conversation.member_id) == pat["id"]
    assert len(await gw.all(select(MemberMerge))) == 1


async def test_merges_that_make_no_sense_are_409s_with_a_reason(owner: Api) -> None:
    _, a = await owner.post("/api/members", {"email": "a@example.com"})
    _, b = await owner.post("/api/members", {"email": "b@example.com"})
    _, team = await owner.post(
        "/api/members", {"email": "t@example.com", "kind": "team", "role": "operator"}
    )
    _, gone = await owner.post("/api/members", {"email": "c@example.com"})
    await owner.post(f"/api/members/{a['id']}/merge", {"duplicate": gone["id"]})
    await owner.post(f"/api/members/{b['id']}/archive")

    cases = [
        (a["id"], a["id"], "into itself"),
        (a["id"], gone["id"], "already merged"),
        (gone["id"], a["id"], "was itself merged"),
        (b["id"], a["id"], "archived"),
        (a["id"], team["id"], "cannot be merged into a contact"),
    ]
    for primary, duplicate, reason in cases:
        status, body = await owner.post(f"/api/members/{primary}/merge", {"duplicate": duplicate})
        assert status == 409, (primary, duplicate)
        assert reason in body["error"]["message"]
    assert len(await owner.gw.all(select(MemberMerge))) == 1


async def test_an_anonymous_texter_resolves_into_the_contact_who_owns_the_email(
    owner: Api,
) -> None:
    gw = owner.gw
    await gw.sms("hi")
    await gw.twilio.wait_sent(1)
    [texter] = await gw.all(select(Member).where(Member.phone == CUSTOMER))
    _, pat = await owner.post("/api/members", {"email": "pat@example.com", "name": "Pat"})

    status, resolved = await owner.post(
        f"/api/members/{texter.id}/identities", {"kind": "email", "address": "PAT@example.com"}
    )

    assert status == 200
    assert resolved["id"] == pat["id"]
    assert resolved["phone"] == CUSTOMER


async def test_an_anonymous_member_with_a_new_email_becomes_a_contact(owner: Api) -> None:
    gw = owner.gw
    await gw.sms("hi")
    await gw.twilio.wait_sent(1)
    [texter] = await gw.all(select(Member).where(Member.phone == CUSTOMER))

    status, resolved = await owner.post(
        f"/api/members/{texter.id}/identities", {"kind": "email", "address": "new@example.com"}
    )

    assert status == 200
    assert (resolved["id"], resolved["kind"], resolved["email"]) == (
        str(texter.id),
        "contact",
        "new@example.com",
    )


async def test_passwords_are_argon2_and_checkable(owner: Api) -> None:
    [me] = await owner.gw.all(select(Member))
    status, _ = await owner.call(
        "PUT", f"/api/members/{me.id}/password", {"password": "correct horse battery"}
    )
    assert status == 204
    [me] = await owner.gw.all(select(Member))
    assert me.password_hash is not None
    assert me.password_hash.startswith("$argon2id$")
    assert credentials.check_password(me, "correct horse battery")
    assert not credentials.check_password(me, "wrong horse battery")
    status, _ = await owner.call("PUT", f"/api/members/{me.id}/password", {"password": "short"})
    assert status == 422


async def test_tokens_can_be_made_listed_and_revoked(owner: Api) -> None:
    status, made = await owner.post("/api/tokens", {"name": "laptop"})
    assert status == 201
    laptop = Api(owner.gw, made["token"])
    assert (await laptop.get("/api/tokens"))[0] == 200
    assert (await owner.call("DELETE", f"/api/tokens/{made['id']}"))[0] == 204
    assert (await laptop.get("/api/tokens"))[0] == 401


async def test_roles_can_be_defined_but_never_above_your_own(gateway: Gateway) -> None:
    _, owner_token = await add_member(gateway, "o@example.com", kind="team", role="owner")
    _, op_token = await add_member(gateway, "op@example.com", kind="team", role="operator")
    owner, operator = Api(gateway, owner_token), Api(gateway, op_token)
    desk = {"admin_access": True, "features": {"members": "use", "chats": "edit"},
            "workflows": ["billing"], "inboxes": {"+14155550100": {"read": True}}}  # fmt: skip

    assert (await owner.call("PUT", "/api/roles/desk", desk))[0] == 200
    assert (await operator.call("PUT", "/api/roles/desk2", desk))[0] == 403
    _, pat = await owner.post(
        "/api/members", {"email": "pat@example.com", "role": "desk", "kind": "team"}
    )
    assert pat["role"] == "desk"
    # admins are owners' equals in every permission but may not touch owners
    _, admin_token = await add_member(gateway, "a@example.com", kind="team", role="admin")
    admin = Api(gateway, admin_token)
    [owner_row] = await gateway.all(select(Member).where(Member.email == "o@example.com"))
    assert (await admin.patch(f"/api/members/{owner_row.id}", {"name": "x"}))[0] == 403
    assert (await admin.post("/api/members", {"email": "new@example.com", "role": "owner"}))[
        0
    ] == 403
    assert (await owner.call("DELETE", "/api/roles/desk"))[0] == 409  # pat holds it
    assert (await owner.call("DELETE", "/api/roles/operator"))[0] == 409  # from the config


async def test_nul_characters_are_refused_everywhere_with_where(owner: Api) -> None:
    status, body = await owner.post(
        "/api/members", {"email": "a@example.com", "data": {"k": "a\x00b"}}
    )
    assert status == 422
    assert body["error"]["details"][0]["path"] == "data.k"
    status, body = await owner.post(
        "/api/members/search", {"filter": {"field": "name", "op": "eq", "value": "\x00"}}
    )
    assert status == 422
    status, _ = await owner.call("PUT", "/api/roles/desk", {"workflows": ["a\x00"]})
    assert status == 422
    assert await owner.gw.count(Member) == 1
