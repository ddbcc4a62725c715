"""SMS through Twilio Programmable Messaging.

Inbound: Twilio posts a form to ``/channels/twilio/sms``; we check ``X-Twilio-Signature``
with twilio's ``RequestValidator`` over the URL Twilio called and the form exactly as
sent, then normalise. Outbound: the REST API (``Messages.json``) through twilio's async
HTTP client on the app's shared session; the outbox retries, so the client never does
(its retries re-POST on 5xx and send duplicates).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, ClassVar

import aiohttp
from pydantic import AfterValidator, ConfigDict, Field, SecretStr, model_validator
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from channels._twilio import verify_twilio
from channels.base import (
    Attachment,
    ChannelContext,
    ChannelSettings,
    ConsentKeyword,
    Delivery,
    InboundMessage,
    OutboundMessage,
    RawRequest,
    StatusUpdate,
    WebhookReply,
)
from people.identities import to_e164
from store.errors import DeliveryFailed, ValidationFailed

STATUS_PATH = "/channels/twilio/status"
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
MAX_MEDIA = 10
E164 = Annotated[str, AfterValidator(lambda n: to_e164(n, "ZZ"))]
Keywords = Annotated[
    tuple[str, ...], AfterValidator(lambda words: tuple(w.strip().upper() for w in words))
]
# How far before an unrecorded attempt the provider's records are read: its clock and
# ours differ, and a message is dated when Twilio sends it, after we asked it to.
CLOCK_SKEW = timedelta(minutes=5)
LOOKUP_LIMIT = 50


class SmsSettings(ChannelSettings):
    """``channels.sms``: a Twilio account and the numbers it receives texts on."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    account_sid: str = Field(min_length=1, description="Twilio Account SID (AC...).")
    auth_token: SecretStr = Field(
        description="Twilio Auth Token; signs webhooks, authorises the API."
    )
    numbers: tuple[E164, ...] = Field(min_length=1, description="E.164 numbers that receive texts.")
    api_base_url: str = Field(
        default="https://api.twilio.com", description="Twilio REST base URL; tests use a fake."
    )
    timeout_seconds: float = Field(default=10.0, gt=0, description="Per REST request.")
    opt_out_keywords: Keywords = Field(
        default=("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"),
        description="A text that is exactly one of these (trimmed, any case) opts its number "
        "out: nothing more is sent to it until it opts in again.",
    )
    opt_in_keywords: Keywords = Field(
        default=("START", "UNSTOP"), description="A text that is exactly one of these opts in."
    )
    help_keywords: Keywords = Field(
        default=("HELP",), description="A text that is exactly one of these gets ``help_text``."
    )
    help_text: str = Field(
        default="Reply STOP to stop receiving messages, START to receive them again.",
        min_length=1,
        description="The answer to a help keyword (the agent never sees these texts).",
    )

    @model_validator(mode="after")
    def _keywords_distinct(self) -> SmsSettings:
        lists = (self.opt_out_keywords, self.opt_in_keywords, self.help_keywords)
        words = [w for words in lists for w in words]
        if "" in words:
            raise ValueError("keywords must not be empty")
        twice = sorted({w for w in words if words.count(w) > 1})
        if twice:
            raise ValueError(f"keywords listed more than once: {', '.join(twice)}")
        return self

    def sends_from(self) -> str | None:
        return self.numbers[0]

    def consent_keyword(self, text: str) -> ConsentKeyword | None:
        """Carriers match the whole message, trimmed, in any case: ``stop`` opts out,
        ``please stop`` does not."""
        word = text.strip().upper()
        if word in self.opt_out_keywords:
            return "opt_out"
        if word in self.opt_in_keywords:
            return "opt_in"
        if word in self.help_keywords:
            return "help"
        return None

    def help_reply(self) -> str:
        return self.help_text

    def receives_on(self, inbox: str) -> bool:
        return inbox in self.numbers


def _raw(request: RawRequest) -> dict[str, Any]:
    raw: dict[str, Any] = {}
    for key in request.form:
        values = request.form.getall(key)
        raw[key] = values[0] if len(values) == 1 else list(values)
    return raw


def rest_client(
    account_sid: str, auth_token: SecretStr, base_url: str, context: ChannelContext
) -> Client:
    """The twilio SDK's client on the app's one HTTP session, at ``base_url``."""
    http = AsyncTwilioHttpClient(pool_connections=False)
    http.session = context.http  # one shared session; its lifetime is the app's
    client = Client(account_sid, auth_token.get_secret_value(), http_client=http)
    client.api.base_url = base_url.rstrip("/")
    return client


class SmsChannel:
    """Texts in and out through one Twilio account."""

    name: ClassVar[str] = "sms"
    settings_model: ClassVar[type[ChannelSettings]] = SmsSettings
    webhook_path: ClassVar[str] = "/channels/twilio/sms"
    status_path: ClassVar[str] = STATUS_PATH

    def __init__(self, settings: SmsSettings, context: ChannelContext) -> None:
        self.settings = settings
        self._context = context
        self._validator = RequestValidator(settings.auth_token.get_secret_value())
        self._client = rest_client(
            settings.account_sid, settings.auth_token, settings.api_base_url, context
        )

    def verify(self, request: RawRequest, *required: str) -> None:
        verify_twilio(self._validator, self.settings.account_sid, request, *required)

    async def parse(self, request: RawRequest) -> InboundMessage:
        self.verify(request, "MessageSid")
        form = request.form
        missing = [k for k in ("From", "To", "Body") if k not in form]
        if missing:
            raise ValidationFailed(f"missing form fields: {', '.join(missing)}")
        inbox = to_e164(form["To"], self._context.default_region)
        if inbox not in self.settings.numbers:
            raise ValidationFailed(f"{inbox} is not one of this workspace's SMS numbers")
        try:
            sender = to_e164(form["From"], self._context.default_region)
        except ValidationFailed as exc:
            raise ValidationFailed(f"From: {exc.message}") from exc
        return InboundMessage(
            channel=self.name,
            inbox=inbox,
            sender_kind="phone",
            sender=sender,
            text=form["Body"],
            external_id=form["MessageSid"],
            received_at=datetime.now(UTC),
            attachments=self._attachments(request),
            raw=_raw(request),
        )

    def acknowledge(self, message: InboundMessage) -> WebhookReply:
        """An empty TwiML response: the reply goes out later through the REST API."""
        return WebhookReply(body=EMPTY_TWIML, content_type="application/xml")

    @staticmethod
    def _attachments(request: RawRequest) -> tuple[Attachment, ...]:
        try:
            count = min(int(request.form.get("NumMedia", "0")), MAX_MEDIA)
        except ValueError as exc:
            raise ValidationFailed("NumMedia is not a number") from exc
        return tuple(
            Attachment(
                url=request.form.get(f"MediaUrl{i}", ""),
                content_type=request.form.get(f"MediaContentType{i}", "application/octet-stream"),
            )
            for i in range(count)
            if request.form.get(f"MediaUrl{i}")
        )

    async def parse_status(self, request: RawRequest) -> StatusUpdate:
        self.verify(request)
        sid = request.form.get("MessageSid") or request.form.get("SmsSid")
        status = request.form.get("MessageStatus") or request.form.get("SmsStatus")
        if not sid or not status:
            raise ValidationFailed("missing form fields: MessageSid, MessageStatus")
        return StatusUpdate(
            provider_id=sid, status=status, error_code=request.form.get("ErrorCode") or None
        )

    async def send(self, message: OutboundMessage) -> Delivery:
        callback = (
            self._context.public_url.rstrip("/") + STATUS_PATH if self._context.public_url else None
        )
        try:
            # AsyncTwilioHttpClient stores its timeout but never applies it: bound it here.
            async with asyncio.timeout(self.settings.timeout_seconds):
                created = await self._client.messages.create_async(
                    to=message.to,
                    from_=message.inbox,
                    body=message.text,
                    **({"status_callback": callback} if callback else {}),
                )
        except TwilioRestException as exc:
            retryable = exc.status >= 500 or exc.status == 429
            raise DeliveryFailed(
                f"Twilio answered {exc.status} ({exc.code}): {exc.msg}",
                retryable=retryable,
                provider_code=str(exc.code) if exc.code else None,
            ) from exc
        except (TwilioException, aiohttp.ClientError, OSError, TimeoutError) as exc:
            # The request may have been taken before the answer was lost.
            raise DeliveryFailed(
                f"Twilio unreachable: {exc!r}", retryable=True, maybe_sent=True
            ) from exc
        return Delivery(provider_id=created.sid, status=created.status or "queued")

    async def sent_since(self, message: OutboundMessage, since: datetime) -> list[Delivery]:
        """Twilio's messages from ``message.inbox`` to ``message.to`` sent on or after
        ``since`` (``DateSent>=``), whose body is this text; newest first."""
        earliest = since - CLOCK_SKEW
        try:
            async with asyncio.timeout(self.settings.timeout_seconds):
                found = await self._client.messages.list_async(
                    to=message.to, from_=message.inbox, date_sent_after=earliest,
                    limit=LOOKUP_LIMIT,
                )  # fmt: skip
        except TwilioRestException as exc:
            raise DeliveryFailed(
                f"Twilio answered {exc.status} ({exc.code}) to a lookup: {exc.msg}",
                retryable=True,
            ) from exc
        except (TwilioException, aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise DeliveryFailed(
                f"Twilio unreachable for a lookup: {exc!r}", retryable=True
            ) from exc
        # A message Twilio has not sent yet has no date_sent: it counts (it was created).
        return [
            Delivery(provider_id=m.sid, status=m.status or "queued")
            for m in found
            if m.body == message.text and (m.date_sent is None or m.date_sent >= earliest)
        ]

    async def close(self) -> None:
        """The HTTP session belongs to the app; nothing else to release."""
