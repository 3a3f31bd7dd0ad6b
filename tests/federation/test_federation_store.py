"""The durable outbox, inbox dedupe, persisted gossip view and thread owners.

Every test runs on a real SQLite file and on a real PostgreSQL schema (the
``backend`` fixture's params); the PostgreSQL cases skip with a reason when no
server binaries are installed (and fail under CI=true). "Restarting" opens a
new store on the same file or schema, as a new node process (or another
replica) would.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Protocol

import asyncpg
import pytest

from coral.federation.gossip import GossipState
from coral.federation.peer_record import PeerRecord
from coral.federation.ports import OutboxItem, RetryPolicy
from coral.protocol.agent import AgentRecord
from coral.protocol.identity import Identity
from coral.store.federation_postgres import PostgresFederationStore, PostgresFederationWatch
from coral.store.federation_sqlite import FederationStore as SqliteFederationStore
from coral.store.postgres import DeferredStatements
from coral.store.sqlite import SqliteDatabase
from tests.support.postgres import fresh_database
from tests.support.throwaway_postgres import ThrowawayPostgres

AgentFactory = Callable[..., AgentRecord]
PeerFactory = Callable[..., PeerRecord]
NODE_B = "did:key:zNodeB"
NODE_C = "did:key:zNodeC"
T0 = 1_700_000_000_000


class Store(Protocol):
    """What these tests use of both stores (the port plus operator views)."""

    async def migrate(self) -> int: ...
    async def enqueue(self, e: str, d: str, p: bytes, now_ms: int) -> bool: ...
    def enqueue_in(self, t: object, e: str, d: str, p: bytes, now_ms: int) -> bool: ...
    def record_inbound_in(self, t: object, m: str, o: str, now_ms: int) -> bool: ...
    async def record_inbound(self, m: str, o: str, now_ms: int) -> bool: ...
    async def prune_inbox(self, before: int) -> int: ...
    async def claim_due(self, now_ms: int, limit: int = 100) -> list[OutboxItem]: ...
    async def ack(self, e: str, d: str) -> bool: ...
    async def ack_many(self, d: str, ids: list[str]) -> None: ...
    async def fail(self, e: str, d: str, now_ms: int, error: str = "") -> int | None: ...
    async def pending(self) -> list[OutboxItem]: ...
    async def queues(self, per_destination: int = 100) -> dict[str, list[OutboxItem]]: ...
    async def dead_letters(self) -> list[OutboxItem]: ...
    async def save_records(self, records: Any) -> None: ...
    async def delete_agents(self, agents: Any) -> None: ...
    async def load_records(self) -> list[Any]: ...
    async def thread_owners(self) -> dict[str, str]: ...
    async def set_thread_owner(self, thread_id: str, owner: str) -> str: ...


class Backend:
    """Opens stores on one database; ``within`` runs ``*_in`` calls inside a transaction."""

    async def open(self, retry: RetryPolicy | None = None) -> Any:
        raise NotImplementedError

    async def within(self, store: Any, calls: Callable[[object], bool], *, fail: bool) -> bool:
        """Run ``calls(transaction)`` in a transaction; roll back when ``fail``.

        Returns False when the transaction found a repeat (SQLite: ``calls``
        said so; PostgreSQL: a guard statement found one).
        """
        raise NotImplementedError

    async def close(self) -> None:
        """Close what ``open`` opened."""


class SqliteBackend(Backend):
    def __init__(self, path: Path) -> None:
        self.path = path
        self.dbs: list[SqliteDatabase] = []

    async def open(self, retry: RetryPolicy | None = None) -> SqliteFederationStore:
        db = SqliteDatabase(self.path)
        await db.open()
        self.dbs.append(db)
        store = SqliteFederationStore(db, rng=random.Random(4), retry=retry)
        await store.migrate()
        return store

    async def within(self, store: Any, calls: Callable[[object], bool], *, fail: bool) -> bool:
        def run(conn: object) -> bool:
            result = calls(conn)
            if fail:
                raise RuntimeError("the caller's own write failed")
            return result

        return bool(await store.db.write(run))

    async def close(self) -> None:
        for db in self.dbs:
            await db.close()


class PostgresBackend(Backend):
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def open(self, retry: RetryPolicy | None = None) -> PostgresFederationStore:
        store = PostgresFederationStore(self.pool, rng=random.Random(4), retry=retry)
        await store.migrate()
        return store

    async def within(self, store: Any, calls: Callable[[object], bool], *, fail: bool) -> bool:
        statements = DeferredStatements()
        async with self.pool.acquire() as conn, conn.transaction():
            result = calls(statements) and await statements.run(conn)
            if fail:
                raise RuntimeError("the caller's own write failed")
            return result


@pytest.fixture
async def sqlite_backend(tmp_path: Path) -> AsyncIterator[Backend]:
    opened = SqliteBackend(tmp_path / "node.db")
    yield opened
    await opened.close()


@pytest.fixture
async def postgres_backend(postgres_pool: asyncpg.Pool) -> Backend:
    return PostgresBackend(postgres_pool)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> Backend:
    """Each database in turn (PostgreSQL on a fresh schema of the session's server)."""
    chosen: Backend = request.getfixturevalue(f"{request.param}_backend")
    return chosen


@pytest.fixture
async def store(backend: Backend) -> Any:
    return await backend.open()


async def test_an_enqueued_envelope_is_claimed_once_and_acked_away(store: Store) -> None:
    assert await store.enqueue("env-1", NODE_B, b"payload", T0)
    assert not await store.enqueue("env-1", NODE_B, b"other", T0), "same envelope, same node"
    assert await store.enqueue("env-1", NODE_C, b"payload", T0), "fan-out to a second node"
    claimed = await store.claim_due(T0)
    assert {(i.envelope_id, i.destination, i.payload) for i in claimed} == {
        ("env-1", NODE_B, b"payload"),
        ("env-1", NODE_C, b"payload"),
    }
    assert await store.claim_due(T0 + 1) == [], "claimed items are leased"
    assert await store.ack("env-1", NODE_B)
    assert not await store.ack("env-1", NODE_B)
    assert [i.destination for i in await store.pending()] == [NODE_C]


async def test_a_crash_after_claim_redelivers_once_the_lease_ends(backend: Backend) -> None:
    retry = RetryPolicy(claim_lease_ms=5_000)
    first = await backend.open(retry)
    await first.enqueue("env-9", NODE_B, b"x", T0)
    assert len(await first.claim_due(T0)) == 1
    # The process dies before ack; another (or a restarted) one opens the same database.
    second = await backend.open(retry)
    assert await second.claim_due(T0 + 4_999) == []
    again = await second.claim_due(T0 + 5_000)
    assert [(i.envelope_id, i.payload) for i in again] == [("env-9", b"x")]


async def test_items_survive_a_restart_and_queue_per_destination_in_order(
    backend: Backend,
) -> None:
    first = await backend.open()
    for n in range(3):
        await first.enqueue(f"env-{n}", NODE_B, bytes([n]), T0 + n)
    await first.enqueue("env-c", NODE_C, b"c", T0)
    second = await backend.open()
    claimed = await second.claim_due(T0 + 10)
    assert [i.envelope_id for i in claimed] == ["env-0", "env-c", "env-1", "env-2"]
    queues = await second.queues(per_destination=2)
    assert {d: [i.envelope_id for i in q] for d, q in queues.items()} == {
        NODE_B: ["env-0", "env-1"],
        NODE_C: ["env-c"],
    }
    await second.ack_many(NODE_B, ["env-0", "env-1"])
    assert [i.envelope_id for i in (await second.queues())[NODE_B]] == ["env-2"]


async def test_failures_back_off_with_jitter_then_dead_letter(backend: Backend) -> None:
    retry = RetryPolicy(base_ms=100, cap_ms=1_000, max_attempts=4)
    store = await backend.open(retry)
    await store.enqueue("env-1", NODE_B, b"x", T0)
    now = T0
    for attempt in range(3):
        (item,) = await store.claim_due(now)
        assert item.attempts == attempt
        due = await store.fail("env-1", NODE_B, now, error="connection refused")
        assert due is not None and now <= due <= now + min(1_000, 100 * 2**attempt)
        now = due
    (item,) = await store.claim_due(now)
    assert item.last_error == "connection refused"
    assert await store.fail("env-1", NODE_B, now) is None
    assert await store.pending() == []
    assert await store.queues() == {}
    assert [i.attempts for i in await store.dead_letters()] == [4]
    assert await store.fail("missing", NODE_B, now) is None


async def test_enqueue_in_commits_or_rolls_back_with_the_callers_transaction(
    backend: Backend, store: Store
) -> None:
    def queue(envelope: str) -> Callable[[object], bool]:
        return lambda tx: store.enqueue_in(tx, envelope, NODE_B, b"x", T0)

    with pytest.raises(RuntimeError):
        await backend.within(store, queue("env-1"), fail=True)
    assert await store.pending() == [], "rolled back with the caller"
    assert await backend.within(store, queue("env-2"), fail=False)
    assert [i.envelope_id for i in await store.pending()] == ["env-2"]


async def test_a_redelivered_message_is_recorded_once(backend: Backend, store: Store) -> None:
    def inbound(message: str) -> Callable[[object], bool]:
        return lambda tx: store.record_inbound_in(tx, message, NODE_C, T0 + 6)

    assert await store.record_inbound("msg-1", NODE_B, T0)
    assert not await store.record_inbound("msg-1", NODE_B, T0 + 5)
    assert not await backend.within(store, inbound("msg-1"), fail=False), "seen before"
    with pytest.raises(RuntimeError):
        await backend.within(store, inbound("msg-2"), fail=True)
    assert await backend.within(store, inbound("msg-2"), fail=False), "rolled back before"
    assert await store.prune_inbox(T0 + 1) == 1
    assert await store.record_inbound("msg-1", NODE_B, T0 + 10), "forgotten after pruning"


async def test_the_gossip_view_is_restored_after_a_restart(
    backend: Backend, make_peer: PeerFactory, make_agent: AgentFactory
) -> None:
    node, agent, other = Identity.generate(), Identity.generate(), Identity.generate()
    state = GossipState(node.did, rng=random.Random(1))
    result = state.merge(
        [
            make_peer(node, seq=1),
            make_peer(node, seq=2),
            make_agent(agent, node, version=1),
            make_agent(agent, node, version=2),
            make_agent(other, node),
        ],
        T0,
    )
    store = await backend.open()
    await store.save_records(result.accepted)
    await store.delete_agents([other.did])

    reopened = await backend.open()
    restored = GossipState(node.did, rng=random.Random(2))
    loaded = await reopened.load_records()
    assert len(restored.merge(loaded, T0).accepted) == 2
    assert restored.peers[node.did].seq == 2
    assert restored.agents[agent.did].version == 2 and other.did not in restored.agents


async def test_the_first_thread_owner_recorded_wins(backend: Backend) -> None:
    one, two = await backend.open(), await backend.open()  # two replicas racing
    assert await one.set_thread_owner("t-1", NODE_B) == NODE_B
    assert await two.set_thread_owner("t-1", NODE_C) == NODE_B
    assert await two.thread_owners() == {"t-1": NODE_B}


async def test_migrating_twice_is_harmless(store: Store) -> None:
    assert await store.migrate() == 1


@pytest.mark.postgres
async def test_replicas_hear_of_each_others_changes(
    postgres_server: ThrowawayPostgres, make_peer: PeerFactory
) -> None:
    dsn = await fresh_database(postgres_server, "federation_watch")  # NOTIFY is per database
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    mine, theirs = PostgresFederationStore(pool), PostgresFederationStore(pool)
    await mine.migrate()
    heard: list[str] = []
    reads = asyncio.Queue[list[Any]]()

    async def reload() -> None:
        await reads.put(["everything"])

    watch = PostgresFederationWatch(
        dsn,
        mine,
        on_outbox=lambda: heard.append("outbox"),
        on_owner=lambda thread, owner: heard.append(f"{thread}={owner}"),
        on_records=reads.put_nowait,
        on_reload=reload,
    )
    task = asyncio.ensure_future(watch.run())
    try:
        async with asyncio.timeout(30):
            assert await reads.get() == ["everything"], "a (re)connect re-reads everything"
            heard.clear()
            await mine.set_thread_owner("t-mine", NODE_B)  # our own change: no notice
            await theirs.enqueue("env-1", NODE_B, b"x", T0)
            await theirs.set_thread_owner("t-1", NODE_C)
            peer = make_peer(Identity.generate())
            await theirs.save_records([peer])
            assert await reads.get() == [peer], "the records a notice names, read back"
        assert heard == ["outbox", f"t-1={NODE_C}"]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await pool.close()
