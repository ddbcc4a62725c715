"""Slack: team members answer customers in handoff threads; Slack users can DM the app.

Events arrive at ``POST /channels/slack/events``. The request's v0 signature (an HMAC of
the timestamp and the body's bytes, five-minute window; a malformed timestamp is a 401) is
checked first; then a body that is not UTF-8 JSON, or holds a NUL character, is a 400.
``url_verification`` is answered with its challenge, and
an event is stored (dedupe on ``event_id``, so a retry -- or a second gateway process --
does not act twice) before the 200. Other bots' and the app's own messages, edits and
joins are ignored.

- A direct message to the app is a customer message like any other (sender: the Slack
  user id).
- A reply in a thread of the ``handoff_channel`` is a team member answering: the gateway
  posts each new handoff there as a thread (who, which channel, why, the last messages),
  and a reply in that thread from a Slack user who is a team member (by the member's
  ``slack`` identity) with ``send`` on the conversation's inbox goes to the customer on
  their own channel; the agent stops answering that conversation. A reply starting with
  ``note:`` stays internal; a reply from anyone else is not sent, and the thread says why.

Slash commands arrive at ``POST /channels/slack/commands`` (same signature):
``/frontdesk live`` makes the team member a live operator (for ``slack_live_hours``: Slack
sends no heartbeats), ``/frontdesk leave`` ends it, ``/frontdesk status`` says where they
stand.

Outbound goes through the outbox with slack-sdk's ``AsyncWebClient`` (``base_url``
configurable: tests use a fake Slack API), honouring 429 ``Retry-After``.

Why not slack-bolt's ``AsyncApp`` here: bolt acknowledges an event before or while its
listeners run, and our contract is to acknowledge only once the event is committed to the
store (DESIGN §2). The signature check, the one thing we need from it, is the same HMAC
as slack-sdk's ``SignatureVerifier``, over bytes rather than a decoded string.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import UTC, datetime
from typing import Any, ClassVar

from pydantic import ConfigDict, Field, SecretStr
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from channels.base import (
    Answered,
    ChannelContext,
    ChannelSettings,
    Delivery,
    InboundMessage,
    OutboundMessage,
    RawRequest,
    WebhookReply,
    refuse_nul,
)
from store.errors import DeliveryFailed, SignatureInvalid, Unauthenticated, ValidationFailed
from store.payloads import InboundKind

DM_INBOX = "dm"
COMMANDS = "/channels/slack/commands"
OK = WebhookReply("ok")
MAX_SKEW_SECONDS = 5 * 60  # Slack's own window for a request's timestamp


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
    webhook_path: ClassVar[str] = "/channels/slack/events"
    paths: ClassVar[tuple[str, ...]] = (COMMANDS,)

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

    async def parse(self, request: RawRequest) -> InboundMessage:
        self._verify(request)
        try:
            text = request.body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValidationFailed(f"the body is not UTF-8 (byte {exc.start})") from None
        try:
            body = json.loads(text)
        except ValueError as exc:
            raise ValidationFailed(f"the body is not JSON: {exc}") from None
        if not isinstance(body, dict):
            raise ValidationFailed("the body is not a JSON object")
        refuse_nul(body, "body")
        if body.get("type") == "url_verification":
            raise Answered(WebhookReply(json.dumps({"challenge": str(body.get("challenge", ""))}),
                                        "application/json"))  # fmt: skip
        event = body.get("event")
        if body.get("type") != "event_callback" or not isinstance(event, dict):
            raise Answered(OK)
        if event.get("type") != "message" or event.get("subtype") or event.get("bot_id"):
            raise Answered(OK)  # edits, joins, our own and other bots' messages
        user, text = str(event.get("user", "")), str(event.get("text", ""))
        event_id, channel = str(body.get("event_id", "")), str(event.get("channel", ""))
        if not user or not event_id:
            raise Answered(OK)
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
        raise Answered(OK)

    async def handle(self, request: RawRequest) -> WebhookReply:
        """A slash command (``/frontdesk live``, ``leave``, ``status``): signed like events,
        answered at once with an ephemeral message only the sender sees."""
        self._verify(request)
        user = request.form.get("user_id", "").upper()
        if not user or self._context.command is None:
            raise ValidationFailed("user_id is missing")
        text = await self._context.command(self.name, user, request.form.get("text", ""))
        return WebhookReply(json.dumps({"response_type": "ephemeral", "text": text}),
                            "application/json")  # fmt: skip

    def _verify(self, request: RawRequest) -> None:
        """Slack's v0 signature over the raw bytes (``Unauthenticated`` for a timestamp that
        is not one, ``SignatureInvalid`` for a stale or wrong one)."""
        # SECURITY: the HMAC is computed over the body's bytes as they came, not a decoded
        # copy (slack-sdk's verifier decodes first, so a signed body that is not UTF-8 came
        # out as "not a timestamp"); what the body holds is judged only once it is Slack's.
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

    def acknowledge(self, message: InboundMessage) -> WebhookReply:
        return OK

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
