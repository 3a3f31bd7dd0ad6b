"""The gateway's cached directory facts stay exact: real SQLite, real directory, real engine."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from coral.agents.directory import AgentDirectory
from coral.coordination.gateway import MessageGateway
from coral.coordination.service import CoordinationService
from coral.protocol.agent import AgentManifest, AgentRecord, sign_record_as_agent
from coral.protocol.errors import Forbidden
from coral.protocol.identity import Identity
from coral.protocol.message import DataPart, Message, TextPart, new_message_id, now_ms
from coral.protocol.signing import sign_message
from coral.protocol.verify import MessageVerifier
from coral.store.agents_sqlite import SqliteAgentStore
from coral.store.coordination_sqlite import SqliteCoordinationStore
from coral.store.seen_sqlite import SqliteSeenStore
from coral.store.sqlite import SqliteDatabase


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[MessageGateway]:
    db = SqliteDatabase(tmp_path / "coral.db")
    await db.open()
    node = Identity.generate()
    agents = SqliteAgentStore(db)
    await agents.open()
    seen = SqliteSeenStore(db)
    await seen.open()
    store = SqliteCoordinationStore(db)
    await store.migrate()
    directory = AgentDirectory(agents, node, now_ms)
    engine = CoordinationService(store, node_id=node.did, clock=now_ms)
    yield MessageGateway(MessageVerifier(), seen, engine, directory)
    await db.close()


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
