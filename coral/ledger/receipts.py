"""Node-signed receipts for posted transfers, verifiable offline.

A receipt is the canonical JSON of the posted transfer's facts, signed by the
node's Ed25519 key under its own domain prefix, so it cannot be replayed as a
message or any other Coral signature. Anyone holding the node's did:key can
check it without contacting the node.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from coral.ledger.errors import NotPosted
from coral.ledger.model import Transfer
from coral.protocol.errors import InvalidMessage, SignatureError
from coral.protocol.identity import Identity
from coral.protocol.signing import sign_object, verify_object

RECEIPT_DOMAIN = b"coral/v1/receipt\x00"
RECEIPT_TYPE = "coral.ledger.receipt/1"

_INT_FIELDS = ("amount", "posted_at")
_STR_FIELDS = (
    "transfer_id",
    "debit_account",
    "credit_account",
    "ledger",
    "pending_id",
    "memo",
    "node",
    "signature",
)


@dataclass(frozen=True, slots=True)
class Receipt:
    """Proof, signed by ``node``, that ``amount`` moved from debit to credit account."""

    transfer_id: str
    debit_account: str
    credit_account: str
    amount: int
    ledger: str
    pending_id: str
    posted_at: int
    memo: str
    node: str
    signature: str = ""

    def payload(self) -> dict[str, Any]:
        """The signed object: every field except the signature, plus a type tag."""
        body = asdict(self)
        del body["signature"]
        body["type"] = RECEIPT_TYPE
        return body

    def to_dict(self) -> dict[str, Any]:
        """The JSON form sent to agents (payload plus signature)."""
        return {**self.payload(), "signature": self.signature}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Receipt:
        """Parse the JSON form; InvalidMessage when a field is missing or mistyped."""
        if data.get("type") != RECEIPT_TYPE:
            raise InvalidMessage("not a Coral ledger receipt")
        values: dict[str, Any] = {}
        for name in _STR_FIELDS:
            if not isinstance(data.get(name), str):
                raise InvalidMessage(f"receipt field {name} must be a string")
            values[name] = data[name]
        for name in _INT_FIELDS:
            value = data.get(name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise InvalidMessage(f"receipt field {name} must be an integer")
            values[name] = value
        return cls(**values)


def issue_receipt(transfer: Transfer, node: Identity) -> Receipt:
    """Sign a receipt for a posted transfer; NotPosted for pending or void transfers."""
    if not transfer.is_posted:
        raise NotPosted(f"transfer {transfer.id} did not post funds")
    unsigned = Receipt(
        transfer_id=transfer.id,
        debit_account=transfer.debit_account,
        credit_account=transfer.credit_account,
        amount=transfer.amount,
        ledger=transfer.ledger,
        pending_id=transfer.pending_id,
        posted_at=transfer.created_at,
        memo=transfer.memo,
        node=node.did,
    )
    signature = sign_object(RECEIPT_DOMAIN, unsigned.payload(), node)
    return Receipt(**{**asdict(unsigned), "signature": signature})


def verify_receipt(receipt: Receipt, node_did: str) -> None:
    """Raise SignatureError unless ``node_did`` issued and signed exactly this receipt."""
    if receipt.node != node_did:
        raise SignatureError("receipt was issued by a different node")
    if not receipt.signature:
        raise SignatureError("receipt is not signed")
    verify_object(RECEIPT_DOMAIN, receipt.payload(), receipt.signature, node_did)
