"""Key rotation through a running node: POST /v1/agents/rotate (coral/agents/keyrotation.py)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from coral.agents.keyrotation import build_agent_rotation, issue_handover
from coral.protocol.agent import AgentRecord
from coral.protocol.identity import Identity
from coral.protocol.message import now_ms
from tests.hardening.support import agent_record, record_body, settled_fingerprint


def _post(url: str, body: bytes) -> tuple[int, Any]:
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=20) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _rotation_body(request: Any) -> bytes:
    return json.dumps(
        {
            "handover": request.handover.model_dump(mode="json"),
            "tombstone": request.tombstone.model_dump(mode="json"),
            "replacement": request.replacement.model_dump(mode="json"),
        }
    ).encode()


def test_rotation_tombstones_the_old_did_and_lists_the_new_one(node) -> None:
    old, new = Identity.generate(), Identity.generate()
    status, body = _post(
        node.http + "/v1/agents", record_body(agent_record(old, node.node_id, "alice"))
    )
    assert status == 201
    current = AgentRecord.model_validate(body)
    request = build_agent_rotation(current, old, new, now_ms())
    status, body = _post(node.http + "/v1/agents/rotate", _rotation_body(request))
    assert status == 201, body
    assert body["tombstone"]["deleted"] and body["record"]["agent"] == new.did
    listed = {r["agent"] for r in node.get_json("/v1/agents")["agents"]}
    assert new.did in listed and old.did not in listed
    assert node.get_json(f"/v1/agents/{new.did}")["manifest"] == current.manifest.model_dump(
        mode="json"
    )
    # A retry is idempotent; the old key cannot rotate again.
    again, _ = _post(node.http + "/v1/agents/rotate", _rotation_body(request))
    assert again >= 400


def test_rotation_without_the_old_key_is_refused_and_changes_nothing(node) -> None:
    victim, thief, thief_new = Identity.generate(), Identity.generate(), Identity.generate()
    status, body = _post(
        node.http + "/v1/agents", record_body(agent_record(victim, node.node_id, "victim"))
    )
    assert status == 201
    current = AgentRecord.model_validate(body)
    honest = build_agent_rotation(current, victim, thief_new, now_ms())
    forged = type(honest)(
        issue_handover(thief, thief_new, now_ms()).model_copy(update={"old_did": victim.did}),
        honest.tombstone,
        honest.replacement,
    )
    before = settled_fingerprint(node.data_dir / "coral.db")
    status, body = _post(node.http + "/v1/agents/rotate", _rotation_body(forged))
    assert status == 401, body
    assert settled_fingerprint(node.data_dir / "coral.db") == before
    assert node.get_json(f"/v1/agents/{victim.did}")["agent"] == victim.did
