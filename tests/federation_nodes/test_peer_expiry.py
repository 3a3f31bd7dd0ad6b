"""Peer records expire: live nodes refresh theirs through gossip, silent ones are forgotten.

Two real nodes with a 3 s peer-record TTL: node b's record, as node a sees
it, is re-issued (higher seq) while b runs, and a forgets b once b is killed.
"""

from __future__ import annotations

import time
from typing import Any

from tests.support.nodeproc import NodeProcess

FAST = {"CORAL_GOSSIP_INTERVAL_S": "0.3", "CORAL_PEER_RECORD_TTL_S": "3"}


def _seq_of(viewer: NodeProcess, node_id: str) -> int | None:
    for peer in viewer.get_json("/v1/peers")["peers"]:
        if peer["node_id"] == node_id:
            return int(peer["record"]["seq"])
    return None


def _until(predicate: Any, seconds: float = 60.0) -> bool:
    deadline = time.monotonic() + seconds
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.1)
    return bool(predicate())


def test_a_live_peer_is_refreshed_and_a_dead_one_expires(node_factory: Any) -> None:
    a = node_factory("a", ["--log-level", "warning"], **FAST)
    b = node_factory("b", ["--log-level", "warning", "--bootstrap", a.grpc], **FAST)
    assert _until(lambda: _seq_of(a, b.node_id) is not None)
    first = _seq_of(a, b.node_id)
    assert first is not None
    # b re-issues its record every third of the TTL; gossip brings it to a.
    assert _until(lambda: (_seq_of(a, b.node_id) or 0) > first)
    b.kill()
    assert _until(lambda: _seq_of(a, b.node_id) is None)
    assert a.get_json("/healthz") == {"status": "ok"}
