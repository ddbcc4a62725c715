"""What a live operator does with a conversation: take it, reply, add internal notes, hand
it back to the AI, close it -- from the console, the API, Slack, or a notification call.

Taking sets the conversation's status to ``operator`` with a conditional UPDATE; the
pipeline re-reads that status in the transaction that writes an agent reply (locking the
row on PostgreSQL) and drops the reply of a turn that raced a take -- the AI and a person
never both answer. Taking and replying pass the same gate as routing
(``escalation.operators.refusal``: role, inbox, workflow, qualification), whose reason
the refusal names; one who no longer passes it is refused and gives the conversation
back. Routing, presence and the queue are ``gateway.dispatch``.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, or_, update
from sqlalchemy.ext.asyncio import AsyncSession

from escalation import handoffs
from escalation.operators import refusal
from escalation.presence import PresenceUnavailable
from escalation.routing import loads
from gateway import conversations
from gateway.conversations import NOTE
from gateway.dispatch import ROUTE_BATCH, TOPIC, Dispatcher
from people import members
from people.qualifications import catalog, qualified_by_workflow
from people.roles import Need, RoleBook, allows, load_book
from store import consents
from store.engine import insert_rows
from store.models import Conversation, Handoff, Inbound, Member, Message, utcnow

__all__ = ["ROUTE_BATCH", "TOPIC", "Live", "Refused", "Sent"]


@dataclass(frozen=True)
class Refused(Exception):
    """An operator action that cannot be done, and why (a 409 or a 403)."""

    reason: str
    forbidden: bool = False


@dataclass(frozen=True)
class Sent:
    """An operator's reply on its way: the channel it goes out on, and, when that is not the
    conversation's own, what to tell the operator about it."""

    channel: str
    notice: str | None = None


@dataclass(frozen=True)
class _Route:
    sent: Sent
    last: Inbound  # the customer's last message: where the reply goes


class Live(Dispatcher):
    """Routing (``Dispatcher``) and what operators do with what it gives them."""

    async def take(
        self, session: AsyncSession, conversation: Conversation, member: Member, book: RoleBook
    ) -> Handoff:
        """``member`` takes ``conversation``: the AI stops answering it."""
        if conversation.status == "closed":
            raise Refused("the conversation is closed")
        workflow = conversation.workflow
        qualified = (await self.holders(session)).get(workflow) if workflow else None
        why = refusal(book, member, conversation, qualified)
        if why is not None:
            raise Refused(why, forbidden=True)
        handoff = await handoffs.open_for(session, conversation.id)
        if handoff is None:
            handoff, _ = await handoffs.request(
                session, conversation, "a team member took the conversation", "operator"
            )
        if handoff.operator_id not in (None, member.id):
            raise Refused("another operator has this conversation")
        now = utcnow()
        took = await session.execute(
            update(Handoff)
            .where(
                Handoff.id == handoff.id,
                Handoff.status == "open",
                _free_for(member.id),
            )
            .values(operator_id=member.id, taken_at=now, offered_at=handoff.offered_at or now)
            .execution_options(synchronize_session=False)
        )
        if took.rowcount != 1:  # type: ignore[attr-defined]
            raise Refused("another operator has this conversation")
        await session.refresh(handoff)
        conversation.status = "operator"
        conversation.updated_at = now
        self.changed()
        return handoff

    async def holders(self, session: AsyncSession) -> dict[str, set[int]]:
        """For each workflow a qualification unlocks, who holds one now (read afresh: a
        take is not allowed on a moment-old roster)."""
        found = await catalog(session, self._settings.qualifications)
        return await qualified_by_workflow(session, list(found.values()))

    async def reply(
        self,
        session: AsyncSession,
        conversation: Conversation,
        member: Member,
        text: str,
        key: str,
    ) -> Refused | Sent:
        """Send ``member``'s reply to the customer, taking the conversation if it is free;
        where it went, or why not (a refusal for lost rights gives the conversation back).

        A reply its channel cannot deliver (a call's, after the fact) goes by SMS from the
        same number if the SMS channel has it, and says so; otherwise it is refused before
        anything is stored or taken."""
        book = await load_book(session, self._settings.roles)
        route = await self._route(session, conversation)
        if (
            isinstance(route, Refused)
            and conversation.status != "closed"
            and refusal(book, member, conversation) is None
        ):
            return route  # nothing stored, nothing taken
        try:
            await self.take(session, conversation, member, book)
        except Refused as refused:
            if refused.forbidden:
                await self.requeue_if_held(session, conversation, member.id)
            return refused
        if isinstance(route, Refused):  # the checks above leave this to take; it refuses
            return route
        await conversations.say_as_operator(
            session, conversation, route.last, member.name or member.email or "", text, key,
            via=route.sent.channel if route.sent.channel != conversation.channel else None,
        )  # fmt: skip
        self._on_outbox()
        self.changed()
        return route.sent

    async def _route(self, session: AsyncSession, conversation: Conversation) -> _Route | Refused:
        """How an operator's reply reaches the customer of ``conversation``, or why it can't
        (its channel cannot deliver it, or the customer opted out of that channel)."""
        route = await self._way(session, conversation)
        if isinstance(route, Refused):
            return route
        address = (route.sent.channel, route.last.sender)
        consent = (await consents.opted_out(session, [address])).get(address)
        if consent is None:
            return route
        return Refused(
            f"the customer opted out of {route.sent.channel} messages ('{consent.text.strip()}' "
            f"at {consent.created_at.isoformat(timespec='seconds')}): the reply would not be sent"
        )

    async def _way(self, session: AsyncSession, conversation: Conversation) -> _Route | Refused:
        """The channel an operator's reply would go out on."""
        last = await conversations.last_inbound(session, conversation)
        if last is None:
            return Refused("the customer has not written yet; there is nowhere to reply")
        channels = self._settings.channels
        own = channels.get(conversation.channel)
        if own is not None and own.sends_replies():
            return _Route(Sent(conversation.channel), last)
        sms = channels.get("sms")
        if sms is not None and sms.receives_on(conversation.inbox) and last.sender.startswith("+"):
            notice = (f"the {conversation.channel} channel cannot deliver a reply now; sent by "
                      f"SMS from {conversation.inbox}")  # fmt: skip
            return _Route(Sent("sms", notice), last)
        if own is None:
            return Refused(f"the {conversation.channel} channel is not configured; the reply "
                           "cannot be delivered")  # fmt: skip
        if own.replies_inline():
            return Refused(f"a reply to a {conversation.channel} conversation can only be said "
                           f"during the call, and no SMS channel has {conversation.inbox} to "
                           "text it from")  # fmt: skip
        return Refused(f"the {conversation.channel} channel has no way to send replies "
                       "configured")  # fmt: skip

    async def note(
        self, session: AsyncSession, conversation: Conversation, member: Member, text: str
    ) -> int:
        """An internal note: kept with the conversation, never sent, never shown to agents."""
        [message_id] = await insert_rows(session, Message, [{
            "conversation_id": conversation.id, "direction": NOTE, "author": "operator",
            "author_name": member.name or member.email, "text": text, "status": "internal",
            "created_at": utcnow(),
        }])  # fmt: skip
        self.changed()
        return message_id

    async def finish(
        self, session: AsyncSession, conversation: Conversation, member: Member, close: bool
    ) -> None:
        """Hand the conversation back to the AI, or close it (not one another operator
        holds: the check and the change are one conditional UPDATE)."""
        if conversation.status == "closed":
            raise Refused("the conversation is closed")
        now = utcnow()
        closed = await session.execute(
            update(Handoff)
            .where(
                Handoff.conversation_id == conversation.id,
                Handoff.status == "open",
                _free_for(member.id),
            )
            .values(status="closed", closed_at=now, closed_by=member.id)
            .execution_options(synchronize_session=False)
        )
        if closed.rowcount == 0 and await handoffs.open_for(session, conversation.id) is not None:  # type: ignore[attr-defined]
            raise Refused("another operator has this conversation")
        conversation.status = "closed" if close else "bot"
        conversation.updated_at = now
        self.route_soon()  # the operator has room for the next one

    async def answer_call(self, handoff_id: int, phone: str) -> str:
        """A team member pressed 1 on a notification call: they take the conversation.
        What to say back."""
        async with self._sessions.begin() as session:
            member = await members.by_identity(session, "phone", phone)
            handoff = await session.get(Handoff, handoff_id)
            conversation = (
                await session.get(Conversation, handoff.conversation_id) if handoff else None
            )
            if member is None or handoff is None or conversation is None:
                return "That conversation is not waiting for you any more. Goodbye."
            if handoff.status != "open":
                return "Someone already finished that conversation. Goodbye."
            try:
                await self.take(session, conversation, member, await load_book(
                    session, self._settings.roles))  # fmt: skip
            except Refused as refused:
                return f"Sorry, {refused.reason}. Goodbye."
        return "The conversation is yours. Reply from the console or in Slack. Goodbye."

    async def command(self, channel: str, address: str, text: str) -> str:
        """A team member's ``/frontdesk live | leave | status`` (from Slack): the answer."""
        word = (text.strip().split() or ["status"])[0].lower()
        async with self._sessions() as session:
            member = await members.by_identity(session, channel, address)
            book = await load_book(session, self._settings.roles)
        if member is None or member.kind != "team" or member.archived:
            return "You are not a team member of this workspace (no member has your Slack id)."
        if not allows(book.get(member.role), Need(feature="operators", admin_access=True)):
            return "Your role may not work as an operator."
        if not self.enabled:
            return "The live operator mode is off here (escalation.operators.enabled)."
        try:
            if word == "live":
                await self.presence.go_live(member.id, ttl=self.operators.slack_live_hours * 3600)
                self.route_soon()
                return (f"You are live for {self.operators.slack_live_hours:g} hours: handoffs "
                        "may be offered to you. Reply in a handoff's thread to take it; "
                        "`/frontdesk leave` when you are done.")  # fmt: skip
            if word == "leave":
                await self.leave(member.id)
                return "You are offline; what you held went back to the queue."
            live = await self.presence.live()
        except PresenceUnavailable:
            return "Presence is unavailable right now; try again in a moment."
        if word != "status":
            return "Use `/frontdesk live`, `/frontdesk leave` or `/frontdesk status`."
        async with self._sessions() as session:
            held = (await loads(session, [member.id]))[member.id]
        state = "live" if member.id in live else "offline"
        return f"You are {state}, holding {held} conversation(s); {len(live)} operator(s) live."


def _free_for(member_id: int) -> ColumnElement[bool]:
    """A handoff nobody holds, or ``member_id`` holds."""
    return or_(Handoff.operator_id.is_(None), Handoff.operator_id == member_id)
