"""A turn's outcome, written in the finishing transaction: what it did besides replying
(answers saved on the member, the workflow's position, a handoff it opened) and its
replies as messages and outbox rows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from sqlalchemy.ext.asyncio import AsyncSession

from agents.base import TurnInput, TurnResult
from escalation import handoffs
from escalation.triggers import TriggerSettings, count_unhelped
from gateway.settings import Settings
from people import answers
from store import outbox
from store.engine import insert_rows
from store.models import Conversation, Handoff, Message, utcnow
from store.payloads import OutboxPayload
from store.text import storable


@dataclass(frozen=True)
class Turn:
    """One stored message, ready for its agent turn."""

    inbound_id: int
    key: str
    conversation_id: int
    member_id: int
    channel: str
    inbox: str
    to: str
    agent: str
    status: str
    input: TurnInput
    answer: bool = True  # False: record the message, send no agent reply
    reply_context: dict[str, str] = field(default_factory=dict)


async def apply_effects(
    session: AsyncSession, turn: Turn, result: TurnResult, triggers: TriggerSettings
) -> Handoff | None:
    """What a turn did besides replying: answers, workflow position, a handoff; the handoff
    if this turn opened one (not one already open)."""
    if result.collected:
        await answers.record(session, turn.member_id, result.collected, result.field_types)
    stalled = triggers.turns_without_progress
    if result.workflow is None and result.escalation is None and stalled is None:
        return None
    conversation = await session.get(Conversation, turn.conversation_id)
    if conversation is None:
        return None
    if stalled is not None and result.escalation is None:
        data = dict(conversation.data or {})
        escalation = count_unhelped(triggers, data, bool(result.meta.get("unanswered")))
        conversation.data = data
        if escalation is not None:
            result = replace(result, escalation=escalation)
    if result.workflow is not None:
        state = result.workflow.state
        data = {k: v for k, v in (conversation.data or {}).items() if k != "workflow"}
        if state is not None:
            data["workflow"] = state.to_json()
        conversation.data = data
        if state is not None or result.escalation is None:
            # A workflow that ends by handing off keeps its name on the conversation:
            # routing offers it to operators qualified for that workflow.
            conversation.workflow = state.workflow if state is not None else None
    if result.escalation is not None and result.escalation.workflow is not None:
        conversation.workflow = result.escalation.workflow
    if result.escalation is not None:
        handoff, opened = await handoffs.request(
            session, conversation, result.escalation.reason, result.escalation.trigger
        )
        return handoff if opened else None
    return None


async def write_replies(
    session: AsyncSession,
    settings: Settings,
    finished: Sequence[tuple[Turn, TurnResult | None]],
) -> None:
    """Each finished turn's replies as messages and outbox rows (one turn's texts
    joined where the channel wants one message; call controls with the last row)."""
    replies = []
    for turn, result in finished:
        if result is None:
            continue
        # A model's output, whatever it holds, is made storable (NUL dropped).
        texts = [storable(t) for t in result.replies] or ([""] if result.actions else [])
        if len(texts) > 1 and settings.channel(turn.channel).joins_replies():
            texts = ["\n\n".join(texts)]
        for index, text in enumerate(texts):
            # Call controls travel with the last row (one with no text when nothing is said).
            replies.append((turn, index, text, result.actions if index == len(texts) - 1 else ()))
    if not replies:
        return
    now = utcnow()
    ids = await insert_rows(
        session,
        Message,
        [
            {
                "conversation_id": turn.conversation_id,
                "direction": "out",
                "author": "agent",
                "author_name": turn.agent,
                "text": text,
                "status": "pending",
                "created_at": now,
            }
            for turn, _, text, _ in replies
        ],
    )
    inline = {t.channel: settings.channel(t.channel).replies_inline() for t, *_ in replies}
    await outbox.enqueue_many(
        session,
        [
            outbox.row(
                f"reply:{turn.inbound_id}:{index}",
                channel=turn.channel,
                inbox=turn.inbox,
                to=turn.to,
                payload=OutboxPayload(
                    text=text,
                    author="agent",
                    name=turn.agent,
                    context=turn.reply_context,
                    actions=list(actions),
                ),
                message_id=message_id,
                status="held" if inline[turn.channel] else "pending",
                now=now,
            )
            for (turn, index, text, actions), message_id in zip(replies, ids, strict=True)
        ],
    )
