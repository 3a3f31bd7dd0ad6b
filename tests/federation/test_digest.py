"""Incrementally maintained origin and bucket hashes always match a fresh rebuild."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coral.federation.digest import NUM_BUCKETS, OriginIndex, bucket_of
from coral.federation.peer_record import PeerRecord
from coral.protocol.agent import AgentRecord
from coral.protocol.identity import Identity

AgentFactory = Callable[..., AgentRecord]
PeerFactory = Callable[..., PeerRecord]

_NODES = [Identity.from_seed(bytes([40 + n]) * 32) for n in range(3)]
_AGENTS = [Identity.from_seed(bytes([60 + n]) * 32) for n in range(4)]


@pytest.fixture(scope="module")
def variants(make_agent: AgentFactory) -> list[AgentRecord]:
    """Each agent at two versions and under two home nodes (so agents can move)."""
    return [
        make_agent(agent, node, version=version)
        for agent in _AGENTS
        for node in _NODES[:2]
        for version in (1, 2)
    ]


@settings(max_examples=80, deadline=None)
@given(ops=st.lists(st.tuples(st.booleans(), st.integers(0, 15)), max_size=40))
def test_hashes_after_any_put_and_remove_sequence_equal_a_rebuild(
    variants: list[AgentRecord], ops: list[tuple[bool, int]]
) -> None:
    live = OriginIndex()
    for is_put, n in ops:
        record = variants[n]
        if is_put:
            live.put_agent(record)
        else:
            live.remove_agent(record.agent)
        live.bucket_hashes()  # flush part-way, as rounds do
    rebuilt = OriginIndex()
    for record in live.agents.values():
        rebuilt.put_agent(record)
    assert live.bucket_hashes() == rebuilt.bucket_hashes()
    assert live.digest() == rebuilt.digest()
    if not live.agents:
        assert live.bucket_hashes() == (0,) * NUM_BUCKETS


def test_summaries_track_peer_seq_and_agent_count(
    make_peer: PeerFactory, make_agent: AgentFactory
) -> None:
    node = _NODES[2]
    index = OriginIndex()
    index.put_peer(make_peer(node, seq=7))
    index.put_agent(make_agent(_AGENTS[0], node))
    summary = index.summaries(bucket_of(node.did))[node.did]
    assert (summary.peer_seq, summary.agent_count) == (7, 1)
    index.remove_agent(_AGENTS[0].did)
    assert index.summaries(bucket_of(node.did))[node.did].agent_count == 0
    assert index.agents_of(node.did) == []
