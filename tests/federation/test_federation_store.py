"""The durable outbox, inbox dedupe and persisted gossip view on a real SQLite file."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from coral.federation.gossip import GossipState
from coral.federation.peer_record import PeerRecord
from coral.protocol.agent import AgentRecord
from coral.protocol.identity import Identity
from coral.store.federation_sqlite import FederationStore, RetryPolicy
from coral.store.sqlite import SqliteDatabase

AgentFactory = Callable[..., AgentRecord]
PeerFactory = Callable[..., PeerRecord]
NODE_B = "did:key:zNodeB"
NODE_C = "did:key:zNodeC"
T0 = 1_700_000_000_000


async def open_store(path: Path, retry: RetryPolicy | None = None) -> FederationStore:
    db = SqliteDatabase(path)
    await db.open()
    store = FederationStore(db, rng=random.Random(4), retry=retry)
    await store.migrate()
    return store


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[FederationStore]:
    opened = await open_store(tmp_path / "node.db")
    yield opened
    await opened.db.close()


async def test_an_enqueued_envelope_is_claimed_once_and_acked_away(store: FederationStore) -> None:
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


async def test_a_crash_after_claim_redelivers_once_the_lease_ends(tmp_path: Path) -> None:
    retry = RetryPolicy(claim_lease_ms=5_000)
    first = await open_store(tmp_path / "n.db", retry)
    await first.enqueue("env-9", NODE_B, b"x", T0)
    assert len(await first.claim_due(T0)) == 1
    await first.db.close()  # the process dies before ack

    second = await open_store(tmp_path / "n.db", retry)
    assert await second.claim_due(T0 + 4_999) == []
    again = await second.claim_due(T0 + 5_000)
    assert [(i.envelope_id, i.payload) for i in again] == [("env-9", b"x")]
    await second.db.close()


async def test_items_survive_a_restart(tmp_path: Path) -> None:
    first = await open_store(tmp_path / "n.db")
    for n in range(3):
        await first.enqueue(f"env-{n}", NODE_B, bytes([n]), T0 + n)
    await first.db.close()
    second = await open_store(tmp_path / "n.db")
    claimed = await second.claim_due(T0 + 10)
    assert [i.envelope_id for i in claimed] == ["env-0", "env-1", "env-2"]
    await second.db.close()


async def test_failures_back_off_with_jitter_then_dead_letter(tmp_path: Path) -> None:
    retry = RetryPolicy(base_ms=100, cap_ms=1_000, max_attempts=4)
    store = await open_store(tmp_path / "n.db", retry)
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
    assert [i.attempts for i in await store.dead_letters()] == [4]
    assert await store.fail("missing", NODE_B, now) is None
    await store.db.close()


async def test_enqueue_joins_the_callers_transaction(store: FederationStore) -> None:
    with pytest.raises(RuntimeError):
        async with store.db.transaction() as conn:
            await store.enqueue("env-1", NODE_B, b"x", T0, conn=conn)
            raise RuntimeError("the caller's own write failed")
    assert await store.pending() == [], "rolled back with the caller"
    async with store.db.transaction() as conn:
        assert await store.enqueue("env-2", NODE_B, b"y", T0, conn=conn)
    assert [i.envelope_id for i in await store.pending()] == ["env-2"]


async def test_a_redelivered_message_is_recorded_once(store: FederationStore) -> None:
    assert await store.record_inbound("msg-1", NODE_B, T0)
    assert not await store.record_inbound("msg-1", NODE_B, T0 + 5)
    async with store.db.transaction() as conn:
        assert not await store.record_inbound("msg-1", NODE_C, T0 + 6, conn=conn)
        assert await store.record_inbound("msg-2", NODE_C, T0 + 6, conn=conn)
    assert await store.prune_inbox(T0 + 1) == 1
    assert await store.record_inbound("msg-1", NODE_B, T0 + 10), "forgotten after pruning"


async def test_the_gossip_view_is_restored_after_a_restart(
    tmp_path: Path, make_peer: PeerFactory, make_agent: AgentFactory
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
    store = await open_store(tmp_path / "n.db")
    await store.save_records(result.accepted)
    await store.delete_agents([other.did])
    await store.db.close()

    reopened = await open_store(tmp_path / "n.db")
    restored = GossipState(node.did, rng=random.Random(2))
    loaded = await reopened.load_records()
    assert len(restored.merge(loaded, T0).accepted) == 2
    assert restored.peers[node.did].seq == 2
    assert restored.agents[agent.did].version == 2 and other.did not in restored.agents
    await reopened.db.close()


async def test_migrating_twice_is_harmless(store: FederationStore) -> None:
    assert await store.migrate() == 1
