"""The ledger state machine: pure, deterministic, no I/O, time passed in.

``LedgerState`` holds accounts, transfers and pending resolutions (all of
them, or just the working set a store loaded for one batch) and applies
batches with TigerBeetle's semantics: per-event results, linked chains
all-or-nothing, idempotent ids, two-phase transfers resolved at most once.
Whatever it changed is collected for a store by ``take_changes()``.

Balances being changed live in mutable ``LiveBalances`` records and are written back
into ``accounts`` (one new ``Account`` per changed account) when a batch ends,
or, inside ``grouped()``, once when the whole group ends: a store's group of
many one-transfer submissions builds each touched account once, not twice per
transfer.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace

from coral.ledger import errors
from coral.ledger._live import Balances, LiveBalances
from coral.ledger._validation import check_account, check_transfer_shape, condition_met
from coral.ledger.model import (
    AMOUNT_MAX,
    Account,
    AccountFlags,
    AccountResult,
    LedgerChanges,
    PendingStatus,
    Resolution,
    Transfer,
    TransferFlags,
    TransferResult,
    has_flag,
)

_LINKED = int(TransferFlags.LINKED)
_PENDING = int(TransferFlags.PENDING)
_RESOLVING = int(TransferFlags.POST_PENDING | TransferFlags.VOID_PENDING)
_DEBIT_LIMIT = int(AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS)
_CREDIT_LIMIT = int(AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS)


@dataclass(slots=True)
class _Savepoint:
    """Enough to undo a linked chain: old balances and journal lengths."""

    accounts: dict[str, Balances]
    transfers_len: int
    resolutions_len: int


class LedgerState:
    """Accounts, transfers and resolutions, changed only by validated batches."""

    def __init__(
        self,
        accounts: Iterable[Account] = (),
        transfers: Iterable[Transfer] = (),
        resolutions: Iterable[Resolution] = (),
    ) -> None:
        self.accounts: dict[str, Account] = {a.id: a for a in accounts}
        self.transfers: dict[str, Transfer] = {t.id: t for t in transfers}
        self.resolutions: dict[str, Resolution] = {r.pending_id: r for r in resolutions}
        # Open pendings with a deadline, so expiry never scans every transfer.
        self._deadlines: dict[str, int] = {
            t.id: t.expires_at
            for t in self.transfers.values()
            if t.is_pending and t.expires_at and t.id not in self.resolutions
        }
        self._changes = LedgerChanges()
        self._savepoint: _Savepoint | None = None
        # Accounts whose balances changed since they were last written to ``accounts``.
        self._live: dict[str, LiveBalances] = {}
        self._grouped = False

    @contextmanager
    def grouped(self) -> Iterator[None]:
        """Run several batches as one group: balances are written back once, at the end.

        Inside, ``accounts`` may lag behind the balances the batches see; it is
        exact again when the block ends (also on error) or at ``take_changes()``.
        """
        self._grouped = True
        try:
            yield
        finally:
            self._grouped = False
            self._settle()

    # --- accounts ---------------------------------------------------------------------

    def create_accounts(self, batch: Sequence[Account], now_ms: int) -> list[AccountResult]:
        """Create each account unless it is malformed; an identical retry is a duplicate."""
        self._settle()
        results = []
        for request in batch:
            try:
                check_account(request)
                existing = self.accounts.get(request.id)
                if existing is not None:
                    if existing.definition() != request.definition():
                        raise errors.ExistsWithDifferentFields(f"account {request.id} exists")
                    results.append(AccountResult(request.id, existing, duplicate=True))
                    continue
            except errors.LedgerError as exc:
                results.append(AccountResult(request.id, error=exc))
                continue
            account = replace(request, created_at=now_ms)
            self.accounts[account.id] = account
            self._changes.accounts_created.append(account)
            results.append(AccountResult(account.id, account))
        return results

    # --- transfers --------------------------------------------------------------------

    def create_transfers(self, batch: Sequence[Transfer], now_ms: int) -> list[TransferResult]:
        """Apply a batch in order; a linked chain applies entirely or not at all."""
        if len(batch) == 1 and not int.__and__(batch[0].flags, _LINKED):
            results = [self._apply_single(batch[0], now_ms)]
            if not self._grouped:
                self._settle()
            return results
        results = []
        start = 0
        while start < len(batch):
            end = start
            while end < len(batch) - 1 and has_flag(batch[end].flags, TransferFlags.LINKED):
                end += 1
            chain = batch[start : end + 1]
            if has_flag(chain[-1].flags, TransferFlags.LINKED):
                results.extend(self._reject_open_chain(chain))
            elif len(chain) == 1:
                results.append(self._apply_single(chain[0], now_ms))
            else:
                results.extend(self._apply_chain(chain, now_ms))
            start = end + 1
        if not self._grouped:
            self._settle()
        return results

    def expire_pending(self, now_ms: int) -> list[Resolution]:
        """Expire every open pending whose deadline is at or before ``now_ms``."""
        due = sorted(
            (deadline, tid) for tid, deadline in self._deadlines.items() if deadline <= now_ms
        )
        expired = []
        for _, pending_id in due:
            pending = self.transfers[pending_id]
            self._release(pending)
            expired.append(self._resolve(pending_id, PendingStatus.EXPIRED, now_ms, ""))
        if not self._grouped:
            self._settle()
        return expired

    def take_changes(self) -> LedgerChanges:
        """Return and forget everything created or modified since the last call."""
        self._settle()
        changes, self._changes = self._changes, LedgerChanges()
        return changes

    def _settle(self) -> None:
        """Write changed balances back into ``accounts`` (and the changes to persist)."""
        if not self._live:
            return
        updated = self._changes.accounts_updated
        for account_id, live in self._live.items():
            account = live.settled()
            if account is not None:
                self.accounts[account_id] = account
                updated[account_id] = account
        self._live.clear()

    def open_pending_ids(self) -> list[str]:
        """Ids of pending transfers that are neither posted, voided nor expired."""
        return [
            t.id for t in self.transfers.values() if t.is_pending and t.id not in self.resolutions
        ]

    # --- internals: chains -------------------------------------------------------------

    def _apply_single(self, request: Transfer, now_ms: int) -> TransferResult:
        try:
            return self._apply(request, now_ms)
        except errors.LedgerError as exc:
            return TransferResult(request.id, error=exc)

    def _apply_chain(self, chain: Sequence[Transfer], now_ms: int) -> list[TransferResult]:
        self._savepoint = _Savepoint(
            {}, len(self._changes.transfers_created), len(self._changes.resolutions_created)
        )
        applied: list[TransferResult] = []
        try:
            for request in chain:
                applied.append(self._apply(request, now_ms))
        except errors.LedgerError as exc:
            self._rollback()
            failed_at = len(applied)
            return [
                TransferResult(r.id, error=exc if i == failed_at else _chain_failed(r.id))
                for i, r in enumerate(chain)
            ]
        finally:
            self._savepoint = None
        return applied

    def _reject_open_chain(self, chain: Sequence[Transfer]) -> list[TransferResult]:
        last = len(chain) - 1
        return [
            TransferResult(
                r.id,
                error=errors.LinkedEventChainOpen("the batch ends inside a linked chain")
                if i == last
                else _chain_failed(r.id),
            )
            for i, r in enumerate(chain)
        ]

    def _rollback(self) -> None:
        savepoint = self._savepoint
        assert savepoint is not None
        # Undo resolutions first: a chain may resolve a pending it created itself.
        for resolution in self._changes.resolutions_created[savepoint.resolutions_len :]:
            del self.resolutions[resolution.pending_id]
            pending = self.transfers[resolution.pending_id]
            if pending.expires_at:
                self._deadlines[pending.id] = pending.expires_at
        for transfer in self._changes.transfers_created[savepoint.transfers_len :]:
            del self.transfers[transfer.id]
            self._deadlines.pop(transfer.id, None)
        del self._changes.transfers_created[savepoint.transfers_len :]
        del self._changes.resolutions_created[savepoint.resolutions_len :]
        for account_id, balances in savepoint.accounts.items():
            self._live[account_id].restore(balances)

    # --- internals: one event ----------------------------------------------------------

    def _apply(self, request: Transfer, now_ms: int) -> TransferResult:
        check_transfer_shape(request)
        digest = request.digest()
        existing = self.transfers.get(request.id)
        if existing is not None:
            if existing.request_digest != digest:
                raise errors.ExistsWithDifferentFields(f"transfer {request.id} exists")
            return TransferResult(request.id, existing, duplicate=True)
        if int.__and__(request.flags, _RESOLVING):
            stored = self._resolve_pending(request, digest, now_ms)
        else:
            stored = self._create_new(request, digest, now_ms)
        self.transfers[stored.id] = stored
        self._changes.transfers_created.append(stored)
        return TransferResult(stored.id, stored)

    def _create_new(self, request: Transfer, digest: str, now_ms: int) -> Transfer:
        debit = self._account(request.debit_account)
        credit = self._account(request.credit_account)
        ledger = request.ledger or debit.ledger
        if not (debit.ledger == credit.ledger == ledger):
            raise errors.LedgerMismatch("both accounts and the transfer must share a ledger")
        amount = request.amount
        pending = int.__and__(request.flags, _PENDING)
        if pending:
            _check_room(debit.debits_pending, amount)
            _check_room(credit.credits_pending, amount)
        else:
            _check_room(debit.debits_posted, amount)
            _check_room(credit.credits_posted, amount)
        _check_limits(debit, credit, amount)
        if pending:
            debit.debits_pending += amount
            credit.credits_pending += amount
        else:
            debit.debits_posted += amount
            credit.credits_posted += amount
        expires_at = now_ms + request.timeout_ms if request.timeout_ms else 0
        # Direct construction: dataclasses.replace is slow on the hot path.
        stored = Transfer(
            request.id,
            request.debit_account,
            request.credit_account,
            amount,
            ledger,
            request.flags,
            request.pending_id,
            request.timeout_ms,
            request.condition,
            request.fulfillment,
            request.memo,
            now_ms,
            expires_at,
            digest,
        )
        if expires_at:
            self._deadlines[stored.id] = expires_at
        return stored

    def _resolve_pending(self, request: Transfer, digest: str, now_ms: int) -> Transfer:
        pending = self.transfers.get(request.pending_id)
        if pending is None:
            raise errors.PendingNotFound(f"no transfer {request.pending_id}")
        if not pending.is_pending:
            raise errors.NotPending(f"transfer {pending.id} is not pending")
        if request.debit_account and request.debit_account != pending.debit_account:
            raise errors.PendingAccountsMismatch("debit_account differs from the pending's")
        if request.credit_account and request.credit_account != pending.credit_account:
            raise errors.PendingAccountsMismatch("credit_account differs from the pending's")
        if request.ledger and request.ledger != pending.ledger:
            raise errors.LedgerMismatch("ledger differs from the pending transfer's")
        resolution = self.resolutions.get(pending.id)
        if resolution is not None:
            raise errors.PendingAlreadyResolved(f"pending {pending.id} was {resolution.status}")
        if pending.expires_at and now_ms >= pending.expires_at:
            raise errors.PendingExpired(f"pending {pending.id} expired at {pending.expires_at}")
        amount = request.amount or pending.amount
        if request.is_void:
            if amount != pending.amount:
                raise errors.PendingAmountMismatch("a void releases the full pending amount")
        else:
            if amount > pending.amount:
                raise errors.ExceedsPendingAmount(f"post {amount} > pending {pending.amount}")
            self._check_fulfillment(pending, request)
        debit = self._account(pending.debit_account)
        credit = self._account(pending.credit_account)
        if request.is_post:
            _check_room(debit.debits_posted, amount)
            _check_room(credit.credits_posted, amount)
        self._release(pending)
        if request.is_post:
            debit.debits_posted += amount
            credit.credits_posted += amount
        status = PendingStatus.POSTED if request.is_post else PendingStatus.VOIDED
        self._resolve(pending.id, status, now_ms, request.id)
        return replace(
            request,
            debit_account=pending.debit_account,
            credit_account=pending.credit_account,
            ledger=pending.ledger,
            amount=amount,
            created_at=now_ms,
            request_digest=digest,
        )

    @staticmethod
    def _check_fulfillment(pending: Transfer, request: Transfer) -> None:
        if not pending.condition:
            return
        if not request.fulfillment:
            raise errors.FulfillmentRequired(f"pending {pending.id} is hash-locked")
        if not condition_met(pending.condition, request.fulfillment):
            raise errors.ConditionNotMet("SHA-256 of the fulfillment is not the condition")

    def _release(self, pending: Transfer) -> None:
        debit = self._account(pending.debit_account)
        credit = self._account(pending.credit_account)
        debit.debits_pending -= pending.amount
        credit.credits_pending -= pending.amount

    def _resolve(self, pending_id: str, status: PendingStatus, now_ms: int, by: str) -> Resolution:
        resolution = Resolution(pending_id, status, now_ms, by)
        self.resolutions[pending_id] = resolution
        self._deadlines.pop(pending_id, None)
        self._changes.resolutions_created.append(resolution)
        return resolution

    def _account(self, account_id: str) -> LiveBalances:
        """The account's live balances (what a chain may change: noted in its savepoint)."""
        live = self._live.get(account_id)
        if live is None:
            account = self.accounts.get(account_id)
            if account is None:
                raise errors.UnknownAccount(f"no account {account_id}")
            live = self._live[account_id] = LiveBalances(account)
        savepoint = self._savepoint
        if savepoint is not None and account_id not in savepoint.accounts:
            savepoint.accounts[account_id] = live.balances()
        return live


def _chain_failed(transfer_id: str) -> errors.LinkedEventFailed:
    return errors.LinkedEventFailed(f"another event in the chain of {transfer_id} failed")


def _check_room(balance: int, amount: int) -> None:
    if balance + amount > AMOUNT_MAX:
        raise errors.AmountOverflow("the resulting balance would exceed 2**63 - 1")


def _check_limits(debit: LiveBalances, credit: LiveBalances, amount: int) -> None:
    # Pending amounts count against the limit, so a reservation can never be overdrawn.
    if debit.flags & _DEBIT_LIMIT:
        if debit.debits_posted + debit.debits_pending + amount > debit.credits_posted:
            raise errors.ExceedsCredits(f"account {debit.id} has insufficient funds")
    if credit.flags & _CREDIT_LIMIT:
        if credit.credits_posted + credit.credits_pending + amount > credit.debits_posted:
            raise errors.ExceedsDebits(f"account {credit.id} would exceed its debits")
