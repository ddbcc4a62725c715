"""Grading qualifications in the running gateway: model keys and a grader that cannot
start, a grading model and a model-played customer on the OpenAI wire, what a crash left
ungraded, webhooks answered while a runaway formula is graded, and the CLI's regrade."""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import select

from gateway.settings import from_mapping
from store.models import Inbound, QualificationSubmission
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.twilio_api import FakeTwilio
from tests.helpers import Gateway, eventually
from tests.people.test_qualifications_api import (
    BASIC,
    Q,
    _attempt,
    _billing_config,
    _mine,
    _team,
)


async def test_model_keys_are_never_shown_or_set_over_the_api_and_a_broken_grader_fails_cleanly(
    sqlite_url: str, twilio: tuple[FakeTwilio, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    fake, base = twilio
    rubric = {"rubric": "Says 3-5 days.", "reference": "Three to five business days."}
    days = {**BASIC["requirements"][0], "criteria": [rubric]}
    grader = {"model": "openai:gpt-4.1-mini", "api_key": "sk-secret-in-yaml"}
    raw = _billing_config(sqlite_url, base, **{**BASIC, "requirements": [days]}, grader=grader)
    async with Gateway.running(from_mapping(raw, env={}), fake) as gw:
        _, admin = await _team(gw, "Boss", role="admin")
        ann_id, ann = await _team(gw, "Ann")
        shown = (await admin.get(Q))[1]
        elsewhere = {**BASIC, "grader": {"model": "openai:x", "base_url": "http://evil.test"}}
        status, refused = await admin.call("PUT", Q, elsewhere)
        unknown = await admin.call("PUT", Q, {**BASIC, "grader": {"model": "nobody:x"}})
        # A grader that cannot start (no key at all) fails the criterion; nothing hangs.
        broken = {**BASIC, "requirements": [days], "grader": {"model": "openai:gpt-4.1-mini"}}
        assert (await admin.call("PUT", Q, broken))[0] == 200
        graded = await _attempt(admin, ann, ann_id, {"days": "3-5"}, until="failed")
        [result] = graded["latest"]["results"]
    assert shown["grader"]["api_key"] == "**********"
    assert "sk-secret" not in json.dumps(shown)
    assert status == 422
    assert {d["path"] for d in refused["error"]["details"]} == {"grader.base_url"}
    assert unknown[0] == 422
    assert "unknown provider 'nobody'" in json.dumps(unknown[1])
    assert result["criteria"][0]["error"].startswith("the grading model failed:")


@pytest.fixture
async def openai_fake() -> AsyncIterator[tuple[FakeOpenAI, str]]:
    fake = FakeOpenAI()
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    yield fake, str(server.make_url("/v1"))
    await server.close()


async def test_a_grading_model_and_a_model_played_customer_through_the_openai_wire(
    sqlite_url: str, twilio: tuple[FakeTwilio, str], openai_fake: tuple[FakeOpenAI, str]
) -> None:
    fake, base = twilio
    llm, url = openai_fake
    model = {"model": "openai:gpt-4.1-mini", "base_url": url, "api_key": "sk-test"}
    chat = {
        "id": "chat", "kind": "scenario", "prompt": "Help Dana.", "persona": "Dana, upset",
        "goal": "a refund", "opening": "I was charged twice!", "customer": model,
        "criteria": [{"rubric": "Refunds the duplicate.", "reference": "I refunded it."}],
    }  # fmt: skip
    raw = _billing_config(sqlite_url, base, workflows=["billing"], grader=model,
                          requirements=[chat])  # fmt: skip
    llm.script = [
        "Thank you! That's all. [done]",
        json.dumps({"passed": True, "score": 0.9, "rationale": "Apologised and refunded."}),
    ]
    async with Gateway.running(from_mapping(raw, env={}), fake) as gw:
        _, admin = await _team(gw, "Boss", role="admin")
        ann_id, ann = await _team(gw, "Ann")
        await admin.post(f"{Q}/enrollments", {"member_ids": [ann_id]})
        mine = f"/api/members/{ann_id}/qualifications/billing-support"
        await ann.post(f"{mine}/chats/chat")
        await ann.post(f"{mine}/chats/chat/messages", {"text": "Sorry! Refunded the duplicate."})

        async def ended() -> bool:
            return bool((await _mine(ann, ann_id))["chats"]["chat"]["done"])

        await eventually(ended)
        transcript = (await _mine(ann, ann_id))["chats"]["chat"]["transcript"]
        assert (await ann.post(f"{mine}/submission", {}))[0] == 202

        async def graded() -> bool:
            return (await _mine(ann, ann_id))["status"] == "provisional"

        await eventually(graded)
        [result] = (await _mine(ann, ann_id))["latest"]["results"]
    assert transcript[-1] == {
        **transcript[-1],
        "author": "customer",
        "text": "Thank you! That's all.",
    }
    customer_request, grading_request = llm.requests
    assert customer_request["messages"][0]["role"] == "system"
    assert "Dana, upset" in customer_request["messages"][0]["content"]
    said = customer_request["messages"][-1]
    assert said == {"role": "user", "content": "Sorry! Refunded the duplicate."}
    assert "response_format" in grading_request or "tools" in grading_request
    asked = grading_request["messages"][-1]["content"]
    assert re.search(r"<(answer-[0-9a-f]{8})>\ncustomer: I was charged twice!.*</\1>", asked, re.S)
    verdict = {"kind": "ai", "passed": True, "score": 0.9, "rationale": "Apologised and refunded."}
    assert result["criteria"] == [{**verdict, "error": None}]


async def test_a_submission_left_ungraded_by_a_crash_is_graded_by_the_sweep(
    sqlite_url: str, twilio: tuple[FakeTwilio, str]
) -> None:
    from people import qualifications as q

    fake, base = twilio
    raw = _billing_config(sqlite_url, base, **BASIC)
    settings = from_mapping(raw, env={})
    async with Gateway.running(settings, fake) as gw:
        ann_id, _ = await _team(gw, "Ann")
        async with gw.services.sessions.begin() as session:  # what a 202 committed, no grade
            from store.models import Member

            ann = await session.get(Member, ann_id)
            assert ann is not None
            qualification = settings.qualifications[0]
            progress = await q.enroll(session, ann, qualification, actor=None)
            await q.submit(session, qualification, progress, ann, {"days": "3-5"})
        assert await gw.services.examinations.sweep() == 1
        assert await gw.services.examinations.sweep() == 0  # graded once
        [submission] = await gw.all(select(QualificationSubmission))
        async with gw.services.sessions() as session:
            status = (await q.progress_of(session, ann_id, "billing-support")).status  # type: ignore[union-attr]
    assert submission.graded_at is not None
    assert submission.passed
    assert status == "qualified"


async def test_webhooks_are_answered_while_a_runaway_formula_is_being_graded(
    sqlite_url: str, twilio: tuple[FakeTwilio, str]
) -> None:
    fake, base = twilio
    numbers = "[" + ",".join(str(i) for i in range(60)) + "]"
    runaway = f"{numbers}.map(a, {numbers}.map(b, {numbers}.map(c, a * b * c))).size() > 0"
    slow = {"id": "slow", "prompt": "?", "criteria": [{"formula": runaway}]}
    raw = _billing_config(sqlite_url, base, workflows=["billing"], requirements=[slow])
    async with Gateway.running(from_mapping(raw, env={}), fake) as gw:
        await gw.services.examinations.runner.warm_up()
        _, admin = await _team(gw, "Boss", role="admin")
        ann_id, ann = await _team(gw, "Ann")
        await admin.post(f"{Q}/enrollments", {"member_ids": [ann_id]})
        mine = f"/api/members/{ann_id}/qualifications/billing-support"
        assert (await ann.post(f"{mine}/submission", {"answers": {"slow": "x"}}))[0] == 202
        latencies = []
        for i in range(5):
            started = time.perf_counter()
            response = await gw.sms(f"hello {i}", sid=f"SM{i:032d}")
            latencies.append(time.perf_counter() - started)
            assert response.status == 200
        grading_meanwhile = (await _mine(ann, ann_id))["status"] == "submitted"
        stored = await gw.count(Inbound)

        async def graded() -> bool:
            return (await _mine(ann, ann_id))["status"] == "failed"

        await eventually(graded, timeout=20)
        [result] = (await _mine(ann, ann_id))["latest"]["results"]
    print(f"webhook latency during a runaway evaluation: max {max(latencies) * 1000:.1f} ms")
    assert grading_meanwhile  # every webhook was answered while the runaway still ran
    assert stored == 5
    assert "took longer than" in result["criteria"][0]["error"]


async def test_the_cli_grades_the_latest_attempt_again_after_a_formula_is_fixed(
    sqlite_url: str, twilio: tuple[FakeTwilio, str], capsys: pytest.CaptureFixture[str]
) -> None:
    from gateway.cli import qualifications as cli_qualifications

    fake, base = twilio
    wrong = {**BASIC["requirements"][0], "criteria": [{"formula": 'answer == "3 to 5"'}]}
    raw = _billing_config(sqlite_url, base, **{**BASIC, "requirements": [wrong]})
    async with Gateway.running(from_mapping(raw, env={}), fake) as gw:
        _, admin = await _team(gw, "Boss", role="admin")
        ann_id, ann = await _team(gw, "Ann")
        await _attempt(admin, ann, ann_id, {"days": "3-5"}, until="failed")
    missing = await cli_qualifications.grade(from_mapping(raw, env={}), "billing-support", "x@y.z")
    raw["qualifications"] = [{"name": "billing-support", **BASIC}]  # the formula, fixed
    fixed = from_mapping(raw, env={})
    assert await cli_qualifications.grade(fixed, "billing-support", "ann@example.com") == 0
    again = await cli_qualifications.grade(fixed, "billing-support", str(ann_id))
    out = capsys.readouterr()
    assert missing == 2
    assert "no member x@y.z" in out.err
    assert "days: passed\n  formula 1.00: the formula holds" in out.out
    assert f"attempt 1: passed; billing-support is qualified for member {ann_id}" in out.out
    assert again == 0
