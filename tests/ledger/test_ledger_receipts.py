"""Receipts: signed by the node, verifiable offline, and forgery is detected."""

from __future__ import annotations

from dataclasses import replace

import pytest

from coral.ledger import Receipt, Transfer, TransferFlags, issue_receipt, verify_receipt
from coral.ledger.errors import NotPosted
from coral.protocol.errors import InvalidMessage, SignatureError
from coral.protocol.identity import Identity, b64u_decode, b64u_encode
from coral.protocol.signing import sign_object

NODE = Identity.from_seed(bytes(range(32)))
POSTED = Transfer("t1", "alice", "bob", 25, ledger="usd", memo="lunch", created_at=1700)


def test_receipt_verifies_offline_with_only_the_node_did() -> None:
    receipt = issue_receipt(POSTED, NODE)
    verify_receipt(receipt, NODE.did)
    assert (receipt.amount, receipt.posted_at, receipt.node) == (25, 1700, NODE.did)


def test_receipt_round_trips_through_json_form() -> None:
    receipt = issue_receipt(POSTED, NODE)
    again = Receipt.from_dict(receipt.to_dict())
    assert again == receipt
    verify_receipt(again, NODE.did)


def test_receipts_are_deterministic_so_reissuing_gives_the_same_bytes() -> None:
    assert issue_receipt(POSTED, NODE) == issue_receipt(POSTED, NODE)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda r: replace(r, amount=r.amount + 1),
        lambda r: replace(r, credit_account="mallory"),
        lambda r: replace(r, posted_at=0),
        lambda r: replace(r, signature=b64u_encode(bytes(64))),
        lambda r: replace(r, signature=b64u_encode(b64u_decode(r.signature)[:-1] + b"\x00")),
        lambda r: replace(r, signature="not base64!"),
        lambda r: replace(r, signature=""),
    ],
)
def test_tampered_or_forged_receipt_is_rejected(tamper: object) -> None:
    receipt = issue_receipt(POSTED, NODE)
    with pytest.raises(SignatureError):
        verify_receipt(tamper(receipt), NODE.did)  # type: ignore[operator]


def test_receipt_signed_by_another_node_is_rejected() -> None:
    impostor = Identity.generate()
    forged = issue_receipt(POSTED, impostor)
    with pytest.raises(SignatureError):
        verify_receipt(forged, NODE.did)
    # Claiming to be NODE while signing with another key fails too.
    relabelled = replace(forged, node=NODE.did)
    with pytest.raises(SignatureError):
        verify_receipt(relabelled, NODE.did)


def test_signature_from_another_domain_does_not_pass_as_a_receipt() -> None:
    receipt = issue_receipt(POSTED, NODE)
    other_domain = sign_object(b"coral/v1/message\x00", receipt.payload(), NODE)
    with pytest.raises(SignatureError):
        verify_receipt(replace(receipt, signature=other_domain), NODE.did)


def test_no_receipt_for_unposted_transfers() -> None:
    for flags in (TransferFlags.PENDING, TransferFlags.VOID_PENDING):
        with pytest.raises(NotPosted):
            issue_receipt(replace(POSTED, flags=flags), NODE)


def test_malformed_receipt_json_is_rejected() -> None:
    data = issue_receipt(POSTED, NODE).to_dict()
    with pytest.raises(InvalidMessage):
        Receipt.from_dict({**data, "amount": "25"})
    with pytest.raises(InvalidMessage):
        Receipt.from_dict({**data, "type": "something else"})
    with pytest.raises(InvalidMessage):
        Receipt.from_dict({k: v for k, v in data.items() if k != "node"})
