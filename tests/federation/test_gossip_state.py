"""GossipState: acceptance rules for peer and agent records, tombstones, digests."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coral.federation.digest import NUM_BUCKETS
from coral.federation.exchange import run_exchange
from coral.federation.gossip import GossipConfig, GossipState
from coral.federation.peer_record import PEER_RECORD_DOMAIN, PeerAddresses, PeerRecord
from coral.federation.records import GossipRecord, RecordVerifier
from coral.protocol.agent import AgentRecord
from coral.protocol.identity import Identity
from coral.protocol.signing import sign_object

AgentFactory = Callable[..., AgentRecord]
PeerFactory = Callable[..., PeerRecord]
NOW_MS = 1_700_000_000_000  # the builders' default clock (conftest.NOW_MS)
DAY_MS = 24 * 3600 * 1000


def new_state(config: GossipConfig | None = None) -> GossipState:
    return GossipState(Identity.generate().did, rng=random.Random(7), config=config)


def test_a_newer_peer_record_replaces_the_older(make_peer: PeerFactory) -> None:
    node = Identity.generate()
    state = new_state()
    assert state.merge([make_peer(node, seq=1)], NOW_MS).accepted
    newer = make_peer(node, seq=2, grpc="10.9.9.9:7443")
    assert state.merge([newer], NOW_MS).accepted == [newer]
    assert state.peers[node.did].addresses.grpc == "10.9.9.9:7443"


def test_a_replayed_older_peer_record_is_stale(make_peer: PeerFactory) -> None:
    node = Identity.generate()
    old, new = make_peer(node, seq=1), make_peer(node, seq=5)
    state = new_state()
    state.merge([new], NOW_MS)
    result = state.merge([old, new], NOW_MS)
    assert result.stale == [old, new] and not result.accepted
    assert state.peers[node.did] == new


def test_forged_and_unsigned_peer_records_are_rejected_with_reasons(
    make_peer: PeerFactory,
) -> None:
    victim, attacker = Identity.generate(), Identity.generate()
    claim = PeerRecord(
        node=victim.did, addresses=PeerAddresses(grpc="evil:1"), seq=9, issued_at=NOW_MS
    )
    claimed_id = claim.model_copy(
        update={"signature": sign_object(PEER_RECORD_DOMAIN, claim.body(), attacker)}
    )
    tampered = make_peer(victim).model_copy(update={"addresses": PeerAddresses(grpc="evil:2")})
    unsigned = make_peer(victim).model_copy(update={"signature": None})
    future = make_peer(victim, issued_at=NOW_MS + DAY_MS, seq=NOW_MS + DAY_MS)
    state = new_state()
    result = state.merge([claimed_id, tampered, unsigned, future], NOW_MS)
    reasons = [reason for _, reason in result.rejected]
    assert reasons == ["bad_signature", "bad_signature", "unsigned_record", "record_from_future"]
    assert victim.did not in state.peers


def test_a_tampered_copy_of_a_verified_record_is_not_served_from_the_cache(
    make_agent: AgentFactory,
) -> None:
    node, agent = Identity.generate(), Identity.generate()
    genuine = make_agent(agent, node)
    verifier = RecordVerifier()
    state = GossipState(node.did, rng=random.Random(1), verifier=verifier)
    state.merge([genuine], NOW_MS)
    assert verifier.signature_checks == 1
    forged = genuine.model_copy(update={"version": 2})  # same signatures, different body
    assert state.merge([forged], NOW_MS).rejected == [(forged, "bad_signature")]
    other = GossipState(Identity.generate().did, rng=random.Random(2), verifier=verifier)
    other.merge([genuine], NOW_MS)
    assert verifier.signature_checks == 1, "an identical record is verified once"


def test_a_higher_agent_version_wins_and_a_lower_one_is_stale(make_agent: AgentFactory) -> None:
    node, agent = Identity.generate(), Identity.generate()
    v1, v2 = make_agent(agent, node, version=1), make_agent(agent, node, version=2)
    state = new_state()
    assert state.merge([v2], NOW_MS).accepted == [v2]
    assert state.merge([v1], NOW_MS).stale == [v1]
    assert state.agents[agent.did].version == 2


def test_an_agent_record_without_countersignature_is_rejected(make_agent: AgentFactory) -> None:
    record = make_agent(Identity.generate(), Identity.generate())
    bare = record.model_copy(update={"node_signature": None})
    result = new_state().merge([bare], NOW_MS)
    assert result.rejected == [(bare, "missing_signature")]


def test_a_tombstone_wins_over_the_older_record_and_is_purged_after_its_ttl(
    make_agent: AgentFactory,
) -> None:
    node, agent = Identity.generate(), Identity.generate()
    live = make_agent(agent, node, version=3)
    tombstone = make_agent(agent, node, version=4, deleted=True, updated_at=NOW_MS + 1)
    state = new_state(GossipConfig(tombstone_ttl_ms=DAY_MS))
    state.merge([live], NOW_MS)
    assert state.merge([tombstone], NOW_MS + 1).accepted == [tombstone]
    assert state.agents[agent.did].deleted
    assert state.merge([live], NOW_MS + 2).stale == [live], "the old record cannot resurrect"
    assert state.purge_expired_tombstones(NOW_MS + DAY_MS) == []
    assert state.purge_expired_tombstones(NOW_MS + DAY_MS + 1) == [agent.did]
    assert agent.did not in state.agents


def test_an_expired_tombstone_still_removes_the_entry_it_outranks(
    make_agent: AgentFactory,
) -> None:
    node, agent = Identity.generate(), Identity.generate()
    live = make_agent(agent, node, version=1)
    old_tombstone = make_agent(agent, node, version=2, deleted=True)
    state = new_state(GossipConfig(tombstone_ttl_ms=DAY_MS))
    state.merge([live], NOW_MS)
    result = state.merge([old_tombstone], NOW_MS + 2 * DAY_MS)
    assert result.rejected == [(old_tombstone, "expired_tombstone")]
    assert result.purged == [agent.did] and agent.did not in state.agents


def test_the_peer_table_is_bounded(make_peer: PeerFactory) -> None:
    state = new_state(GossipConfig(max_known_peers=2))
    records = [make_peer(Identity.generate()) for _ in range(3)]
    result = state.merge(records, NOW_MS)
    assert len(result.accepted) == 2 and result.rejected[0][1] == "peer_table_full"


def test_equal_views_have_equal_bucket_hashes_and_diff_to_nothing(
    make_peer: PeerFactory, make_agent: AgentFactory
) -> None:
    node = Identity.generate()
    records: list[GossipRecord] = [make_peer(node), make_agent(Identity.generate(), node)]
    a, b = new_state(), new_state()
    a.merge(records, NOW_MS)
    b.merge(list(reversed(records)), NOW_MS)
    assert a.bucket_hashes() == b.bucket_hashes()
    assert a.differing_buckets(b.bucket_hashes()) == []
    diff = a.diff(b.make_digest())
    assert diff.to_send == [] and diff.request.is_empty()
    stats = run_exchange(a, b, NOW_MS)
    assert stats.completed and stats.messages == 1 and stats.records == 0


def test_a_digest_covers_only_the_buckets_asked_for(make_peer: PeerFactory) -> None:
    state = new_state()
    state.merge([make_peer(Identity.generate()) for _ in range(8)], NOW_MS)
    full = state.make_digest()
    assert len(full.bucket_hashes) == NUM_BUCKETS
    assert sum(len(entries) for entries in full.origins.values()) == 8
    some = sorted(b for b, entries in full.origins.items() if entries)[:2]
    assert set(state.make_digest(some).origins) == set(some)


# A fixed pool of real signed records: three nodes, each with agents at two versions.
_POOL_NODES = [Identity.from_seed(bytes([n]) * 32) for n in range(1, 4)]
_POOL_AGENTS = [Identity.from_seed(bytes([n]) * 32) for n in range(10, 16)]


POOL_SIZE = 3 * 2 + 6 * 3
SHARED_VERIFIER = RecordVerifier()


@pytest.fixture(scope="module")
def pool(make_peer: PeerFactory, make_agent: AgentFactory) -> list[GossipRecord]:
    records: list[GossipRecord] = []
    for n, node in enumerate(_POOL_NODES):
        records += [make_peer(node, seq=1), make_peer(node, seq=2)]
        for agent in _POOL_AGENTS[2 * n : 2 * n + 2]:
            records += [make_agent(agent, node, version=v) for v in (1, 2)]
            records.append(make_agent(agent, node, version=3, deleted=True))
    assert len(records) == POOL_SIZE
    return records


@settings(max_examples=60, deadline=None)
@given(picks=st.lists(st.booleans(), min_size=POOL_SIZE, max_size=POOL_SIZE), rng=st.randoms())
def test_one_exchange_gives_both_sides_the_newest_of_everything(
    pool: list[GossipRecord], picks: list[bool], rng: random.Random
) -> None:
    chosen_a = [r for r, pick in zip(pool, picks, strict=True) if pick]
    chosen_b = [r for r, pick in zip(pool, picks, strict=True) if not pick or rng.random() < 0.3]
    a = GossipState("did:key:zA", rng=random.Random(1), verifier=SHARED_VERIFIER)
    b = GossipState("did:key:zB", rng=random.Random(2), verifier=SHARED_VERIFIER)
    a.merge(rng.sample(chosen_a, len(chosen_a)), NOW_MS)
    b.merge(rng.sample(chosen_b, len(chosen_b)), NOW_MS)
    union = GossipState("did:key:zU", rng=random.Random(3), verifier=SHARED_VERIFIER)
    union.merge(chosen_a + chosen_b, NOW_MS)

    assert run_exchange(a, b, NOW_MS).completed
    assert dict(a.peers) == dict(b.peers) == dict(union.peers)
    assert dict(a.agents) == dict(b.agents) == dict(union.agents)
    assert a.bucket_hashes() == b.bucket_hashes() == union.bucket_hashes()
