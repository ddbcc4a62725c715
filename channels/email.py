"""Email in and out.

Inbound, two ways: an SMTP listener (aiosmtpd on the app's own event loop; it answers
``250`` only once the message is stored) and ``POST /channels/email/inbound`` for an
inbound-parse service, with the shared ``inbound_secret`` (``Authorization: Bearer``, the
``X-Frontdesk-Secret`` header, or the password of HTTP Basic auth) and the message as raw
MIME: the body itself (``message/rfc822``) or a ``multipart/form-data`` field named
``email`` (SendGrid's raw mode) or ``body-mime`` (Mailgun's).

Parsing is the standard library's ``email`` (policy ``default``): plain text preferred, HTML
turned into text, quoted history ("On ... wrote:", ``>`` lines) and the signature (after
``-- ``) trimmed from what the agent sees; attachments are recorded by name, type and size.
The inbox is the recipient address that is one of ``inboxes`` (``reply+<anything>@`` an
inbox counts as that inbox). The dedupe key is the Message-ID.

The sender is the ``From`` address. Mail is easy to forge, so an email conversation runs
with the ``contact`` role's permissions (nothing but the member itself) unless the message
is authenticated: with ``trust_authentication_results``, a message that came through the
inbound webhook is authenticated when the topmost ``Authentication-Results`` header written
by ``authserv_id`` (the relay in front, which checked SPF/DKIM/DMARC) says ``dmarc=pass``.
Over SMTP frontdesk is itself the receiving server and checks nothing, so every
``Authentication-Results`` header that arrived with the message was written by the sender
or a hop we do not know: they are all removed before the message is read, and mail over
SMTP is never authenticated.

NUL characters are refused anywhere in a message (raw or decoded: body, headers,
addresses, file names): ``554`` over SMTP, 400 on the webhook, nothing stored.

Loop safety: mail that is automatic -- ``Auto-Submitted`` other than ``no``, ``Precedence:
bulk/junk/list``, ``List-*`` headers, ``X-Auto-Response-Suppress`` with OOF or All,
``X-Autoreply``/``X-Autorespond``, an empty ``Return-Path``, mail from MAILER-DAEMON or a
delivery report -- is stored but never answered (``InboundMessage.answer`` is False), our
own replies carry ``Auto-Submitted: auto-replied``, and the gateway sends at most
``max_auto_replies_per_hour`` replies to one sender.

Outbound through the outbox with aiosmtplib: ``From`` the inbox (with ``from_name``),
``Subject: Re: ...``, ``In-Reply-To`` and ``References`` from the message answered, and a
``Message-ID`` made from the outbox key, so a retried send is recognisably the same mail.
Header values are built by the ``email`` package, which refuses CR/LF in them; names and
subjects from outside are cleaned of control characters first.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from base64 import b64decode
from datetime import UTC, datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import getaddresses, parseaddr
from typing import ClassVar

import aiosmtplib
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from channels._smtp import SmtpListener
from channels.base import (
    Attachment,
    ChannelContext,
    ChannelSettings,
    Delivery,
    InboundMessage,
    OutboundMessage,
    RawRequest,
    WebhookReply,
    refuse_nul,
)
from channels.mailtext import (
    AUTHENTICATION_RESULTS,
    automatic,
    clean,
    dmarc_passed,
    header_of,
    refuse_nul_headers,
    text_of,
    trim,
)
from people.identities import to_email
from store.errors import DeliveryFailed, SignatureInvalid, ValidationFailed

log = logging.getLogger(__name__)

MAX_TEXT = 20_000


class Inbox(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    address: str
    agent: str

    @model_validator(mode="after")
    def _address(self) -> Inbox:
        object.__setattr__(self, "address", to_email(self.address))
        return self


class SmtpListen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=2525, ge=0, le=65535)
    max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)


class SmtpRelay(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str
    port: int = Field(default=587, ge=1, le=65535)
    starttls: bool = True
    tls: bool = Field(default=False, description="Implicit TLS (port 465).")
    username: str | None = None
    password: SecretStr | None = None
    timeout_seconds: float = Field(default=20.0, gt=0)


class EmailSettings(ChannelSettings):
    """``channels.email`` (DESIGN §11)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    agent: str = Field(default="", description="Default: the first inbox's agent.")
    inboxes: tuple[Inbox, ...] = Field(min_length=1)
    smtp_listen: SmtpListen | None = None
    inbound_secret: SecretStr | None = None
    smtp: SmtpRelay | None = None
    from_name: str | None = None
    max_auto_replies_per_hour: int = Field(default=5, ge=0)
    trust_authentication_results: bool = Field(
        default=False,
        description="Believe a dmarc=pass in the topmost Authentication-Results header "
        "written by authserv_id, on mail from the inbound webhook (never over SMTP).",
    )
    authserv_id: str | None = Field(
        default=None,
        pattern=r"^[^\s;()\"\\]{1,255}$",
        description="The authserv-id your receiving relay writes in Authentication-Results "
        "(its host name, as a rule); required with trust_authentication_results.",
    )

    @model_validator(mode="after")
    def _default_agent(self) -> EmailSettings:
        if not self.agent:
            object.__setattr__(self, "agent", self.inboxes[0].agent)
        return self

    @model_validator(mode="after")
    def _trust_needs_a_relay(self) -> EmailSettings:
        # SECURITY: trusting every Authentication-Results header is trusting the sender, so
        # trust is refused rather than guessed at when it could not mean anything safe.
        if self.trust_authentication_results and not self.authserv_id:
            raise ValueError(
                "trust_authentication_results needs authserv_id: the id your receiving "
                "relay writes in Authentication-Results (any other header may be forged)"
            )
        if self.trust_authentication_results and self.inbound_secret is None:
            raise ValueError(
                "trust_authentication_results needs inbound_secret: only mail a relay posts "
                "to the inbound webhook is ever trusted (over SMTP nothing is)"
            )
        return self

    def agent_for(self, inbox: str) -> str:
        return next((i.agent for i in self.inboxes if i.address == inbox), self.agent)

    def agents(self) -> set[str]:
        return {self.agent, *(i.agent for i in self.inboxes)}

    def joins_replies(self) -> bool:
        return True  # one turn, one email

    def sends_replies(self) -> bool:
        return self.smtp is not None

    def sends_from(self) -> str | None:
        return self.inboxes[0].address

    def hourly_reply_cap(self) -> int | None:
        return self.max_auto_replies_per_hour

    def inbox_of(self, address: str) -> str | None:
        """The inbox ``address`` reaches (``reply+x@`` an inbox reaches that inbox)."""
        local, _, domain = address.lower().partition("@")
        base = f"{local.split('+', 1)[0]}@{domain}"
        return next((i.address for i in self.inboxes if i.address in (address.lower(), base)), None)


class EmailChannel:
    """Mail to and from the workspace's inboxes."""

    name: ClassVar[str] = "email"
    settings_model: ClassVar[type[ChannelSettings]] = EmailSettings
    webhook_path: ClassVar[str] = "/channels/email/inbound"

    def __init__(self, settings: EmailSettings, context: ChannelContext) -> None:
        self.settings = settings
        self._context = context
        self._listener: SmtpListener | None = None

    # Inbound -------------------------------------------------------------------------

    async def parse(self, request: RawRequest) -> InboundMessage:
        self._check_secret(request)
        return self.parse_mime(_mime_of(request), return_path=None)

    def _check_secret(self, request: RawRequest) -> None:
        secret = self.settings.inbound_secret
        if secret is None:
            raise SignatureInvalid("the inbound webhook is off (no inbound_secret)")
        given = request.headers.get("X-Frontdesk-Secret", "")
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            given = auth.removeprefix("Bearer ")
        elif auth.startswith("Basic "):
            try:
                given = b64decode(auth.removeprefix("Basic ")).decode().partition(":")[2]
            except (ValueError, UnicodeDecodeError):
                given = ""
        if not hmac.compare_digest(given.encode(), secret.get_secret_value().encode()):
            raise SignatureInvalid("the inbound secret does not match")

    def parse_mime(
        self,
        raw: bytes,
        return_path: str | None,
        recipients: list[str] | None = None,
        *,
        over_smtp: bool = False,
    ) -> InboundMessage:
        """A raw message as an ``InboundMessage`` (``ValidationFailed`` if it is not one of
        ours, not readable, or holds a NUL). ``over_smtp``: we are the receiving server, so
        every ``Authentication-Results`` header came from outside and is removed unread."""
        refuse_nul(raw, "the message")
        try:
            return self._parse(raw, return_path, recipients, over_smtp)
        except ValidationFailed:
            raise
        except Exception as exc:  # the email package on hostile input: unreadable, not a 500
            log.info("email: unreadable message (%s: %s)", type(exc).__name__, exc)
            raise ValidationFailed(
                f"the message could not be read ({type(exc).__name__})"
            ) from None

    def _parse(
        self, raw: bytes, return_path: str | None, recipients: list[str] | None, over_smtp: bool
    ) -> InboundMessage:
        message = BytesParser(policy=policy.default).parsebytes(raw)
        if not isinstance(message, EmailMessage):
            raise ValidationFailed("not an email message")
        if over_smtp:
            del message[AUTHENTICATION_RESULTS]  # every one of them: none is our relay's
        refuse_nul_headers(message)
        sender_header = header_of(message, "From")  # who it is; Reply-To is not an identity
        try:
            sender = to_email(parseaddr(sender_header)[1] or (return_path or "").strip("<>"))
        except ValidationFailed:
            raise ValidationFailed("the message has no usable From address") from None
        addresses = recipients or [
            a
            for _, a in getaddresses(
                [str(v) for k in ("Delivered-To", "To", "Cc") for v in message.get_all(k, [])]
            )
        ]
        inbox = next((i for i in (self.settings.inbox_of(a) for a in addresses if a) if i), None)
        if inbox is None:
            raise ValidationFailed("the message is not addressed to any of our inboxes")
        message_id = clean(header_of(message, "Message-ID")) or (
            "<" + hashlib.sha256(raw).hexdigest()[:32] + "@frontdesk.invalid>"
        )
        subject = clean(header_of(message, "Subject"))
        references = clean(header_of(message, "References"))
        why_not = automatic(message, return_path)
        body = text_of(message)
        refuse_nul(body, "the message's text")
        text = trim(body)[:MAX_TEXT]
        refuse_nul([part.get_filename() or "" for part in message.iter_attachments()],
                   "an attachment's file name")  # fmt: skip
        files = [
            {
                "name": clean(part.get_filename() or "attachment"),
                "type": part.get_content_type(),
                "size": len(part.get_payload(decode=True) or b""),
            }
            for part in message.iter_attachments()
        ]
        return InboundMessage(
            channel=self.name,
            inbox=inbox,
            sender_kind="email",
            sender=sender,
            text=text or (f"(an email with {len(files)} attachment(s))" if files else subject),
            external_id=message_id[:255],
            received_at=datetime.now(UTC),
            attachments=tuple(
                Attachment(url=f"email-attachment:{f['name']}", content_type=str(f["type"]))
                for f in files
            ),
            thread_key=(references.split() or [message_id])[0][:255],
            raw={
                "subject": subject,
                "message_id": message_id,
                "references": references,
                "from": clean(sender_header),
                "attachments": files,
                "automatic": why_not,
            },
            reply_context={
                "subject": subject,
                "in_reply_to": message_id,
                "references": f"{references} {message_id}".strip(),
            },
            answer=why_not is None,
            verified=self._authenticated(message, sender),
        )

    def _authenticated(self, message: EmailMessage, sender: str) -> bool:
        """Whether the sender's address is proven: DMARC passed, per our own relay."""
        authserv_id = self.settings.authserv_id
        if not self.settings.trust_authentication_results or authserv_id is None:
            return False
        return dmarc_passed(message, authserv_id, sender)

    def acknowledge(self, message: InboundMessage) -> WebhookReply:
        return WebhookReply("ok")

    async def start(self) -> bool:
        """Start the SMTP listener, if configured, on the running loop."""
        listen = self.settings.smtp_listen
        submit = self._context.submit
        if listen is None or submit is None:
            return False
        self._listener = SmtpListener(
            listen,
            self.settings.inbox_of,
            lambda raw, sender, recipients: self.parse_mime(
                raw, sender, recipients, over_smtp=True
            ),
            submit,
        )
        await self._listener.start()
        return True

    @property
    def port(self) -> int | None:
        """The SMTP listener's port, once it listens."""
        return None if self._listener is None else self._listener.port

    async def serve(self) -> None:
        if self._listener is None and not await self.start():
            return
        assert self._listener is not None  # start() made it
        await self._listener.serve()

    # Outbound ------------------------------------------------------------------------

    def compose(self, outbound: OutboundMessage) -> EmailMessage:
        context = outbound.context
        message = EmailMessage(policy=policy.SMTP)
        domain = outbound.inbox.partition("@")[2] or "frontdesk.invalid"
        local = outbound.inbox.partition("@")[0]
        message["From"] = (
            Address(clean(self.settings.from_name or ""), addr_spec=outbound.inbox)
            if self.settings.from_name
            else Address(addr_spec=f"{local}@{domain}")
        )
        message["To"] = outbound.to
        subject = clean(context.get("subject", "")) or "Your message"
        message["Subject"] = subject if subject.lower().startswith("re:") else f"Re: {subject}"
        digest = hashlib.sha256(outbound.key.encode()).hexdigest()[:24]
        message["Message-ID"] = f"<{digest}@{domain}>"
        if context.get("in_reply_to"):
            message["In-Reply-To"] = clean(context["in_reply_to"])
            message["References"] = clean(context.get("references", context["in_reply_to"]))
        message["Auto-Submitted"] = "auto-replied"
        message["X-Auto-Response-Suppress"] = "All"
        message.set_content(outbound.text)
        return message

    async def send(self, message: OutboundMessage) -> Delivery:
        relay = self.settings.smtp
        if relay is None:
            raise DeliveryFailed("channels.email.smtp is not configured", retryable=False)
        mail = self.compose(message)
        try:
            await aiosmtplib.send(
                mail,
                hostname=relay.host,
                port=relay.port,
                use_tls=relay.tls,
                start_tls=relay.starttls and not relay.tls,
                username=relay.username,
                password=relay.password.get_secret_value() if relay.password else None,
                timeout=relay.timeout_seconds,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            raise DeliveryFailed(f"recipient refused: {exc}", retryable=False) from exc
        except aiosmtplib.SMTPResponseException as exc:
            raise DeliveryFailed(
                f"SMTP {exc.code}: {exc.message}",
                retryable=exc.code < 500,
                provider_code=str(exc.code),
            ) from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise DeliveryFailed(f"SMTP relay unreachable: {exc}", retryable=True) from exc
        return Delivery(provider_id=str(mail["Message-ID"]))

    async def close(self) -> None:
        if self._listener is not None:
            await self._listener.close()


def _mime_of(request: RawRequest) -> bytes:
    content_type = request.headers.get("Content-Type", "")
    if content_type.startswith("message/rfc822"):
        return request.body
    if content_type.startswith("multipart/form-data"):
        form = BytesParser(policy=policy.HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + request.body
        )
        for part in form.iter_parts() if form.is_multipart() else ():
            name = part.get_param("name", header="content-disposition")
            if name in ("email", "body-mime"):
                payload = part.get_payload(decode=True)
                return payload if isinstance(payload, bytes) else str(payload).encode()
        raise ValidationFailed("no 'email' or 'body-mime' field with the raw message")
    raise ValidationFailed("send the raw message as message/rfc822 or multipart/form-data")
