"""Peer scoring, bans, flood limits, and the bounded active peer set."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from coral.federation.errors import PeerBanned
from coral.federation.exchange import run_exchange
from coral.federation.gossip import GossipConfig, GossipState
from coral.federation.peer_record import PeerAddresses, PeerRecord
from coral.federation.peers import PeerScores, PeerSet, ScoringPolicy
from coral.protocol.identity import Identity

PeerFactory = Callable[..., PeerRecord]
NOW_MS = 1_700_000_000_000


def test_penalties_ban_a_peer_until_the_ban_lapses() -> None:
    scores = PeerScores(ScoringPolicy(ban_threshold=-30, ban_ms=1000))
    assert not scores.penalize("p", 20, NOW_MS)
    assert scores.penalize("p", 20, NOW_MS), "crossing the threshold bans"
    assert scores.is_banned("p", NOW_MS + 999)
    with pytest.raises(PeerBanned):
        scores.check("p", NOW_MS + 500)
    assert not scores.is_banned("p", NOW_MS + 1000)
    assert scores.score("p") == 0.0, "a lapsed ban starts the peer afresh"


def test_rewards_are_capped_so_credit_cannot_be_banked_forever() -> None:
    scores = PeerScores(ScoringPolicy(max_score=5))
    for _ in range(100):
        scores.reward("p", 1)
    assert scores.score("p") == 5


def test_a_flood_is_cut_at_the_allowance_and_penalized_once_per_batch() -> None:
    scores = PeerScores(ScoringPolicy(max_records_per_window=10, window_ms=1000, flood_penalty=7))
    assert scores.admit("p", 6, NOW_MS) == 6
    assert scores.admit("p", 6, NOW_MS + 10) == 4
    assert scores.score("p") == -7
    assert scores.admit("p", 6, NOW_MS + 1000) == 6, "a new window resets the allowance"


def _forged(node: Identity, make_peer: PeerFactory) -> PeerRecord:
    return make_peer(node).model_copy(update={"addresses": PeerAddresses(grpc="evil:1")})


def test_a_peer_sending_bad_signatures_is_banned_and_then_refused(
    make_peer: PeerFactory,
) -> None:
    policy = ScoringPolicy(bad_record_penalty=10, ban_threshold=-30)
    state = GossipState("did:key:zSelf", rng=random.Random(1), config=GossipConfig(scoring=policy))
    liar = "did:key:zLiar"
    state.peer_set.add(liar)
    batch = [_forged(Identity.generate(), make_peer) for _ in range(5)]
    result = state.merge(batch, NOW_MS, source=liar)
    assert [r for _, r in result.rejected] == ["bad_signature"] * 3 + ["peer_banned"] * 2
    assert liar not in state.peer_set.active
    with pytest.raises(PeerBanned):
        state.merge([make_peer(Identity.generate())], NOW_MS + 1, source=liar)


def test_a_flooding_peer_gets_its_excess_rejected(make_peer: PeerFactory) -> None:
    policy = ScoringPolicy(max_records_per_window=2)
    state = GossipState("did:key:zSelf", rng=random.Random(1), config=GossipConfig(scoring=policy))
    batch = [make_peer(Identity.generate()) for _ in range(3)]
    result = state.merge(batch, NOW_MS, source="did:key:zFlood")
    assert len(result.accepted) == 2 and result.rejected == [(batch[2], "peer_flood")]
    assert state.scores.score("did:key:zFlood") < 0


def test_a_banned_initiator_gets_nothing_from_an_exchange(make_peer: PeerFactory) -> None:
    a = GossipState(Identity.generate().did, rng=random.Random(1))
    b = GossipState(Identity.generate().did, rng=random.Random(2))
    b.merge([make_peer(Identity.generate())], NOW_MS)
    b.scores.penalize(a.self_did, 1000, NOW_MS)
    stats = run_exchange(a, b, NOW_MS)
    assert not stats.completed and stats.messages == 1 and len(a.peers) == 0


def test_the_active_set_is_bounded_and_excludes_self_and_banned() -> None:
    rng = random.Random(3)
    peers = PeerSet("self", max_active=4)
    known = ["self"] + [f"p{i}" for i in range(20)]
    banned = {"p0", "p1", "p2"}
    for _ in range(50):
        peers.refresh(known, rng, lambda did: did in banned)
        assert len(peers.active) == 4
        assert not set(peers.active) & (banned | {"self"})
    chosen = peers.choose(rng, 3)
    assert len(set(chosen)) == 3 and set(chosen) <= set(peers.active)


def test_rotation_moves_the_active_set_through_the_known_set() -> None:
    rng = random.Random(5)
    peers = PeerSet("self", max_active=3)
    known = [f"p{i}" for i in range(12)]
    seen: set[str] = set()
    for _ in range(200):
        peers.refresh(known, rng, lambda did: False)
        seen.update(peers.active)
    assert seen == set(known)


def test_choose_returns_everyone_when_fewer_than_fanout() -> None:
    peers = PeerSet("self")
    peers.add("a")
    assert peers.choose(random.Random(0), 3) == ["a"]
    assert not peers.add("self")


def test_an_initiator_banned_by_what_it_pushes_gets_no_answer(make_peer: PeerFactory) -> None:
    policy = ScoringPolicy(bad_record_penalty=60, ban_threshold=-100)
    liar = GossipState(Identity.generate().did, rng=random.Random(1))
    honest = GossipState(
        Identity.generate().did, rng=random.Random(2), config=GossipConfig(scoring=policy)
    )
    honest.merge([make_peer(Identity.generate())], NOW_MS)
    # The liar's store holds forged records (it skipped verification); it pushes them in step 3.
    for _ in range(2):
        liar._index.put_peer(_forged(Identity.generate(), make_peer))
    stats = run_exchange(liar, honest, NOW_MS)
    assert not stats.completed and stats.messages == 3
    assert honest.scores.is_banned(liar.self_did, NOW_MS)
    assert len(liar.peers) == 2, "nothing came back"
