"""Group commit: one writer applies many concurrent submissions per transaction.

Like TigerBeetle's single-threaded state machine, one task owns all ledger
writes. Submissions that arrive while a commit is in flight queue up and go
into the next transaction together, so a durable fsync is paid once per
group instead of once per transfer. A store supplies the transaction; the
semantics come from ``LedgerState``, identical for every database.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from coral.ledger.model import Account, AccountResult, Resolution, Transfer, TransferResult
from coral.ledger.ports import LedgerTransaction, TransactionFactory
from coral.ledger.state import LedgerState
from coral.protocol.errors import CoralError, StorageUnavailable

#: Most open pendings expired by one sweep; the next sweep continues.
EXPIRY_SWEEP_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class _Submission:
    kind: str  # "accounts" | "transfers" | "expire"
    now_ms: int
    accounts: Sequence[Account] = ()
    transfers: Sequence[Transfer] = ()


_Result = list[AccountResult] | list[TransferResult] | list[Resolution]


@dataclass(slots=True)
class GroupCommitStats:
    """Counters for metrics: how many submissions shared how many commits."""

    submissions: int = 0
    groups: int = 0
    failed_groups: int = 0
    largest_group: int = 0


class GroupCommitWriter:
    """Queues ledger writes and commits each group of them in one transaction.

    A result is delivered only after its group committed; if the commit fails,
    every submitter in the group gets the error and nothing of the group is
    stored. Cancelling a waiting submitter does not withdraw its submission.
    """

    def __init__(self, begin: TransactionFactory, *, max_group: int = 512) -> None:
        self._begin = begin
        self._max_group = max_group
        self._queue: asyncio.Queue[tuple[_Submission, asyncio.Future[_Result]] | None] = (
            asyncio.Queue()
        )
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.stats = GroupCommitStats()

    async def create_accounts(self, batch: Sequence[Account], now_ms: int) -> list[AccountResult]:
        """Create accounts in the next group commit."""
        result = await self._submit(_Submission("accounts", now_ms, accounts=tuple(batch)))
        return cast(list[AccountResult], result)

    async def create_transfers(
        self, batch: Sequence[Transfer], now_ms: int
    ) -> list[TransferResult]:
        """Apply transfers in the next group commit."""
        result = await self._submit(_Submission("transfers", now_ms, transfers=tuple(batch)))
        return cast(list[TransferResult], result)

    async def expire_due(self, now_ms: int) -> list[Resolution]:
        """Expire overdue pendings in the next group commit."""
        result = await self._submit(_Submission("expire", now_ms))
        return cast(list[Resolution], result)

    async def close(self) -> None:
        """Commit everything already queued, then stop the writer task."""
        self._closed = True
        if self._task is not None:
            await self._queue.put(None)
            await self._task
            self._task = None

    async def _submit(self, submission: _Submission) -> _Result:
        if self._closed:
            raise StorageUnavailable("the ledger store is closed")
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="ledger-group-commit")
        future: asyncio.Future[_Result] = asyncio.get_running_loop().create_future()
        await self._queue.put((submission, future))
        return await asyncio.shield(future)

    async def _run(self) -> None:
        while True:
            first = await self._queue.get()
            if first is None:
                return
            group = [first]
            stop = False
            while len(group) < self._max_group and not self._queue.empty():
                item = self._queue.get_nowait()
                if item is None:
                    stop = True
                    break
                group.append(item)
            await self._commit_group(group)
            if stop:
                return

    async def _commit_group(self, group: list[tuple[_Submission, asyncio.Future[_Result]]]) -> None:
        self.stats.groups += 1
        self.stats.submissions += len(group)
        self.stats.largest_group = max(self.stats.largest_group, len(group))
        try:
            async with self._begin() as tx:
                results = await _apply_group(tx, [s for s, _ in group])
        except Exception as exc:  # every submitter of a failed commit learns why
            self.stats.failed_groups += 1
            error = _as_typed_error(exc)
            for _, future in group:
                if not future.done():
                    future.set_exception(error)
            return
        except BaseException:
            # Cancelled mid-commit: the outcome is unknown, so callers retry with the same ids.
            for _, future in group:
                if not future.done():
                    future.set_exception(StorageUnavailable("ledger writer stopped; retry"))
            raise
        for (_, future), result in zip(group, results, strict=True):
            if not future.done():
                future.set_result(result)


def _as_typed_error(exc: Exception) -> CoralError:
    if isinstance(exc, CoralError):
        return exc
    error = StorageUnavailable(f"ledger commit failed, nothing was stored: {exc}")
    error.__cause__ = exc
    return error


async def _apply_group(tx: LedgerTransaction, group: list[_Submission]) -> list[_Result]:
    """Load the group's working set, run the state machine, persist the changes."""
    state = await _load_working_set(tx, group)
    results: list[_Result] = []
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


async def _load_working_set(tx: LedgerTransaction, group: list[_Submission]) -> LedgerState:
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
