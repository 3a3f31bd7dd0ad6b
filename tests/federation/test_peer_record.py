"""Peer records: only the named node can sign them, and they carry bounded timestamps."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from coral.federation.errors import RecordFromFuture, UnsignedRecord
from coral.federation.peer_record import (
    PEER_RECORD_DOMAIN,
    PeerAddresses,
    PeerRecord,
    parse_peer_record,
    sign_peer_record,
    verify_peer_record,
)
from coral.federation.wire import record_from_wire, record_to_wire
from coral.protocol.errors import InvalidMessage, SignatureError
from coral.protocol.identity import Identity
from coral.protocol.signing import sign_object

PeerFactory = Callable[..., PeerRecord]
NOW_MS = 1_700_000_000_000  # the builders' default clock (conftest.NOW_MS)


def test_a_signed_record_verifies(make_peer: PeerFactory) -> None:
    node = Identity.generate()
    record = make_peer(node)
    verify_peer_record(record, NOW_MS)
    assert record.node == node.did and record.seq == NOW_MS


def test_an_unsigned_record_is_refused(make_peer: PeerFactory) -> None:
    record = make_peer(Identity.generate()).model_copy(update={"signature": None})
    with pytest.raises(UnsignedRecord) as info:
        verify_peer_record(record, NOW_MS)
    assert info.value.reason == "unsigned_record"


def test_a_changed_address_breaks_the_signature(make_peer: PeerFactory) -> None:
    record = make_peer(Identity.generate())
    hijacked = record.model_copy(update={"addresses": PeerAddresses(grpc="evil.example:1")})
    with pytest.raises(SignatureError):
        verify_peer_record(hijacked, NOW_MS)


def test_a_node_cannot_publish_a_record_for_another_nodes_id() -> None:
    victim, attacker = Identity.generate(), Identity.generate()
    claim = PeerRecord(
        node=victim.did, addresses=PeerAddresses(grpc="evil:1"), seq=NOW_MS, issued_at=NOW_MS
    )
    with pytest.raises(SignatureError):
        sign_peer_record(claim, attacker)
    # Signing the bytes by hand does not help: verification uses the key in ``node``.
    forged = claim.model_copy(
        update={"signature": sign_object(PEER_RECORD_DOMAIN, claim.body(), attacker)}
    )
    with pytest.raises(SignatureError):
        verify_peer_record(forged, NOW_MS)


def test_a_signature_from_another_domain_does_not_verify(make_peer: PeerFactory) -> None:
    node = Identity.generate()
    record = make_peer(node)
    other_domain = sign_object(b"coral/v1/agent-record\x00", record.body(), node)
    with pytest.raises(SignatureError):
        verify_peer_record(record.model_copy(update={"signature": other_domain}), NOW_MS)


def test_records_from_too_far_in_the_future_are_refused(make_peer: PeerFactory) -> None:
    node = Identity.generate()
    ahead = make_peer(node, issued_at=NOW_MS + 10 * 60 * 1000)
    with pytest.raises(RecordFromFuture):
        verify_peer_record(ahead, NOW_MS)
    verify_peer_record(make_peer(node, issued_at=NOW_MS + 60_000), NOW_MS)


def test_malformed_records_raise_invalid_message() -> None:
    with pytest.raises(InvalidMessage) as info:
        parse_peer_record({"node": "not-a-did", "addresses": {}, "seq": 1, "issued_at": 0})
    assert info.value.reason == "invalid_peer_record"
    with pytest.raises(InvalidMessage):
        record_from_wire({"peer": {"node": "x"}, "agent": {}})


def test_wire_round_trip_keeps_the_signature_valid(make_peer: PeerFactory) -> None:
    record = make_peer(Identity.generate())
    decoded = record_from_wire(record_to_wire(record))
    assert decoded == record
    verify_peer_record(decoded, NOW_MS)


def test_replica_addresses_are_signed_and_absent_from_records_without_them() -> None:
    node = Identity.generate()
    plain = sign_peer_record(
        PeerRecord(
            node=node.did, addresses=PeerAddresses(grpc="a:1"), seq=NOW_MS, issued_at=NOW_MS
        ),
        node,
    )
    assert "grpc_replicas" not in record_to_wire(plain)["peer"]["addresses"]
    assert "grpc_replicas" not in plain.body()["addresses"]  # signatures read as before

    replicas = PeerAddresses(grpc="a:1", grpc_replicas=("b:1", "a:1"))
    record = sign_peer_record(plain.model_copy(update={"addresses": replicas}), node)
    restored = record_from_wire(record_to_wire(record))
    assert isinstance(restored, PeerRecord)
    verify_peer_record(restored, NOW_MS)
    assert restored.addresses.grpc_all() == ["a:1", "b:1"]
    moved = record.model_copy(
        update={"addresses": PeerAddresses(grpc="a:1", grpc_replicas=("evil:1",))}
    )
    with pytest.raises(SignatureError):
        verify_peer_record(moved, NOW_MS)
