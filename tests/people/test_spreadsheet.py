"""The member CSV's typed ``data.`` cells: hand-written cells, and export then import
changing nothing (through the API, on SQLite and PostgreSQL)."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from sqlalchemy import select

from people.spreadsheet import to_data_cell, to_data_value
from store.models import Member
from tests.helpers import Api, Gateway, add_member
from tests.people.test_imports import _import

DATA: dict[str, Any] = {
    "seats": 12,
    "negative": -7,
    "big": 12345678901234567890,
    "ratio": 2.5,
    "whole_float": 3.0,
    "tiny": -0.125,
    "vip": True,
    "lapsed": False,
    "address": {"zip": "02134", "street": "1 Main St", "floors": [1, 2], "geo": {"lat": 42.35}},
    "tags": ["a", 1, True, None, {"x": "=y"}],
    "empty_list": [],
    "zip": "02134",
    "zip_plain": "12345",
    "phone_like": "+1 (415) 555-0100",
    "digits_phone": "4155550100",
    "float_text": "1.50",
    "exp_text": "1e5",
    "true_text": "true",
    "null_text": "null",
    "nan_text": "NaN",
    "json_text": '{"not": "an object"}',
    "list_text": "[1, 2]",
    "quoted_text": '"quoted"',
    "unicode": "Zoë 東京 🦷",
    "formula": '=HYPERLINK("http://x")',
    "plus": "+cmd|' /C calc'!A0",
    "minus": "-2+3",
    "at": "@SUM(1)",
    "quote": "'already quoted",
    "padded": "  spaced  ",
    "empty": "",
    "tabbed": "\tlead",
    "lines": "two\nlines",
    "comma": "a, b; c",
}


@pytest.mark.parametrize(
    ("cell", "value"),
    [
        ("12", 12), ("-3.5", -3.5), ("1e3", 1000.0), ("true", True), ("false", False),
        ('{"a": [1, "b"]}', {"a": [1, "b"]}), ("[1,2]", [1, 2]), ('"12"', "12"),
        ("02134", "02134"), ("'12345", "12345"), ("+1 415 555 0100", "+1 415 555 0100"),
        ("null", "null"), ("NaN", "NaN"), ("Infinity", "Infinity"), ("1e999", "1e999"),
        ("TRUE", "TRUE"), ("yes", "yes"), ("gold", "gold"), ("{broken", "{broken"),
        ("'=1+1", "=1+1"), ("=1+1", "=1+1"), ("'", ""), ("''x", "'x"),
    ],
)  # fmt: skip
def test_a_hand_written_data_cell_is_json_when_it_is_json_and_text_otherwise(
    cell: str, value: Any
) -> None:
    read = to_data_value(cell)
    assert read == value
    assert type(read) is type(value)


@pytest.mark.parametrize("key", sorted(DATA))
def test_every_value_written_to_a_cell_reads_back_identical(key: str) -> None:
    buffer = io.StringIO()
    csv.writer(buffer).writerow([to_data_cell(DATA[key])])
    [[cell]] = list(csv.reader(io.StringIO(buffer.getvalue())))
    read = to_data_value(cell.strip())
    assert read == DATA[key]
    assert repr(read) == repr(DATA[key])  # types too: 3.0 stays a float, "12345" a string
    assert cell.strip()[:1] not in ("=", "+", "@")  # never a formula in a spreadsheet
    assert not cell.startswith(("-2", "\t"))


def _typed(value: Any) -> str:
    """``value`` with its JSON types showing (``1``, ``1.0`` and ``true`` differ)."""
    return json.dumps(value, sort_keys=True)


async def test_export_then_import_changes_nothing(gateway: Gateway) -> None:
    _, token = await add_member(gateway, "owner@example.com", kind="team", role="owner")
    owner = Api(gateway, token)
    people = {
        "ann@example.com": DATA,
        "bob@example.com": {"seats": "12", "vip": "true", "zip": 2134},
        "cy@example.com": {"seats": 12.0, "note": "=1+1"},
    }
    for email, data in people.items():
        status, body = await owner.post(
            "/api/members", {"email": email, "name": "Zoë =x", "labels": ["vip"], "data": data}
        )
        assert status == 201, body
    before = {m.email: m.data for m in await gateway.all(select(Member))}
    assert before["ann@example.com"] == DATA

    response = await gateway.client.get("/api/members/export", headers=owner.headers)
    exported = await response.read()
    report = await _import(owner, exported)
    assert report["status"] == "done", report
    assert report["errors"] == []
    assert (report["created"], report["updated"], report["unchanged"]) == (0, 0, 4)

    after = {m.email: m.data for m in await gateway.all(select(Member))}
    assert _typed(after) == _typed(before)  # identical values and types

    again = await gateway.client.get("/api/members/export", headers=owner.headers)
    assert await again.read() == exported


async def test_an_import_that_changes_only_a_type_is_an_update(gateway: Gateway) -> None:
    _, token = await add_member(gateway, "owner@example.com", kind="team", role="owner")
    owner = Api(gateway, token)
    await owner.post("/api/members", {"email": "ann@example.com", "data": {"vip": True, "n": 1}})
    report = await _import(owner, b"email,data.vip,data.n\r\nann@example.com,1,1.0\r\n")
    assert (report["updated"], report["unchanged"]) == (1, 0)
    [data] = await gateway.all(select(Member.data).where(Member.email == "ann@example.com"))
    assert _typed(data) == _typed({"vip": 1, "n": 1.0})


async def test_what_the_csv_cannot_carry_is_refused_or_trimmed_by_the_api(gateway: Gateway) -> None:
    _, token = await add_member(gateway, "owner@example.com", kind="team", role="owner")
    owner = Api(gateway, token)
    status, body = await owner.post("/api/members", {"email": "a@example.com", "labels": ["a;b"]})
    assert status == 422, body
    status, body = await owner.post("/api/members", {"email": "b@example.com", "name": "  Bo  "})
    assert (status, body["name"]) == (201, "Bo")
    response = await gateway.client.get("/api/members/export", headers=owner.headers)
    report = await _import(owner, await response.read())
    assert (report["updated"], report["unchanged"]) == (0, 2)
