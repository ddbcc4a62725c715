"""Settings: the smallest workspace, the demo config, ${ENV}, and path-qualified errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway import settings
from gateway.cli import main
from store.errors import ConfigError
from store.models import Outbox
from tests.fakes.twilio_api import FakeTwilio
from tests.helpers import CUSTOMER, Gateway, eventually, receive, sms_form, twilio_signature

FIXTURES = Path(__file__).parent.parent / "fixtures"
SMALLEST = FIXTURES / "smallest.yaml"
DEMO = Path(__file__).parent.parent.parent / "config" / "frontdesk.yaml"
TWO_VARS = {"TWILIO_ACCOUNT_SID": "AC" + "2" * 32, "TWILIO_AUTH_TOKEN": "secret-token"}


def _errors(raw: object, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        settings.from_mapping(raw, env or {})
    return [str(d) for d in caught.value.details]


def test_smallest_workspace_passes_check_config_with_two_env_vars(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in TWO_VARS.items():
        monkeypatch.setenv(name, value)

    assert main(["check-config", str(SMALLEST)]) == 0
    out = capsys.readouterr().out
    assert "ok" in out
    assert "sms, webchat" in out


def test_smallest_workspace_without_env_names_each_missing_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in TWO_VARS:
        monkeypatch.delenv(name, raising=False)

    assert main(["check-config", str(SMALLEST)]) == 2
    err = capsys.readouterr().err
    assert "channels.sms.account_sid: environment variable TWILIO_ACCOUNT_SID is not set" in err
    assert "channels.sms.auth_token: environment variable TWILIO_AUTH_TOKEN is not set" in err


def test_demo_config_loads_with_no_environment_at_all() -> None:
    loaded = settings.load(DEMO, env={})
    assert loaded.workspace.name == "Example Dental"
    assert set(loaded.channels) == {"sms", "webchat", "email"}
    assert loaded.agents[0].knowledge


def test_secrets_are_masked_when_settings_are_shown() -> None:
    loaded = settings.load(SMALLEST, env=TWO_VARS)
    assert "secret-token" not in repr(loaded)
    assert "secret-token" not in str(loaded.model_dump())


def test_env_default_syntax_and_overrides() -> None:
    env = {**TWO_VARS, "FRONTDESK_DATABASE_URL": "sqlite+aiosqlite:///elsewhere.db"}
    env["FRONTDESK_REDIS_URL"] = "redis://127.0.0.1:6379/3"
    loaded = settings.load(SMALLEST, env=env)
    assert loaded.storage.database_url == "sqlite+aiosqlite:///elsewhere.db"
    assert loaded.storage.redis_url == "redis://127.0.0.1:6379/3"
    raw = {"workspace": {"name": "${NAME:-Fallback Co}"}}
    assert settings.from_mapping(raw, {}).workspace.name == "Fallback Co"


def test_every_error_is_reported_with_its_yaml_path() -> None:
    raw = {
        "workspace": {"name": "x", "default_region": "QQ", "timezone": "Mars/Olympus"},
        "channels": {
            "fax": {},
            "sms": {"account_sid": "AC1", "auth_token": "t", "numbers": ["+1415", "abc"]},
            "webchat": {"agent": "nobody"},
        },
        "agents": [{"name": "a"}, {"name": "b", "model": "foo:bar"}, {"name": "a"}],
        "surprise": True,
    }

    errors = _errors(raw)

    fax = next(e for e in errors if e.startswith("channels.fax:"))
    assert fax.startswith("channels.fax: unknown channel 'fax' (valid: email, ")
    assert any(e.startswith("channels.sms.numbers[0]:") for e in errors)
    assert any(e.startswith("channels.sms.numbers[1]:") for e in errors)
    assert "channels.sms.agent: Field required" in errors
    assert any(e.startswith("workspace.default_region:") for e in errors)
    assert "workspace.timezone: unknown time zone 'Mars/Olympus'" in errors
    assert any(e.startswith("agents[1].model: unknown provider 'foo' (known: ") for e in errors)
    assert "surprise: Extra inputs are not permitted" in errors


def test_cross_references_are_checked() -> None:
    raw = {
        "workspace": {"name": "x"},
        "channels": {"webchat": {"agent": "nobody"}},
        "agents": [{"name": "a"}, {"name": "a"}],
    }
    errors = _errors(raw)
    assert "channels.webchat.agent: no agent named 'nobody' (a)" in errors
    assert "agents[1].name: duplicate agent name 'a'" in errors


def test_a_qualification_model_no_provider_can_start_is_an_error_at_its_path() -> None:
    question = {"id": "q1", "kind": "question", "prompt": "Why?",
                "criteria": [{"rubric": "Says why.", "reference": "Because."}]}  # fmt: skip
    scenario = {"id": "chat", "kind": "scenario", "prompt": "Help Dana.", "opening": "Hi",
                "persona": "Dana, a customer",
                "customer": {"model": "x:y"},
                "criteria": [{"rubric": "Helps.", "reference": "Helps."}]}  # fmt: skip
    raw = {
        "workspace": {"name": "x"},
        "channels": {"webchat": {"agent": "a"}},
        "agents": [{"name": "a"}],
        "qualifications": [{"name": "basics", "grader": {"model": "nobody:x"},
                            "requirements": [question, scenario]}],
    }  # fmt: skip
    errors = _errors(raw)
    assert any(
        e.startswith("qualifications[0].grader.model: unknown provider 'nobody'") for e in errors
    )
    assert any(
        e.startswith("qualifications[0].requirements[1].customer.model: unknown provider 'x'")
        for e in errors
    )


def test_cross_references_are_checked_in_the_same_run_as_field_errors() -> None:
    raw = {
        "workspace": {"name": "x", "timezone": "Mars/Olympus"},
        "channels": {
            "sms": {"account_sid": "AC1", "auth_token": "t", "numbers": ["+1415"],
                    "agent": "nobody"},
            "webchat": {"agent": "b"},  # b has a bad field: not also "unknown"
            "email": {"inboxes": [{"address": "not-an-address", "agent": "ghost"}]},
        },
        "agents": [{"name": "a", "workflows": ["missing"]}, {"name": "b", "model": "foo:bar"},
                   {"name": "a"}],
        "workflows": [{"name": "w", "agent": "phantom", "steps": [{"done": "ok"}]},
                      {"name": "broken", "steps": "not a list"}],
    }  # fmt: skip

    errors = _errors(raw)

    assert "workspace.timezone: unknown time zone 'Mars/Olympus'" in errors
    assert any(e.startswith("agents[1].model: unknown provider 'foo'") for e in errors)
    assert "channels.sms.agent: no agent named 'nobody' (a, b)" in errors
    assert "channels.email.agent: no agent named 'ghost' (a, b)" in errors
    assert "agents[2].name: duplicate agent name 'a'" in errors
    assert "workflows[0].agent: no agent named 'phantom' (a, b)" in errors
    assert "agents[0].workflows[0]: no workflow named 'missing' (broken, w)" in errors
    assert not any("'b'" in e for e in errors if "no agent named" in e)


def test_one_bad_phone_number_is_one_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "one.yaml"
    config.write_text(
        "workspace: {name: x}\n"
        "channels:\n"
        "  sms: {account_sid: AC1, auth_token: t, numbers: ['+1415555'], agent: a}\n"
        "agents: [{name: a}]\n"
    )

    assert main(["check-config", str(config)]) == 2

    err = capsys.readouterr().err
    assert f"{config}: invalid configuration (1 error)\n" in err
    assert err.count("\n  ") == 1
    assert "channels.sms.numbers[0]: '+1415555' is not a possible phone number" in err


def test_a_key_given_twice_is_an_error_naming_both_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "twice.yaml"
    config.write_text(
        "workspace:\n"  # line 1
        "  name: x\n"
        "channels:\n"
        "  webchat:\n"
        "    agent: a\n"  # line 5
        "    agent: b\n"
        "agents:\n"
        "  - name: a\n"
        "    bio: one\n"
        "    bio: two\n"  # line 10
        "workspace: {name: y}\n"
    )

    assert main(["check-config", str(config)]) == 2

    err = capsys.readouterr().err
    assert "invalid configuration (4 errors)" in err
    assert "channels.webchat.agent: duplicate key 'agent' (line 5 and line 6" in err
    assert "agents[0].bio: duplicate key 'bio' (line 9 and line 10" in err
    assert "workspace: duplicate key 'workspace' (line 1 and line 11" in err
    assert "channels.webchat.agent: no agent named 'b' (a)" in err  # the rest is still checked


def test_yaml_syntax_error_names_line_and_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("workspace:\n  name: [unclosed\n")

    assert main(["check-config", str(bad)]) == 2
    assert "line 3, column 1" in capsys.readouterr().err


def test_missing_file_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", "/nonexistent/frontdesk.yaml"]) == 2
    assert "cannot read" in capsys.readouterr().err


async def test_smallest_workspace_serves_sms_and_web_chat(sqlite_url: str) -> None:
    env = {**TWO_VARS, "FRONTDESK_DATABASE_URL": sqlite_url}
    loaded = settings.load(SMALLEST, env=env)
    fake = FakeTwilio(account_sid=TWO_VARS["TWILIO_ACCOUNT_SID"], auth_token="unused")
    form = sms_form("what are your opening hours", sid="SM" + "9" * 32,
                    AccountSid=TWO_VARS["TWILIO_ACCOUNT_SID"])  # fmt: skip
    signature = twilio_signature("/channels/twilio/sms", form, token="secret-token")

    async with Gateway.running(loaded, fake) as gw:
        response = await gw.post_form("/channels/twilio/sms", form, signature=signature)
        ws = await gw.chat()
        await ws.send_json({"type": "hello", "visitor": None})
        await receive(ws, "welcome")
        await ws.send_json({"type": "message", "text": "opening hours?", "client_id": "1"})
        reply = await receive(ws, "message")
        await ws.close()
        await eventually(lambda: _queued_for(gw, CUSTOMER))

    assert response.status == 200
    assert "8am to 6pm" in reply["text"]


async def _queued_for(gw: Gateway, to: str) -> bool:
    return await gw.count(Outbox, Outbox.to_address == to, Outbox.inbox == "+14155550100") == 1


@pytest.mark.parametrize(
    "example", sorted((Path(__file__).parents[2] / "config" / "examples").glob("*.yaml")),
    ids=lambda p: p.name,
)  # fmt: skip
def test_every_example_config_loads(example: Path) -> None:
    loaded = settings.load(example, env={})
    assert loaded.channels
