"""The classes behind issue 13's §2 and §5, with the inputs a review found: a member merged
away cannot be changed (its identities would reach the member it became), an import's
rows are checked against what earlier rows of the same batch set, what the store cannot
hold (NaN, a lone surrogate, an escaped NUL) is refused at the API and in CSV cells, an
import option sent as a form field is refused, and an export of anonymous members or of
any data key the API accepts imports back."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from people import members
from store.models import Import, Member
from tests.helpers import Api, Gateway, add_member
from tests.people.test_imports import _import


@pytest.fixture
async def owner(gateway: Gateway) -> Api:
    _, token = await add_member(gateway, "owner@example.com", kind="team", role="owner")
    return Api(gateway, token)


async def _export(api: Api) -> str:
    response = await api.gw.client.get("/api/members/export", headers=api.headers)
    assert response.status == 200
    return await response.text()


async def _raw(api: Api, method: str, path: str, body: str) -> tuple[int, Any]:
    headers = {**api.headers, "Content-Type": "application/json"}
    response = await api.gw.client.request(method, path, data=body, headers=headers)
    return response.status, await response.json()


@pytest.mark.parametrize(
    "change",
    [
        ("POST", "identities", {"kind": "phone", "address": "+14155550999"}),
        ("PATCH", "", {"phone": "+14155550999"}),
        ("PATCH", "", {"email": "evil@example.com"}),
    ],
)
async def test_a_member_merged_into_the_owner_cannot_be_given_an_identity_by_an_admin(
    gateway: Gateway, owner: Api, change: tuple[str, str, dict[str, str]]
) -> None:
    owner_id = int((await owner.get("/api/members"))[1]["items"][0]["id"])
    async with gateway.services.sessions.begin() as session:
        texter = (await members.resolve(session, "phone", "+14155550142")).id
    status, merged = await owner.post(
        f"/api/members/{texter}/identities", {"kind": "email", "address": "owner@example.com"}
    )
    assert (status, merged["id"]) == (200, str(owner_id))  # the texter was the owner
    _, admin_token = await add_member(gateway, "admin@example.com", kind="team", role="admin")
    method, tail, body = change

    status, answer = await Api(gateway, admin_token).call(
        method, f"/api/members/{texter}/{tail}".rstrip("/"), body
    )
    async with gateway.services.sessions() as session:
        phone = await members.by_identity(session, "phone", "+14155550999")
        email = await members.by_identity(session, "email", "evil@example.com")

    assert status == 409, answer
    assert f"merged into member {owner_id}" in answer["error"]["message"]
    assert (phone, email) == (None, None)


async def test_an_import_cannot_make_a_contact_of_a_member_and_give_it_admin_in_two_rows(
    gateway: Gateway, owner: Api
) -> None:
    assert (await owner.call("PUT", "/api/roles/junior", {"features": {"files": "use"}}))[0] == 200
    await add_member(gateway, "tm@example.com", kind="team", role="junior", token=False)
    body = b"email,kind,role\r\ntm@example.com,contact,\r\ntm@example.com,,operator\r\n"

    report = await _import(owner, body)
    [after] = await gateway.all(select(Member).where(Member.email == "tm@example.com"))

    assert (after.kind, after.role) == ("contact", "junior")
    assert [(e["row"], e["column"]) for e in report["errors"]] == [(3, "role")]


@pytest.mark.parametrize(
    "body",
    [
        '{"data": {"x": NaN}}',
        '{"data": {"x": Infinity}}',
        '{"data": {"x": "\\ud800"}}',
        '{"name": "\\ud800"}',
        '{"data": {"k\\u0000": 1}}',
    ],
)
async def test_the_api_refuses_what_the_store_cannot_hold_and_changes_nothing(
    gateway: Gateway, owner: Api, body: str
) -> None:
    _, member = await owner.post("/api/members", {"email": "s@example.com", "data": {"x": 1}})

    status, answer = await _raw(owner, "PATCH", f"/api/members/{member['id']}", body)
    _, after = await owner.get(f"/api/members/{member['id']}")

    assert status in (400, 422), answer
    assert "error" in answer
    assert (after["data"], after["name"]) == ({"x": 1}, member["name"])


async def test_a_filter_value_that_is_not_json_is_a_400(owner: Api) -> None:
    body = '{"filter": {"field": "data.x", "op": "gt", "value": NaN}}'
    status, answer = await _raw(owner, "POST", "/api/members/search", body)
    assert status == 400
    assert "NaN is not JSON" in answer["error"]["message"]


@pytest.mark.parametrize("cell", ['"a\\u0000b"', '"\\ud800"', '{"k": "\\u0000"}'])
async def test_a_json_cell_that_decodes_to_what_the_store_cannot_hold_fails_its_row_only(
    gateway: Gateway, owner: Api, cell: str
) -> None:
    quoted = '"' + cell.replace('"', '""') + '"'
    body = f"email,data.x\r\ngood@example.com,1\r\nbad@example.com,{quoted}\r\n"

    report = await _import(owner, body.encode())

    assert (report["status"], report["created"], report["failed"]) == ("done", 1, 1)
    assert report["errors"][0]["column"] == "data.x"
    assert await gateway.count(Member, Member.email == "bad@example.com") == 0


async def test_dry_run_sent_as_a_form_field_is_refused_and_nothing_is_imported(
    gateway: Gateway, owner: Api
) -> None:
    form = aiohttp.FormData()
    form.add_field("dry_run", "true")
    form.add_field("file", b"email\r\nnew@example.com\r\n", filename="x.csv")

    response = await gateway.client.post("/api/imports", data=form, headers=owner.headers)
    answer = await response.json()

    assert response.status == 400
    assert "dry_run" in answer["error"]["message"]
    assert await gateway.count(Import) == 0
    assert await gateway.count(Member, Member.email == "new@example.com") == 0


async def test_an_export_with_anonymous_members_imports_back_unchanged(
    gateway: Gateway, owner: Api
) -> None:
    async with gateway.services.sessions.begin() as session:
        await members.resolve(session, "phone", "+14155550177")

    report = await _import(owner, (await _export(owner)).encode())
    [texter] = await gateway.all(select(Member).where(Member.phone == "+14155550177"))

    assert (report["failed"], report["updated"]) == (0, 0)
    assert texter.kind == "anonymous"


@pytest.mark.parametrize("key", ["first name", "prénom", "a.b", "x" * 65])
async def test_a_data_key_no_csv_column_can_carry_is_refused_by_the_api(
    owner: Api, key: str
) -> None:
    status, answer = await owner.post("/api/members", {"email": "k@example.com", "data": {key: 1}})
    assert status == 422, answer
    assert answer["error"]["details"][0]["path"] == "data"
