"""The gateway's cached directory facts stay exact: real directory and engine over the
in-memory store twins (they pass the same port contracts as SQLite)."""

from __future__ import annotations

import pytest

from coral.agents.directory import AgentDirectory
from coral.agents.memory import MemoryAgentStore
from coral.coordination.gateway import MessageGateway
from coral.coordination.memory import MemoryCoordinationStore, MemorySeenIds
from coral.coordination.service import CoordinationService
from coral.protocol.agent import AgentManifest, AgentRecord, sign_record_as_agent
from coral.protocol.errors import Forbidden
from coral.protocol.identity import Identity
from coral.protocol.message import DataPart, Message, TextPart, new_message_id, now_ms
from coral.protocol.signing import sign_message
from coral.protocol.verify import MessageVerifier


@pytest.fixture
def gateway() -> MessageGateway:
    node = Identity.generate()
    directory = AgentDirectory(MemoryAgentStore(), node, now_ms)
    engine = CoordinationService(MemoryCoordinationStore(), node_id=node.did, clock=now_ms)
    return MessageGateway(MessageVerifier(), MemorySeenIds(), engine, directory)


async def register(gateway: MessageGateway, who: Identity, version: int, deleted: bool = False):
    record = AgentRecord(
        agent=who.did,
        home_node=gateway.directory.node.did,
        manifest=AgentManifest(name=f"a{who.did[-6:].lower()}"),
        version=version,
        updated_at=now_ms(),
        deleted=deleted,
    )
    return await gateway.directory.register(sign_record_as_agent(record, who))


def message(sender: Identity, kind: str, thread: str | None, part: TextPart | DataPart) -> Message:
    msg = Message(
        id=new_message_id(),
        kind=kind,
        sender=sender.did,
        thread=thread,
        created_at=now_ms(),
        parts=(part,),
    )
    return sign_message(msg, sender)


async def test_a_deregistered_sender_is_refused_after_it_was_cached(
    gateway: MessageGateway,
) -> None:
    a, b = Identity.generate(), Identity.generate()
    await register(gateway, a, 1)
    await register(gateway, b, 1)
    create = DataPart(data={"name": "t", "participants": [b.did]})
    thread = await gateway.submit(message(a, "thread.create", None, create))
    await gateway.submit(message(a, "message", thread.id, TextPart(text="hi")))  # type: ignore[union-attr]
    await register(gateway, a, 2, deleted=True)
    with pytest.raises(Forbidden) as refused:
        await gateway.submit(message(a, "message", thread.id, TextPart(text="again")))  # type: ignore[union-attr]
    assert refused.value.reason == "agent_not_registered"


async def test_an_unknown_sender_is_refused_and_accepted_once_registered(
    gateway: MessageGateway,
) -> None:
    a, b = Identity.generate(), Identity.generate()
    await register(gateway, b, 1)
    create = DataPart(data={"name": "t", "participants": [b.did]})
    with pytest.raises(Forbidden):
        await gateway.submit(message(a, "thread.create", None, create))
    await register(gateway, a, 1)
    thread = await gateway.submit(message(a, "thread.create", None, create))
    assert thread.participants == (a.did, b.did)  # type: ignore[union-attr]
