"""Key hand-over records and agent rotation checks (coral/agents/keyrotation.py)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coral.agents.keyrotation import (
    RotationRefused,
    build_agent_rotation,
    check_agent_rotation,
    issue_handover,
    parse_handover,
    successor_of,
    verify_handover,
)
from coral.protocol.agent import (
    AgentManifest,
    AgentRecord,
    countersign_record,
    sign_record_as_agent,
)
from coral.protocol.errors import FromFuture, InvalidMessage, SignatureError
from coral.protocol.identity import Identity

NOW = 1_800_000_000_000
SKEW = 300_000


def listed_record(agent: Identity, node: Identity, *, version: int = 3) -> AgentRecord:
    record = AgentRecord(
        agent=agent.did,
        home_node=node.did,
        manifest=AgentManifest(name="summarizer", capabilities=("text.summarize",)),
        version=version,
        updated_at=NOW - 60_000,
    )
    return countersign_record(sign_record_as_agent(record, agent), node)


def test_handover_signed_by_both_keys_verifies_and_survives_json() -> None:
    old, new = Identity.generate(), Identity.generate()
    handover = issue_handover(old, new, NOW, kind="node", note="yearly rotation")
    verify_handover(handover, NOW, SKEW)
    again = parse_handover(handover.model_dump(mode="json"))
    verify_handover(again, NOW, SKEW)
    assert again == handover


def test_handover_missing_either_signature_is_refused() -> None:
    handover = issue_handover(Identity.generate(), Identity.generate(), NOW)
    for field in ("old_signature", "new_signature"):
        with pytest.raises(SignatureError):
            verify_handover(handover.model_copy(update={field: None}), NOW, SKEW)


def test_old_and_new_signatures_are_not_interchangeable() -> None:
    handover = issue_handover(Identity.generate(), Identity.generate(), NOW)
    swapped = handover.model_copy(
        update={"old_signature": handover.new_signature, "new_signature": handover.old_signature}
    )
    with pytest.raises(SignatureError):
        verify_handover(swapped, NOW, SKEW)


def test_handover_to_a_key_the_signer_does_not_hold_is_refused() -> None:
    old, new, stranger = Identity.generate(), Identity.generate(), Identity.generate()
    handover = issue_handover(old, new, NOW)
    # Point the hand-over at someone else's did: the new signature no longer matches.
    hijack = handover.model_copy(update={"new_did": stranger.did})
    with pytest.raises(SignatureError):
        verify_handover(hijack, NOW, SKEW)


def test_handover_from_the_future_and_self_handover_are_refused() -> None:
    old, new = Identity.generate(), Identity.generate()
    with pytest.raises(FromFuture):
        verify_handover(issue_handover(old, new, NOW + SKEW + 1), NOW, SKEW)
    with pytest.raises(InvalidMessage):
        issue_handover(old, old, NOW)


def test_parse_handover_rejects_unknown_fields_with_a_typed_error() -> None:
    handover = issue_handover(Identity.generate(), Identity.generate(), NOW)
    with pytest.raises(InvalidMessage) as info:
        parse_handover({**handover.model_dump(mode="json"), "extra": 1})
    assert info.value.reason == "invalid_handover"


@settings(max_examples=25, deadline=None)
@given(field=st.sampled_from(["old_did", "new_did", "issued_at", "note", "kind"]))
def test_any_change_to_the_signed_body_breaks_the_handover(field: str) -> None:
    old, new = Identity.generate(), Identity.generate()
    handover = issue_handover(old, new, NOW, kind="agent")
    changed = {
        "old_did": Identity.generate().did,
        "new_did": Identity.generate().did,
        "issued_at": NOW - 1,
        "note": "x",
        "kind": "node",
    }[field]
    with pytest.raises(SignatureError):
        verify_handover(handover.model_copy(update={field: changed}), NOW, SKEW)


def test_agent_rotation_tombstones_old_and_lists_new_with_same_manifest() -> None:
    node, old, new = Identity.generate(), Identity.generate(), Identity.generate()
    current = listed_record(old, node)
    request = build_agent_rotation(current, old, new, NOW)
    check_agent_rotation(current, request, NOW, SKEW)
    assert request.tombstone.deleted and request.tombstone.version == current.version + 1
    assert request.replacement.agent == new.did
    assert request.replacement.manifest == current.manifest
    # The node can countersign both records: they carry valid agent signatures.
    countersign_record(request.tombstone, node)
    countersign_record(request.replacement, node)


def test_rotation_refuses_a_changed_manifest() -> None:
    node, old, new = Identity.generate(), Identity.generate(), Identity.generate()
    current = listed_record(old, node)
    request = build_agent_rotation(current, old, new, NOW)
    other = request.replacement.model_copy(
        update={"manifest": AgentManifest(name="impostor"), "agent_signature": None}
    )
    tampered = type(request)(request.handover, request.tombstone, sign_record_as_agent(other, new))
    with pytest.raises(RotationRefused):
        check_agent_rotation(current, tampered, NOW, SKEW)


def test_rotation_refuses_someone_elses_record_and_deleted_records() -> None:
    node, old, new, other = (Identity.generate() for _ in range(4))
    mine = listed_record(old, node)
    theirs = listed_record(other, node)
    request = build_agent_rotation(mine, old, new, NOW)
    with pytest.raises(RotationRefused):
        check_agent_rotation(theirs, request, NOW, SKEW)
    gone = mine.model_copy(update={"deleted": True})
    with pytest.raises(RotationRefused):
        check_agent_rotation(gone, request, NOW, SKEW)


def test_rotation_refuses_a_stale_tombstone_and_a_node_handover() -> None:
    node, old, new = Identity.generate(), Identity.generate(), Identity.generate()
    current = listed_record(old, node, version=5)
    stale = build_agent_rotation(current.model_copy(update={"version": 2}), old, new, NOW)
    with pytest.raises(RotationRefused):
        check_agent_rotation(current, stale, NOW, SKEW)
    request = build_agent_rotation(current, old, new, NOW)
    node_kind = type(request)(
        issue_handover(old, new, NOW, kind="node"), request.tombstone, request.replacement
    )
    with pytest.raises(RotationRefused):
        check_agent_rotation(current, node_kind, NOW, SKEW)


def test_rotation_tombstone_forged_without_the_old_key_is_refused() -> None:
    node, old, new = Identity.generate(), Identity.generate(), Identity.generate()
    current = listed_record(old, node)
    request = build_agent_rotation(current, old, new, NOW)
    forged = request.tombstone.model_copy(
        update={"agent_signature": request.replacement.agent_signature}
    )
    with pytest.raises(SignatureError):
        check_agent_rotation(
            current, type(request)(request.handover, forged, request.replacement), NOW, SKEW
        )


def test_successor_follows_chains_and_stops_on_cycles() -> None:
    a, b, c = Identity.generate(), Identity.generate(), Identity.generate()
    chain = [issue_handover(b, c, NOW + 1), issue_handover(a, b, NOW)]
    assert successor_of(a.did, chain) == c.did
    assert successor_of(c.did, chain) == c.did
    cycle = [*chain, issue_handover(c, a, NOW + 2)]
    assert successor_of(a.did, cycle) == c.did
    # Two hand-overs from one key: the later one wins.
    d = Identity.generate()
    assert successor_of(a.did, [issue_handover(a, b, NOW), issue_handover(a, d, NOW + 5)]) == d.did
