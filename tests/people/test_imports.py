"""CSV import and export (DESIGN §6) through the API, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from sqlalchemy import select

from people import imports
from store.models import Inbound, Member, Outbox
from tests.helpers import Api, Gateway, add_member, eventually

HEADER = "email,phone,name,kind,role,labels,notify_sms,notify_email,notify_voice,data.plan\r\n"


@pytest.fixture
async def owner(gateway: Gateway) -> Api:
    _, token = await add_member(gateway, "owner@example.com", kind="team", role="owner")
    return Api(gateway, token)


async def _import(api: Api, body: bytes, query: str = "") -> dict[str, Any]:
    response = await api.gw.client.post(
        f"/api/imports{query}", data=body, headers={**api.headers, "Content-Type": "text/csv"}
    )
    assert response.status == 202, await response.text()
    import_id = (await response.json())["id"]
    report: dict[str, Any] = {}

    async def finished() -> bool:
        nonlocal report
        report = (await api.get(f"/api/imports/{import_id}"))[1]
        return report["status"] in ("done", "failed")

    await eventually(finished)
    return report


def _errors(report: dict[str, Any]) -> list[tuple[int, str]]:
    return [(e["row"], e["column"]) for e in report["errors"]]


async def test_good_rows_are_kept_and_bad_rows_reported_by_row_and_column(owner: Api) -> None:
    body = (
        "\ufeff" + HEADER
        + 'ann@example.com,+14155550001,"Ann, the first",,,vip;gold,yes,no,1,gold\r\n'
        + 'bad-email,,Bob,,,,,,,\r\n'
        + ',4155550002,"Cy\r\nSecond line",,,,,,,\r\n'
        + ',not-a-phone,Dee,,,,,,,\r\n'
        + 'eve@example.com,,Eve,robot,,,,,,\r\n'
        + 'fay@example.com,,Fay,,wizard,,,,,\r\n'
        + 'gus@example.com,,Gus,,,,maybe,,,\r\n'
        + 'hal@example.com,only,two\r\n'
        + 'ann@example.com,,,,,dental,,,,\r\n'
    ).encode()  # fmt: skip

    report = await _import(owner, body)

    assert report["status"] == "done"
    assert (report["total"], report["processed"]) == (9, 9)
    assert (report["created"], report["updated"], report["failed"]) == (2, 1, 6)
    assert _errors(report) == [
        (3, "email"), (5, "phone"), (6, "kind"), (7, "role"), (8, "notify_sms"), (9, ""),
    ]  # fmt: skip
    members = {m.email or m.phone: m for m in await owner.gw.all(select(Member))}
    ann = members["ann@example.com"]
    assert (ann.name, ann.phone, ann.data, ann.notify_sms, ann.notify_email) == (
        "Ann, the first", "+14155550001", {"plan": "gold"}, True, False,
    )  # fmt: skip
    cy = members["+14155550002"]
    assert cy.name == "Cy\r\nSecond line"  # one row in a spreadsheet: row 4
    _status, ann_json = await owner.get(f"/api/members/{ann.id}")
    assert ann_json["labels"] == ["dental", "gold", "vip"]
    errors_csv = await owner.gw.client.get(
        f"/api/imports/{report['id']}/errors.csv", headers=owner.headers
    )
    rows = list(csv.reader(io.StringIO(await errors_csv.text())))
    assert rows[0] == ["row", "column", "message"]
    assert rows[1][:2] == ["3", "email"]


async def test_a_large_file_is_validated_in_a_worker_process_with_the_same_result(
    owner: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(imports, "POOL_FROM_ROWS", 1)  # what a 10,000-row file gets
    body = (HEADER + "ann@example.com,+14155550001,Ann,,,vip,,,,gold\r\n"
            "bad-email,,Bob,,,,,,,\r\n" "cy@example.com,,Cy,,wizard,,,,,\r\n").encode()  # fmt: skip
    report = await _import(owner, body)
    assert (report["created"], report["failed"]) == (1, 2)
    assert _errors(report) == [(3, "email"), (4, "role")]
    [ann] = await owner.gw.all(select(Member).where(Member.email == "ann@example.com"))
    assert (ann.phone, ann.data) == ("+14155550001", {"plan": "gold"})


async def test_reimporting_the_same_file_changes_nothing(owner: Api) -> None:
    body = (HEADER + "ann@example.com,+14155550001,Ann,,,vip,,,,gold\r\n"
            "bob@example.com,,Bob,,,,,,,basic\r\n").encode()  # fmt: skip
    first = await _import(owner, body)
    second = await _import(owner, body)
    assert (first["created"], first["unchanged"]) == (2, 0)
    assert (second["created"], second["updated"], second["unchanged"]) == (0, 0, 2)


async def test_the_same_person_twice_in_a_file_is_one_member(owner: Api) -> None:
    body = (HEADER + "ann@example.com,,Ann,,,vip,,,,\r\n"
            "ANN@example.com,+14155550001,,,,gold,,,,\r\n").encode()  # fmt: skip
    report = await _import(owner, body)
    assert (report["created"], report["updated"], report["failed"]) == (1, 1, 0)
    [ann] = await owner.gw.all(select(Member).where(Member.email == "ann@example.com"))
    assert ann.phone == "+14155550001"


async def test_lf_line_endings_and_any_column_order_work(owner: Api) -> None:
    report = await _import(owner, b"name,phone\nAnn,+14155550001\nBob,+14155550002\n")
    assert (report["created"], report["failed"]) == (2, 0)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"email,shoe_size\nann@example.com,9\n", "unknown columns: 'shoe_size'"),
        (b"email,name,email\nann@example.com,Ann,a@b.c\n", "repeated columns: email"),
        (b'email,name\nann@example.com,"Ann\nbob@example.com,Bob\n', "not valid CSV"),
        (b"email,name\nann@example.com,Ren\xe9e\n", "not UTF-8"),
        (b"", "empty"),
        (b"name\nAnn\n", "needs an email or a phone column"),
    ],
)
async def test_an_unusable_file_is_refused_whole_and_nothing_is_written(
    owner: Api, body: bytes, message: str
) -> None:
    report = await _import(owner, body)
    assert report["status"] == "failed"
    assert message in report["message"]
    assert await owner.gw.count(Member) == 1


async def test_a_field_over_64_kb_fails_its_row(owner: Api) -> None:
    body = f"email,name\nann@example.com,{'x' * 70_000}\nbob@example.com,Bob\n".encode()
    report = await _import(owner, body)
    assert (report["created"], report["failed"]) == (1, 1)
    assert _errors(report) == [(2, "name")]


async def test_a_file_over_the_limit_is_413_before_it_is_read(gateway: Gateway) -> None:
    _, token = await add_member(gateway, "owner@example.com", kind="team", role="owner")
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "text/csv"}
    limit = gateway.settings.people.import_max_bytes
    response = await gateway.client.post(
        "/api/imports", data=b"x", headers={**headers, "Content-Length": str(limit + 1)}
    )
    assert response.status == 413


async def test_an_import_never_grants_more_than_the_importer_has(gateway: Gateway) -> None:
    _, token = await add_member(gateway, "admin@example.com", kind="team", role="admin")
    admin = Api(gateway, token)
    report = await _import(
        admin, b"email,kind,role\nx@example.com,team,owner\ny@example.com,team,operator\n"
    )
    assert (report["created"], report["failed"]) == (1, 1)
    assert report["errors"][0]["column"] == "role"
    assert "only an owner" in report["errors"][0]["message"]


async def test_importing_sends_nothing(owner: Api) -> None:
    await _import(owner, (HEADER + "ann@example.com,+14155550001,Ann,,,,,,,\r\n").encode())
    assert await owner.gw.count(Inbound) == 0
    assert await owner.gw.count(Outbox) == 0
    assert owner.gw.twilio.requests == 0


async def test_dry_run_validates_and_counts_without_writing(owner: Api) -> None:
    body = (HEADER + "ann@example.com,,Ann,,,,,,,\r\nbad,,B,,,,,,,\r\n").encode()
    report = await _import(owner, body, "?dry_run=true")
    assert (report["dry_run"], report["created"], report["failed"]) == (True, 1, 1)
    assert await owner.gw.count(Member) == 1


async def test_multipart_upload_works_too(owner: Api) -> None:
    import aiohttp

    form = aiohttp.FormData()
    form.add_field("file", b"email\nann@example.com\n", filename="m.csv", content_type="text/csv")
    response = await owner.gw.client.post("/api/imports", data=form, headers=owner.headers)
    assert response.status == 202


async def test_export_neutralises_formulas_and_our_import_restores_them(owner: Api) -> None:
    await owner.post(
        "/api/members",
        {"email": "ann@example.com", "phone": "+14155550001", "name": "=HYPERLINK(\"x\")",
         "labels": ["vip"], "data": {"note": "@home", "quote": "'=already"}},
    )  # fmt: skip
    response = await owner.gw.client.get("/api/members/export", headers=owner.headers)
    text = await response.text()
    rows = list(csv.DictReader(io.StringIO(text)))
    ann = next(r for r in rows if r["email"] == "ann@example.com")
    assert response.headers["Content-Type"].startswith("text/csv")
    assert ann["phone"] == "'+14155550001"
    assert ann["name"] == '\'=HYPERLINK("x")'
    assert ann["data.note"] == "'@home"
    assert ann["data.quote"] == "''=already"

    report = await _import(owner, text.encode())
    assert (report["failed"], report["created"], report["updated"]) == (0, 0, 0)
    [member] = await owner.gw.all(select(Member).where(Member.email == "ann@example.com"))
    assert member.phone == "+14155550001"
    assert member.name == '=HYPERLINK("x")'
    assert member.data == {"note": "@home", "quote": "'=already"}


async def test_export_takes_a_filter(owner: Api) -> None:
    await owner.post("/api/members", {"email": "ann@example.com", "labels": ["vip"]})
    await owner.post("/api/members", {"email": "bob@example.com"})
    response = await owner.gw.client.get(
        '/api/members/export?filter={"label":"vip"}', headers=owner.headers
    )
    emails = [r["email"] for r in csv.DictReader(io.StringIO(await response.text()))]
    assert emails == ["ann@example.com"]


async def test_a_nul_character_fails_its_row(owner: Api) -> None:
    report = await _import(owner, b"email,name\nann@example.com,A\x00nn\nbob@example.com,Bob\n")
    assert (report["created"], report["failed"]) == (1, 1)
    assert _errors(report) == [(2, "name")]
