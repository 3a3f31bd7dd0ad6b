"""Cross-node payments: hash-locked hops over node settlement accounts (Interledger style).

A payer on node A pays a payee homed on node B:

1. A reserves ``payer -> settlement:B`` locked by ``condition = SHA-256(preimage)``
   with the payer's timeout, and queues a ``payment_prepare`` envelope to B.
2. B reserves ``settlement:A -> payee`` under the same condition with a shorter
   timeout (a hop never outlives the one before it).
3. The payee reveals the preimage to B (``POST /v1/ledger/remote-payments/{id}/fulfil``);
   B posts its hop and queues ``payment_fulfil`` with the preimage to A, which
   posts the payer's hop.

A wrong preimage is refused by the ledger; a hop not fulfilled in time expires
on each node (the ledger's periodic expiry), so funds roll back on every hop.
The outbox delivers both envelopes exactly once, in order, across restarts.
``settlement:<peer>`` on each node records what that peer owes or is owed.
"""

from __future__ import annotations

from typing import Any

from coral.ledger.access import Caller, LedgerAccess, check_client_transfer_id
from coral.ledger.model import AccountKind
from coral.ledger.ports import FederationOutbox
from coral.ledger.service import LedgerService
from coral.protocol.errors import Forbidden, InvalidMessage, NotFound
from coral.protocol.message import now_ms

#: How much earlier the receiving hop expires than the sending hop.
HOP_MARGIN_MS = 2_000
MIN_TIMEOUT_MS = 5_000


def settlement_account_id(node_did: str) -> str:
    """The account that records what this node owes, or is owed by, its peers."""
    return f"settlement:{node_did}"


def _hop_ids(payment_id: str) -> tuple[str, str]:
    return f"xpay-{payment_id}-out", f"xpay-{payment_id}-in"


class PaymentRelay:
    """Sends, receives and completes cross-node conditional payments."""

    def __init__(
        self,
        node_did: str,
        ledger: LedgerService,
        access: LedgerAccess,
        federation: FederationOutbox,
    ) -> None:
        self.node_did = node_did
        self.ledger = ledger
        self.access = access
        self.federation = federation
        federation.on_envelope("payment_prepare", self.on_prepare)
        federation.on_envelope("payment_fulfil", self.on_fulfil)

    async def _settlement(self, peer: str) -> str:
        account = settlement_account_id(peer)
        await self.ledger.open_account(account, owner=peer, kind=AccountKind.NODE_SETTLEMENT)
        return account

    async def send(
        self,
        payer: str,
        *,
        payment_id: str,
        payee: str,
        amount: int,
        condition: str,
        timeout_ms: int,
    ) -> dict[str, Any]:
        """Reserve the payer's hop and ask the payee's node to reserve its own."""
        check_client_transfer_id(payment_id)
        if timeout_ms < MIN_TIMEOUT_MS:
            raise InvalidMessage(
                f"timeout_ms is at least {MIN_TIMEOUT_MS}", reason="invalid_request"
            )
        home = self.federation.home_of(payee)
        if home is None:
            raise NotFound(f"no node is known to host {payee}", reason="agent_not_registered")
        if home == self.node_did:
            raise InvalidMessage(
                "the payee is on this node: use a reservation", reason="not_remote"
            )
        out_id, _ = _hop_ids(payment_id)
        settlement = await self._settlement(home)
        pending = await self.access.reserve(
            Caller(did=payer),
            transfer_id=out_id,
            debit_account=payer,
            credit_account=settlement,
            amount=amount,
            timeout_ms=timeout_ms,
            condition=condition,
            memo=f"to {payee} via {home}",
        )
        expires_at = now_ms() + timeout_ms - HOP_MARGIN_MS
        await self.federation.send_envelope(
            "payment_prepare",
            payment_id,
            home,
            {
                "payment_id": payment_id,
                "payer": payer,
                "payee": payee,
                "amount": amount,
                "condition": condition,
                "expires_at": expires_at,
            },
        )
        return {
            "payment_id": payment_id,
            "pending_id": pending.id,
            "node": home,
            "expires_at": expires_at,
        }

    async def on_prepare(self, origin: str, envelope_id: str, payload: dict[str, Any]) -> bool:
        """Reserve this node's hop toward the local payee (idempotent by payment id)."""
        payment_id = str(payload["payment_id"])
        payee = str(payload["payee"])
        if self.federation.home_of(payee) != self.node_did:
            raise Forbidden(f"{payee} is not homed here", reason="not_home_node")
        if self.federation.home_of(str(payload["payer"])) != origin:
            raise Forbidden("the payer is not homed on the sending node", reason="not_home_node")
        _, in_id = _hop_ids(payment_id)
        remaining = int(payload["expires_at"]) - now_ms()
        if remaining <= 0:
            return False  # too late: the sending hop expires on its own
        await self.ledger.open_account(payee, owner=payee)
        settlement = await self._settlement(origin)
        await self.ledger.reserve(
            settlement,
            payee,
            int(payload["amount"]),
            timeout_ms=remaining,
            condition=str(payload["condition"]),
            transfer_id=in_id,
            memo=f"from {payload['payer']} via {origin}",
        )
        return False

    async def fulfil(self, payee: str, payment_id: str, preimage: bytes) -> dict[str, Any]:
        """The payee reveals the preimage: post this hop and tell the payer's node."""
        _, in_id = _hop_ids(payment_id)
        hop = await self.ledger.get_transfer(in_id)
        if hop is None or " via " not in hop.memo:
            raise NotFound(f"no incoming remote payment {payment_id}", reason="unknown_payment")
        outcome = await self.access.fulfil(
            Caller(did=payee),
            in_id,
            transfer_id=f"xpay-{payment_id}-fulfil-in",
            preimage=preimage,
        )
        origin = hop.memo.rsplit(" via ", 1)[-1]
        await self.federation.send_envelope(
            "payment_fulfil",
            payment_id,
            origin,
            {"payment_id": payment_id, "preimage": preimage.hex()},
        )
        return {"payment_id": payment_id, "posted": outcome.transfer.id}

    async def on_fulfil(self, origin: str, envelope_id: str, payload: dict[str, Any]) -> bool:
        """Post the sending hop with the preimage the payee's node relayed."""
        out_id, _ = _hop_ids(str(payload["payment_id"]))
        preimage = bytes.fromhex(str(payload["preimage"]))
        outcome = await self.ledger.fulfil_conditional(
            out_id, preimage, transfer_id=f"xpay-{payload['payment_id']}-fulfil-out"
        )
        return outcome.duplicate
