"""Boolean query parameters: only true/false/1/0, anything else a 400 that changes nothing."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from gateway.api import ENDPOINTS
from store.models import Import, Member
from tests.helpers import Api, Gateway, add_member

FLAGGED = [(e.method, e.path, name) for e in ENDPOINTS for name in e.flags]
CSV = "email,name\r\n" + "".join(f"p{i}@example.com,P{i}\r\n" for i in range(30))


@pytest.fixture
async def owner(gateway: Gateway) -> Api:
    _, token = await add_member(gateway, "owner@example.com", kind="team", role="owner")
    return Api(gateway, token)


def test_the_boolean_parameters_are_declared_as_flags() -> None:
    assert ("POST", "/api/imports", "dry_run") in FLAGGED
    assert ("GET", "/api/members", "archived") in FLAGGED
    words = {"dry_run", "archived", "include", "all", "force", "verbose"}
    for endpoint in ENDPOINTS:
        assert not words & set(endpoint.query), f"{endpoint.path}: a boolean outside flags"


@pytest.mark.parametrize("value", ["maybe", "yes", "", "TRUE!", "2", "true&dry_run=false"])
async def test_a_dry_run_that_is_not_a_boolean_is_refused_and_imports_nothing(
    owner: Api, value: str
) -> None:
    response = await owner.gw.client.post(
        f"/api/imports?dry_run={value}",
        data=CSV.encode(),
        headers={**owner.headers, "Content-Type": "text/csv"},
    )
    assert response.status == 400, await response.text()
    body = await response.json()
    assert "dry_run" in body["error"]["message"]
    async with owner.gw.services.sessions() as session:
        assert (await session.execute(select(func.count()).select_from(Import))).scalar_one() == 0
        members = await session.execute(select(func.count()).select_from(Member))
        assert members.scalar_one() == 1  # the owner alone


@pytest.mark.parametrize(("method", "path", "name"), FLAGGED)
async def test_every_flag_refuses_a_word_that_is_not_a_boolean(
    owner: Api, method: str, path: str, name: str
) -> None:
    response = await owner.gw.client.request(
        method, f"{path}?{name}=maybe", data=CSV.encode(),
        headers={**owner.headers, "Content-Type": "text/csv"},
    )  # fmt: skip
    assert response.status == 400, await response.text()
    assert (await response.json())["error"]["code"] == "bad_request"


@pytest.mark.parametrize(
    ("value", "archived_listed"), [("true", True), ("1", True), ("false", False), ("0", False)]
)
async def test_the_four_boolean_words_are_taken(
    owner: Api, value: str, archived_listed: bool
) -> None:
    gone, _ = await add_member(owner.gw, "gone@example.com", token=False)
    assert (await owner.post(f"/api/members/{gone}/archive"))[0] == 200
    status, page = await owner.get(f"/api/members?archived={value}")
    assert status == 200
    assert (str(gone) in [m["id"] for m in page["items"]]) is archived_listed
