"""``frontdesk chat AGENT``: talk to an agent in the terminal."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from agents.base import MemberFacts, TurnInput, Utterance
from gateway.app import runtime_for
from gateway.settings import Settings
from people.roles import load_book
from store.engine import create_engine, session_factory
from store.errors import ConfigError
from store.migrate import upgrade
from store.models import Member, utcnow


async def chat(config: Settings, agent: str) -> int:
    """The agent in a terminal: the same turns as the web chat, as a new anonymous member of
    the workspace's store (so abilities that keep records, like bookings, work); the
    conversation itself is kept in memory only."""
    if agent not in {a.name for a in config.agents}:
        raise ConfigError(f"no agent named '{agent}'")
    await upgrade(config.storage.database_url)
    engine = create_engine(config.storage.database_url)
    runtime = runtime_for(config)
    try:
        sessions = session_factory(engine)
        async with sessions.begin() as session:
            member = Member(kind="anonymous", role="contact", data={}, created_at=utcnow())
            session.add(member)
            await session.flush()
            role = (await load_book(session, config.roles)).get(member.role)
            facts = MemberFacts(id=member.id, kind=member.kind, role=member.role)
        runtime.use_store(sessions)
        turn = TurnInput(text="", channel="webchat", member=facts, role=role)
        print(
            f"Talking to {agent} ({config.workspace.name}) as member {facts.id}. Ctrl-D to leave."
        )
        while True:
            try:
                text = await asyncio.to_thread(input, "you> ")
            except EOFError:
                print()
                return 0
            turn = replace(turn, text=text)
            result = await runtime.run_turn(agent, turn)
            history = [*turn.history, Utterance("member", text)]
            for reply in result.replies:
                print(f"{agent}> {reply}")
                history.append(Utterance("agent", reply))
            for name, value in result.collected.items():
                print(f"  [recorded {name} = {value!r}]")
            if result.escalation:
                print(f"  [handoff requested: {result.escalation.reason}]")
            workflow = result.workflow.state if result.workflow else turn.workflow
            turn = replace(turn, history=tuple(history), workflow=workflow)
    finally:
        await runtime.close()
        await engine.dispose()
