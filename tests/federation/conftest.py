"""Builders for signed peer and agent records, shared by the federation tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from coral.federation.peer_record import PeerAddresses, PeerRecord, issue_peer_record
from coral.protocol.agent import (
    AgentManifest,
    AgentRecord,
    countersign_record,
    sign_record_as_agent,
)
from coral.protocol.identity import Identity

NOW_MS = 1_700_000_000_000

AgentFactory = Callable[..., AgentRecord]
PeerFactory = Callable[..., PeerRecord]


def build_agent_record(
    agent: Identity,
    node: Identity,
    *,
    version: int = 1,
    updated_at: int = NOW_MS,
    deleted: bool = False,
    name: str = "helper",
) -> AgentRecord:
    """An agent record signed by the agent and countersigned by its home node."""
    record = AgentRecord(
        agent=agent.did,
        home_node=node.did,
        manifest=AgentManifest(name=name, capabilities=("chat",)),
        version=version,
        updated_at=updated_at,
        deleted=deleted,
    )
    return countersign_record(sign_record_as_agent(record, agent), node)


def build_peer_record(
    node: Identity, *, seq: int = NOW_MS, issued_at: int = NOW_MS, grpc: str = "10.0.0.1:7443"
) -> PeerRecord:
    """A peer record signed by its own node."""
    return issue_peer_record(
        node, PeerAddresses(grpc=grpc, http="http://10.0.0.1:8080"), issued_at, seq=seq
    )


@pytest.fixture
def now_ms() -> int:
    return NOW_MS


@pytest.fixture(scope="session")
def make_agent() -> AgentFactory:
    return build_agent_record


@pytest.fixture(scope="session")
def make_peer() -> PeerFactory:
    return build_peer_record
