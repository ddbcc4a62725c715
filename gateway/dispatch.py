"""Routing handed-off conversations to live operators.

A new handoff is routed right after the turn that opened it commits (and again by the
routing loop every second, which also makes routing survive a crash between the two):
offered to the least-loaded live operator who may take it (``escalation.routing``);
when nobody is live who could, the notification rules run at once; when such operators
are live but full, the handoff waits in the queue until one has room or the group's
``queue_timeout_seconds`` passes, and then the rules run. Meanwhile the AI keeps
answering. An offer nobody takes within ``offer_timeout_seconds`` moves on.

An operator who leaves (or is forced offline) gives back everything they held: those
conversations return to the queue and to the AI. One who stops beating past the TTL
loses the offers they had not taken yet; what they took stays theirs.

Every change is published on the ``console`` topic, so each process's consoles refresh.
What an operator does with a conversation is ``gateway.live``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Collection, Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from escalation import handoffs
from escalation.operators import ALL, OperatorSettings, Routed, Seat
from escalation.presence import Presence, PresenceUnavailable
from escalation.routing import Rostered, offer, rosters, seats
from gateway import conversations
from gateway.settings import Settings
from gateway.supervisor import Supervisor
from people.qualifications import catalog, qualified_by_workflow
from people.roles import RoleBook, load_book
from store.models import Conversation, Handoff, utcnow

log = logging.getLogger(__name__)

TOPIC = "console"
ROUTE_BATCH = 200
ROSTER_SECONDS = 1.0

Notify = Callable[[AsyncSession, Handoff, Conversation, str], Awaitable[None]]
Publish = Callable[[str, dict[str, Any]], Awaitable[None]]
OnOffer = Callable[[AsyncSession, int, int], Awaitable[None]]  # handoff, operator


@dataclass(frozen=True)
class Roster:
    """What routing reads of people, kept for ``ROSTER_SECONDS``."""

    book: RoleBook
    groups: dict[str, list[Rostered]]
    qualified: dict[str, set[int]]  # workflow -> qualified members, where one is required
    read_at: float


class Dispatcher:
    """Presence and routing: who is live, which handoff is offered to whom, what goes
    back to the queue, when the notification rules take over."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        settings: Settings,
        presence: Presence,
        notify: Notify,
        on_outbox: Callable[[], None],
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self._sessions = sessions
        self._settings = settings
        self.presence = presence
        self._notify = notify
        self._on_outbox = on_outbox
        self._now = now
        self._roster: Roster | None = None
        self.on_offer: OnOffer | None = None  # tells the operator elsewhere (Slack)
        self._publish: Publish | None = None
        self._supervisor: Supervisor | None = None

    @property
    def operators(self) -> OperatorSettings:
        return self._settings.escalation.operators

    @property
    def enabled(self) -> bool:
        return self.operators.enabled

    def attach(self, publish: Publish, supervisor: Supervisor) -> None:
        """Where console updates go, and who runs background work (set once running)."""
        self._publish, self._supervisor = publish, supervisor

    def changed(self) -> None:
        """Tell every process's consoles to refresh."""
        if self._publish is not None and self._supervisor is not None:
            self._supervisor.spawn(self._safe_publish(), name="console-changed")

    async def _safe_publish(self) -> None:
        if self._publish is not None:
            try:
                await self._publish(TOPIC, {})
            except Exception as exc:  # consoles also refresh on their own timer
                log.warning("could not publish a console update: %r", exc)

    def route_soon(self, handoff_ids: list[int] | None = None) -> None:
        """Route these handoffs (None: all that wait) in the background -- call it once
        the transaction that changed them committed -- and refresh the consoles."""
        if handoff_ids is None or handoff_ids:
            self._spawn(self.route_queued(handoff_ids), "route")
        self.changed()

    # -- presence ---------------------------------------------------------------------

    async def go_live(self, member_id: int) -> None:
        """Live now; waiting handoffs are offered to them right after (not in the caller's
        transaction: routing uses transactions of its own)."""
        await self.presence.go_live(member_id)
        self.route_soon()

    async def leave(self, member_id: int) -> None:
        """Offline now; everything they held (taken too) goes back to the queue."""
        await self.presence.leave(member_id)
        self._spawn(self._release(Handoff.operator_id == member_id), "release")
        self.changed()

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        if self._supervisor is not None:
            self._supervisor.spawn(work, name=name)
        else:
            work.close()

    async def live(self) -> dict[int, float]:
        """Who is live; nobody while presence is unavailable (routing degrades to the
        notification rules, and recovers by itself)."""
        try:
            return await self.presence.live()
        except PresenceUnavailable as exc:
            log.warning("%s: routing as if nobody were live", exc)
            return {}

    # -- routing ----------------------------------------------------------------------

    async def route_queued(self, only: list[int] | None = None) -> None:
        """Offer waiting handoffs (``only`` these, or all) to live operators, oldest first;
        run the notification rules for those nobody can take. One transaction each."""
        live = await self.live()
        waiting = sorted(only) if only is not None else await self._waiting()
        offered = False
        for handoff_id in waiting:
            async with self._sessions.begin() as session:
                offered |= await self._route_one(session, handoff_id, live)
        if offered:
            self.changed()
            self._on_outbox()  # an offer may have a Slack mention to send

    async def _waiting(self) -> list[int]:
        """The oldest unassigned handoffs some group could take: open conversations on
        inboxes and workflows a group handles, on channels a person can answer live
        (the others were notified when they opened, or by ``_notify_overdue``)."""
        groups = self.operators.groups
        inline = [n for n, c in self._settings.channels.items() if c.replies_inline()]
        stmt = (
            select(Handoff.id)
            .join(Conversation, Conversation.id == Handoff.conversation_id)
            .where(Handoff.status == "open", Handoff.operator_id.is_(None))
            .where(Conversation.status != "closed", Conversation.channel.not_in(inline or [""]))
        )
        if not any(ALL in g.inboxes for g in groups):
            stmt = stmt.where(Conversation.inbox.in_({i for g in groups for i in g.inboxes}))
        if not any(ALL in g.workflows for g in groups):
            handled = {w for g in groups for w in g.workflows}
            stmt = stmt.where(
                or_(Conversation.workflow.is_(None), Conversation.workflow.in_(handled))
            )
        async with self._sessions() as session:
            found = await session.execute(stmt.order_by(Handoff.id).limit(ROUTE_BATCH))
            return list(found.scalars())

    async def _roles(self, session: AsyncSession) -> Roster:
        """Roles, operator groups' members and who is qualified for which workflow, re-read
        at most every ``ROSTER_SECONDS`` for routing (a change reaches routing within that;
        replies check roles afresh)."""
        now = time.monotonic()
        if self._roster is None or now - self._roster.read_at > ROSTER_SECONDS:
            self._roster = Roster(
                await load_book(session, self._settings.roles),
                await rosters(session, self.operators),
                await qualified_by_workflow(
                    session, list((await catalog(session, self._settings.qualifications)).values())
                ),
                now,
            )
        return self._roster

    async def _route_one(
        self, session: AsyncSession, handoff_id: int, live: dict[int, float]
    ) -> bool:
        found = (
            await session.execute(
                select(
                    Handoff.id, Handoff.created_at, Handoff.notified_at, Conversation.member_id,
                    Conversation.inbox, Conversation.workflow, Conversation.channel,
                    Conversation.status, Handoff.last_offered_to,
                )
                .join(Conversation, Conversation.id == Handoff.conversation_id)
                .where(
                    Handoff.id == handoff_id,
                    Handoff.status == "open",
                    Handoff.operator_id.is_(None),
                )
            )
        ).first()  # fmt: skip
        if found is None:
            return False
        if found.status == "closed":  # nobody to answer any more (a call that ended, say)
            await session.execute(
                update(Handoff)
                .where(Handoff.id == handoff_id, Handoff.status == "open")
                .values(status="closed", closed_at=utcnow())
            )
            return False
        candidates: list[Seat] = []
        # A call's replies can only be said during the call: nobody can answer it live
        # from a console, so only the notification rules apply.
        if not self._settings.channel(found.channel).replies_inline():
            roster = await self._roles(session)
            candidates = await seats(session, self.operators, roster.book, roster.groups, live,
                                     found, roster.qualified)  # fmt: skip
            others = [c for c in candidates if c.member_id != found.last_offered_to]
            candidates = others if any(c.free for c in others) else candidates  # rotate
        seat = await offer(session, handoff_id, candidates) if candidates else None
        if seat is not None:
            if self.on_offer is not None:
                await self.on_offer(session, handoff_id, seat.member_id)
            return True
        if found.notified_at is None and self._should_notify(found.created_at, found, candidates):
            handoff = await session.get(Handoff, handoff_id)
            conversation = (
                await session.get(Conversation, handoff.conversation_id) if handoff else None
            )
            if handoff is not None and conversation is not None:
                who = await conversations.customer_name(session, conversation)
                await self._notify(session, handoff, conversation, who)
        return False

    def _should_notify(self, opened: datetime, conversation: Routed, live: list[Any]) -> bool:
        """Nobody live could take it: now. Someone could, but is full: after the timeout."""
        return not live or self._waited(opened, conversation)

    def _waited(self, opened: datetime, conversation: Routed) -> bool:
        """Past the queue timeout of the groups that handle the conversation."""
        groups = [g for g in self.operators.groups if g.handles(conversation)]
        wait = min((g.queue_timeout_seconds for g in groups), default=0.0)
        return self._now() - opened >= timedelta(seconds=wait)

    async def release_absent(self) -> None:
        """Offers to operators who are no longer live, and offers nobody took within their
        group's ``offer_timeout_seconds``, go back to the queue (while presence is
        unavailable nobody is known to have left). A conversation an operator *took*
        stays theirs -- they may be reconnecting, and people who take conversations from
        Slack or a notification call are never "live" -- until they hand it back, close
        it or leave (or an admin forces them offline)."""
        now = self._now()
        stale = [
            (Handoff.operator_group == g.name)
            & (Handoff.offered_at < now - timedelta(seconds=g.offer_timeout_seconds))
            for g in self.operators.groups
        ]
        try:
            live = await self.presence.live()
        except PresenceUnavailable:
            absent = None
        else:
            absent = Handoff.operator_id.not_in(list(live) or [0])
        gone = [c for c in (absent, *stale) if c is not None]
        if gone:
            await self._release(or_(*gone), Handoff.taken_at.is_(None))
        await self._notify_overdue()

    async def _notify_overdue(self) -> None:
        """Handoffs nobody has taken past their groups' ``queue_timeout_seconds`` -- offered
        around or waiting -- get the notification rules (once)."""
        waits = [g.queue_timeout_seconds for g in self.operators.groups]
        if not waits:
            return
        now = self._now()
        async with self._sessions.begin() as session:
            overdue = await session.execute(
                select(Handoff, Conversation)
                .join(Conversation, Conversation.id == Handoff.conversation_id)
                .where(Handoff.status == "open", Handoff.taken_at.is_(None),
                       Handoff.notified_at.is_(None),
                       Handoff.created_at < now - timedelta(seconds=min(waits)))
                .order_by(Handoff.id)
                .limit(ROUTE_BATCH)
            )  # fmt: skip
            for handoff, conversation in overdue.all():
                if self._waited(handoff.created_at, conversation):
                    who = await conversations.customer_name(session, conversation)
                    await self._notify(session, handoff, conversation, who)

    async def _release(self, *which: ColumnElement[bool]) -> None:
        async with self._sessions.begin() as session:
            held = await session.execute(
                select(Handoff)
                .where(Handoff.status == "open", Handoff.operator_id.is_not(None))
                .where(*which)
            )
            released = [h for h in held.scalars() if await self._requeue(session, h)]
        if released:
            log.info("%s handoffs returned to the queue: their operators went offline",
                     len(released))  # fmt: skip
            await self.route_queued([h.id for h in released])
            self.changed()

    async def _requeue(self, session: AsyncSession, handoff: Handoff) -> bool:
        """Back to the queue -- only if it is still as read (held by the same operator,
        taken or not as it was): a take that committed meanwhile is not undone."""
        took = handoff.taken_at
        back = await session.execute(
            update(Handoff)
            .where(
                Handoff.id == handoff.id,
                Handoff.status == "open",
                Handoff.operator_id == handoff.operator_id,
                Handoff.taken_at.is_(None) if took is None else Handoff.taken_at.is_not(None),
            )
            .values(
                operator_id=None,
                operator_group=None,
                offered_at=None,
                taken_at=None,
                last_offered_to=handoff.operator_id,
            )
            .execution_options(synchronize_session=False)
        )
        if back.rowcount != 1:  # type: ignore[attr-defined]
            return False
        await session.execute(
            update(Conversation)
            .where(Conversation.id == handoff.conversation_id, Conversation.status == "operator")
            .values(status="queued", updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        return True

    def forget_roles(self) -> None:
        """Roles, members or qualifications changed here: routing reads them afresh."""
        self._roster = None

    def qualified(self) -> None:
        """Someone qualified (call it once committed): what waits may now reach them."""
        self.forget_roles()
        if self.enabled:
            self.route_soon()

    async def disqualify(
        self, session: AsyncSession, member_id: int, workflows: Collection[str]
    ) -> list[int]:
        """In the caller's transaction: what ``member_id`` holds of ``workflows`` (offered
        or taken) goes back to the queue. Route the returned handoffs once committed."""
        self.forget_roles()
        if not workflows:
            return []
        held = await session.execute(
            select(Handoff)
            .join(Conversation, Conversation.id == Handoff.conversation_id)
            .where(Handoff.status == "open", Handoff.operator_id == member_id,
                   Conversation.workflow.in_(list(workflows)))
        )  # fmt: skip
        return [h.id for h in held.scalars() if await self._requeue(session, h)]

    async def requeue_if_held(
        self, session: AsyncSession, conversation: Conversation, member_id: int
    ) -> None:
        self.forget_roles()  # what routing knew of this member's role is out of date
        handoff = await handoffs.open_for(session, conversation.id)
        held = handoff is not None and handoff.operator_id == member_id
        if held and handoff is not None and await self._requeue(session, handoff):
            await session.refresh(conversation)
            self.route_soon([handoff.id])
