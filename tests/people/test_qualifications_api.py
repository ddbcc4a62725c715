"""Qualifications through the API, the console and the running gateway: the demo's
billing-support qualification from enrollment to routing, definitions over the API,
revocation, races, and both sides of the console. Grading itself: test_qualifications_grading."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from sqlalchemy import select

from gateway.settings import from_mapping, load
from store.models import (
    Conversation,
    Handoff,
    QualificationProgress,
)
from tests.escalation.test_live import live_config
from tests.fakes.twilio_api import FakeTwilio
from tests.helpers import Api, Gateway, add_member, eventually, receive

Q = "/api/qualifications/billing-support"
GOOD_ANSWERS = {
    "double-charge": "I'm sorry! I will check both charges on the account and refund the "
    "duplicate charge today.",
    "refund-days": "3-5",
}
CHAT = [
    "I'm so sorry about that, Dana. Let me check both charges on your account.",
    "I see the two $120 charges, so I've refunded the duplicate charge.",
    "The refund reaches your card in 3-5 business days.",
]


async def _team(gw: Gateway, name: str, role: str = "operator", **fields: Any) -> tuple[int, Api]:
    member_id, token = await add_member(gw, f"{name.lower()}@example.com", kind="team",
                                        role=role, name=name, **fields)  # fmt: skip
    return member_id, Api(gw, token)


async def _mine(api: Api, member_id: int) -> dict[str, Any]:
    status, body = await api.get(f"/api/members/{member_id}/qualifications")
    assert status == 200, body
    [item] = [i for i in body["items"] if i["qualification"]["name"] == "billing-support"]
    return dict(item)


async def _take_it(api: Api, member_id: int) -> dict[str, Any]:
    """Answer the questions and hold the simulated chat, as the console does."""
    mine = f"/api/members/{member_id}/qualifications/billing-support"
    status, chat = await api.post(f"{mine}/chats/upset-patient")
    assert status == 200, chat
    assert chat["transcript"][0]["text"] == "Hi, I was charged twice for my cleaning last week!"
    for turn, text in enumerate(CHAT, start=1):
        status, chat = await api.post(f"{mine}/chats/upset-patient/messages", {"text": text})
        assert status == 200, chat

        async def answered(turn: int = turn) -> bool:
            transcript = (await _mine(api, member_id))["chats"]["upset-patient"]["transcript"]
            return len(transcript) == 2 * turn + 1

        await eventually(answered)
    chat = (await _mine(api, member_id))["chats"]["upset-patient"]
    status, body = await api.post(f"{mine}/submission", {"answers": GOOD_ANSWERS})
    assert status == 202, body
    return dict(chat)


async def _attempt(admin: Api, ann: Api, ann_id: int, answers: dict[str, str],
                   until: str) -> dict[str, Any]:  # fmt: skip
    """Enroll Ann, submit ``answers`` as her, and wait for the grade to say ``until``."""
    await admin.post(f"{Q}/enrollments", {"member_ids": [ann_id]})
    mine = f"/api/members/{ann_id}/qualifications/billing-support"
    assert (await ann.post(f"{mine}/submission", {"answers": answers}))[0] == 202

    async def graded() -> bool:
        return (await _mine(ann, ann_id))["status"] == until

    await eventually(graded, timeout=20)
    return await _mine(ann, ann_id)


async def _billing_chat(gw: Gateway) -> int:
    """A web chat customer with a double charge; the billing workflow hands off."""
    ws = await gw.chat()
    await ws.send_json({"type": "hello"})
    await receive(ws, "welcome")
    for i, text in enumerate(("Hi, I was charged twice on my bill", "Cy Young", "charged twice")):
        await ws.send_json({"type": "message", "text": text, "client_id": f"c{i}"})
        await receive(ws, "ack")
        await receive(ws, "message")
    await ws.close()

    async def handed_off() -> bool:
        return bool(await gw.all(select(Handoff)))

    await eventually(handed_off)
    [handoff] = await gw.all(select(Handoff))
    [conversation] = await gw.all(select(Conversation).where(Conversation.id ==
                                                             handoff.conversation_id))  # fmt: skip
    assert conversation.workflow == "billing"
    return handoff.id


async def test_demo_billing_qualification_enrolled_to_qualified_then_routing_offers_billing(
    database_url: str, twilio: tuple[FakeTwilio, str]
) -> None:
    settings = load(env={"FRONTDESK_DATABASE_URL": database_url})
    async with Gateway.running(settings, twilio[0]) as gw:
        _, admin = await _team(gw, "Boss", role="admin")
        bob_id, bob = await _team(gw, "Bob")
        ann_id, ann = await _team(gw, "Ann", labels=["billing-team"])
        assert (await bob.post("/api/operators/live"))[0] == 200  # Bob first: wins any tie
        assert (await ann.post("/api/operators/live"))[0] == 200
        handoff_id = await _billing_chat(gw)
        live = gw.services.pipeline.live
        await live.route_queued()
        [waiting] = await gw.all(select(Handoff).where(Handoff.id == handoff_id))
        assert waiting.operator_id is None  # nobody is qualified for billing yet

        # What a candidate sees: the questions, not the reference answers.
        status, public = await ann.get(Q)
        assert status == 200
        assert "criteria" not in json.dumps(public)
        status, enrolled = await admin.post(
            f"{Q}/enrollments", {"filter": {"label": "billing-team"}}
        )
        assert (status, enrolled["enrolled"]) == (200, [str(ann_id)])
        chat = await _take_it(ann, ann_id)
        assert [t["author"] for t in chat["transcript"]] == ["customer", "member"] * 3 + [
            "customer"
        ]
        assert chat["transcript"][-1]["text"] == "Thanks, that's all I needed."
        assert chat["done"] is True

        async def graded() -> bool:
            return (await _mine(ann, ann_id))["status"] != "submitted"

        await eventually(graded, timeout=20)
        progress = await _mine(ann, ann_id)
        assert progress["status"] == "provisional", progress["latest"]
        results = {r["requirement"]: r for r in progress["latest"]["results"]}
        assert all(r["passed"] for r in results.values())
        assert [c["kind"] for c in results["upset-patient"]["criteria"]] == [
            "formula",
            "ai-fallback",
        ]
        await live.route_queued()
        [still] = await gw.all(select(Handoff).where(Handoff.id == handoff_id))
        assert still.operator_id is None  # provisional is not qualified

        status, queue = await admin.get(f"{Q}/members?status=provisional")
        assert [m["member_id"] for m in queue["items"]] == [str(ann_id)]
        assert (await bob.post(f"/api/members/{ann_id}/qualifications/billing-support/review",
                               {"approve": True, "note": "ok"}))[0] == 403  # fmt: skip
        status, reviewed = await admin.post(
            f"/api/members/{ann_id}/qualifications/billing-support/review",
            {"approve": True, "note": "Good chat; clear on refund times."},
        )
        assert (status, reviewed["status"]) == (200, "qualified")

        async def offered() -> bool:
            [found] = await gw.all(select(Handoff).where(Handoff.id == handoff_id))
            return found.operator_id is not None

        await eventually(offered)
        [handoff] = await gw.all(select(Handoff).where(Handoff.id == handoff_id))
        history = [(h["to"], h["reason"]) for h in (await _mine(admin, ann_id))["history"]]
    assert handoff.operator_id == ann_id != bob_id
    assert history == [
        ("enrolled", "enrolled"),
        ("submitted", "answers submitted"),
        ("provisional", "every requirement passed"),
        ("qualified", "Good chat; clear on refund times."),
    ]


BASIC: dict[str, Any] = {
    "workflows": ["billing"],
    "admin_review": False,
    "requirements": [{"id": "days", "prompt": "Refund days?", "choices": ["1-2", "3-5"],
                      "criteria": [{"formula": "answer == choices[1]"}]}],
}  # fmt: skip


def _billing_config(database_url: str, base: str, **qualification: Any) -> dict[str, Any]:
    """Live operators, a billing workflow, and the billing-support ``qualification``."""
    raw = live_config(database_url, base)
    raw["workflows"] = [{"name": "billing", "steps": [{"say": "Let me look at your bill."}]}]
    raw["qualifications"] = [{"name": "billing-support", **qualification}]
    return raw


async def test_definitions_over_the_api_say_where_they_are_wrong_and_need_edit(
    sqlite_url: str, twilio: tuple[FakeTwilio, str]
) -> None:
    fake, base = twilio
    raw = _billing_config(sqlite_url, base, **BASIC, description="from YAML")
    async with Gateway.running(from_mapping(raw, env={}), fake) as gw:
        _, admin = await _team(gw, "Boss", role="admin")
        _, ann = await _team(gw, "Ann")
        wrong = [{"id": "x", "prompt": "?", "criteria": [{"formula": "salary > 1"}]}]
        bad = {**BASIC, "workflows": ["billing", "shipping"], "requirements": wrong}
        status, body = await admin.call("PUT", Q, bad)
        assert status == 422
        assert "requirements.0.criteria.0.formula" in {d["path"] for d in body["error"]["details"]}
        status, body = await admin.call("PUT", Q, {**BASIC, "workflows": ["shipping"]})
        assert (status, body["error"]["details"][0]["path"]) == (422, "workflows[0]")
        assert (await ann.call("PUT", Q, {**BASIC, "description": "mine"}))[0] == 403
        assert (await admin.get(Q))[1]["description"] == "from YAML"

        status, saved = await admin.call("PUT", Q, {**BASIC, "description": "from the API"})
        assert (status, saved["source"]) == (200, "api")
        status, listed = await admin.get("/api/qualifications")
        assert [(q["name"], q["description"], q["source"]) for q in listed["items"]] == [
            ("billing-support", "from the API", "api")
        ]
        assert (await ann.get("/api/qualifications"))[1]["items"][0]["requirements"][0] == {
            "id": "days", "kind": "question", "prompt": "Refund days?", "choices": ["1-2", "3-5"],
        }  # fmt: skip
        assert (await ann.get("/api/qualifications/nothing"))[0] == 404
        await _team(gw, "Bob")
        everyone = {"field": "kind", "op": "eq", "value": "team"}
        assert len((await admin.post(f"{Q}/enrollments", {"filter": everyone}))[1]["enrolled"]) == 3
        first = (await admin.get(f"{Q}/members?limit=2"))[1]
        rest = (await admin.get(f"{Q}/members?limit=2&cursor={first['next']}"))[1]
        assert [m["name"] for m in first["items"] + rest["items"]] == ["Boss", "Ann", "Bob"]
        assert rest["next"] is None


async def test_revoking_sends_the_member_s_billing_conversations_back_to_the_queue(
    database_url: str, twilio: tuple[FakeTwilio, str]
) -> None:
    fake, base = twilio
    raw = _billing_config(database_url, base, **BASIC)
    raw["qualifications"].append({**BASIC, "name": "billing-senior"})  # unlocks billing too
    async with Gateway.running(from_mapping(raw, env={}), fake) as gw:
        _, admin = await _team(gw, "Boss", role="admin")
        ann_id, ann = await _team(gw, "Ann")
        customer, _ = await add_member(gw, "customer@example.org", token=False)
        for name in ("billing-support", "billing-senior"):
            path = f"/api/qualifications/{name}/enrollments"
            enrolled = (await admin.post(path, {"member_ids": [str(ann_id)]}))[1]["enrolled"]
            assert enrolled == [str(ann_id)]
            mine = f"/api/members/{ann_id}/qualifications/{name}"
            assert (await ann.post(f"{mine}/submission", {"answers": {"days": "3-5"}}))[0] == 202

        async def qualified() -> bool:
            items = (await ann.get(f"/api/members/{ann_id}/qualifications"))[1]["items"]
            return [i["status"] for i in items] == ["qualified", "qualified"]

        await eventually(qualified, timeout=20)
        assert (await ann.post("/api/operators/live"))[0] == 200
        ids = []
        async with gw.services.sessions.begin() as session:
            for workflow in ("billing", None):
                conversation = Conversation(member_id=customer, channel="sms", status="queued",
                                            inbox=f"+1415555{workflow}", workflow=workflow,
                                            data={})  # fmt: skip
                session.add(conversation)
                await session.flush()
                handoff = Handoff(conversation_id=conversation.id, reason="t", trigger="t")
                session.add(handoff)
                await session.flush()
                ids.append(handoff.id)
        gw.services.pipeline.live.route_soon(ids)

        async def both_offered() -> bool:
            found = await gw.all(select(Handoff).where(Handoff.id.in_(ids)))
            return all(h.operator_id == ann_id for h in found)

        await eventually(both_offered)
        for handoff_id in ids:
            async with gw.services.sessions() as session:
                conversation_id = (await session.get(Handoff, handoff_id)).conversation_id  # type: ignore[union-attr]
            assert (await ann.post(f"/api/conversations/{conversation_id}/take"))[0] == 200

        async def billing_holder() -> int | None:
            [billing] = await gw.all(select(Handoff).where(Handoff.id == ids[0]))
            return billing.operator_id  # type: ignore[no-any-return]

        revoke = f"/api/members/{ann_id}/qualifications/billing-support/revoke"
        status, body = await admin.post(revoke, {"reason": "complaints"})
        assert (status, body["status"]) == (200, "revoked")
        # What a revoke gives back goes back in its own transaction: answered, it is done.
        # (Taken, not merely offered again: a release would be re-offered to her at once.)
        [held] = await gw.all(select(Handoff).where(Handoff.id == ids[0]))
        kept = (held.operator_id, held.taken_at is not None)  # billing-senior unlocks it
        revoke = f"/api/members/{ann_id}/qualifications/billing-senior/revoke"
        assert (await admin.post(revoke, {"reason": "complaints"}))[0] == 200

        async def billing_back() -> bool:
            return await billing_holder() is None

        await eventually(billing_back)
        await gw.services.pipeline.live.route_queued()
        billing, other = [await gw.all(select(Handoff).where(Handoff.id == i)) for i in ids]
        [billing_conversation] = await gw.all(
            select(Conversation).where(Conversation.id == billing[0].conversation_id)
        )
    assert kept == (ann_id, True)
    assert billing[0].operator_id is None  # and not offered to her again
    assert billing_conversation.status == "queued"
    assert other[0].operator_id == ann_id  # not billing: still hers
    assert other[0].taken_at is not None


async def test_a_workflow_that_hands_off_in_the_turn_it_starts_is_routed_as_that_workflow(
    database_url: str, twilio: tuple[FakeTwilio, str]
) -> None:
    fake, base = twilio
    raw = _billing_config(database_url, base, **BASIC)
    raw["workflows"] = [
        {
            "name": "billing",
            "start_when": ["my bill"],
            "steps": [{"say": "Billing will take it."}, {"handoff": "Billing"}],
        }
    ]
    raw["agents"][0]["workflows"] = ["billing"]  # fmt: skip
    async with Gateway.running(from_mapping(raw, env={}), fake) as gw:
        _, bob = await _team(gw, "Bob")
        assert (await bob.post("/api/operators/live"))[0] == 200
        assert (await gw.sms("A question about my bill")).status == 200

        async def handed_off() -> bool:
            return bool(await gw.all(select(Handoff)))

        await eventually(handed_off)
        await gw.services.pipeline.live.route_queued()
        [handoff] = await gw.all(select(Handoff))
        [conversation] = await gw.all(select(Conversation))
    assert (handoff.reason, conversation.workflow) == ("Billing", "billing")
    assert handoff.operator_id is None  # Bob is live, but not qualified for billing


async def test_concurrent_definitions_and_enrollments_never_fail_with_a_server_error(
    database_url: str, twilio: tuple[FakeTwilio, str]
) -> None:
    fake, base = twilio
    raw = _billing_config(database_url, base, **BASIC)
    async with Gateway.running(from_mapping(raw, env={}), fake) as gw:
        _, admin = await _team(gw, "Boss", role="admin")
        ann_id, _ = await _team(gw, "Ann")
        puts = await asyncio.gather(*(
            admin.call("PUT", "/api/qualifications/billing-new", {**BASIC, "description": str(i)})
            for i in range(4)
        ))  # fmt: skip
        enrolls = await asyncio.gather(*(
            admin.post(f"{Q}/enrollments", {"member_ids": [ann_id]}) for _ in range(4)
        ))  # fmt: skip
        rows = await gw.all(select(QualificationProgress))
    assert [status for status, _ in puts] == [200] * 4
    assert {status for status, _ in enrolls} <= {200, 409}
    assert sum(body["enrolled"] == [str(ann_id)] for status, body in enrolls if status == 200) == 1
    assert [(r.member_id, r.status) for r in rows] == [(ann_id, "enrolled")]
