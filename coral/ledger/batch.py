"""The ledger's unit of work: a group of submissions applied in one transaction.

Like TigerBeetle's single-threaded state machine, one writer owns all ledger
writes. The stores queue submissions in ``coral.store``'s group committer;
each group it hands over is applied here against one ``LedgerState`` working
set loaded from the open transaction, so a durable fsync is paid once per
group instead of once per transfer. The semantics come from ``LedgerState``,
identical for every database.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from coral.ledger.model import Account, AccountResult, Resolution, Transfer, TransferResult
from coral.ledger.ports import LedgerTransaction
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
    state = await _load_working_set(tx, group)
    results: list[SubmissionResult] = []
    for submission in group:
        if submission.kind == "accounts":
            results.append(state.create_accounts(submission.accounts, submission.now_ms))
        elif submission.kind == "transfers":
            results.append(state.create_transfers(submission.transfers, submission.now_ms))
        else:
            results.append(state.expire_pending(submission.now_ms))
    changes = state.take_changes()
    if not changes.is_empty():
        await tx.persist(changes)
    return results


async def _load_working_set(tx: LedgerTransaction, group: list[Submission]) -> LedgerState:
    transfer_ids: set[str] = set()
    account_ids: set[str] = set()
    due: list[Transfer] = []
    for submission in group:
        account_ids.update(a.id for a in submission.accounts)
        for t in submission.transfers:
            transfer_ids.add(t.id)
            if t.pending_id:
                transfer_ids.add(t.pending_id)
            account_ids.update(x for x in (t.debit_account, t.credit_account) if x)
        if submission.kind == "expire":
            due += await tx.load_due_pendings(submission.now_ms, EXPIRY_SWEEP_LIMIT)
    transfers = await tx.load_transfers(transfer_ids) if transfer_ids else []
    transfers += list({t.id: t for t in due if t.id not in transfer_ids}.values())
    for t in transfers:
        account_ids.update((t.debit_account, t.credit_account))
    pending_ids = [t.id for t in transfers if t.is_pending]
    resolutions = await tx.load_resolutions(pending_ids) if pending_ids else []
    accounts = await tx.load_accounts(account_ids) if account_ids else []
    return LedgerState(accounts, transfers, resolutions)
