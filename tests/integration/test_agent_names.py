"""Agent names cannot be hijacked: a name belongs to the first did that registers it here.

Against a real node process: a second key registering a taken name gets 409
``name_taken``; lookups by name (the directory route, thread participants,
the A2A card URL) reach the holder whatever the other did sorts as; the
binding survives a restart and moves with a key rotation.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from coral.agents.keyrotation import build_agent_rotation
from coral.protocol.agent import AgentRecord
from coral.protocol.codec import message_to_json
from coral.protocol.identity import Identity
from coral.protocol.message import now_ms
from tests.hardening.support import agent_record, record_body, signed_message
from tests.support.nodeproc import NodeProcess


def _call(node: NodeProcess, method: str, path: str, body: bytes | None = None) -> Any:
    request = urllib.request.Request(
        node.http + path, data=body, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _register(node: NodeProcess, who: Identity, name: str) -> tuple[int, Any]:
    record = agent_record(who, node.node_id, name, description=f"held by {who.did}")
    return _call(node, "POST", "/v1/agents", record_body(record))


def _identities_sorting(first: bool) -> tuple[Identity, Identity]:
    """(holder, intruder) where the intruder's did sorts before (or after) the holder's."""
    while True:
        holder, intruder = Identity.generate(), Identity.generate()
        if (intruder.did < holder.did) == first:
            return holder, intruder


def _thread_with(node: NodeProcess, creator: Identity, participant: str) -> list[str]:
    create = signed_message(
        creator, kind="thread.create", data={"name": "t", "participants": [participant]}
    )
    status, body = _call(node, "POST", "/v1/messages", message_to_json(create))
    assert status == 201, body
    return list(body["thread"]["participants"])


def test_a_taken_name_is_refused_and_lookups_reach_its_holder(node_factory: Any) -> None:
    node = node_factory("names")
    alice, mallory = _identities_sorting(first=True)  # mallory's did sorts first
    assert _register(node, alice, "alice")[0] == 201
    status, problem = _register(node, mallory, "alice")
    assert (status, problem["reason"]) == (409, "name_taken"), problem
    assert alice.did in problem["detail"]

    assert _call(node, "GET", "/v1/agents/alice")[1]["agent"] == alice.did
    assert _register(node, mallory, "mallory")[0] == 201
    assert _thread_with(node, mallory, "alice") == [mallory.did, alice.did]
    status, card = _call(node, "GET", "/a2a/alice/.well-known/agent-card.json")
    assert status == 200, card
    assert card["description"] == f"held by {alice.did}"
    # The holder may re-register (a newer version of its own record) freely.
    assert _register(node, alice, "alice")[0] == 201

    # The binding is durable: after a restart the intruder is still refused.
    assert node.terminate() == 0
    node.start()
    status, problem = _register(node, mallory, "alice")
    assert (status, problem["reason"]) == (409, "name_taken")
    assert _call(node, "GET", "/v1/agents/alice")[1]["agent"] == alice.did


def test_key_rotation_carries_the_name_to_the_new_key(node_factory: Any) -> None:
    node = node_factory("rotation")
    alice, mallory = Identity.generate(), Identity.generate()
    successor = Identity.generate()
    status, signed = _register(node, alice, "alice")
    assert status == 201
    rotation = build_agent_rotation(
        AgentRecord.model_validate(signed), alice, successor, now_ms() + 1
    )
    body = json.dumps(
        {
            "handover": rotation.handover.model_dump(mode="json"),
            "tombstone": rotation.tombstone.model_dump(mode="json"),
            "replacement": rotation.replacement.model_dump(mode="json"),
        }
    ).encode()
    status, rotated = _call(node, "POST", "/v1/agents/rotate", body)
    assert status == 201, rotated

    assert _call(node, "GET", "/v1/agents/alice")[1]["agent"] == successor.did
    for intruder in (mallory, alice):  # a stranger, and the retired key itself
        status, problem = _register(node, intruder, "alice")
        assert (status, problem["reason"]) == (409, "name_taken"), problem
    assert node.terminate() == 0
    node.start()
    assert _call(node, "GET", "/v1/agents/alice")[1]["agent"] == successor.did
