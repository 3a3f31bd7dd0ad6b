"""The ledger's unit of work: a group of submissions applied in one transaction.

Like TigerBeetle's single-threaded state machine, one writer owns all ledger
writes. The stores queue submissions in ``coral.store``'s group committer;
each group it hands over is applied here against one ``LedgerState`` working
set loaded from the open transaction, so a durable fsync is paid once per
group instead of once per transfer. The semantics come from ``LedgerState``,
identical for every database. ``apply_group_sync`` is the same unit of work
for a database driven from its own thread (SQLite): the whole group runs there
in one call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from coral.ledger.model import (
    Account,
    AccountResult,
    LedgerChanges,
    Resolution,
    Transfer,
    TransferResult,
)
from coral.ledger.ports import LedgerTransaction, SyncLedgerTransaction
from coral.ledger.state import LedgerState
from coral.protocol.errors import CoralError, StorageUnavailable

#: Most open pendings expired by one sweep; the next sweep continues.
EXPIRY_SWEEP_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class Submission:
    """One caller's ledger write, waiting to be applied with its group."""

    kind: Literal["accounts", "transfers", "expire"]
    now_ms: int
    accounts: Sequence[Account] = ()
    transfers: Sequence[Transfer] = ()


#: What one submission returns, by kind.
SubmissionResult = list[AccountResult] | list[TransferResult] | list[Resolution]


def as_typed_error(exc: Exception) -> CoralError:
    """The error every submitter of a failed group gets: a CoralError, typed."""
    if isinstance(exc, CoralError):
        return exc
    error = StorageUnavailable(f"ledger commit failed, nothing was stored: {exc}")
    error.__cause__ = exc
    return error


async def apply_group(tx: LedgerTransaction, group: list[Submission]) -> list[SubmissionResult]:
    """Load the group's working set, run the state machine, persist the changes.

    Raises:
        Exception: whatever the transaction's loads or ``persist`` raise; the
            caller's transaction then rolls back and nothing of the group is stored.
    """
    transfer_ids, account_ids = _requested_ids(group)
    for submission in group:
        if submission.kind == "expire":
            due = await tx.load_due_pendings(submission.now_ms, EXPIRY_SWEEP_LIMIT)
            transfer_ids.update(t.id for t in due)
    if transfer_ids or account_ids:
        state = await tx.load_working_set(transfer_ids, account_ids)
    else:
        state = LedgerState()
    results, changes = _run(state, group)
    if not changes.is_empty():
        await tx.persist(changes)
    return results


def apply_group_sync(tx: SyncLedgerTransaction, group: list[Submission]) -> list[SubmissionResult]:
    """``apply_group`` for a transaction driven from the database's own thread.

    Raises:
        Exception: as for ``apply_group``.
    """
    transfer_ids, account_ids = _requested_ids(group)
    due: list[Transfer] = []
    for submission in group:
        if submission.kind == "expire":
            due += tx.load_due_pendings(submission.now_ms, EXPIRY_SWEEP_LIMIT)
    transfers = tx.load_transfers(transfer_ids) if transfer_ids else []
    transfers, pending_ids = _with_due(transfers, due, transfer_ids, account_ids)
    resolutions = tx.load_resolutions(pending_ids) if pending_ids else []
    accounts = tx.load_accounts(account_ids) if account_ids else []
    results, changes = _run(LedgerState(accounts, transfers, resolutions), group)
    if not changes.is_empty():
        tx.persist(changes)
    return results


def _requested_ids(group: list[Submission]) -> tuple[set[str], set[str]]:
    """Transfer ids (with the pendings they name) and account ids the group mentions."""
    transfer_ids: set[str] = set()
    account_ids: set[str] = set()
    for submission in group:
        for a in submission.accounts:
            account_ids.add(a.id)
        for t in submission.transfers:
            transfer_ids.add(t.id)
            if t.pending_id:
                transfer_ids.add(t.pending_id)
            if t.debit_account:
                account_ids.add(t.debit_account)
            if t.credit_account:
                account_ids.add(t.credit_account)
    return transfer_ids, account_ids


def _with_due(
    transfers: list[Transfer], due: list[Transfer], transfer_ids: set[str], account_ids: set[str]
) -> tuple[list[Transfer], list[str]]:
    """Add the due pendings, note every loaded transfer's accounts; return the pending ids."""
    transfers += list({t.id: t for t in due if t.id not in transfer_ids}.values())
    for t in transfers:
        account_ids.add(t.debit_account)
        account_ids.add(t.credit_account)
    return transfers, [t.id for t in transfers if t.is_pending]


def _run(
    state: LedgerState, group: list[Submission]
) -> tuple[list[SubmissionResult], LedgerChanges]:
    """Apply every submission in order to one working set; balances settle once."""
    results: list[SubmissionResult] = []
    with state.grouped():
        for submission in group:
            if submission.kind == "transfers":
                results.append(state.create_transfers(submission.transfers, submission.now_ms))
            elif submission.kind == "accounts":
                results.append(state.create_accounts(submission.accounts, submission.now_ms))
            else:
                results.append(state.expire_pending(submission.now_ms))
    return results, state.take_changes()
