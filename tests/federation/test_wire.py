"""JSON wire forms of digests, requests and records round-trip and refuse bad input."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest

from coral.federation.digest import GossipRequest
from coral.federation.gossip import GossipState
from coral.federation.peer_record import PeerRecord
from coral.federation.wire import (
    digest_from_wire,
    digest_to_wire,
    record_from_wire,
    record_to_wire,
    request_from_wire,
    request_to_wire,
)
from coral.protocol.agent import AgentRecord
from coral.protocol.errors import InvalidMessage
from coral.protocol.identity import Identity

AgentFactory = Callable[..., AgentRecord]
PeerFactory = Callable[..., PeerRecord]
NOW_MS = 1_700_000_000_000


def test_a_digest_survives_the_wire(make_peer: PeerFactory, make_agent: AgentFactory) -> None:
    node = Identity.generate()
    state = GossipState(node.did, rng=random.Random(1))
    state.merge([make_peer(node), make_agent(Identity.generate(), node)], NOW_MS)
    digest = state.make_digest()
    assert digest_from_wire(digest_to_wire(digest)) == digest


@pytest.mark.parametrize(
    "wire",
    [
        {},
        {"buckets": ["00"] * 3},
        {"buckets": ["zz"] * 64},
        {"buckets": ["00"] * 64, "origins": {"99": {}}},
        {"buckets": ["00"] * 64, "origins": {"1": {"did:key:z1": [1, 2]}}},
        {"buckets": ["00"] * 64, "origins": []},
    ],
)
def test_malformed_digests_are_refused(wire: Any) -> None:
    with pytest.raises(InvalidMessage) as info:
        digest_from_wire(wire)
    assert info.value.reason == "invalid_digest"


def test_requests_round_trip_and_refuse_non_strings() -> None:
    request = GossipRequest(frozenset({"did:key:zB", "did:key:zA"}), frozenset({"did:key:zC"}))
    assert request_to_wire(request)["peers"] == ["did:key:zA", "did:key:zB"]
    assert request_from_wire(request_to_wire(request)) == request
    with pytest.raises(InvalidMessage):
        request_from_wire({"peers": [1], "origins": []})
    with pytest.raises(InvalidMessage):
        request_from_wire({"peers": []})


def test_agent_records_round_trip(make_agent: AgentFactory) -> None:
    record = make_agent(Identity.generate(), Identity.generate())
    assert record_from_wire(record_to_wire(record)) == record
    with pytest.raises(InvalidMessage):
        record_from_wire({"agent": {"agent": "nope"}})
