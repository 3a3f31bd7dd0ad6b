"""A node rotates its key: peers verify the hand-over it gossips and retire the old id.

Two real nodes: node b stops, rotates its key offline (``rotate_node_key``),
and starts again under the new did; node a, told only by gossip, lists b's
new id and forgets the old one. The pure rules (forged or mismatched
hand-overs refused, a retired key cannot come back) are checked on a
GossipState directly.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from typing import Any

import pytest

from coral.agents.keyrotation import issue_handover
from coral.federation import GossipState, PeerAddresses, issue_peer_record
from coral.protocol.identity import Identity
from coral.protocol.message import now_ms
from tests.support.nodeproc import NodeProcess

FAST = {"CORAL_GOSSIP_INTERVAL_S": "0.3"}


def _peers(viewer: NodeProcess) -> set[str]:
    return {peer["node_id"] for peer in viewer.get_json("/v1/peers")["peers"]}


def _until(predicate: Any, seconds: float = 60.0) -> bool:
    deadline = time.monotonic() + seconds
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.1)
    return bool(predicate())


def test_peers_follow_a_node_key_rotation_through_gossip(node_factory: Any) -> None:
    a = node_factory("a", ["--log-level", "warning"], **FAST)
    b = node_factory("b", ["--log-level", "warning", "--bootstrap", a.grpc], **FAST)
    old_id = b.node_id
    assert _until(lambda: old_id in _peers(a))
    running = _rotate_cli(b)
    assert running.returncode == 1 and "node is running" in running.stderr
    assert b.terminate() == 0
    rotated = _rotate_cli(b)
    assert rotated.returncode == 0, rotated.stderr
    handover = json.loads(rotated.stdout)
    assert handover["old_node_id"] == old_id
    b.start()
    assert b.node_id == handover["new_node_id"] != old_id
    assert _until(lambda: _peers(a) == {b.node_id})


def _rotate_cli(node: NodeProcess) -> subprocess.CompletedProcess[str]:
    """``coral-node keys rotate`` as an operator runs it."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "coral",
            "keys",
            "rotate",
            "--data-dir",
            str(node.data_dir),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _state_knowing(old: Identity) -> GossipState:
    state = GossipState(
        "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK", rng=random.Random(1)
    )
    record = issue_peer_record(old, PeerAddresses(grpc="127.0.0.1:1"), now_ms())
    assert state.merge([record], now_ms()).accepted
    return state


def test_a_verified_hand_over_retires_the_old_id_for_good() -> None:
    old, new = Identity.generate(), Identity.generate()
    state = _state_knowing(old)
    now = now_ms()
    handover = issue_handover(old, new, now, kind="node")
    record = issue_peer_record(new, PeerAddresses(grpc="127.0.0.1:2"), now, previous=handover)
    result = state.merge([record], now)
    assert result.accepted == [record] and result.retired == [old.did]
    assert set(state.peers) == {new.did} and state.successor_of(old.did) == new.did
    # The old key cannot bring its id back, even with a newer record.
    comeback = issue_peer_record(old, PeerAddresses(grpc="127.0.0.1:1"), now + 1)
    assert state.merge([comeback], now + 1).rejected == [(comeback, "retired_node_key")]


@pytest.mark.parametrize("flaw", ["agent_kind", "other_new_key", "forged_old_signature"])
def test_a_bad_hand_over_is_refused_and_retires_nothing(flaw: str) -> None:
    old, new, other = Identity.generate(), Identity.generate(), Identity.generate()
    state = _state_knowing(old)
    now = now_ms()
    handover = {
        "agent_kind": issue_handover(old, new, now, kind="agent"),
        "other_new_key": issue_handover(old, other, now, kind="node"),
        "forged_old_signature": issue_handover(other, new, now, kind="node").model_copy(
            update={"old_did": old.did}
        ),
    }[flaw]
    record = issue_peer_record(new, PeerAddresses(grpc="127.0.0.1:2"), now, previous=handover)
    result = state.merge([record], now)
    assert not result.accepted and not result.retired
    assert old.did in state.peers and new.did not in state.peers
