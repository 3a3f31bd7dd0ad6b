"""Contract-net awards paid through ledger escrow.

When a contract-net auction awards a task, the coordination engine calls
``AwardEscrow.on_award`` before the award event is written. It reserves the
winning price from the initiator's account to the winner's as a pending
transfer with id ``award:<cfp_message_id>`` (the award's idempotency key,
so a retried award reserves once) that expires after ``hold_ms``. The award
event then carries ``payment: {status, transfer_id, amount, expires_at}``.
An initiator who cannot pay still gets the award, marked ``unfunded`` with
the ledger's reason, so an auction never wedges on a payment.

The initiator settles by posting an ordinary message in the thread:
``{"accept_award": <cfp_message_id>}`` posts the reservation (the winner is
paid) and ``{"reject_award": <cfp_message_id>}`` voids it; doing neither lets
it expire, which also returns the funds. This is a gateway admission check
rather than a strategy event because it must run for any thread a message
names, needs the message's verified sender, and must refuse the message (with
the ledger's typed reason: already resolved, expired, not yours) when the
payment cannot be settled. The ledger is authoritative: should the thread
refuse the message after the check settled the payment, the payment stands.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from coral.coordination.model import Thread
from coral.coordination.strategies.contract_net import Award
from coral.coordination.strategy import data_with_key
from coral.ledger import errors
from coral.ledger.access import LedgerAccess, NotAccountOwner
from coral.ledger.ports import LedgerStore
from coral.protocol.errors import InvalidMessage
from coral.protocol.message import Message

#: How long an award's payment stays reserved before it expires back to the initiator.
AWARD_HOLD_MS = 60 * 60 * 1000
ACCEPT_KEY = "accept_award"
REJECT_KEY = "reject_award"


def award_transfer_id(cfp_message_id: str) -> str:
    """The id of the reservation paying for the auction opened by ``cfp_message_id``."""
    return f"award:{cfp_message_id}"


class AwardEscrow:
    """Reserves award prices and settles them on the initiator's accept or reject."""

    def __init__(self, access: LedgerAccess, store: LedgerStore, *, hold_ms: int = AWARD_HOLD_MS):
        self._access = access
        self._store = store
        self._hold_ms = hold_ms

    async def on_award(self, thread: Thread, award: Award) -> Mapping[str, Any] | None:
        """Reserve the price; returns the ``payment`` data merged into the award event.

        A ledger refusal does not raise: the payment is reported ``unfunded``
        with the refusal's reason.

        Raises:
            StorageUnavailable: the ledger store is closed or its commit failed.

        Cancellation: the reservation may still commit (see
        ``LedgerService``); it is made under the award's id
        (``award_transfer_id``), so the retried award reserves once.
        """
        transfer_id = award_transfer_id(award.cfp_message_id)
        if award.price <= 0:
            return {"payment": {"status": "free", "transfer_id": "", "amount": 0}}
        try:
            await self._access.agent_account(award.initiator)
            await self._access.agent_account(award.winner)
            pending = await self._access.ledger.reserve(
                award.initiator,
                award.winner,
                award.price,
                timeout_ms=self._hold_ms,
                transfer_id=transfer_id,
                memo=f"award in thread {thread.id}",
            )
        except errors.LedgerError as exc:
            return {
                "payment": {
                    "status": "unfunded",
                    "transfer_id": transfer_id,
                    "amount": award.price,
                    "reason": exc.reason,
                }
            }
        return {
            "payment": {
                "status": "reserved",
                "transfer_id": pending.id,
                "amount": pending.amount,
                "expires_at": pending.expires_at,
            }
        }

    async def admit(self, message: Message) -> None:
        """Gateway check: settle the award payment a message accepts or rejects.

        Messages that neither accept nor reject an award pass unchanged.

        Raises:
            InvalidMessage: both keys, or a value that is not a cfp message id,
                or no thread (``invalid_award_reply``).
            PendingNotFound: no award payment for that cfp in this thread.
            NotAccountOwner: the sender is not the auction's initiator.
            LedgerError: the ledger's refusal of the post or void
                (``PendingAlreadyResolved``, ``PendingExpired``, ...).

        Cancellation: the post or void may still commit; it uses a fixed id
        (``award:<cfp>.post`` / ``.void``), so a new reply for the same
        award settles once.
        """
        accept = data_with_key(message, ACCEPT_KEY)
        reject = data_with_key(message, REJECT_KEY)
        if accept is None and reject is None:
            return
        if accept is not None and reject is not None:
            raise InvalidMessage(
                "accept or reject an award, not both", reason="invalid_award_reply"
            )
        cfp_id = accept if accept is not None else reject
        if not isinstance(cfp_id, str) or not cfp_id or message.thread is None:
            raise InvalidMessage(
                "accept_award/reject_award name a cfp message id in its thread",
                reason="invalid_award_reply",
            )
        transfer_id = award_transfer_id(cfp_id)
        pending = await self._store.get_transfer(transfer_id)
        if pending is None or pending.memo != f"award in thread {message.thread}":
            raise errors.PendingNotFound(f"no award payment for {cfp_id} in this thread")
        if pending.debit_account != message.sender:
            raise NotAccountOwner("only the auction's initiator settles its award payment")
        ledger = self._access.ledger
        if accept is not None:
            await ledger.post(transfer_id, transfer_id=f"{transfer_id}.post")
        else:
            await ledger.void(transfer_id, transfer_id=f"{transfer_id}.void")
