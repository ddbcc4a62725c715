"""People in the loop of a handoff: the Slack thread it opens, the customer messages that
follow it there, team members' replies from that thread, and the notification rules.

Everything here runs inside the pipeline's transactions (a handoff's thread post and
notifications commit with the turn that opened it) and sends only through the outbox.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agents.base import TurnResult
from escalation.notify import Moment, NotifyRule, notify
from escalation.operators import refusal
from escalation.settings import BusinessHoursTable
from gateway import conversations
from gateway.live import Refused
from gateway.settings import Settings
from people import members
from people.roles import load_book
from store import outbox
from store.models import (
    Conversation,
    Handoff,
    Identity,
    Inbound,
    Member,
    Notification,
    Outbox,
    utcnow,
)
from store.payloads import InboundExtras, OutboxPayload, Voicemail

LADDER_BATCH = 200
LADDER_GRACE = 60.0  # seconds past a ladder's last step that it is still looked at

if TYPE_CHECKING:
    from gateway.live import Live
    from gateway.turns import Turn


class Teamwork:
    def __init__(
        self,
        settings: Settings,
        hours: BusinessHoursTable,
        now: Callable[[], datetime],
        on_outbox: Callable[[], None],
    ) -> None:
        self._settings = settings
        self._hours = hours
        self._now = now
        self._on_outbox = on_outbox
        self.live: Live | None = None  # set by the pipeline, which makes both

    async def handed_off(
        self, session: AsyncSession, turn: Turn, result: TurnResult, handoff: Handoff
    ) -> TurnResult:
        """A turn opened ``handoff``: its Slack thread, the notification rules (unless live
        operators are on: the caller routes it once committed), and what the customer
        hears -- when a person will be there (business hours) and, on a call that takes
        voicemail, the offer of one."""
        await self.post_handoff(session, turn, result, handoff)
        conversation = await session.get(Conversation, turn.conversation_id)
        if conversation is None:
            return result
        if self.live is None or not self.live.enabled:
            await self.notify(session, handoff, conversation, turn.input.member_name or turn.to)
        message = self._hours.handoff_message(conversation, self._now())
        if message:
            result = replace(result, replies=(*result.replies, message))
        if self._settings.channel(turn.channel).takes_voicemail():
            result = replace(result, actions=(*result.actions, Voicemail()))
        return result

    async def post_handoff(
        self, session: AsyncSession, turn: Turn, result: TurnResult, handoff: Handoff
    ) -> None:
        """Open the handoff's thread in Slack's handoff channel, if Slack is configured."""
        slack = self._settings.channels.get("slack")
        if slack is None:
            return
        channel = str(getattr(slack, "handoff_channel", ""))
        said = [f"> {u.author}: {u.text}" for u in turn.input.history[-4:]]
        said += [f"> member: {turn.input.text}", *(f"> agent: {r}" for r in result.replies)]
        who = turn.input.member_name or f"member {turn.member_id}"
        text = (
            f"{who} ({turn.channel} {turn.to}) needs a person: {handoff.reason}\n"
            + "\n".join(said)
            + "\nReply in this thread to answer them; start with note: to keep it internal."
        )
        post = OutboxPayload(
            text=text,
            author="system",
            name="frontdesk",
            context={"channel": channel},
            conversation=turn.conversation_id,
        )
        key = f"handoff:{handoff.id}:slack"
        await outbox.enqueue_many(
            session, [outbox.row(key, channel="slack", inbox=channel, to=channel, payload=post)]
        )

    async def offered(self, session: AsyncSession, handoff_id: int, member_id: int) -> None:
        """Routing offered the handoff to ``member_id``: with Slack, they are mentioned in
        its thread (where a reply takes it), if they have a Slack identity -- once per
        handoff, however often offers come round to them again."""
        slack = self._settings.channels.get("slack")
        if slack is None:
            return
        user = await session.scalar(
            select(Identity.address).where(
                Identity.member_id == member_id, Identity.kind == "slack"
            )
        )
        thread = f"handoff:{handoff_id}:slack"
        state = await outbox.state_of(session, thread)
        if user is None or state is None or state[0] == "failed":
            return  # no Slack identity, or no thread to mention them in
        channel = str(getattr(slack, "handoff_channel", ""))
        offer = OutboxPayload(
            text=f"<@{user}> this conversation is offered to you: reply in this thread to "
            "take it, or take it in the console.",
            context={"channel": channel},
            thread_of=thread,
        )
        key = f"offer:{handoff_id}:{member_id}"  # once per operator and handoff, however often
        await outbox.enqueue(
            session, outbox.row(key, channel="slack", inbox=channel, to=channel, payload=offer)
        )

    async def notify(
        self,
        session: AsyncSession,
        handoff: Handoff,
        conversation: Conversation,
        who: str,
    ) -> None:
        """The team members the notification rules name, where they allow it: the rules'
        first step, once per handoff however many processes get here (``notified_at`` is
        set conditionally). A ladder's later steps run in ``climb``, decided once each (a
        unique index on the decisions)."""
        first = await session.execute(
            update(Handoff)
            .where(Handoff.id == handoff.id, Handoff.notified_at.is_(None))
            .values(notified_at=self._now())
            .execution_options(synchronize_session=False)
        )
        if first.rowcount == 1:  # type: ignore[attr-defined]
            rules = list(self._settings.escalation.notify)
            await self._decide(session, rules, handoff, conversation, who, 0)

    async def _decide(
        self,
        session: AsyncSession,
        rules: list[NotifyRule],
        handoff: Handoff,
        conversation: Conversation,
        who: str,
        step: int,
    ) -> None:
        if not rules:
            return
        senders = {
            name: address
            for name, channel in self._settings.channels.items()
            if (address := channel.sends_from()) is not None
        }
        hours = self._hours.for_conversation(conversation)
        now = self._now()
        in_hours = hours.is_open(now) if hours is not None else None
        moment = Moment(now, self._settings.workspace.timezone, in_hours, step)
        groups = self._settings.escalation.group_filters()
        decided = await notify(session, rules, handoff, conversation, senders, moment, who, groups)
        if any(d.status == "sent" for d in decided):
            self._on_outbox()

    async def climb(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        """The later steps of the rules' ladders, for handoffs nobody has taken by then."""
        rules = [r for r in self._settings.escalation.notify if r.ladder]
        if not rules:
            return
        now = self._now()
        longest = max(step.after_seconds for rule in rules for step in rule.ladder)
        async with sessions.begin() as session:
            waiting = list(
                (
                    await session.execute(
                        select(Handoff, Conversation)
                        .join(Conversation, Conversation.id == Handoff.conversation_id)
                        .where(
                            Handoff.status == "open",
                            Handoff.taken_at.is_(None),
                            Handoff.notified_at >= now - timedelta(seconds=longest + LADDER_GRACE),
                        )
                        .order_by(Handoff.id)
                        .limit(LADDER_BATCH)
                    )
                ).all()
            )
            if not waiting:
                return
            done = {
                tuple(row)
                for row in (
                    await session.execute(
                        select(Notification.handoff_id, Notification.rule, Notification.step)
                        .where(
                            Notification.handoff_id.in_([h.id for h, _ in waiting]),
                            Notification.step > 0,
                        )
                        .distinct()
                    )
                ).all()
            }
            for handoff, conversation in waiting:
                first = handoff.notified_at or now
                for rule in rules:
                    for step, rung in enumerate(rule.ladder, start=1):
                        if (handoff.id, rule.name, step) in done:
                            continue
                        if now < first + timedelta(seconds=rung.after_seconds):
                            break
                        who = await conversations.customer_name(session, conversation)
                        await self._decide(session, [rule], handoff, conversation, who, step)

    async def mirror_to_threads(self, session: AsyncSession, turns: Sequence[Turn]) -> None:
        """Customer messages in conversations with an open handoff thread in Slack go into
        that thread too, so the team sees them where they answer."""
        slack = self._settings.channels.get("slack")
        if slack is None or not turns:
            return
        open_handoffs = await session.execute(
            select(Handoff.id, Handoff.conversation_id).where(
                Handoff.status == "open",
                Handoff.conversation_id.in_({t.conversation_id for t in turns}),
            )
        )
        key_of = {conversation: f"handoff:{hid}:slack" for hid, conversation in open_handoffs}
        if not key_of:
            return
        found = await session.execute(
            select(Outbox.key, Outbox.provider_id).where(Outbox.key.in_(list(key_of.values())))
        )
        opened = dict(found.all())  # thread key -> its ts once posted (None: not yet)
        threads = {k: str(ts) for k, ts in opened.items() if ts is not None}
        channel = str(getattr(slack, "handoff_channel", ""))
        now = utcnow()
        rows = [
            outbox.row(
                f"mirror:{t.inbound_id}:slack",
                channel="slack",
                inbox=channel,
                to=channel,
                payload=_in_thread(
                    f"{t.input.member_name or 'member'}: {t.input.text}",
                    channel,
                    key_of[t.conversation_id],
                    threads,
                ),
                now=now,
            )
            for t in turns
            if t.channel != "slack" and key_of.get(t.conversation_id) in opened
        ]
        await outbox.enqueue_many(session, rows)

    async def team_replies(self, session: AsyncSession, rows: Sequence[Inbound]) -> None:
        """Replies by team members in Slack handoff threads: to the customer, or refused."""
        book = await load_book(session, self._settings.roles)
        now = utcnow()
        for inbound in rows:
            thread = InboundExtras.model_validate(inbound.payload or {}).thread_key or ""
            post = (
                (
                    await session.execute(
                        select(Outbox).where(
                            Outbox.channel == "slack",
                            Outbox.provider_id == thread,
                            Outbox.key.like("handoff:%"),
                        )
                    )
                )
                .scalars()
                .first()
            )
            about = None if post is None else OutboxPayload.model_validate(post.payload)
            conversation = (
                await session.get(Conversation, about.conversation)
                if about is not None and about.conversation is not None
                else None
            )
            member = await members.by_identity(session, "slack", inbound.sender)
            why = None
            if conversation is None:
                why = "this thread is not a conversation I know"
            elif member is None or member.kind != "team":
                why = "no team member has your Slack identity"
            else:  # the operators' gate (a qualification is checked when it takes)
                why = refusal(book, member, conversation)
            inbound.status, inbound.processed_at = "done", now
            if inbound.text.strip().lower().startswith("note:") and why is None:
                continue  # internal: stays in Slack
            # Refused by role: a member who lost the right to answer gives the conversation
            # back. (A refusal inside ``_reply`` has done whatever it needed already.)
            lost_rights = why is not None and conversation is not None and member is not None
            if why is None and conversation is not None and member is not None:
                why = await self._reply(session, inbound, conversation, member)
            if why is not None:
                await outbox.enqueue_many(session, [self._thread_note(inbound, thread, why, now)])
            if lost_rights and self.live is not None and conversation and member:
                await self.live.requeue_if_held(session, conversation, member.id)

    async def _reply(
        self, session: AsyncSession, inbound: Inbound, conversation: Conversation, member: Member
    ) -> str | None:
        """Take the conversation for ``member`` and send their reply; why not, if refused."""
        if self.live is None:
            return "live replies are not running"
        result = await self.live.reply(
            session, conversation, member, inbound.text, f"team:{inbound.id}"
        )
        return result.reason if isinstance(result, Refused) else None

    def _thread_note(self, inbound: Inbound, thread: str, why: str | None, now: datetime) -> Outbox:
        note = OutboxPayload(
            text=f"Not sent to the customer: {why}.",
            context={"channel": inbound.inbox, "thread_ts": thread},
        )
        key = f"team:{inbound.id}"
        return outbox.row(
            key, channel="slack", inbox=inbound.inbox, to=inbound.inbox, payload=note, now=now
        )


def _in_thread(text: str, channel: str, key: str, threads: dict[str, str]) -> OutboxPayload:
    """``text`` for the thread the outbox row ``key`` opened: in that thread, or, if it is
    not posted yet, wherever it will be (the deliverer waits for it)."""
    if key in threads:
        return OutboxPayload(text=text, context={"channel": channel, "thread_ts": threads[key]})
    return OutboxPayload(text=text, context={"channel": channel}, thread_of=key)
