"""Slack: team members answer customers in handoff threads; Slack users can DM the app.

Events (``POST /channels/slack/events``) and slash commands (``POST
/channels/slack/commands``) go through one slack-bolt ``AsyncApp`` with
``process_before_response=True``: its listeners run before it answers, so an event is
stored (``ChannelContext.submit``; dedupe on ``event_id``, so a retry -- or a second gateway
process -- does not act twice) and a command is carried out before the 200 (DESIGN §2).
Bolt answers ``url_verification`` with its challenge; events and commands nobody listens
for are acknowledged and ignored, as are other bots' and the app's own messages, edits
and joins.

Before bolt reads a request, its v0 signature (an HMAC of the timestamp and the body's
bytes, five-minute window) is checked here: 401 for a timestamp that is not one, 403 for a
stale or wrong signature. Then a body that is not UTF-8 JSON (an event) or a form (a
command), or holds a NUL character, is a 400 saying which. Bolt's own request verification
is off: it could not come first, because bolt's request parses the body when it is made
(an unsigned body that is not JSON would be read, and fail, before any check), and it
hashes decoded text, so it cannot check a body that is not UTF-8 at all.

- A direct message to the app is a customer message like any other (sender: the Slack
  user id).
- A reply in a thread of the ``handoff_channel`` is a team member answering: the gateway
  posts each new handoff there as a thread (who, which channel, why, the last messages),
  and a reply in that thread from a Slack user who is a team member (by the member's
  ``slack`` identity) with ``send`` on the conversation's inbox goes to the customer on
  their own channel; the agent stops answering that conversation. A reply starting with
  ``note:`` stays internal; a reply from anyone else is not sent, and the thread says why.
- ``/frontdesk live`` makes the team member a live operator (for ``slack_live_hours``: Slack
  sends no heartbeats), ``/frontdesk leave`` ends it, ``/frontdesk status`` says where they
  stand; the answer is ephemeral (only the sender sees it).

Outbound goes through the outbox with slack-sdk's ``AsyncWebClient`` (``base_url``
configurable: tests use a fake Slack API), retrying a 429 after its ``Retry-After``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

from pydantic import ConfigDict, Field, SecretStr
from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.error import BoltUnhandledRequestError
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from channels.base import (
    ChannelContext,
    ChannelSettings,
    Delivery,
    InboundMessage,
    OutboundMessage,
    RawRequest,
    WebhookReply,
    refuse_nul,
)
from store.errors import (
    DeliveryFailed,
    FrontdeskError,
    SignatureInvalid,
    Unauthenticated,
    ValidationFailed,
)
from store.payloads import InboundKind
from store.text import loads_json

DM_INBOX = "dm"
EVENTS = "/channels/slack/events"
COMMANDS = "/channels/slack/commands"
MAX_SKEW_SECONDS = 5 * 60  # Slack's own window for a request's timestamp
FORM = "application/x-www-form-urlencoded"
_FAILED = "frontdesk_failure"  # where the error handler leaves a listener's exception


class SlackSettings(ChannelSettings):
    """``channels.slack`` (DESIGN §11)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    bot_token: SecretStr
    signing_secret: SecretStr
    handoff_channel: str = Field(pattern=r"^[A-Z0-9]{6,20}$", description="A channel id, C...")
    api_base_url: str = Field(default="https://slack.com/api/", description="Tests use a fake.")
    timeout_seconds: float = Field(default=10.0, gt=0)


class SlackChannel:
    name: ClassVar[str] = "slack"
    settings_model: ClassVar[type[ChannelSettings]] = SlackSettings
    paths: ClassVar[tuple[str, ...]] = (EVENTS, COMMANDS)

    def __init__(self, settings: SlackSettings, context: ChannelContext) -> None:
        self.settings = settings
        self._context = context
        self._secret = settings.signing_secret.get_secret_value().encode()
        self._client = AsyncWebClient(
            token=settings.bot_token.get_secret_value(),
            base_url=settings.api_base_url.rstrip("/") + "/",
            session=context.http,
            timeout=int(settings.timeout_seconds),
            retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=2)],
        )
        self._bolt = self._bolt_app()

    def _bolt_app(self) -> AsyncApp:
        token = self.settings.bot_token.get_secret_value()

        async def authorize(enterprise_id: str | None, team_id: str | None) -> AuthorizeResult:
            # One workspace, one bot token: no auth.test call per request (bolt's default).
            return AuthorizeResult(enterprise_id=enterprise_id, team_id=team_id, bot_token=token)

        bolt = AsyncApp(
            name="frontdesk",
            authorize=authorize,
            process_before_response=True,  # store, then acknowledge
            request_verification_enabled=False,  # done in handle(), over the bytes: see above
            raise_error_for_unhandled_request=True,  # to _failed: acknowledged and ignored
        )
        bolt.event("message")(self._on_message)
        bolt.command(re.compile(r"^/"))(self._on_command)  # whatever the app named it
        bolt.error(self._failed)
        return bolt

    async def handle(self, request: RawRequest) -> WebhookReply:
        """Verify and judge ``request`` (``Unauthenticated``, ``SignatureInvalid``,
        ``ValidationFailed``), then dispatch it through bolt: the answer comes once the
        event is stored or the command carried out; a listener's error is raised here."""
        headers: dict[str, str | Sequence[str]] = {
            name: request.headers.getall(name) for name in request.headers
        }
        bolt_request = AsyncBoltRequest(body=self._read(request), headers=headers)
        response = await self._bolt.async_dispatch(bolt_request)
        failed = bolt_request.context.get(_FAILED)
        if isinstance(failed, Exception):
            raise failed
        if response.status != 200:
            raise FrontdeskError(f"Slack request answered {response.status} by bolt")
        content_type = response.headers.get("content-type", ["text/plain"])[0]
        return WebhookReply(response.body, content_type.split(";")[0])

    def _read(self, request: RawRequest) -> str:
        """The body as text, once it is Slack's: an event's JSON object or a command's form
        (the gateway refused a form with a NUL), else ``ValidationFailed`` saying why."""
        self._verify(request)
        try:
            text = request.body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValidationFailed(f"the body is not UTF-8 (byte {exc.start})") from None
        if request.path == COMMANDS:
            if request.headers.get("Content-Type", "").split(";")[0].strip() != FORM:
                raise ValidationFailed(f"a slash command's body is a form ({FORM})")
            return text
        try:
            body = loads_json(text)
        except ValueError as exc:
            raise ValidationFailed(f"the body is not JSON: {exc}") from None
        if not isinstance(body, dict):
            raise ValidationFailed("the body is not a JSON object")
        refuse_nul(body, "body")
        if "event" in body and not isinstance(body["event"], dict):
            raise ValidationFailed("event is not a JSON object")
        return text

    def _verify(self, request: RawRequest) -> None:
        """Slack's v0 signature over the raw bytes (``Unauthenticated`` for a timestamp that
        is not one, ``SignatureInvalid`` for a stale or wrong one)."""
        # SECURITY: the HMAC is computed over the body's bytes as they came, before anything
        # reads them (slack-sdk's verifier, which bolt uses, decodes first, so a signed body
        # that is not UTF-8 could not be told from a forged one).
        timestamp = request.headers.get("X-Slack-Request-Timestamp", "")
        signature = request.headers.get("X-Slack-Signature", "")
        if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) < 16):
            raise Unauthenticated("X-Slack-Request-Timestamp is not a timestamp")
        if abs(time.time() - int(timestamp)) > MAX_SKEW_SECONDS:
            raise SignatureInvalid("X-Slack-Request-Timestamp is too old or in the future")
        base = b"v0:" + timestamp.encode() + b":" + request.body
        expected = "v0=" + hmac.new(self._secret, base, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected.encode(), signature.encode()):
            raise SignatureInvalid("X-Slack-Signature does not match this request")

    async def _on_message(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        """A message event: stored before bolt acknowledges it (or ignored)."""
        message = self._to_inbound(body, event)
        if message is None:
            return
        if self._context.submit is None:
            raise DeliveryFailed("the gateway is not accepting messages", retryable=True)
        await self._context.submit(message)

    def _to_inbound(self, body: dict[str, Any], event: dict[str, Any]) -> InboundMessage | None:
        """A team member's reply in a handoff thread, or a direct message to the app; None
        for anything else (edits, joins, our own and other bots' messages)."""
        if event.get("subtype") or event.get("bot_id"):
            return None
        user, text = str(event.get("user", "")), str(event.get("text", ""))
        event_id, channel = str(body.get("event_id", "")), str(event.get("channel", ""))
        if not user or not event_id:
            return None
        received = datetime.now(UTC)
        raw = {"event_id": event_id, "channel": channel, "ts": event.get("ts"),
               "thread_ts": event.get("thread_ts"), "team": body.get("team_id")}  # fmt: skip
        thread = event.get("thread_ts")
        if channel == self.settings.handoff_channel and thread and thread != event.get("ts"):
            return InboundMessage(
                channel=self.name, inbox=channel, sender_kind="slack", sender=user.upper(),
                text=text, external_id=event_id, received_at=received, thread_key=str(thread),
                raw=raw, answer=False, kind=InboundKind.TEAM_REPLY,
            )  # fmt: skip
        if event.get("channel_type") == "im":
            return InboundMessage(
                channel=self.name, inbox=DM_INBOX, sender_kind="slack", sender=user.upper(),
                text=text, external_id=event_id, received_at=received, thread_key=channel,
                raw=raw, reply_context={"channel": channel},
            )  # fmt: skip
        return None

    async def _on_command(self, ack: AsyncAck, command: dict[str, Any]) -> None:
        """A slash command (``/frontdesk live``, ``leave``, ``status``): carried out, then
        answered with an ephemeral message only the sender sees (Slack waits 3 s)."""
        user = str(command.get("user_id", "")).upper()
        if not user:
            raise ValidationFailed("user_id is missing")
        if self._context.command is None:
            raise DeliveryFailed("the gateway is not taking commands", retryable=True)
        text = await self._context.command(self.name, user, str(command.get("text", "")))
        await ack(text=text, response_type="ephemeral")

    async def _failed(self, error: Exception, request: AsyncBoltRequest) -> BoltResponse | None:
        """Bolt's error handler: what no listener takes is acknowledged and ignored (as
        Slack asks: it retries anything else); a listener's error goes back to ``handle``,
        which raises it for the gateway to answer (a 5xx makes Slack retry the event)."""
        if isinstance(error, BoltUnhandledRequestError):
            return BoltResponse(status=200, body="")
        request.context[_FAILED] = error
        return None

    async def send(self, message: OutboundMessage) -> Delivery:
        options: dict[str, Any] = {"channel": message.context.get("channel") or message.to,
                                   "text": message.text}  # fmt: skip
        if message.context.get("thread_ts"):
            options["thread_ts"] = message.context["thread_ts"]
        try:
            response = await self._client.chat_postMessage(**options)
        except SlackApiError as exc:
            error = str(exc.response.get("error", "unknown"))
            retryable = exc.response.status_code >= 500 or exc.response.status_code == 429
            raise DeliveryFailed(
                f"Slack: {error}", retryable=retryable, provider_code=error
            ) from exc
        except (OSError, TimeoutError) as exc:
            raise DeliveryFailed(f"Slack unreachable: {exc}", retryable=True) from exc
        return Delivery(provider_id=str(response.get("ts") or "") or None)

    async def close(self) -> None:
        return None
