"""The ledger service the node calls: accounts, payments, escrow, receipts.

It depends only on the ``LedgerStore`` port, the node's identity (to sign
receipts) and an injected clock, so the node wires it in a few lines and
tests drive time explicitly. Transfer ids are the caller's idempotency keys:
retrying with the same id and fields returns the original transfer.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from coral.ledger import errors
from coral.ledger.conditional import fulfil_transfer
from coral.ledger.model import (
    Account,
    AccountFlags,
    AccountKind,
    HistoryEntry,
    Resolution,
    Transfer,
    TransferFlags,
    TransferResult,
)
from coral.ledger.ports import LedgerStore
from coral.ledger.receipts import Receipt, issue_receipt
from coral.protocol.errors import TooLarge
from coral.protocol.identity import Identity

DEFAULT_LEDGER = "coral"
MAX_HISTORY_PAGE = 1000
#: Most events in one batch call (TigerBeetle's request holds about 8k transfers).
MAX_BATCH_EVENTS = 8190

_DEFAULT_FLAGS = {
    AccountKind.AGENT: AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS,
    AccountKind.TEAM_ESCROW: AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS,
    # Settlement accounts track what a peer node owes or is owed: either sign is real.
    AccountKind.NODE_SETTLEMENT: AccountFlags.NONE,
    # The operator account is where dev-mode money comes from; it may go negative.
    AccountKind.OPERATOR: AccountFlags.NONE,
}


@dataclass(frozen=True, slots=True)
class TransferOutcome:
    """A stored transfer, its receipt when it posted funds, and whether it was a retry."""

    transfer: Transfer
    receipt: Receipt | None
    duplicate: bool = False


def operator_account_id(ledger: str) -> str:
    """The id of a ledger's operator (issuance) account."""
    return f"operator:{ledger}"


class LedgerService:
    """Async facade over a LedgerStore; every method commits durably before returning.

    Refusals are ``LedgerError`` subclasses (``coral.ledger.errors``), each also
    an invalid / not-found / conflict / forbidden ``CoralError``. Every method
    that touches the store may also raise ``StorageUnavailable``: the store is
    closed, or the commit failed and nothing of it was stored.

    Cancellation: cancelling a caller does not withdraw its write; the store
    may still commit it (the group-commit writer keeps every queued
    submission). Retry with the same ``transfer_id`` to learn the outcome:
    the original transfer comes back, marked ``duplicate`` where the result
    carries that flag. Calls without a ``transfer_id`` get a fresh id each
    time, so their retry can apply twice.
    """

    def __init__(
        self,
        store: LedgerStore,
        node: Identity,
        clock: Callable[[], int],
        *,
        default_ledger: str = DEFAULT_LEDGER,
    ) -> None:
        self._store = store
        self._node = node
        self._clock = clock
        self.default_ledger = default_ledger

    # --- accounts -------------------------------------------------------------------

    async def open_account(
        self,
        account_id: str,
        *,
        owner: str = "",
        kind: AccountKind = AccountKind.AGENT,
        ledger: str | None = None,
        flags: AccountFlags | None = None,
    ) -> Account:
        """Create an account (or return it unchanged if it exists with the same definition).

        Raises:
            IdMustNotBeEmpty: ``account_id`` is empty.
            IdTooLong: ``account_id`` is longer than 128 characters.
            InvalidAccount: the definition is malformed (e.g. an empty ledger).
            FlagsAreMutuallyExclusive: both balance-limit flags are set.
            ExistsWithDifferentFields: the id is taken by another definition.
        """
        request = Account(
            id=account_id,
            ledger=ledger or self.default_ledger,
            owner=owner,
            kind=kind,
            flags=_DEFAULT_FLAGS[kind] if flags is None else flags,
        )
        [result] = await self._store.create_accounts([request], self._clock())
        return result.unwrap()

    async def balance(self, account_id: str) -> Account:
        """The account with its four balances.

        Raises:
            UnknownAccount: no account ``account_id``.
        """
        account = await self._store.get_account(account_id)
        if account is None:
            raise errors.UnknownAccount(f"no account {account_id}")
        return account

    async def history(
        self, account_id: str, *, after: int = 0, limit: int = 100
    ) -> list[HistoryEntry]:
        """Transfers touching the account after sequence ``after``, oldest first.

        Raises:
            UnknownAccount: no account ``account_id``.
        """
        await self.balance(account_id)
        return await self._store.history(account_id, after, max(1, min(limit, MAX_HISTORY_PAGE)))

    # --- moving money ---------------------------------------------------------------

    async def issue(
        self, account_id: str, amount: int, *, transfer_id: str | None = None, memo: str = ""
    ) -> TransferOutcome:
        """Dev-mode funding: move ``amount`` from the ledger's operator account.

        Opens the operator account on first use (a separate commit).

        Raises:
            UnknownAccount: no account ``account_id``.
            LedgerError: the transfer's refusal, as for ``transfer``.
        """
        target = await self.balance(account_id)
        operator = await self.open_account(
            operator_account_id(target.ledger), kind=AccountKind.OPERATOR, ledger=target.ledger
        )
        return await self.transfer(
            operator.id, account_id, amount, transfer_id=transfer_id, memo=memo or "issue"
        )

    async def transfer(
        self,
        debit_account: str,
        credit_account: str,
        amount: int,
        *,
        transfer_id: str | None = None,
        memo: str = "",
    ) -> TransferOutcome:
        """Post a payment at once; returns the transfer and its signed receipt.

        Raises:
            UnknownAccount: either account does not exist.
            AccountsMustDiffer: debit and credit are the same account.
            LedgerMismatch: the accounts keep different ledgers (currencies).
            AmountMustBePositive: ``amount`` is not above zero.
            ExceedsCredits: the debit account would be overdrawn.
            ExceedsDebits: the credit account's credit limit would be passed.
            AmountOverflow: a balance would pass 2**63 - 1.
            MemoTooLong: the memo is longer than 512 characters.
            ExistsWithDifferentFields: ``transfer_id`` names another transfer.
        """
        request = Transfer(
            id=transfer_id or self._new_id(),
            debit_account=debit_account,
            credit_account=credit_account,
            amount=amount,
            memo=memo,
        )
        return self._outcome(await self._submit_one(request))

    async def batch(self, transfers: Sequence[Transfer]) -> list[TransferResult]:
        """Apply a batch (linked chains all-or-nothing); per-event results.

        A bad event is reported in its result, never raised.

        Raises:
            TooLarge: more than MAX_BATCH_EVENTS events.
        """
        if len(transfers) > MAX_BATCH_EVENTS:
            raise TooLarge(f"a batch holds at most {MAX_BATCH_EVENTS} transfers")
        return await self._store.create_transfers(transfers, self._clock())

    async def reserve(
        self,
        debit_account: str,
        credit_account: str,
        amount: int,
        *,
        timeout_ms: int = 0,
        condition: str = "",
        transfer_id: str | None = None,
        memo: str = "",
    ) -> Transfer:
        """Hold ``amount`` in escrow (a pending transfer), optionally hash-locked.

        Raises:
            LedgerError: the refusals of ``transfer``, and for the escrow terms
                ``InvalidTimeout``, ``InvalidCondition`` or
                ``ConditionRequiresTimeout`` (a hash lock needs a timeout).
        """
        request = Transfer(
            id=transfer_id or self._new_id(),
            debit_account=debit_account,
            credit_account=credit_account,
            amount=amount,
            flags=TransferFlags.PENDING,
            timeout_ms=timeout_ms,
            condition=condition,
            memo=memo,
        )
        return (await self._submit_one(request)).unwrap()

    async def post(
        self, pending_id: str, *, amount: int = 0, transfer_id: str | None = None
    ) -> TransferOutcome:
        """Settle a reservation: post ``amount`` (default all), releasing the rest.

        Raises:
            PendingNotFound: no transfer ``pending_id``.
            NotPending: ``pending_id`` is not a pending transfer.
            PendingAlreadyResolved: it was already posted, voided or expired.
            PendingExpired: its deadline passed.
            ExceedsPendingAmount: ``amount`` is more than was reserved.
            FulfillmentRequired: it is hash-locked; use ``fulfil_conditional``.
            ExistsWithDifferentFields: ``transfer_id`` names another transfer.
        """
        request = Transfer(
            id=transfer_id or self._new_id(),
            pending_id=pending_id,
            amount=amount,
            flags=TransferFlags.POST_PENDING,
        )
        return self._outcome(await self._submit_one(request))

    async def void(self, pending_id: str, *, transfer_id: str | None = None) -> Transfer:
        """Cancel a reservation, releasing all of it.

        Raises:
            PendingNotFound: no transfer ``pending_id``.
            NotPending: ``pending_id`` is not a pending transfer.
            PendingAlreadyResolved: it was already posted, voided or expired.
            PendingExpired: its deadline passed (it expires instead).
            ExistsWithDifferentFields: ``transfer_id`` names another transfer.
        """
        request = Transfer(
            id=transfer_id or self._new_id(),
            pending_id=pending_id,
            flags=TransferFlags.VOID_PENDING,
        )
        return (await self._submit_one(request)).unwrap()

    async def fulfil_conditional(
        self, pending_id: str, preimage: bytes, *, transfer_id: str | None = None
    ) -> TransferOutcome:
        """Post a hash-locked reservation by revealing its 32-byte preimage.

        Raises:
            InvalidCondition: the preimage is not 32 bytes.
            ConditionNotMet: its SHA-256 is not the reservation's condition.
            LedgerError: the other refusals of ``post``.
        """
        request = fulfil_transfer(transfer_id or self._new_id(), pending_id, preimage)
        return self._outcome(await self._submit_one(request))

    async def expire_due(self, now_ms: int | None = None) -> list[Resolution]:
        """Expire every reservation whose deadline passed (call periodically).

        Raises:
            StorageUnavailable: the commit failed; nothing expired.
        """
        return await self._store.expire_due(self._clock() if now_ms is None else now_ms)

    # --- receipts -------------------------------------------------------------------

    async def get_transfer(self, transfer_id: str) -> Transfer | None:
        """The stored transfer with this id, or None."""
        return await self._store.get_transfer(transfer_id)

    async def receipt(self, transfer_id: str) -> Receipt:
        """The node-signed receipt of a posted transfer (re-signed on demand).

        Raises:
            TransferNotFound: no transfer ``transfer_id``.
            NotPosted: the transfer posted no funds (a pending or void one).
        """
        transfer = await self._store.get_transfer(transfer_id)
        if transfer is None:
            raise errors.TransferNotFound(f"no transfer {transfer_id}")
        return issue_receipt(transfer, self._node)

    # --- internals ------------------------------------------------------------------

    async def _submit_one(self, request: Transfer) -> TransferResult:
        [result] = await self._store.create_transfers([request], self._clock())
        return result

    def _outcome(self, result: TransferResult) -> TransferOutcome:
        transfer = result.unwrap()
        return TransferOutcome(transfer, issue_receipt(transfer, self._node), result.duplicate)

    def _new_id(self) -> str:
        # 128 random bits: ids must never collide, and callers who retry pass their own.
        return "t" + os.urandom(16).hex()
