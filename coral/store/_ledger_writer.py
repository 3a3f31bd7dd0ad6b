"""The ledger stores' single writer: ledger submissions through the shared group committer.

Both ledger adapters (SQLite and PostgreSQL) write through one ``LedgerWriter``:
the queue, flush and cancellation come from ``GroupCommitter``; each group is
one transaction, applied by the adapter's ``commit`` with the ledger's own unit
of work (``coral.ledger.batch.apply_group``, or ``apply_group_sync`` when the
whole group runs on the database's thread). ``in_transaction`` makes such a
``commit`` from a ``TransactionFactory``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import cast

from coral.ledger.batch import Submission, SubmissionResult, apply_group, as_typed_error
from coral.ledger.model import Account, AccountResult, Resolution, Transfer, TransferResult
from coral.ledger.ports import TransactionFactory
from coral.store.group_commit import GroupCommitStats, GroupCommitter

#: Applies one group of submissions in one transaction; raises if nothing was stored.
GroupCommit = Callable[[list[Submission]], Awaitable[list[SubmissionResult]]]


def in_transaction(begin: TransactionFactory) -> GroupCommit:
    """A ``GroupCommit`` that applies each group inside one transaction from ``begin``."""

    async def commit(group: list[Submission]) -> list[SubmissionResult]:
        async with begin() as tx:
            return await apply_group(tx, group)

    return commit


class LedgerWriter:
    """Queues ledger writes and commits each group of them in one transaction.

    A result is delivered only after its group committed; if the commit fails,
    every submitter in the group gets the error and nothing of the group is
    stored.
    """

    def __init__(self, commit: GroupCommit, *, max_group: int = 512) -> None:
        self._committer: GroupCommitter[Submission, SubmissionResult] = GroupCommitter(
            commit, max_group=max_group, error=as_typed_error, name="ledger-group-commit"
        )

    @property
    def stats(self) -> GroupCommitStats:
        """How many submissions shared how many commits."""
        return self._committer.stats

    async def create_accounts(self, batch: Sequence[Account], now_ms: int) -> list[AccountResult]:
        """Create accounts in the next group commit.

        Raises:
            CoralError: the group's commit failed (StorageUnavailable: nothing of
                it was stored) or the writer is closed.

        Cancellation: a submission still queued is withdrawn; one whose group has
        started commits or rolls back with it (retry with the same ids).
        """
        result = await self._committer.submit(Submission("accounts", now_ms, accounts=tuple(batch)))
        return cast(list[AccountResult], result)

    async def create_transfers(
        self, batch: Sequence[Transfer], now_ms: int
    ) -> list[TransferResult]:
        """Apply transfers in the next group commit.

        Raises:
            CoralError: as for ``create_accounts``.

        Cancellation: as for ``create_accounts``.
        """
        submission = Submission("transfers", now_ms, transfers=tuple(batch))
        return cast(list[TransferResult], await self._committer.submit(submission))

    async def expire_due(self, now_ms: int) -> list[Resolution]:
        """Expire overdue pendings in the next group commit.

        Raises:
            CoralError: as for ``create_accounts``.

        Cancellation: as for ``create_accounts``.
        """
        return cast(list[Resolution], await self._committer.submit(Submission("expire", now_ms)))

    async def close(self) -> None:
        """Commit everything already queued, then refuse new writes.

        Raises:
            Nothing of its own: commit failures go to the submitters.

        Cancellation: the group in flight and the queue keep committing.
        """
        await self._committer.close()
