"""Payments from an agent's side: balances, transfers, escrow, receipts.

```python
ledger = LedgerClient(client)
paid = await ledger.transfer(to=other_did, amount=250, memo="summary")
ledger.verify_receipt(paid.receipt, node_did)   # offline
hold = await ledger.reserve(to=other_did, amount=100, timeout_ms=60_000)
await ledger.post(hold.id)                   # or ledger.void(hold.id)
```

Every call is signed by the client's agent key; the node lets an agent move
money only out of its own account. Each write carries a transfer id (one is
generated when none is given): retrying a call with the same id is safe and
returns the original result, so keep the id when you retry.
"""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import quote

from coral.ledger.model import Account, Transfer
from coral.ledger.receipts import Receipt
from coral.ledger.receipts import verify_receipt as _verify_receipt
from coral_sdk.client import CoralApiError, CoralClient, NodeUnreachable
from coral_sdk.types import (
    LedgerHistoryPage,
    Payment,
    RemoteFulfilment,
    RemotePayment,
    parse_account,
    parse_receipt,
    parse_transfer,
)


def _segment(value: str) -> str:
    # The node checks the signature against the decoded path, so only characters
    # that cannot stand in a path segment are escaped (":" in dids and award ids stays).
    return quote(value, safe=":@")


def new_transfer_id() -> str:
    """A fresh random transfer id (128 bits), safe to reuse when retrying one call."""
    return "t" + os.urandom(16).hex()


class LedgerClient:
    """The ledger calls of one agent, over its ``CoralClient``."""

    def __init__(self, client: CoralClient) -> None:
        self.client = client

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        raw = json.dumps(body).encode() if body is not None else b""
        return await self.client._request(method, path, body=raw)

    @staticmethod
    def _account_path(account: str) -> str:
        return "/v1/ledger/accounts/" + _segment(account)

    async def balance(self, account: str | None = None) -> Account:
        """Balances of ``account`` (default: this agent's own, opened on first use)."""
        return parse_account(
            await self._call("GET", self._account_path(account or self.client.did))
        )

    async def history(
        self, account: str | None = None, *, after: int = 0, limit: int = 100
    ) -> LedgerHistoryPage:
        """A page of the account's transfers (oldest first) and the cursor for the next."""
        path = self._account_path(account or self.client.did) + "/history"
        data = await self.client._request("GET", path, query={"after": after, "limit": limit})
        return LedgerHistoryPage.model_validate(data)

    async def transfer(
        self, *, to: str, amount: int, memo: str = "", transfer_id: str | None = None
    ) -> Payment:
        """Pay ``amount`` from this agent's account to ``to`` at once."""
        body = {
            "transfer_id": transfer_id or new_transfer_id(),
            "to": to,
            "amount": amount,
            "memo": memo,
        }
        return Payment.from_json(await self._call("POST", "/v1/ledger/transfers", body))

    async def receipt(self, transfer_id: str) -> Receipt:
        """The node-signed receipt of a posted transfer this agent took part in."""
        data = await self._call("GET", f"/v1/ledger/transfers/{_segment(transfer_id)}/receipt")
        return parse_receipt(data)

    def verify_receipt(self, receipt: Receipt, node_did: str | None = None) -> None:
        """Check a receipt offline; raises SignatureError unless the node signed exactly it.

        ``node_did`` defaults to the did of the node this client talks to, as
        learned by ``client.node_info()``; nothing is sent over the network.
        """
        expected = node_did or self.client.node_id
        if expected is None:
            raise ValueError("pass node_did, or call client.node_info() first")
        _verify_receipt(receipt, expected)

    async def reserve(
        self,
        *,
        to: str,
        amount: int,
        timeout_ms: int = 0,
        condition: str = "",
        memo: str = "",
        transfer_id: str | None = None,
    ) -> Transfer:
        """Hold ``amount`` in escrow for ``to``; returns the pending transfer.

        With ``condition`` (hex SHA-256 of a 32-byte preimage) only ``fulfil``
        with the preimage can post it, and a ``timeout_ms`` is required.
        """
        body = {
            "transfer_id": transfer_id or new_transfer_id(),
            "to": to,
            "amount": amount,
            "timeout_ms": timeout_ms,
            "condition": condition,
            "memo": memo,
        }
        data = await self._call("POST", "/v1/ledger/reservations", body)
        return parse_transfer(data["transfer"])

    async def post(
        self, pending_id: str, *, amount: int = 0, transfer_id: str | None = None
    ) -> Payment:
        """Settle a reservation: pay ``amount`` (default all) and release the rest."""
        body = {"transfer_id": transfer_id or new_transfer_id(), "amount": amount}
        path = f"/v1/ledger/reservations/{_segment(pending_id)}/post"
        return Payment.from_json(await self._call("POST", path, body))

    async def void(self, pending_id: str, *, transfer_id: str | None = None) -> Transfer:
        """Cancel a reservation, returning all of it to this agent."""
        body = {"transfer_id": transfer_id or new_transfer_id()}
        path = f"/v1/ledger/reservations/{_segment(pending_id)}/void"
        data = await self._call("POST", path, body)
        return parse_transfer(data["transfer"])

    async def fulfil(
        self, pending_id: str, preimage: bytes, *, transfer_id: str | None = None
    ) -> Payment:
        """Post a hash-locked reservation by revealing its 32-byte preimage."""
        body = {"transfer_id": transfer_id or new_transfer_id(), "preimage": preimage.hex()}
        path = f"/v1/ledger/reservations/{_segment(pending_id)}/fulfil"
        return Payment.from_json(await self._call("POST", path, body))

    async def pay_remote(
        self, payment_id: str, to: str, amount: int, condition: str, *, timeout_ms: int = 60_000
    ) -> RemotePayment:
        """Pay an agent homed on another node, locked by ``condition`` (SHA-256 hex).

        The payer's funds are held until the payee reveals the preimage on its
        node, and roll back on every hop if it does not before the timeout.
        """
        body = {
            "payment_id": payment_id,
            "to": to,
            "amount": amount,
            "condition": condition,
            "timeout_ms": timeout_ms,
        }
        data = await self._call("POST", "/v1/ledger/remote-payments", body)
        return RemotePayment.model_validate(data)

    async def fulfil_remote(self, payment_id: str, preimage: bytes) -> RemoteFulfilment:
        """As the payee: reveal the preimage to collect a payment from another node."""
        path = f"/v1/ledger/remote-payments/{_segment(payment_id)}/fulfil"
        data = await self._call("POST", path, {"preimage": preimage.hex()})
        return RemoteFulfilment.model_validate(data)


__all__ = [
    "LedgerClient",
    "LedgerHistoryPage",
    "Payment",
    "RemoteFulfilment",
    "RemotePayment",
    "issue_dev_funds",
    "new_transfer_id",
]


async def issue_dev_funds(node_url: str, admin_token: str, account: str, amount: int) -> Payment:
    """Fund ``account`` from the operator account (node in dev mode; admin token needed).

    Raises:
        CoralApiError: the node refused (not in dev mode, wrong token).
        NodeUnreachable: no node answers at ``node_url``.
    """
    import aiohttp

    headers = {"Authorization": f"Bearer {admin_token}"}
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                node_url.rstrip("/") + "/v1/admin/ledger/issue",
                json={"account": account, "amount": amount},
                headers=headers,
            ) as resp,
        ):
            data: dict[str, Any] = await resp.json(content_type=None)
    except aiohttp.ClientConnectorError as exc:
        raise NodeUnreachable(node_url.rstrip("/"), exc) from exc
    if resp.status >= 400:
        raise CoralApiError(resp.status, data.get("reason", "error"), data.get("detail", ""))
    return Payment.from_json(data)
