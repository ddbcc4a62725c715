"""Member filters through ``POST /api/members/search``, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update

from people.filters import compile_filter
from store.errors import ValidationFailed
from store.models import Member, utcnow
from tests.helpers import Api, Gateway, add_member

DESIGN_EXAMPLE = {
    "all": [
        {"label": "vip"},
        {
            "any": [
                {"field": "data.plan", "op": "eq", "value": "gold"},
                {"field": "last_active", "op": "within", "value": "7d"},
            ]
        },
        {"not": {"field": "notify.sms", "op": "eq", "value": False}},
    ]
}


@pytest.fixture
async def people(gateway: Gateway) -> tuple[Api, dict[str, int]]:
    """An owner, and members that tell the filter's branches apart."""
    _, token = await add_member(gateway, "owner@example.com", kind="team", role="owner")
    ids = {}
    specs: dict[str, dict[str, Any]] = {
        "gold_vip": {"labels": ["vip"], "data": {"plan": "gold", "seats": 12}, "name": "Ann Gold"},
        "recent_vip": {"labels": ["vip", "dental"], "data": {"plan": "basic", "seats": 3}},
        "stale_vip": {"labels": ["vip"], "data": {"plan": "basic", "seats": 40}},
        "no_sms_vip": {"labels": ["vip"], "data": {"plan": "gold"}, "notify": {"sms": False}},
        "gold_plain": {"data": {"plan": "gold", "city": "Springfield"}, "name": "Bob Plain"},
        "archived_vip": {"labels": ["vip"], "data": {"plan": "gold"}},
    }
    for name, fields in specs.items():
        ids[name], _ = await add_member(gateway, f"{name}@example.com", token=False, **fields)
    async with gateway.services.sessions.begin() as session:
        await session.execute(
            update(Member).where(Member.id == ids["recent_vip"]).values(last_active_at=utcnow())
        )
        stale = utcnow() - timedelta(days=30)
        await session.execute(
            update(Member).where(Member.id == ids["stale_vip"]).values(last_active_at=stale)
        )
        await session.execute(
            update(Member).where(Member.id == ids["archived_vip"]).values(archived=True)
        )
    return Api(gateway, token), ids


async def _names(api: Api, ids: dict[str, int], body: dict[str, Any]) -> set[str]:
    status, found = await api.post("/api/members/search", body)
    assert status == 200, found
    by_id = {str(v): k for k, v in ids.items()}
    return {by_id.get(m["id"], m["email"]) for m in found["items"]}


async def test_the_design_example_finds_vips_on_gold_or_recently_active_with_sms_on(
    people: tuple[Api, dict[str, int]],
) -> None:
    api, ids = people
    assert await _names(api, ids, {"filter": DESIGN_EXAMPLE}) == {"gold_vip", "recent_vip"}


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ({"label": "dental"}, {"recent_vip"}),
        ({"field": "data.plan", "op": "ne", "value": "gold"}, {"recent_vip", "stale_vip"}),
        ({"field": "data.seats", "op": "gt", "value": 10}, {"gold_vip", "stale_vip"}),
        ({"field": "data.seats", "op": "le", "value": 3}, {"recent_vip"}),
        (
            {"field": "data.plan", "op": "in", "value": ["gold"]},
            {"gold_vip", "no_sms_vip", "gold_plain"},
        ),
        ({"field": "data.city", "op": "exists", "value": True}, {"gold_plain"}),
        ({"field": "name", "op": "contains", "value": "gold"}, {"gold_vip"}),
        ({"field": "email", "op": "startswith", "value": "GOLD_"}, {"gold_plain", "gold_vip"}),
        ({"field": "last_active", "op": "before", "value": "7d"}, {"stale_vip"}),
        ({"field": "notify.sms", "op": "eq", "value": False}, {"no_sms_vip"}),
        ({"field": "archived", "op": "eq", "value": True}, {"archived_vip"}),
        ({"field": "kind", "op": "eq", "value": "team"}, {"owner@example.com"}),
    ],
)
async def test_each_operator_selects_what_it_says(
    people: tuple[Api, dict[str, int]], condition: dict[str, Any], expected: set[str]
) -> None:
    api, ids = people
    assert await _names(api, ids, {"filter": condition}) == expected


async def test_archived_members_are_left_out_unless_asked_for(
    people: tuple[Api, dict[str, int]],
) -> None:
    api, ids = people
    everyone = await _names(api, ids, {})
    assert "archived_vip" not in everyone
    assert len(everyone) == 6  # five members and the owner


async def test_paging_and_sorting_walk_every_member_once(
    people: tuple[Api, dict[str, int]],
) -> None:
    api, _ = people
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        status, page = await api.post(
            "/api/members/search", {"limit": 2, "sort": "-name", "cursor": cursor}
        )
        assert status == 200
        seen += [m["id"] for m in page["items"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 6
    status, first = await api.post("/api/members/search", {"limit": 6, "sort": "-name"})
    assert [m["id"] for m in first["items"]] == seen


@pytest.mark.parametrize(
    ("condition", "where"),
    [
        ({"all": [{"label": "vip"}, {"field": "salary", "op": "eq", "value": 1}]}, "all[1].field"),
        ({"any": [{"field": "name", "op": "like", "value": "x"}]}, "any[0].op"),
        ({"not": {"field": "last_active", "op": "within", "value": "a week"}}, "not.value"),
        ({"field": "data.x; DROP TABLE members", "op": "eq", "value": 1}, "field"),
        ({"all": []}, "all"),
        ({"label": 5}, "label"),
        ({"field": "notify.sms", "op": "eq", "value": "no"}, "value"),
        ({"whatever": 1}, "filter"),
    ],
)
async def test_a_bad_filter_is_a_400_that_says_where(
    people: tuple[Api, dict[str, int]], condition: dict[str, Any], where: str
) -> None:
    api, _ = people
    status, body = await api.post("/api/members/search", {"filter": condition})
    assert status == 400
    assert [d["path"] for d in body["error"]["details"]] == [where]


def test_values_are_bound_parameters_never_sql() -> None:
    hostile = "x' OR '1'='1"
    compiled = compile_filter({"field": "name", "op": "eq", "value": hostile}, "sqlite")
    sql = str(compiled.condition.compile(compile_kwargs={}))
    assert hostile not in sql
    with pytest.raises(ValidationFailed):
        compile_filter({"all": [{"all": [{"all": [{"all": [{"all": [{"all": [{"all": [{"all": [
            {"all": [{"label": "deep"}]}]}]}]}]}]}]}]}]}, "sqlite")  # fmt: skip
