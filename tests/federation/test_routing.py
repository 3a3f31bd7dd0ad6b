"""Routing decisions, thread fan-out, and duplicate suppression by message id."""

from __future__ import annotations

from collections.abc import Callable

from coral.federation.peer_record import PeerRecord
from coral.federation.routing import (
    Route,
    RouteKind,
    SeenMessages,
    fanout_targets,
    route,
    thread_owner,
)
from coral.protocol.agent import AgentRecord
from coral.protocol.identity import Identity

AgentFactory = Callable[..., AgentRecord]
PeerFactory = Callable[..., PeerRecord]


def test_route_says_local_remote_or_unknown(
    make_agent: AgentFactory, make_peer: PeerFactory
) -> None:
    me, other, silent = Identity.generate(), Identity.generate(), Identity.generate()
    mine, theirs, orphan, gone = (Identity.generate() for _ in range(4))
    directory = {
        mine.did: make_agent(mine, me),
        theirs.did: make_agent(theirs, other),
        orphan.did: make_agent(orphan, silent),
        gone.did: make_agent(gone, other, version=2, deleted=True),
    }
    peers = {other.did: make_peer(other, grpc="10.1.1.1:7443")}
    assert route(mine.did, directory, peers, me.did) == Route(RouteKind.LOCAL, node=me.did)
    assert route(theirs.did, directory, peers, me.did) == Route(
        RouteKind.REMOTE, node=other.did, address="10.1.1.1:7443"
    )
    unreachable = route(orphan.did, directory, peers, me.did)
    assert unreachable.kind is RouteKind.UNKNOWN and unreachable.reason == "home_node_unreachable"
    assert route(gone.did, directory, peers, me.did).reason == "agent_deleted"
    assert route("did:key:zNobody", directory, peers, me.did).reason == "agent_not_in_directory"


def test_fanout_groups_remote_participants_by_home_node(make_agent: AgentFactory) -> None:
    me, n1, n2 = Identity.generate(), Identity.generate(), Identity.generate()
    local, a1, b1, a2 = (Identity.generate() for _ in range(4))
    directory = {
        local.did: make_agent(local, me),
        a1.did: make_agent(a1, n1),
        b1.did: make_agent(b1, n1),
        a2.did: make_agent(a2, n2),
    }
    participants = [local.did, a1.did, b1.did, a2.did, a1.did, "did:key:zUnknown"]
    targets = fanout_targets(participants, directory, me.did)
    assert targets == {n1.did: sorted([a1.did, b1.did]), n2.did: [a2.did]}
    assert fanout_targets([local.did], directory, me.did) == {}


def test_a_thread_is_owned_by_its_creators_home_node(make_agent: AgentFactory) -> None:
    node, creator = Identity.generate(), Identity.generate()
    directory = {creator.did: make_agent(creator, node)}
    assert thread_owner(creator.did, directory) == node.did
    assert thread_owner("did:key:zNobody", directory) is None


def test_seen_messages_admit_each_id_once_within_the_window() -> None:
    seen = SeenMessages(window_ms=1000)
    assert seen.first_sighting("m1", 0)
    assert not seen.first_sighting("m1", 999)
    assert seen.first_sighting("m1", 1000), "forgotten once the window passes"
    assert len(seen) == 1


def test_seen_messages_stay_within_their_cap() -> None:
    seen = SeenMessages(window_ms=10**9, max_ids=100)
    for n in range(1000):
        assert seen.first_sighting(f"m{n}", n)
    assert len(seen) == 100
    assert "m999" in seen and "m0" not in seen
