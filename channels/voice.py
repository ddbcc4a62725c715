"""Voice calls through Twilio Programmable Voice.

Twilio waits on our TwiML, so a call is a conversation the webhook answers itself:

- ``POST /channels/twilio/voice`` -- a call arrives. The caller is resolved by phone
  number (whoever texted from it before is the same member); the call's start is stored
  as an empty message, so the agent greets, and the greeting is said in the agent's voice
  inside ``<Gather input="speech dtmf">``.
- ``POST /channels/twilio/voice/turn?n=N`` -- what the caller said (``SpeechResult``) or
  keyed (``Digits``) is stored as message N of the call (external id ``CallSid:N``, so a
  retried webhook is the same message) and its reply is said. Silence is not a message:
  the caller is asked again, and after ``silence_limit`` silent turns the call ends
  politely.
- A reply not ready within ``reply_wait_seconds`` gets a short filler and a
  ``<Redirect>`` to ``/channels/twilio/voice/pickup?n=N``, which waits again -- the caller
  never hears more than a few seconds of silence, and the reply is said once.
- ``POST /channels/twilio/voice/status`` -- call status callbacks; a finished call closes
  its conversation.
- Notifications (``escalation.notify`` with ``voice``): an outbound call through the REST
  API with inline TwiML that says the notification and gathers one key; pressing 1 posts
  to ``/channels/twilio/voice/notify?handoff=H`` (signed like every webhook), and the team
  member whose number was called takes that conversation.

Replies are held in the outbox for the webhook (``replies_inline``) rather than sent over
the REST API, and taken exactly once. Phone controls from the agent become TwiML:
``<Dial>`` (a transfer to an allow-listed number), ``<Hangup/>``, ``<Play digits>``, hold
music. Every request is checked like SMS's (``channels._twilio``: Twilio's signature, our
``AccountSid``, well-formed ids). The
transcript is the conversation's messages.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import ClassVar
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp
from pydantic import ConfigDict, Field, SecretStr
from twilio.base.exceptions import TwilioRestException
from twilio.request_validator import RequestValidator
from twilio.twiml.voice_response import Gather, VoiceResponse

from channels._twilio import verify_twilio
from channels.base import (
    ChannelContext,
    ChannelSettings,
    Delivery,
    InboundMessage,
    OutboundMessage,
    PickedUp,
    RawRequest,
    WebhookReply,
)
from channels.sms import E164, rest_client
from people.identities import to_e164
from store.errors import DeliveryFailed, ValidationFailed
from store.payloads import CallAction, Dtmf, Hangup, Hold, Transfer, Voicemail

BASE = "/channels/twilio/voice"
HOLD_LOOPS = 3  # hold music plays this many times, then the call listens again
MAX_FILLERS = 10  # x reply_wait_seconds: well past an agent turn's deadline (8 s)
RAW_FIELDS = (
    "CallSid",
    "From",
    "To",
    "CallStatus",
    "SpeechResult",
    "Confidence",
    "Digits",
    "RecordingUrl",
    "RecordingDuration",
    "RecordingSid",
)
ENDED = frozenset({"completed", "busy", "failed", "no-answer", "canceled"})


class VoiceSettings(ChannelSettings):
    """``channels.voice`` (DESIGN §11); ``account_sid``/``auth_token`` default to SMS's."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    account_sid: str = Field(min_length=1)
    auth_token: SecretStr
    numbers: tuple[E164, ...] = Field(min_length=1, description="Numbers that take calls.")
    reply_wait_seconds: float = Field(default=3.0, gt=0, le=10, description="Before a filler.")
    filler: str = "One moment, please."
    still_there: str = "Sorry, I didn't catch that. Are you still there?"
    goodbye: str = "Thanks for calling. Goodbye!"
    withheld: str = (
        "Sorry, we can't take calls from withheld numbers. Please call from a number we can "
        "see, or send us a text."
    )
    silence_limit: int = Field(default=2, ge=1, le=5)
    speech_timeout: str = Field(default="auto", description="Gather speechTimeout.")
    api_base_url: str = Field(
        default="https://api.twilio.com", description="Twilio REST base URL (SMS's by default)."
    )
    timeout_seconds: float = Field(default=10.0, gt=0, description="Per REST request.")
    notify_prompt: str = "Press 1 to take the conversation."
    notify_goodbye: str = "Nobody will be assigned. Goodbye."
    voicemail: bool = Field(default=False, description="Record a message when handed off.")
    voicemail_prompt: str = (
        "If you'd like to leave a message for the team, speak after the tone, then hang up."
    )
    voicemail_seconds: int = Field(default=120, ge=5, le=600, description="Longest message.")
    voicemail_thanks: str = "Thank you, the team has your message. Goodbye!"

    def replies_inline(self) -> bool:
        return True

    def takes_voicemail(self) -> bool:
        return self.voicemail

    def sends_from(self) -> str | None:
        return self.numbers[0]  # notification calls come from here


class VoiceChannel:
    """Phone calls to the workspace's numbers."""

    name: ClassVar[str] = "voice"
    settings_model: ClassVar[type[ChannelSettings]] = VoiceSettings
    paths: ClassVar[tuple[str, ...]] = (
        BASE, f"{BASE}/turn", f"{BASE}/pickup", f"{BASE}/status", f"{BASE}/notify",
        f"{BASE}/voicemail",
    )  # fmt: skip

    def __init__(self, settings: VoiceSettings, context: ChannelContext) -> None:
        self.settings = settings
        self._context = context
        self._validator = RequestValidator(settings.auth_token.get_secret_value())
        self._client = rest_client(
            settings.account_sid, settings.auth_token, settings.api_base_url, context
        )

    async def handle(self, request: RawRequest) -> WebhookReply:
        ids = ("CallSid", "RecordingSid") if request.path == f"{BASE}/voicemail" else ("CallSid",)
        verify_twilio(self._validator, self.settings.account_sid, request, *ids)
        form = request.form
        call_sid = form["CallSid"]
        if request.path == f"{BASE}/notify":
            return await self._answered_notification(request)
        inbox = to_e164(form.get("To", ""), self._context.default_region)
        try:
            caller = to_e164(form.get("From", ""), self._context.default_region)
        except ValidationFailed:
            # A withheld number ("Anonymous", "+266696687") or a client: no member to be.
            if request.path == f"{BASE}/status":
                return WebhookReply("", "text/plain")
            response = VoiceResponse()
            response.say(self.settings.withheld)
            response.hangup()
            return _twiml(response)
        if request.path == f"{BASE}/status":
            if form.get("CallStatus") in ENDED and self._context.end is not None:
                await self._context.end(self.name, inbox, caller)
            return WebhookReply("", "text/plain")
        if inbox not in self.settings.numbers:
            raise ValidationFailed(f"{inbox} is not one of this workspace's voice numbers")
        if request.path == f"{BASE}/voicemail":
            return await self._voicemail(call_sid, inbox, caller, request)
        turn, silence = _number(request, "n", 0), _number(request, "silence", 0)
        if request.path == f"{BASE}/pickup":
            return await self._say_reply(call_sid, turn, _number(request, "waited", 0))
        said = (form.get("SpeechResult") or form.get("Digits") or "").strip()
        if request.path == f"{BASE}/turn" and not said:
            return self._silence(turn, silence + 1)
        if request.path == BASE:
            turn = 0
        await self._store(call_sid, turn, inbox, caller, said, request)
        return await self._say_reply(call_sid, turn, 0)

    async def _store(
        self, call_sid: str, turn: int | str, inbox: str, caller: str, said: str,
        request: RawRequest, answer: bool = True,
    ) -> None:  # fmt: skip
        if self._context.submit is None:
            raise DeliveryFailed("the gateway is not accepting calls", retryable=True)
        raw = {k: request.form.get(k, "") for k in RAW_FIELDS}
        await self._context.submit(InboundMessage(
            channel=self.name, inbox=inbox, sender_kind="phone", sender=caller, text=said,
            external_id=f"{call_sid}:{turn}", received_at=datetime.now(UTC),
            thread_key=call_sid, raw=raw, answer=answer,
        ))  # fmt: skip

    async def _voicemail(
        self, call_sid: str, inbox: str, caller: str, request: RawRequest
    ) -> WebhookReply:
        """Twilio's ``<Record>`` finished: the recording's link is a message for the team
        in the conversation (never answered by the agent); the caller is thanked."""
        url = request.form.get("RecordingUrl", "")
        if not url.startswith("https://"):
            raise ValidationFailed("RecordingUrl is missing")
        seconds = request.form.get("RecordingDuration", "?")
        text = f"Voicemail ({seconds} s): {url}"
        await self._store(call_sid, "voicemail", inbox, caller, text, request, answer=False)
        response = VoiceResponse()
        response.say(self.settings.voicemail_thanks)
        response.hangup()
        return _twiml(response)

    async def _say_reply(self, call_sid: str, turn: int, waited: int) -> WebhookReply:
        picked = None
        if self._context.pickup is not None:
            picked = await self._context.pickup(
                self.name, f"{call_sid}:{turn}", self.settings.reply_wait_seconds
            )
        response = VoiceResponse()
        if picked is None and waited < MAX_FILLERS:
            response.say(self.settings.filler)
            response.redirect(_url("pickup", n=turn, waited=waited + 1), method="POST")
            return _twiml(response)
        if picked is None:  # the turn is still not done: keep listening rather than wait on
            gather = self._gather(turn + 1, "en-US")
            gather.say(self.settings.still_there)
            response.append(gather)
            return _twiml(response)
        return _twiml(self._render(picked, turn))

    def _render(self, picked: PickedUp, turn: int) -> VoiceResponse:
        response = VoiceResponse()
        say = {"voice": picked.voice, "language": picked.language}
        ends = any(isinstance(a, Transfer | Hangup | Voicemail) for a in picked.actions)
        texts = list(picked.texts)
        if ends:
            for text in texts:
                response.say(text, **say)
            for action in picked.actions:
                if isinstance(action, Voicemail):
                    self._record(response, say)
                else:
                    _control(response, action)
            return response
        gather = self._gather(turn + 1, picked.language)
        if picked.actions:  # say it, do it (hold, tones), then listen again
            for text in texts:
                response.say(text, **say)
            for action in picked.actions:
                _control(response, action)
        else:
            for text in texts:
                gather.say(text, **say)
        response.append(gather)
        response.redirect(_url("turn", n=turn + 1, silence=1), method="POST")
        return response

    def _record(self, response: VoiceResponse, say: Mapping[str, str]) -> None:
        """Offer a voicemail: the prompt, the tone, the recording (its link comes to
        ``/voicemail``). A caller who says nothing hears goodbye."""
        response.say(self.settings.voicemail_prompt, **say)
        response.record(action=f"{BASE}/voicemail", method="POST", play_beep=True, timeout=5,
                        max_length=self.settings.voicemail_seconds, finish_on_key="#")  # fmt: skip
        response.say(self.settings.goodbye, **say)
        response.hangup()

    def _gather(self, turn: int, language: str) -> Gather:
        return Gather(input="speech dtmf", action=_url("turn", n=turn), method="POST",
                      speech_timeout=self.settings.speech_timeout, language=language,
                      action_on_empty_result=True)  # fmt: skip

    def _silence(self, turn: int, silence: int) -> WebhookReply:
        response = VoiceResponse()
        if silence >= self.settings.silence_limit:
            response.say(self.settings.goodbye)
            response.hangup()
            return _twiml(response)
        gather = Gather(input="speech dtmf", action=_url("turn", n=turn, silence=silence),
                        method="POST", speech_timeout=self.settings.speech_timeout,
                        action_on_empty_result=True)  # fmt: skip
        gather.say(self.settings.still_there)
        response.append(gather)
        return _twiml(response)

    async def send(self, message: OutboundMessage) -> Delivery:
        """A notification (context ``handoff``): an outbound call that says it and lets the
        team member press 1 to take the conversation. Agent replies are held for the call
        (``replies_inline``) and never come here; an operator's reply to a call would,
        and there is no way to say it outside a call."""
        handoff = message.context.get("handoff", "")
        if not handoff.isdigit():
            raise DeliveryFailed("voice replies can only be said during the call",
                                 retryable=False)  # fmt: skip
        response = VoiceResponse()
        action = f"{(self._context.public_url or '').rstrip('/')}{BASE}/notify?handoff={handoff}"
        gather = Gather(num_digits=1, timeout=8, method="POST", action=action)
        gather.say(f"{message.text} {self.settings.notify_prompt}")
        response.append(gather)
        response.say(self.settings.notify_goodbye)
        try:
            async with asyncio.timeout(self.settings.timeout_seconds):
                call = await self._client.calls.create_async(
                    to=message.to, from_=message.inbox, twiml=str(response)
                )
        except TwilioRestException as exc:
            retryable = exc.status >= 500 or exc.status == 429
            raise DeliveryFailed(f"Twilio answered {exc.status} ({exc.code}): {exc.msg}",
                                 retryable=retryable) from exc  # fmt: skip
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise DeliveryFailed(f"Twilio did not answer: {exc!r}", retryable=True) from exc
        return Delivery(provider_id=call.sid)

    async def _answered_notification(self, request: RawRequest) -> WebhookReply:
        """The team member's key press on a notification call: 1 takes the conversation."""
        response = VoiceResponse()
        query = parse_qs(urlsplit(request.url).query).get("handoff", [""])[0]
        if request.form.get("Digits") == "1" and query.isdigit() and self._context.take:
            member = to_e164(request.form.get("To", ""), self._context.default_region)
            response.say(await self._context.take(int(query), member))
        else:
            response.say(self.settings.notify_goodbye)
        response.hangup()
        return _twiml(response)

    async def close(self) -> None:
        return None


def _control(response: VoiceResponse, action: CallAction) -> None:
    match action:
        case Transfer(to=to) if to:
            response.dial(to)
        case Hangup():
            response.hangup()
        case Dtmf(digits=digits) if digits:
            response.play(digits=digits)
        case Hold(music=music) if music:
            response.play(music, loop=HOLD_LOOPS)
        case Hold():
            response.pause(length=30)


def _url(step: str, **query: int) -> str:
    return f"{BASE}/{step}?{urlencode(query)}"


def _number(request: RawRequest, name: str, default: int) -> int:
    """A small counter from the (signed) query string: our own ``n``, ``silence``..."""
    value = parse_qs(urlsplit(request.url).query).get(name, [""])[0]
    return int(value) if value.isdigit() and len(value) < 6 else default


def _twiml(response: VoiceResponse) -> WebhookReply:
    return WebhookReply(str(response), "application/xml")
