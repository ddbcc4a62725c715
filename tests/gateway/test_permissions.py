"""The permission matrix: every admin API endpoint against every built-in role and two
custom ones, asserting the status — and that a refusal changed nothing."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select, text

from people import credentials
from store.models import (
    ApiToken,
    Conversation,
    Handoff,
    Import,
    Inbound,
    Member,
    Message,
    QualificationProgress,
    utcnow,
)
from tests.fakes.twilio_api import FakeTwilio
from tests.helpers import Api, Gateway, add_member, make_settings

ROLES = ("owner", "admin", "operator", "contact", "viewer", "inbox_reader")
CUSTOM = {
    "viewer": {"admin_access": True, "features": {"members": "use"}},
    "inbox_reader": {
        "admin_access": True,
        "features": {"chats": "use"},
        "inboxes": {"+14155550100": {"read": True, "send": False}},
    },
}
TABLES = ("members", "identities", "member_labels", "member_merges", "roles", "imports",
          "api_tokens", "conversations", "messages", "handoffs", "outbox",
          "qualification_progress", "qualification_submissions", "qualification_events",
          "qualification_definitions")  # fmt: skip


@dataclass
class World:
    tokens: dict[str, str]  # role -> token
    ids: dict[str, int]  # what paths and bodies refer to


@dataclass(frozen=True)
class Case:
    method: str
    path: str
    body: Any
    allowed: dict[str, int]  # role -> status; roles not named get `otherwise`
    otherwise: int = 403


ADMINS = ("owner", "admin")
READERS = ("owner", "admin", "operator", "viewer")
OPERATORS = ("owner", "admin", "operator")
LIVE = {
    "operators": {
        "enabled": True,
        "groups": [{"name": "team", "filter": {"field": "kind", "op": "eq", "value": "team"}}],
    }
}
BASICS = {
    "name": "basics",
    "requirements": [{"id": "one", "prompt": "1 + 1?", "criteria": [{"formula": 'answer == "2"'}]}],
}
QUALIFIED = "/api/members/{team}/qualifications/basics"
CASES = [
    Case("GET", "/api/members", None, dict.fromkeys(READERS, 200)),
    Case("POST", "/api/members", {"email": "new@example.com"}, dict.fromkeys(ADMINS, 201)),
    Case("POST", "/api/members/search", {"filter": {"label": "vip"}}, dict.fromkeys(READERS, 200)),
    Case("GET", "/api/members/export", None, dict.fromkeys(READERS, 200)),
    Case("GET", "/api/members/{target}", None, dict.fromkeys(READERS, 200), 404),
    Case("PATCH", "/api/members/{target}", {"name": "Renamed"},
         {**dict.fromkeys(ADMINS, 200), "operator": 403, "viewer": 403}, 404),
    Case("POST", "/api/members/{target}/archive", None, dict.fromkeys(ADMINS, 200)),
    Case("POST", "/api/members/{target}/merge", {"duplicate": "{duplicate}"},
         dict.fromkeys(ADMINS, 200)),
    Case("GET", "/api/members/{target}/merges", None, dict.fromkeys(READERS, 200)),
    Case("POST", "/api/members/{target}/identities", {"kind": "email", "address": "t2@example.com"},
         dict.fromkeys(ADMINS, 200)),
    Case("PUT", "/api/members/{team}/password", {"password": "a long enough password"},
         {**dict.fromkeys(ADMINS, 204), "operator": 403, "viewer": 403}, 404),
    Case("POST", "/api/imports", "email\nimported@example.com\n", dict.fromkeys(ADMINS, 202)),
    Case("GET", "/api/imports/{import}", None, dict.fromkeys(ADMINS, 200)),
    Case("GET", "/api/conversations?member={target}", None,
         {**dict.fromkeys(("owner", "admin", "operator"), 200), "viewer": 200}, 404),
    Case("GET", "/api/conversations/{conversation}/messages", None,
         {**dict.fromkeys(("owner", "admin", "operator", "inbox_reader"), 200)}, 404),
    Case("GET", "/api/conversations/{other_inbox}/messages", None,
         dict.fromkeys(("owner", "admin", "operator"), 200), 404),
    Case("GET", "/api/handoffs/{conversation_handoff}/notifications", None,
         dict.fromkeys(("owner", "admin", "operator", "inbox_reader"), 200)),
    Case("GET", "/api/handoffs/{other_inbox_handoff}/notifications", None,
         {**dict.fromkeys(("owner", "admin", "operator"), 200), "inbox_reader": 404}),
    Case("GET", "/api/roles", None, {**dict.fromkeys(ROLES, 200), "contact": 403}),
    Case("PUT", "/api/roles/desk", {"admin_access": True}, dict.fromkeys(ADMINS, 200)),
    Case("DELETE", "/api/roles/spare", None, dict.fromkeys(ADMINS, 204)),
    Case("GET", "/api/tokens", None, dict.fromkeys(ROLES, 200)),
    Case("POST", "/api/tokens", {"name": "more"}, dict.fromkeys(ROLES, 201)),
    Case("DELETE", "/api/tokens/{target_token}", None, dict.fromkeys(ADMINS, 204), 404),
    Case("POST", "/api/operators/live", None, dict.fromkeys(OPERATORS, 200)),
    Case("DELETE", "/api/operators/live", None, dict.fromkeys(OPERATORS, 204)),
    Case("POST", "/api/operators/heartbeat", None, dict.fromkeys(OPERATORS, 200)),
    Case("GET", "/api/operators", None, dict.fromkeys(OPERATORS, 200)),
    Case("POST", "/api/operators/{team}/offline", None, dict.fromkeys(ADMINS, 204)),
    Case("GET", "/api/console", None, dict.fromkeys(OPERATORS, 200)),
    *(Case("POST", f"/api/conversations/{{{which}}}/{action}", body,
           dict.fromkeys(OPERATORS, status))
      for which in ("conversation", "other_inbox")
      for action, body, status in (("take", None, 200), ("reply", {"text": "hi"}, 200),
                                   ("notes", {"text": "hi"}, 201), ("handback", None, 204),
                                   ("close", None, 204))),
    Case("GET", "/api/qualifications", None, dict.fromkeys(OPERATORS, 200)),
    Case("GET", "/api/qualifications/basics", None, dict.fromkeys(OPERATORS, 200)),
    Case("PUT", "/api/qualifications/basics", {**BASICS, "description": "new"},
         dict.fromkeys(ADMINS, 200)),
    Case("POST", "/api/qualifications/basics/enrollments", {"filter": {"label": "vip"}},
         dict.fromkeys(ADMINS, 200)),
    Case("GET", "/api/qualifications/basics/members", None, dict.fromkeys(ADMINS, 200)),
    Case("GET", "/api/members/{team}/qualifications", None, dict.fromkeys(ADMINS, 200), 404),
    # Only the member itself takes a qualification: {team} is nobody here.
    Case("POST", QUALIFIED + "/submission", {"answers": {"one": "2"}}, {}, 404),
    Case("POST", QUALIFIED + "/chats/one", None, {}, 404),
    Case("POST", QUALIFIED + "/chats/one/messages", {"text": "hi"}, {}, 404),
    Case("POST", QUALIFIED + "/review", {"approve": True, "note": "ok"},
         dict.fromkeys(ADMINS, 200)),
    Case("POST", QUALIFIED + "/revoke", {"reason": "no"}, dict.fromkeys(ADMINS, 200)),
]  # fmt: skip


async def _world(gw: Gateway) -> World:
    ids: dict[str, int] = {}
    tokens: dict[str, str] = {}
    ids["owner"], tokens["owner"] = await add_member(
        gw, "owner@example.com", kind="team", role="owner"
    )
    owner = Api(gw, tokens["owner"])
    for name, definition in {**CUSTOM, "spare": {"admin_access": True}}.items():
        assert (await owner.call("PUT", f"/api/roles/{name}", definition))[0] == 200
    for role in ROLES[1:]:
        kind = "contact" if role == "contact" else "team"
        ids[role], tokens[role] = await add_member(gw, f"{role}@example.com", kind=kind, role=role)
    ids["target"], _ = await add_member(gw, "target@example.com", labels=["vip"])
    ids["duplicate"], _ = await add_member(gw, "dup@example.com", token=False)
    ids["team"], _ = await add_member(
        gw, "team@example.com", kind="team", role="operator", token=False
    )
    async with gw.services.sessions.begin() as session:
        session.add(QualificationProgress(member_id=ids["team"], qualification="basics",
                                          status="provisional", attempts=1, drafts={}))  # fmt: skip
        target = await session.get(Member, ids["target"])
        assert target is not None
        await credentials.create_token(session, target, "theirs")
        for key, inbox in (("conversation", "+14155550100"), ("other_inbox", "+14155550199")):
            conversation = Conversation(member_id=ids["target"], channel="sms", inbox=inbox,
                                        status="bot", data={})  # fmt: skip
            session.add(conversation)
            await session.flush()
            inbound = Inbound(
                channel="sms",
                external_id=f"SM{key}",
                inbox=inbox,
                sender_kind="phone",
                sender="+14155557777",
                queue_key=f"sms|{inbox}|+14155557777",
                text="hello",
                status="done",
            )
            session.add(inbound)
            await session.flush()
            session.add(Message(conversation_id=conversation.id, direction="in",
                                author="member", text="hello", status="received",
                                inbound_id=inbound.id))  # fmt: skip
            ids[key] = conversation.id
            # Already notified: the routing loop has nothing to do behind the test's back.
            handoff = Handoff(
                conversation_id=conversation.id, reason="test", trigger="test", notified_at=utcnow()
            )
            session.add(handoff)
            await session.flush()
            ids[f"{key}_handoff"] = handoff.id
        record = Import(actor_id=ids["owner"], status="done")
        session.add(record)
        await session.flush()
        ids["import"] = record.id
        theirs = await session.execute(select(ApiToken.id).where(ApiToken.name == "theirs"))
        ids["target_token"] = theirs.scalar_one()
    return World(tokens, ids)


async def _fingerprint(gw: Gateway) -> str:
    digest = hashlib.sha256()
    async with gw.services.sessions() as session:
        for table in TABLES:
            rows = (await session.execute(text(f"SELECT * FROM {table} ORDER BY 1"))).all()  # noqa: S608
            digest.update(repr(rows).encode())
    return digest.hexdigest()


def _fill(template: str, ids: dict[str, int]) -> str:
    for key, value in ids.items():
        template = template.replace("{" + key + "}", str(value))
    return template


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.method} {c.path}")
@pytest.mark.parametrize("role", ROLES)
async def test_every_endpoint_answers_every_role_as_the_design_says(
    database_url: str, twilio: tuple[FakeTwilio, str], case: Case, role: str
) -> None:
    fake, base = twilio
    settings = make_settings(
        database_url, twilio_base=base, escalation=LIVE, qualifications=[BASICS]
    )
    async with Gateway.running(settings, fake) as gw:
        world = await _world(gw)
        api = Api(gw, world.tokens[role])
        path = _fill(case.path, world.ids)
        before = await _fingerprint(gw)
        if isinstance(case.body, str):
            response = await gw.client.post(
                path, data=case.body.encode(), headers={**api.headers, "Content-Type": "text/csv"}
            )
            status = response.status
        else:
            body = case.body
            if isinstance(body, dict):
                body = {
                    k: _fill(v, world.ids) if isinstance(v, str) else v for k, v in body.items()
                }
            status, _ = await api.call(case.method, path, body)
        expected = case.allowed.get(role, case.otherwise)
        assert status == expected, f"{role}: {case.method} {path} gave {status}, not {expected}"
        if status >= 400:
            assert await _fingerprint(gw) == before, "a refused request changed something"


# -- upward protection: who may change whom ------------------------------------------------
# A member acts on another only with a role at least as strong as the other's
# (people.roles.at_least_as_strong; only owners act on owners). "manager" holds
# `members: admin` and workspace management but nothing else: it is stronger than a contact
# and as strong as another manager, but not as strong as an operator (chats, data, ...) or
# an admin.
MANAGER = {"admin_access": True, "workspace_management": True, "features": {"members": "admin"}}
ACTORS = ("owner", "admin", "manager")
TARGETS = ("owner", "admin", "manager", "operator", "contact")
STRONGER = {  # actor -> the targets it may not touch
    "owner": set(),
    "admin": {"owner"},
    "manager": {"owner", "admin", "operator"},
}


async def _people(gw: Gateway, actor: str, target: str) -> tuple[Api, dict[str, int]]:
    _, owner_token = await add_member(gw, "first-owner@example.com", kind="team", role="owner")
    owner = Api(gw, owner_token)
    assert (await owner.call("PUT", "/api/roles/manager", MANAGER))[0] == 200
    kind = "contact" if target == "contact" else "team"
    ids = {"target": (await add_member(gw, "target@example.com", kind=kind, role=target))[0]}
    ids["spare"], _ = await add_member(gw, "spare@example.com", token=False)
    token = owner_token
    if actor != "owner":
        _, token = await add_member(gw, "actor@example.com", kind="team", role=actor)
    async with gw.services.sessions.begin() as session:
        target_member = await session.get(Member, ids["target"])
        assert target_member is not None
        await credentials.create_token(session, target_member, "theirs")
        found = await session.execute(select(ApiToken.id).where(ApiToken.name == "theirs"))
        ids["token"] = found.scalar_one()
    return Api(gw, token), ids


UPWARD = [  # (method, path, body, status when allowed, status when refused)
    ("PATCH", "/api/members/{target}", {"name": "Renamed"}, 200, 403),
    ("PATCH", "/api/members/{target}", {"role": "contact", "kind": "contact"}, 200, 403),
    ("PUT", "/api/members/{target}/password", {"password": "a long enough password"}, 204, 403),
    ("DELETE", "/api/tokens/{token}", None, 204, 404),
    ("POST", "/api/members/{target}/identities", {"kind": "phone", "address": "+14155550123"},
     200, 403),
    ("POST", "/api/members/{target}/archive", None, 200, 403),
    ("POST", "/api/members/{target}/merge", {"duplicate": "{spare}"}, 200, 403),
]  # fmt: skip


@pytest.mark.parametrize("action", UPWARD, ids=lambda a: f"{a[0]} {a[1]} {sorted(a[2] or {})}")
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("actor", ACTORS)
async def test_a_member_changes_only_members_no_stronger_than_itself(
    database_url: str,
    twilio: tuple[FakeTwilio, str],
    actor: str,
    target: str,
    action: tuple[str, str, Any, int, int],
) -> None:
    fake, base = twilio
    method, template, body, allowed, refused = action
    if template.endswith("/password") and target == "contact":
        return  # only team members have passwords
    async with Gateway.running(make_settings(database_url, twilio_base=base), fake) as gw:
        api, ids = await _people(gw, actor, target)
        before = await _fingerprint(gw)
        path = _fill(template, ids)
        if isinstance(body, dict):
            body = {k: _fill(v, ids) if isinstance(v, str) else v for k, v in body.items()}
        status, answer = await api.call(method, path, body)
        expected = refused if target in STRONGER[actor] else allowed
        assert status == expected, f"{actor} -> {target}: {method} {path} gave {status}: {answer}"
        if status >= 400:
            assert await _fingerprint(gw) == before, "a refused request changed something"
        if status == 403:
            assert "only an owner" in answer["error"]["message"] or (
                f"role '{target}' is stronger" in answer["error"]["message"]
            )


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("actor", ACTORS)
async def test_a_member_changes_only_roles_no_stronger_than_its_own(
    database_url: str, twilio: tuple[FakeTwilio, str], actor: str, target: str
) -> None:
    fake, base = twilio
    async with Gateway.running(make_settings(database_url, twilio_base=base), fake) as gw:
        api, _ = await _people(gw, actor, target)
        before = await _fingerprint(gw)
        status, answer = await api.call("PUT", f"/api/roles/{target}", {"admin_access": True})
        if target == "owner":
            assert status == 409  # nobody redefines the owner role
        elif target in STRONGER[actor]:
            assert status == 403, answer
            assert f"role '{target}' is stronger" in answer["error"]["message"]
            assert await _fingerprint(gw) == before
        elif target == "contact":
            assert status == 422, answer  # what contacts get never gains admin access
        else:
            assert status == 200, answer
