"""The federation driver in one process: two nodes, each federation store implementation.

Each node is real apart from the network: SQLite directory and seen-id
stores, the real gateway and coordination service, and the federation store
under test: the in-memory twin, SQLite sharing the node's database so the
write hook joins the thread write's transaction, or PostgreSQL (threads and
federation state in one schema per node) where the hook's outbox rows run in
the thread write's PostgreSQL transaction. ``LoopbackTransport`` stands
in for gRPC: a call runs the peer driver's handler with this node's did as the
verified caller.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from coral.agents.directory import AgentDirectory
from coral.coordination.gateway import MessageGateway
from coral.coordination.model import Thread, ThreadEntry
from coral.coordination.service import CoordinationService
from coral.federation.driver import FederationNode
from coral.federation.memory import InMemoryFederationStore
from coral.federation.peer_record import PeerAddresses, PeerRecord
from coral.federation.ports import (
    BatchOutcome,
    FederationStore,
    OutboundEnvelope,
    OutboxItem,
    PeerUnreachable,
)
from coral.protocol.agent import AgentManifest, AgentRecord, sign_record_as_agent
from coral.protocol.errors import CoralError
from coral.protocol.identity import Identity
from coral.protocol.message import DataPart, Message, new_message_id, now_ms
from coral.protocol.signing import sign_message
from coral.protocol.verify import MessageVerifier
from coral.store.agents_sqlite import SqliteAgentStore
from coral.store.coordination_postgres import PostgresCoordinationStore
from coral.store.coordination_sqlite import SqliteCoordinationStore
from coral.store.federation_postgres import PostgresFederationStore
from coral.store.federation_sqlite import FederationStore as SqliteFederationStore
from coral.store.seen_sqlite import SqliteSeenStore
from coral.store.sqlite import SqliteDatabase
from tests.support.postgres import fresh_schema, schema_pool
from tests.support.throwaway_postgres import ThrowawayPostgres

WAIT_S = 10.0


class LoopbackTransport:
    """``PeerTransport`` between drivers of one process, signed as ``caller``."""

    def __init__(self, caller: str, peers: dict[str, FederationNode]) -> None:
        self.caller = caller
        self.peers = peers

    def _peer(self, address: str) -> FederationNode:
        peer = self.peers.get(address)
        if peer is None:
            raise PeerUnreachable(f"connection refused: {address}")
        return peer

    async def hello(self, address: str, peer_record_json: str) -> str:
        return await self._peer(address).on_hello(self.caller, peer_record_json)

    async def gossip_hashes(self, address: str, bucket_hashes: Sequence[int]) -> str:
        return self._peer(address).on_gossip_hashes(self.caller, list(bucket_hashes))

    async def gossip_exchange(self, address: str, records_json: str, request_json: str) -> str:
        return await self._peer(address).on_gossip_exchange(self.caller, records_json, request_json)

    async def deliver_batch(
        self, address: str, envelopes: Sequence[OutboundEnvelope]
    ) -> BatchOutcome:
        # What the gRPC servicer does: apply in order, stop at the first refusal.
        peer = self._peer(address)
        applied = 0
        for envelope in envelopes:
            try:
                await peer.on_deliver(
                    self.caller, envelope.id, envelope.kind, envelope.payload_json
                )
            except CoralError as exc:
                if applied == 0:
                    raise PeerUnreachable(exc.detail) from exc
                return BatchOutcome(applied, exc.detail)
            applied += 1
        return BatchOutcome(applied)

    async def close(self) -> None:
        return None


class CountingMetrics:
    """``FederationMetrics`` that remembers what it was told."""

    def __init__(self) -> None:
        self.rounds = 0
        self.rejections: list[str] = []
        self.depth = 0

    def gossip_round(self, peers: int) -> None:
        self.rounds += 1

    def rejected(self, reason: str) -> None:
        self.rejections.append(reason)

    def outbox_depth(self, depth: int) -> None:
        self.depth = depth


@dataclass
class Node:
    identity: Identity
    address: str
    db: SqliteDatabase
    directory: AgentDirectory
    gateway: MessageGateway
    threads: SqliteCoordinationStore | PostgresCoordinationStore
    store: FederationStore
    driver: FederationNode
    pool: Any = None

    async def outbox(self) -> list[OutboxItem]:
        return [item for queue in (await self.store.queues()).values() for item in queue]

    async def register(self, agent: Identity, name: str) -> AgentRecord:
        record = AgentRecord(
            agent=agent.did,
            home_node=self.identity.did,
            manifest=AgentManifest(name=name),
            version=1,
            updated_at=now_ms(),
        )
        return await self.directory.register(sign_record_as_agent(record, agent))


async def start_node(
    tmp_path: Path,
    name: str,
    peers: dict[str, FederationNode],
    kind: str,
    postgres: ThrowawayPostgres | None = None,
    replica_of: Node | None = None,
) -> Node:
    """A node; with ``replica_of``, another process of that node (its key, files and schema)."""
    identity = replica_of.identity if replica_of is not None else Identity.generate()
    if replica_of is not None:
        db = replica_of.db
    else:
        db = SqliteDatabase(tmp_path / f"{name}.db")
        await db.open()
    agents = SqliteAgentStore(db)
    await agents.open()
    seen = SqliteSeenStore(db)
    await seen.open()
    pool: Any = None
    threads: SqliteCoordinationStore | PostgresCoordinationStore
    if kind == "postgres":
        if replica_of is not None:
            pool = replica_of.pool
        else:
            assert postgres is not None
            pool = await schema_pool(postgres, await fresh_schema(postgres))
        threads = PostgresCoordinationStore(pool)
    else:
        threads = SqliteCoordinationStore(db)
    await threads.migrate()
    directory = AgentDirectory(agents, identity, now_ms)
    engine = CoordinationService(
        threads, node_id=identity.did, clock=now_ms, sign_event=lambda m: sign_message(m, identity)
    )
    gateway = MessageGateway(MessageVerifier(), seen, engine, directory)
    store: FederationStore
    if kind == "sqlite":
        sqlite_store = SqliteFederationStore(db)
        await sqlite_store.migrate()
        store = sqlite_store
    elif kind == "postgres":
        postgres_store = PostgresFederationStore(pool)
        await postgres_store.migrate()
        store = postgres_store
    else:
        store = InMemoryFederationStore()
    driver = FederationNode(
        identity,
        store=store,
        transport=LoopbackTransport(identity.did, peers),
        directory=directory,
        coordination=engine,
        threads=threads,
        gateway=gateway,
        metrics=CountingMetrics(),
        peer_record_ttl_ms=3_600_000,
        shared_store=kind == "postgres",
    )
    await driver.open()
    gateway.forwarder = driver
    address = f"{name}.test:7443"
    driver.publish_self(PeerAddresses(grpc=address))
    peers[address] = driver
    return Node(identity, address, db, directory, gateway, threads, store, driver, pool)


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def two_nodes(
    tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[Node, Node]]:
    peers: dict[str, FederationNode] = {}
    server = request.getfixturevalue("postgres_server") if request.param == "postgres" else None
    a = await start_node(tmp_path, "a", peers, request.param, server)
    b = await start_node(tmp_path, "b", peers, request.param, server)
    yield a, b
    for node in (a, b):
        await node.db.close()
        if node.pool is not None:
            await node.pool.close()


async def gossip_both_ways(a: Node, b: Node) -> None:
    await b.driver.hello(a.address)
    await b.driver.exchange_with(a.identity.did, a.address)
    await a.driver.exchange_with(b.identity.did, b.address)


async def until(condition: Callable[[], Awaitable[bool]]) -> None:
    async def poll() -> None:
        while not await condition():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), WAIT_S)


async def with_outbox(node: Node, body: Callable[[], Awaitable[None]]) -> None:
    task = asyncio.create_task(node.driver.run_outbox())
    try:
        await body()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_hello_and_one_exchange_replicate_peers_and_the_agent_directory(
    two_nodes: tuple[Node, Node],
) -> None:
    a, b = two_nodes
    alice = Identity.generate()
    await a.register(alice, "alice")
    await b.driver.hello(a.address)
    assert a.identity.did in b.driver.state.peers
    assert b.identity.did in a.driver.state.peers  # the hello introduced b as well
    await b.driver.exchange_with(a.identity.did, a.address)
    assert b.driver.home_of(alice.did) == a.identity.did
    assert (await b.directory.get(alice.did)).home_node == a.identity.did
    records = await b.store.load_records()
    persisted = {r.node if isinstance(r, PeerRecord) else r.agent for r in records}
    assert {alice.did, a.identity.did} <= persisted  # the gossip view is persisted


async def test_a_thread_spanning_two_nodes_reaches_the_remote_member_exactly_once(
    two_nodes: tuple[Node, Node],
) -> None:
    a, b = two_nodes
    alice, bob = Identity.generate(), Identity.generate()
    await a.register(alice, "alice")
    await b.register(bob, "bob")
    await gossip_both_ways(a, b)
    create = Message(
        id=new_message_id(now_ms()),
        kind="thread.create",
        sender=alice.did,
        created_at=now_ms(),
        parts=(DataPart(data={"name": "plan", "participants": [alice.did, bob.did]}),),
    )
    thread = await a.gateway.submit(sign_message(create, alice))
    assert isinstance(thread, Thread)
    # The write hook queued one entries envelope for b in the thread's transaction.
    queued = [item for item in await a.outbox() if item.destination == b.identity.did]
    assert [item.envelope_id.split(":")[0] for item in queued] == ["entries"]
    envelope = queued[0]

    async def bob_has_the_thread_and_a_its_ack() -> bool:
        # The receiver applies a batch before the sender records its acknowledgement.
        return bool(await b.threads.inbox(bob.did, 0, 10)) and not await a.outbox()

    await with_outbox(a, lambda: until(bob_has_the_thread_and_a_its_ack))
    inbox = await b.threads.inbox(bob.did, 0, 10)
    assert {item.entry.thread_id for item in inbox} == {thread.id}
    assert b.driver.owners[thread.id] == a.identity.did
    assert (await b.store.thread_owners())[thread.id] == a.identity.did
    assert not await a.outbox()  # acknowledged
    again = await b.driver.on_deliver(
        a.identity.did, envelope.envelope_id, "entries", envelope.payload.decode()
    )
    assert again is True  # a redelivery is a duplicate and changes nothing
    assert len(await b.threads.inbox(bob.did, 0, 10)) == len(inbox)


def signed(sender: Identity, kind: str, thread: str | None, data: Any) -> Message:
    message = Message(
        id=new_message_id(now_ms()),
        kind=kind,
        sender=sender.did,
        thread=thread,
        created_at=now_ms(),
        parts=(DataPart(data=data),),
    )
    return sign_message(message, sender)


async def test_a_remote_joiner_receives_the_history_before_it_joined(
    two_nodes: tuple[Node, Node],
) -> None:
    a, b = two_nodes
    alice, bob = Identity.generate(), Identity.generate()
    await a.register(alice, "alice")
    await b.register(bob, "bob")
    await gossip_both_ways(a, b)
    thread = await a.gateway.submit(
        signed(alice, "thread.create", None, {"name": "solo", "participants": [alice.did]})
    )
    assert isinstance(thread, Thread)
    before = await a.gateway.submit(signed(alice, "message", thread.id, {"step": 1}))
    assert isinstance(before, ThreadEntry)
    assert not await a.outbox()  # nobody elsewhere is involved yet
    await a.gateway.submit(signed(alice, "thread.add_participant", thread.id, {"agent": bob.did}))

    async def bob_has_the_history() -> bool:
        seen = {i.entry.message.id for i in await b.threads.inbox(bob.did, 0, 50)}
        return before.message.id in seen

    await with_outbox(a, lambda: until(bob_has_the_history))
    inbox = await b.threads.inbox(bob.did, 0, 50)
    seqs = [item.entry.seq for item in inbox]
    # The whole log, each entry once, history first: the joiner reads it in thread order.
    assert seqs == list(range(1, len(seqs) + 1))
    assert (await b.threads.get_thread(thread.id)) is not None


async def test_envelopes_of_a_registered_kind_arrive_in_the_order_queued(
    two_nodes: tuple[Node, Node],
) -> None:
    a, b = two_nodes
    await gossip_both_ways(a, b)
    received: list[Any] = []

    async def on_ping(origin: str, envelope_id: str, payload: dict[str, Any]) -> bool:
        assert origin == a.identity.did
        received.append(payload["n"])
        return False

    b.driver.on_envelope("ping", on_ping)
    for n in range(3):
        await a.driver.send_envelope("ping", f"k{n}", b.identity.did, {"n": n})
    await a.driver.send_envelope("ping", "k0", b.identity.did, {"n": 99})  # same key: ignored

    async def all_arrived_and_acknowledged() -> bool:
        return len(received) >= 3 and not await a.outbox()

    await with_outbox(a, lambda: until(all_arrived_and_acknowledged))
    assert received == [0, 1, 2]
    assert not await a.outbox()


async def test_a_failed_delivery_stays_queued_with_its_backoff_recorded(
    two_nodes: tuple[Node, Node],
) -> None:
    a, _ = two_nodes
    nowhere = Identity.generate().did  # no peer record: no address to deliver to
    await a.driver.send_envelope("ping", "k", nowhere, {"n": 1})

    async def attempted() -> bool:
        return (await a.outbox())[0].attempts == 1

    await with_outbox(a, lambda: until(attempted))
    [item] = await a.outbox()
    assert item.next_attempt_at > item.enqueued_at
    assert "no address" in item.last_error


@pytest.mark.postgres
async def test_a_replica_that_missed_the_hello_reads_the_shared_view_and_applies_a_delivery(
    tmp_path: Path, postgres_server: ThrowawayPostgres
) -> None:
    peers: dict[str, FederationNode] = {}
    a = await start_node(tmp_path, "a", peers, "postgres", postgres_server)
    b = await start_node(tmp_path, "b", peers, "postgres", postgres_server)
    try:
        alice, bob = Identity.generate(), Identity.generate()
        await a.register(alice, "alice")
        await b.register(bob, "bob")
        b2 = await start_node(tmp_path, "b2", {}, "postgres", replica_of=b)  # b's 2nd process
        await gossip_both_ways(a, b)  # b's first process learns of a and alice
        peers[b.address] = b2.driver  # from now on b's address reaches the second process
        assert a.identity.did not in b2.driver.state.peers
        thread = await a.gateway.submit(
            signed(alice, "thread.create", None, {"name": "t", "participants": [bob.did]})
        )
        assert isinstance(thread, Thread)

        async def bob_has_the_thread() -> bool:
            return bool(await b.threads.inbox(bob.did, 0, 10))

        await with_outbox(a, lambda: until(bob_has_the_thread))
        assert a.identity.did in b2.driver.state.peers, "re-read from the shared store"
        assert b2.driver.owners[thread.id] == a.identity.did
        assert (await b.store.thread_owners()) == {thread.id: a.identity.did}
    finally:
        for node in (a, b):
            await node.db.close()
            await node.pool.close()


async def test_a_peer_listing_several_addresses_is_reached_at_one_that_answers(
    tmp_path: Path,
) -> None:
    peers: dict[str, FederationNode] = {}
    a = await start_node(tmp_path, "a", peers, "memory")
    b = await start_node(tmp_path, "b", peers, "memory")
    try:
        # b runs as two replicas; the one at the first address is down.
        b.driver.publish_self(PeerAddresses(grpc="down.test:1", grpc_replicas=(b.address,)))
        await b.driver.hello(a.address)
        assert sorted(a.driver.addresses_of(b.identity.did)) == sorted(["down.test:1", b.address])
        received: list[int] = []

        async def on_ping(origin: str, envelope_id: str, payload: dict[str, Any]) -> bool:
            received.append(payload["n"])
            return False

        b.driver.on_envelope("ping", on_ping)
        for n in range(4):  # each batch starts at a random address
            await a.driver.send_envelope("ping", f"k{n}", b.identity.did, {"n": n})

            async def arrived(count: int = n + 1) -> bool:
                return len(received) >= count and not await a.outbox()

            await with_outbox(a, lambda: until(arrived))
        assert received == [0, 1, 2, 3]
        assert not await a.outbox(), "no batch waited for a retry"
    finally:
        await a.db.close()
        await b.db.close()
