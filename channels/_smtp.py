"""The SMTP listener of the email channel (``channels.email.smtp_listen``).

aiosmtpd's protocol on our own loop (not its ``Controller``, which runs a loop in a thread
and binds ``::1``): ``550`` for addresses that are not ours, ``553`` for a NUL in an
address, ``554`` for mail that cannot be read, and ``250`` only once the message is
stored. The listener is kept by the gateway's supervisor: ``serve`` binds again when the
server was closed under it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from channels.base import InboundMessage
from channels.mailtext import clean
from store.errors import ValidationFailed

if TYPE_CHECKING:
    from channels.email import SmtpListen

log = logging.getLogger(__name__)

Parse = Callable[[bytes, "str | None", list[str]], InboundMessage]


class SmtpListener:
    """Binds ``listen``; mail for an address ``inbox_of`` knows is read with ``parse``
    (raw bytes, return path, recipients) and stored with ``submit``."""

    def __init__(
        self,
        listen: SmtpListen,
        inbox_of: Callable[[str], str | None],
        parse: Parse,
        submit: Callable[[InboundMessage], Awaitable[Any]],
    ) -> None:
        self.listen = listen
        self.inbox_of = inbox_of
        self.parse = parse
        self.submit = submit
        self._server: asyncio.Server | None = None
        self.port: int | None = None  # once bound: the configured one, or the one given for 0

    async def start(self) -> int:
        """Bind and return the port."""
        handler = _SmtpHandler(self)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: SMTP(
                handler,
                data_size_limit=self.listen.max_bytes,
                enable_SMTPUTF8=True,
                hostname="frontdesk",
            ),
            host=self.listen.host,
            port=self.listen.port,
        )
        port: int = self._server.sockets[0].getsockname()[1]
        log.info("email: SMTP listener on %s:%s", self.listen.host, port)
        self.port = port
        return port

    async def serve(self) -> None:
        """Serve until cancelled; bind again first if the server is not serving."""
        if self._server is None or not self._server.is_serving():
            await self.start()
        assert self._server is not None  # start() bound it
        task = asyncio.current_task()
        try:
            await self._server.serve_forever()
        except asyncio.CancelledError:
            if task is not None and task.cancelling():
                raise
            # The server was closed under us, not by our cancellation: listen again.
            log.error("email: the SMTP listener stopped; it is started again")

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


class _SmtpHandler:
    """aiosmtpd's handler: accept mail for our inboxes; 250 only after it is stored."""

    def __init__(self, listener: SmtpListener) -> None:
        self._listener = listener

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if "\x00" in address:
            return "553 5.1.7 NUL characters are not accepted"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if "\x00" in address:
            return "553 5.1.3 NUL characters are not accepted"
        if self._listener.inbox_of(address) is None:
            return "550 5.1.1 no such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or envelope.content
        raw = content if isinstance(content, bytes) else str(content).encode()
        return_path = envelope.mail_from if envelope.mail_from is not None else None
        try:
            message = self._listener.parse(raw, return_path, list(envelope.rcpt_tos))
        except ValidationFailed as exc:
            return f"554 5.6.0 {clean(exc.message)[:200]}"
        try:
            await self._listener.submit(message)
        except Exception:
            log.exception("email: could not store a message; the sender will retry")
            return "451 4.3.0 try again later"
        return "250 OK: stored"
